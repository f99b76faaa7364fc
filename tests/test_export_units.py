"""The export's pure parts: splits by app, duplicate detection, redaction, verdict normalisation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lassi_batch.export.dedup import Deduplicator, code_hash, normalize_code
from lassi_batch.export.records import CandidateData
from lassi_batch.export.safety import Redactor
from lassi_batch.export.splits import assign_splits
from lassi_batch.export.trust import passes, screen, significant_saving, significantly_lower

apps_st = st.dictionaries(st.from_regex(r"[a-z]{2,8}(-[a-z]{2,5})?", fullmatch=True), st.integers(1, 50),
                          min_size=1, max_size=25)


@settings(max_examples=60, deadline=None)
@given(apps_st, st.integers(0, 10_000))
def test_every_app_goes_to_exactly_one_split_reproducibly(sizes, seed):
    a = assign_splits(sizes, (0.8, 0.1, 0.1), seed)
    assert a == assign_splits(dict(reversed(list(sizes.items()))), (0.8, 0.1, 0.1), seed)
    assert set(a) == set(sizes) and set(a.values()) <= {"train", "validation", "test"}
    if len(sizes) >= 3:
        assert set(a.values()) == {"train", "validation", "test"}
    if len(sizes) >= 1:
        assert "train" in a.values()


@settings(max_examples=40, deadline=None)
@given(apps_st, st.integers(0, 100))
def test_held_out_families_all_go_to_test(sizes, seed):
    a = assign_splits(sizes, (0.8, 0.1, 0.1), seed, holdout=["*-*"])
    for app, split in a.items():
        if "-" in app:
            assert split == "test"


def test_split_fractions_are_followed_with_many_apps():
    sizes = {f"app{i:02d}": 10 for i in range(50)}
    a = assign_splits(sizes, (0.8, 0.1, 0.1), 3)
    counts = {s: sum(1 for v in a.values() if v == s) for s in ("train", "validation", "test")}
    assert counts == {"train": 40, "validation": 5, "test": 5}
    assert assign_splits(sizes, (0.8, 0.1, 0.1), 4) != a  # the seed matters


CODE = "\n".join(f"  y[{i}] = a * x[{i}] + b;  // step {i}" for i in range(60))


def test_normalisation_ignores_comments_and_whitespace_but_not_strings():
    assert code_hash("int x = 1; // one\n") == code_hash("int  x = 1;\n/* other */")
    assert code_hash('puts("a // b");') != code_hash('puts("a");')
    assert normalize_code("a\n\n   b /* c */ d") == "a b d"


def test_near_copies_are_dropped_and_different_code_kept():
    d = Deduplicator(0.9)
    assert d.offer("a", CODE)
    assert not d.offer("b", CODE.replace("// step 3", "// the third step"))  # exact after normalising
    assert not d.offer("c", CODE.replace("y[7] = a", "y[7] = 2 * a"))  # one edit in 60 lines
    assert d.offer("d", "\n".join(f"  z[{i}] = sqrt(w[{i}]);" for i in range(60)))
    assert (d.exact_dropped, d.near_dropped) == (1, 1)
    exact_only = Deduplicator(None)
    assert exact_only.offer("a", CODE) and exact_only.offer("c", CODE.replace("y[7] = a", "y[7] = 2 * a"))


def test_redactor_removes_keys_names_and_user_paths_but_keeps_file_names():
    r = Redactor(secrets={"s3cr3t-value-123"}, names={"gpu-node17", "alice"}, prefixes={"/srv/study"})
    text = ("key=s3cr3t-value-123 sk-abcdefghijklmnopqrstu on gpu-node17.cluster by alice: "
            "/tmp/lassi-x1/main.cpp:12: error; see /srv/study/trials/a.h5 and /home/alice/notes; y = x/work;")
    out = r.clean(text)
    assert out == ("key=<redacted> <redacted> on <host>.cluster by <host>: <path>/main.cpp:12: error; "
                   "see <path>/a.h5 and <path>; y = x/work;")
    assert r.scan(out) == []
    assert len(r.scan(text)) == 4  # secret, api key shape, path, name
    assert r.counts == {"secret": 2, "path": 3, "name": 2}


def _cand(**kw) -> CandidateData:
    base = dict(id=1, key="s3/i1/eval0", stage=3, iteration=1, parent=0, status="measured", files={"m.cpp": "x"},
                description="", build_ok=True, run_ok=True, passed=True, judge_verdict="VALID", judge_text="",
                verifier_verdict="pass", verifier_findings=[], energy_j=5.0, runtime_s=1.0, power_w=5.0,
                build_log="", stderr="", self_corrections=0, contract={})
    base.update(kw)
    return CandidateData(**base)


def test_a_work_cut_that_an_old_judge_only_policy_passed_is_never_preferred():
    c = _cand(verifier_verdict="fail", passed=True,
              verifier_findings=[{"kind": "work", "severity": "fail", "message": "work removed"}])
    s = screen(c, False, False)
    assert s.integrity_failure and s.reject_reason == "integrity"
    assert not any(passes(c, s, p) for p in ("recorded", "strict", "judge", "verifier", "judge_and_verifier"))


def test_fallback_verdicts_from_the_older_attributes():
    assert screen(_cand(status="build_failed", passed=False), False, False).reject_reason == "error"
    held = screen(_cand(verifier_verdict="warn",
                        verifier_findings=[{"kind": "energy", "severity": "warn", "message": "large"}]), False, False)
    assert held.verdict == "pass" and held.held
    c = _cand(verifier_verdict="warn", verifier_findings=[{"kind": "energy", "severity": "warn", "message": "x"}])
    assert passes(c, held, "recorded") and not passes(c, held, "strict")
    s = screen(_cand(), False, False)
    assert (s.energy_basis, s.verdict_basis, s.energy_j) == ("measured", "fallback", 5.0)


def test_contract_attributes_take_precedence():
    c = _cand(contract={"verdict": "held", "findings_json": '[{"kind": "energy", "severity": "held", "message": "m"}]',
                        "confirmed_energy_j": float("nan"), "confirmed_ci_low": float("nan")})
    s = screen(c, True, True)
    assert s.verdict == "held" and s.confirmed_reduction is None and s.energy_j == 5.0 and not passes(c, s, "recorded")
    a = screen(_cand(contract={"verdict": "pass", "findings_json": "[]", "confirmed_energy_j": 4.0,
                               "confirmed_source_energy_j": 5.0, "confirmed_ci_low": 0.15,
                               "confirmed_ci_high": 0.25}), True, True)
    assert a.confirmed_reduction == pytest.approx(0.2)  # from the energies when the saving is not stored
    b = screen(_cand(contract={"verdict": "pass", "findings_json": "[]", "confirmed_energy_j": 4.3,
                               "confirmed_reduction": 0.14, "confirmed_ci_low": -0.02, "confirmed_ci_high": 0.2}),
               True, True)
    assert significantly_lower(a, b) is False  # the savings' intervals overlap
    assert significant_saving(a) is True and significant_saving(b) is False  # b's interval includes no saving
    c = screen(_cand(contract={"verdict": "pass", "findings_json": "[]", "confirmed_reduction": 0.05,
                               "confirmed_ci_low": 0.01, "confirmed_ci_high": 0.09}), True, True)
    assert significantly_lower(a, c) is True
    assert significantly_lower(a, screen(_cand(), False, False)) is None  # no interval: unknown
    assert significant_saving(screen(_cand(), False, False)) is None


def _measured(cid: int, stage: int, energies: list[float], passed: bool = True) -> CandidateData:
    from lassi_batch.export.records import MeasurementRef
    refs = [MeasurementRef(f"candidates/{cid:06d}/measurements/{k:06d}", "estimate", "cpu", True, e)
            for k, e in enumerate(energies)]
    return _cand(id=cid, stage=stage, passed=passed, energy_j=sum(energies) / len(energies), measurements=refs)


def test_only_what_the_trial_counted_is_an_improvement():
    from lassi_batch.export.trust import improvements

    src = _measured(0, 0, [10.0, 10.2, 9.8])
    noise = _measured(1, 3, [9.94, 10.1, 9.8])  # 0.6% below: noise, below min_improvement
    real = _measured(2, 3, [7.0, 7.1, 6.9])
    failed = _measured(3, 3, [5.0, 5.1, 4.9], passed=False)
    cands = [src, noise, real, failed]
    measure = {"min_improvement": 0.02, "significance": 0.05}
    # the trial confirms: its confirmed best only, and nothing when it reported the source
    res = {"source_candidate": 0, "best_candidate": 2, "improved": True, "confirmed": True, "confirm_repeats": 3}
    assert improvements(res, src, cands, measure) == {2}
    assert improvements({**res, "best_candidate": 0, "improved": False, "confirmed": False}, src, cands, measure) == set()
    assert improvements({**res, "confirmed": False}, src, cands, measure) == set()  # not confirmed: not counted
    # confirmation off: the decisions' rule over the measured repeats, passing candidates only
    off = {"source_candidate": 0, "best_candidate": 2, "improved": True, "confirmed": False, "confirm_repeats": 0}
    assert improvements(off, src, cands, measure) == {2}
    # no result yet (interrupted before stage 4): nothing was decided
    assert improvements({}, src, cands, measure) == set()

"""`aggregate` on a small synthetic study whose tables were computed by hand, and on bad files."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import h5py
import pytest
from click.testing import CliRunner

from lassi_batch.analysis.study import StudyFile
from lassi_batch.cli import main
from lassi_batch.store.schema import SCHEMA, SCHEMA_VERSION, set_attrs
from lassi_batch.store.summary import TrialSummary, write_summary

LIBVER = ("v108", "v110")


def make_trial(path: Path, version: int = SCHEMA_VERSION, **kw) -> TrialSummary:
    """A trial file holding only the root identity and the /summary group (what aggregate reads)."""
    defaults = dict(study="golden", platform="cuda", status="done", generator_model="m1",
                    n_generated=4, n_built=4, n_ran=3, n_judged=3, n_judge_valid=2, n_verifier_ok=3, n_held=0,
                    findings_exit=0, findings_pass_line=0, findings_fail_line=0, findings_checksum=1,
                    findings_numbers=0, findings_work=0, findings_energy=0, findings_other=0)
    s = TrialSummary(**(defaults | kw))
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", libver=LIBVER) as f:
        set_attrs(f, {"schema": SCHEMA, "schema_version": version, "app": s.app, "platform": s.platform,
                      "status": s.status, "trial_id": s.trial_id})
        write_summary(f, s)
    return s


def golden_study(root: Path) -> None:
    t = root / "trials"
    # alpha: hand-computed in the tests below
    make_trial(t / "alpha.t0.h5", app="alpha", trial_index=0, passed=True, n_passed=2, reduction=0.5,
               vanilla_passed=True, vanilla_reduction=0.1, source_energy_j=100, best_energy_j=50,
               source_power_w=100, best_power_w=80, source_runtime_s=1.0, best_runtime_s=0.5,
               best_iteration=3, best_self_corrections=1, time_total_s=600, time_llm_s=400, time_build_s=50,
               time_measure_s=100, time_lock_wait_s=20, prompt_tokens=1_000_000, completion_tokens=100_000,
               confirmed=True, selection_reduction=0.6, reduction_ci_low=0.45, reduction_ci_high=0.55)
    make_trial(t / "alpha.t1.h5", app="alpha", trial_index=1, status="failed", passed=False, n_passed=0,
               reduction=0.0, source_energy_j=100, source_power_w=100, source_runtime_s=1.0, time_total_s=300,
               findings_checksum=3, findings_work=2)
    make_trial(t / "alpha.t2.h5", app="alpha", trial_index=2, passed=True, n_passed=1, reduction=0.2,
               vanilla_passed=True, vanilla_reduction=-0.1, source_energy_j=100, best_energy_j=80,
               source_power_w=100, best_power_w=90, source_runtime_s=1.0, best_runtime_s=0.9,
               best_iteration=1, best_self_corrections=0, time_total_s=600)
    make_trial(t / "alpha.t3.h5", app="alpha", trial_index=3, passed=False, n_passed=1, reduction=0.0,
               source_energy_j=100, source_power_w=100, source_runtime_s=1.0, time_total_s=900)
    make_trial(t / "beta.t0.h5", app="beta", trial_index=0, passed=True, n_passed=1, reduction=0.4,
               source_energy_j=10, best_energy_j=6, time_total_s=60)
    make_trial(t / "beta.t1.h5", app="beta", trial_index=1, passed=True, n_passed=1, reduction=0.2,
               source_energy_j=10, best_energy_j=8, time_total_s=60)


def row(study: StudyFile, table: str, app: str, platform: str = "cuda") -> dict:
    _, _, rows = study.tables[table]
    return next(r for r in rows if r["app"] == app and r["platform"] == platform)


@pytest.fixture()
def golden(tmp_path: Path) -> Path:
    golden_study(tmp_path / "study")
    (tmp_path / "prices.toml").write_text('[models."m1"]\nprompt_per_mtok = 2.0\ncompletion_per_mtok = 10.0\n')
    return tmp_path


def test_golden_tables(golden: Path):
    out = golden / "out" / "study.h5"
    r = CliRunner().invoke(main, ["aggregate", str(golden / "study"), "-o", str(out), "--k", "1,3",
                                  "--csv", str(golden / "csv"), "--md", str(golden / "study.md"),
                                  "--prices", str(golden / "prices.toml"), "--bootstrap", "500"])
    assert r.exit_code == 0, r.output
    s = StudyFile(out)
    assert len(s.paths) == 6 and not s.skipped and s.k == (1, 3)

    p = row(s, "table3_pass_at_k", "alpha")
    assert (p["n"], p["c_pipeline"], p["c_vanilla"]) == (4, 3, 2)
    assert p["pipeline_1"] == pytest.approx(0.75) and p["vanilla_1"] == pytest.approx(0.5)
    assert p["pipeline_3"] == 1.0 and p["diff_1"] == pytest.approx(0.25)

    e = row(s, "table4_energy_reduction_at_k", "alpha")
    assert e["pipeline_1"] == pytest.approx(0.175) and e["pipeline_3"] == pytest.approx(0.425)
    assert e["vanilla_1"] == pytest.approx(0.025) and e["vanilla_3"] == pytest.approx(0.075)  # -0.1 counts 0
    assert e["paper_pipeline_3"] == pytest.approx(0.5) and e["paper_vanilla_3"] == pytest.approx(0.1)
    b = row(s, "table4_energy_reduction_at_k", "beta")
    assert b["pipeline_1"] == pytest.approx(0.3) and math.isnan(b["pipeline_3"])  # k > n
    cross = row(s, "table4_energy_reduction_at_k", "cross-app average")
    assert cross["pipeline_1"] == pytest.approx((0.175 + 0.3) / 2) and cross["pipeline_3"] == pytest.approx(0.425)

    t2 = row(s, "table2_energy", "alpha")
    assert t2["n_improved"] == 2 and t2["best_energy_j"] == pytest.approx(65.0)
    assert t2["energy_delta"] == pytest.approx(-0.35) and t2["power_delta"] == pytest.approx(-0.15)
    assert t2["runtime_delta"] == pytest.approx(-0.3) and t2["time_min"] == pytest.approx(10.0)
    assert (t2["best_self_corrections"], t2["best_iteration"]) == (1, 3)

    sc = row(s, "screening", "alpha")
    assert (sc["done"], sc["failed"], sc["generated"]) == (3, 1, 16)
    assert sc["built"] == 1.0 and sc["ran"] == pytest.approx(0.75) and sc["judge_valid"] == pytest.approx(2 / 3)
    f = row(s, "findings", "alpha")
    assert (f["checksum"], f["work"], f["exit"]) == (6, 2, 0)

    c = row(s, "confirmation", "alpha")
    assert c["confirmed"] == 1 and c["selection_minus_confirmed"] == pytest.approx(0.1)
    ct = row(s, "cost_time", "alpha")
    assert ct["cost_usd"] == pytest.approx((2.0 + 1.0) / 4)  # one trial used 1M prompt + 0.1M completion
    assert ct["time_other_s"] == pytest.approx(600 - (400 + 50 + 100 + 20) / 1)  # the only split trial's means

    d = row(s, "distributions", "alpha")
    assert d["pipeline_mean"] == pytest.approx(0.175) and d["pipeline_median"] == pytest.approx(0.1)
    assert d["pipeline_ci_low"] <= 0.175 <= d["pipeline_ci_high"]

    # the same numbers in CSV and Markdown
    with open(golden / "csv" / "table4_energy_reduction_at_k.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert float(rows[0]["pipeline_3"]) == pytest.approx(0.425)
    with open(golden / "csv" / "trials.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 6
    md = (golden / "study.md").read_text()
    assert "| alpha | cuda | 4 | 2.5 | 17.5 | 15.0 |" in md


def corrupt_copies(root: Path, good: Path) -> dict[str, str]:
    """Every kind of bad file next to the good ones; name -> expected reason fragment."""
    bad = root / "trials" / "zz-bad"  # sorts after the originals: the copy is the duplicate
    bad.mkdir()
    data = good.read_bytes()
    (bad / "truncated.h5").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[data.find(b"source_energy_j")] ^= 0x10
    (bad / "flipped.h5").write_bytes(bytes(flipped))
    with h5py.File(bad / "foreign.h5", "w") as f:
        f["x"] = [1, 2, 3]
    make_trial(bad / "future.h5", version=SCHEMA_VERSION + 1, app="gamma", trial_index=0)
    shutil.copy(good, bad / "copy-of-alpha.t0.h5")
    make_trial(bad / "running.h5", app="gamma", trial_index=1, status="running", passed=True, n_passed=1,
               reduction=0.3)
    (bad / "notes.h5").write_text("not hdf5 at all\n")
    (bad / "empty.h5").write_bytes(b"")
    return {"truncated.h5": "truncated", "flipped.h5": "checksum", "foreign.h5": "not a lassi-batch trial",
            "future.h5": "newer than this lassi-batch", "copy-of-alpha.t0.h5": "duplicate of",
            "running.h5": "still running", "notes.h5": "not an HDF5 file", "empty.h5": "empty file"}


def test_bad_files_are_listed_with_their_reason_and_skipped(golden: Path):
    study = golden / "study"
    want = corrupt_copies(study, study / "trials" / "alpha.t0.h5")
    out = golden / "study.h5"
    r = CliRunner().invoke(main, ["aggregate", str(study), "-o", str(out)])
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    s = StudyFile(out)
    reasons = {p.name: reason for p, reason in ((x.path, x.reason) for x in s.skipped)}
    assert set(reasons) == set(want)
    for name, fragment in want.items():
        assert fragment in reasons[name], (name, reasons[name])
        assert f"skipped {study / 'trials' / 'zz-bad' / name}: " in r.output
    # the good trials are aggregated exactly as without the bad ones
    assert len(s.paths) == 6
    assert row(s, "table4_energy_reduction_at_k", "alpha")["pipeline_1"] == pytest.approx(0.175)

    r = CliRunner().invoke(main, ["aggregate", str(study), "-o", str(out), "--include-running"])
    assert r.exit_code == 1
    s = StudyFile(out)
    assert len(s.paths) == 7 and "running.h5" not in {p.name for p in (x.path for x in s.skipped)}


def test_clean_study_exits_0_and_usage_errors_exit_2(golden: Path):
    r = CliRunner().invoke(main, ["aggregate", str(golden / "nowhere")])
    assert r.exit_code == 2 and "not found" in r.output
    r = CliRunner().invoke(main, ["aggregate", str(golden / "study"), "--k", "1,x"])
    assert r.exit_code == 2 and "--k" in r.output
    (golden / "bad.toml").write_text('[models."m1"]\nprompt_per_mtok = -1\ncompletion_per_mtok = 1\n')
    r = CliRunner().invoke(main, ["aggregate", str(golden / "study"), "--prices", str(golden / "bad.toml")])
    assert r.exit_code == 2 and "prompt_per_mtok" in r.output
    assert not (golden / "study" / "study.h5").exists()  # nothing written on a usage error
    r = CliRunner().invoke(main, ["aggregate", str(golden / "study")])
    assert r.exit_code == 0 and (golden / "study" / "study.h5").exists()
    # a second run does not take its own output for a trial
    r = CliRunner().invoke(main, ["aggregate", str(golden / "study")])
    assert r.exit_code == 0, r.output


def test_a_file_without_screening_counters_is_counted_from_its_candidates(tmp_path: Path):
    p = tmp_path / "s" / "t.h5"
    make_trial(p, app="alpha", trial_index=0, **{k: -1 for k in ("n_generated", "n_built", "n_ran", "n_judged",
                                                                 "n_judge_valid", "n_verifier_ok", "n_held",
                                                                 "findings_checksum")})
    with h5py.File(p, "a") as f:
        for i, (stage, built, judge, findings) in enumerate([(0, True, "", None), (1, True, "VALID", '[{"kind": "work"}]'),
                                                             (3, False, "", None)]):
            g = f.create_group(f"candidates/{i:06d}")
            g.attrs["stage"], g.attrs["build_ok"], g.attrs["run_ok"] = stage, built, built
            set_attrs(g, {"judge_verdict": judge, "verifier_verdict": "pass" if built else ""})
            if findings:
                set_attrs(g, {"findings_json": findings})
    out = tmp_path / "study.h5"
    assert CliRunner().invoke(main, ["aggregate", str(tmp_path / "s"), "-o", str(out)]).exit_code == 0
    s = StudyFile(out)
    sc = row(s, "screening", "alpha")
    assert (sc["generated"], sc["built"], sc["judge_valid"]) == (2, 0.5, 1.0)
    assert row(s, "findings", "alpha")["work"] == 1

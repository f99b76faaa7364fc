"""`lassi-batch export` on a small real study (real replay trials on the CPU, see exportstudy.py).

Every format is exported once per session through the CLI; the tests then load each export with
Hugging Face `datasets` through the card's configs, validate every record, and check the trust
rules against the trial files themselves (read back through TrialArchive, not the manifest).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import datasets
import h5py
import pytest
import yaml
from click.testing import CliRunner

from exportstudy import CANARY_CODE, USER_PATH
from lassi_batch.cli import main
from lassi_batch.export import FORMATS, validate_record
from lassi_batch.llm.extract import extract_code
from lassi_batch.store.archive import TrialArchive
from lassi_batch.store.schema import put_value

SEED = 7


def _export(study_dir: Path, out: Path, *args: str) -> tuple[int, str]:
    """Export the study; its trials replay recorded transcripts, so the flag that allows it is given."""
    r = CliRunner().invoke(main, ["export", str(study_dir), "-o", str(out), "--include-replayed", *args])
    return r.exit_code, r.output


@pytest.fixture(scope="module")
def exports(export_study, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exports")
    out = {}
    for fmt in FORMATS:
        code, text = _export(export_study.study_dir, root / fmt, "--format", fmt, "--seed", str(SEED))
        assert code == 0, text
        out[fmt] = root / fmt
    return out


def _card(folder: Path) -> tuple[dict, str]:
    text = (folder / "README.md").read_text()
    assert text.startswith("---\n")
    meta, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(meta), body


def _manifest(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


def _rows(folder: Path, split: str) -> list[dict]:
    (path,) = [d["path"] for d in _card(folder)[0]["configs"][0]["data_files"] if d["split"] == split]
    return [json.loads(line) for line in (folder / path).read_text().splitlines()]


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_loads_with_datasets_through_the_card_and_validates(exports, fmt, tmp_path):
    folder = exports[fmt]
    meta, body = _card(folder)
    files = {d["split"]: d["path"] for d in meta["configs"][0]["data_files"]}
    assert "train" in files and all((folder / p).is_file() for p in files.values())
    ds = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "hf"))
    assert set(ds.keys()) == set(files)
    man = _manifest(folder)
    for split, path in files.items():
        rows = _rows(folder, split)
        assert len(ds[split]) == len(rows) == sum(m["split"] == split for m in man) > 0
        for row in rows:
            assert validate_record(fmt, row) == [], row.get("id")
    # the card: HF fields, and the facts a user needs
    assert meta["license"] and meta["task_categories"] == ["text-generation"]
    assert "energy-efficiency" in meta["tags"] and "cpu" in meta["tags"]
    assert meta["size_categories"] == ["n<1K"]
    for needed in ("Records per split and platform", "| cpu |", "replay of transcripts", "**Replayed LLM answers**",
                   "Pass policy of this export: `recorded`", "Verdict basis: screening verdict (verdict, findings_json)",
                   "Energy basis: confirmed savings", "ESTIMATE", "Deduplication"):
        assert needed in body, needed
    for split in files:
        assert f"| {split} | {files[split]} | {len(_rows(folder, split))} |" in body


@pytest.mark.parametrize("fmt", FORMATS)
def test_splits_are_disjoint_by_app(exports, fmt):
    apps: dict[str, set[str]] = {}
    for m in _manifest(exports[fmt]):
        apps.setdefault(m["split"], set()).add(m["app"])
    splits = list(apps)
    assert len(splits) >= 2
    for i, a in enumerate(splits):
        for b in splits[i + 1:]:
            assert not apps[a] & apps[b], (a, b)


def _candidate(study_dir: Path, trial_file: str, cid: int):
    with TrialArchive.open(study_dir / trial_file, writable=False) as ar:
        return ar.candidate(cid)


@pytest.mark.parametrize("fmt", ["trl-dpo", "openai-dpo"])
def test_dpo_prefers_only_screened_lower_energy_candidates(exports, export_study, fmt):
    man = _manifest(exports[fmt])
    reasons = set()
    for m in man:
        ch = _candidate(export_study.study_dir, m["trial_file"], m["candidates"]["chosen"]["id"])
        rj = _candidate(export_study.study_dir, m["trial_file"], m["candidates"]["rejected"]["id"])
        # the preferred side passed screening: judge VALID, verifier not failed, measured
        assert ch.passed and ch.judge_verdict == "VALID" and ch.verifier_verdict in ("pass", "warn")
        assert not any(f["severity"] == "fail" for f in ch.verifier.get("findings", []))
        if rj.passed:
            assert ch.energy_j < rj.energy_j
        reasons.add(m["rejected_reason"])
    # the study has failing and higher-energy negatives; integrity-failed ones may pair or not,
    # depending on which candidates the stricter screening lets through
    assert {"error", "higher_energy"} <= reasons <= {"integrity", "error", "higher_energy"}
    if fmt == "trl-dpo":
        for split in {m["split"] for m in man}:
            for row in _rows(exports[fmt], split):
                assert row["chosen_verdict"] == "pass"
                if row["rejected_verdict"] == "pass":
                    assert row["chosen_energy_j"] < row["rejected_energy_j"]


def test_kto_keeps_integrity_failures_as_false_labels(exports, export_study):
    man = _manifest(exports["trl-kto"])
    work_cuts = 0
    for m in man:
        c = _candidate(export_study.study_dir, m["trial_file"], m["candidates"]["completion"]["id"])
        cut = any(f["kind"] == "work" and f["severity"] == "fail" for f in c.verifier.get("findings", []))
        if m["label"]:
            assert c.passed and not cut and c.judge_verdict == "VALID"
        if cut:  # the scripted refactor that deletes measured work (the judge called it VALID)
            work_cuts += 1
            assert m["label"] is False and m["candidates"]["completion"]["reject_reason"] == "integrity"
    assert work_cuts >= 1 and any(m["label"] for m in man)


def test_sft_answer_is_the_best_passing_candidate_and_parses_back(exports, export_study):
    man = _manifest(exports["openai-sft"])
    rows = {s: _rows(exports["openai-sft"], s) for s in {m["split"] for m in man}}
    for m in man:
        answer = rows[m["split"]][m["line"]]["messages"][-1]["content"]
        cid = m["candidates"]["completion"]["id"]
        with TrialArchive.open(export_study.study_dir / m["trial_file"], writable=False) as ar:
            cands = ar.candidates()
            source = ar.candidate(ar.result()["source_candidate"])
        passed = [c for c in cands if c.stage in (1, 3) and c.passed and c.energy_j is not None]
        confirmed = [c for c in passed if c.confirmed_reduction is not None and math.isfinite(c.confirmed_reduction)]
        if confirmed:  # the trials confirm their best: the answer is the largest confirmed saving
            best = max(confirmed, key=lambda c: c.confirmed_reduction)
            assert best.confirmed_reduction > 0
        else:
            best = min(passed, key=lambda c: c.energy_j)
            assert best.energy_j < source.energy_j
        assert cid == best.id
        ex = extract_code(answer, "cpp", list(best.files))
        assert ex.ok and {k: v.rstrip() for k, v in ex.files.items()} == {k: v.rstrip() for k, v in best.files.items()}
        prompt = rows[m["split"]][m["line"]]["messages"][:-1]
        assert [p["role"] for p in prompt] == ["system", "user"] and "Measured profile" in prompt[-1]["content"]


def test_trajectory_holds_the_whole_run(exports, export_study):
    man = _manifest(exports["trajectory"])
    m = next(x for x in man if x["app"] == "rowstats")
    row = _rows(exports["trajectory"], m["split"])[m["line"]]
    with TrialArchive.open(export_study.study_dir / m["trial_file"], writable=False) as ar:
        keys = [s["key"] for s in ar.steps()]
    assert [s["key"] for s in row["steps"]] == keys
    kinds = {s["llm_kind"] for s in row["steps"]}
    assert {"zero_shot", "plan", "refactor", "fix_compile", "fix_runtime", "judge", "final_report"} <= kinds
    built = [s for s in row["steps"] if s["status"] == "build_failed"]
    assert built and built[0]["log"] and built[0]["verdict"] == "fail"
    measured = [s for s in row["steps"] if s["status"] == "measured"]
    assert all(s["energy_j"] > 0 for s in measured)
    assert any(s["judge_verdict"] == "VALID" and s["verdict"] == "fail" for s in measured)  # the work cut
    assert row["best_candidate"] >= 0 and row["reduction"] > 0


def test_same_study_and_seed_give_byte_identical_exports(exports, export_study, tmp_path):
    for fmt in ("trl-dpo", "trajectory"):
        code, text = _export(export_study.study_dir, tmp_path / fmt, "--format", fmt, "--seed", str(SEED))
        assert code == 0, text
        a = sorted(p.relative_to(exports[fmt]) for p in exports[fmt].rglob("*") if p.is_file())
        b = sorted(p.relative_to(tmp_path / fmt) for p in (tmp_path / fmt).rglob("*") if p.is_file())
        assert a == b
        for rel in a:
            assert (exports[fmt] / rel).read_bytes() == (tmp_path / fmt / rel).read_bytes(), rel


def test_no_secret_host_or_user_path_in_any_byte_written(exports, export_study):
    forbidden = [*export_study.canaries, USER_PATH, "/home/alice", str(export_study.root),
                 str(export_study.study_dir.resolve()), "/tmp/", str(Path(__file__).resolve().parents[1])]
    seen_prompt = False
    for folder in exports.values():
        for p in folder.rglob("*"):
            if p.is_file():
                data = p.read_bytes()
                for f in forbidden:
                    assert f.encode() not in data, (p.name, f)
                seen_prompt |= b"deploy key <redacted>" in data
    assert seen_prompt  # the planted comment reached a prompt, redacted
    assert not any(CANARY_CODE in str(p) for p in export_study.root.rglob("*"))


def test_empty_result_is_an_error_and_writes_nothing(export_study, tmp_path):
    out = tmp_path / "none"
    code, text = _export(export_study.study_dir, out, "--format", "trl-sft", "--min-reduction", "0.995")
    assert code == 1 and "nothing to export" in text and "Traceback" not in text
    assert not out.exists() and not list(tmp_path.iterdir())
    # the trials confirmed their best: --significant keeps only savings whose interval clears 0
    code, text = _export(export_study.study_dir, out, "--format", "trl-sft", "--significant")
    assert code == 0, text
    for m in _manifest(out):
        lo, hi = m["candidates"]["completion"]["ci"]
        assert 0 < lo <= hi
    shutil.rmtree(out)
    code, text = _export(export_study.study_dir, out, "--format", "trl-kto", "--platforms", "cuda")
    assert code == 1 and not out.exists()


def test_filters_and_holdout(export_study, tmp_path):
    code, text = _export(export_study.study_dir, tmp_path / "h", "--format", "trl-kto", "--holdout-apps", "row*",
                         "--apps", "rowstats,heat2d,sumapp")
    assert code == 0, text
    man = _manifest(tmp_path / "h")
    assert {m["app"] for m in man} == {"rowstats", "heat2d", "sumapp"}
    assert {m["split"] for m in man if m["app"] == "rowstats"} == {"test"}
    assert "Held out for test" in (tmp_path / "h" / "README.md").read_text()
    # an export rewritten in place loads anew (datasets caches a folder by its data file names)
    cache = str(tmp_path / "hf")
    assert sum(map(len, datasets.load_dataset(str(tmp_path / "h"), cache_dir=cache).values())) == len(man)
    code, text = _export(export_study.study_dir, tmp_path / "h", "--format", "trl-kto", "--apps", "heat2d")
    assert code == 0, text
    man = _manifest(tmp_path / "h")
    assert {m["app"] for m in man} == {"heat2d"}
    assert sum(map(len, datasets.load_dataset(str(tmp_path / "h"), cache_dir=cache).values())) == len(man)
    code, text = _export(export_study.study_dir, tmp_path / "m", "--format", "trl-sft", "--models", "replay of*",
                         "--min-reduction", "0.3")
    assert code == 0, text
    for s in {m["split"] for m in _manifest(tmp_path / "m")}:
        assert all(r["reduction"] >= 0.3 and r["model"].startswith("replay of ") for r in _rows(tmp_path / "m", s))


def test_usage_errors_exit_2_and_keep_files(export_study, tmp_path):
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    for args in (["--split", "0.5,0.5"], ["--holdout-apps", "nosuchapp*"], ["--min-reduction", "1.5"]):
        code, text = _export(export_study.study_dir, tmp_path / "x", "--format", "trl-sft", *args)
        assert code == 2 and text.startswith("error:") and "Traceback" not in text, text
    code, text = _export(export_study.study_dir, keep, "--format", "trl-sft")
    assert code == 2 and "not empty" in text and (keep / "notes.txt").read_text() == "mine"
    code, text = _export(tmp_path / "missing", tmp_path / "y", "--format", "trl-sft")
    assert code == 2 and "study folder not found" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_screening_contract_verdicts_and_confirmed_energies(export_study, tmp_path):
    """Trial files with the screening contract: verdicts and confirmed energies win over the older
    attributes, an integrity failure is never preferred, and the card names the basis."""
    study = tmp_path / "study"
    (study / "trials").mkdir(parents=True)
    src = export_study.study_dir / "trials" / "rowstats.cpu.t000.h5"
    dst = study / "trials" / src.name
    shutil.copy(src, dst)
    with TrialArchive.open(dst, writable=False) as ar:
        cands = ar.candidates()
    passing = sorted((c for c in cands if c.stage in (1, 3) and c.passed), key=lambda c: c.energy_j)
    cheat, good = passing[0], passing[1:]
    with h5py.File(dst, "r+") as f:  # what the screening and fair-comparison stages write
        for c in cands:
            g = f[f"candidates/{c.id:06d}"]
            ok = c.passed and c.id != cheat.id
            g.attrs["verdict"] = "pass" if (ok or c.stage == 0) else ("fail" if c.status == "measured" or c.files else "not_run")
            findings = [] if ok else [{"kind": "differential", "severity": "integrity",
                                        "message": "output differs on fresh inputs"}]
            put_value(g, "findings_json", json.dumps(findings))  # as the archive stores the field
            e = c.energy_j if c.energy_j is not None else float("nan")
            src_e = cands[0].energy_j
            red = 1.0 - e / src_e if (ok or c.stage == 0) else float("nan")  # confirmed saving, fraction
            g.attrs["confirmed_energy_j"] = e * 1.01 if (ok or c.stage == 0) else float("nan")
            g.attrs["confirmed_source_energy_j"] = src_e * 1.01
            g.attrs["confirmed_reduction"] = red
            g.attrs["confirmed_ci_low"] = red - 0.02
            g.attrs["confirmed_ci_high"] = red + 0.02
        # the trial's own decision: its confirmed best is the lowest-energy honest candidate (only a
        # candidate the trial counted is offered as good, export/trust.py: improvements)
        r = f["result"].attrs
        r["best_candidate"], r["improved"], r["confirmed"], r["confirm_repeats"] = good[0].id, True, True, 3
    for fmt in ("trl-dpo", "trl-kto"):
        # near copies kept: which candidate is the cheat depends on measured energies, and a
        # near-copy pair of it may be the one deduplication keeps
        code, text = _export(study, tmp_path / fmt, "--format", fmt, "--split", "1,0,0", "--near-dup", "1")
        assert code == 0, text
        _, body = _card(tmp_path / fmt)
        assert "Verdict basis: screening verdict" in body and "Energy basis: confirmed savings" in body
        rows = _rows(tmp_path / fmt, "train")
        assert rows and all(r["energy_basis"] == "confirmed" and r["verdict_basis"] == "contract" for r in rows)
    man = _manifest(tmp_path / "trl-dpo")
    assert all(m["candidates"]["chosen"]["id"] != cheat.id for m in man)
    assert any(m["candidates"]["rejected"]["id"] == cheat.id and m["rejected_reason"] == "integrity" for m in man)
    for m in man:
        if m["rejected_reason"] == "higher_energy":  # confirmed basis: the larger confirmed saving
            assert m["candidates"]["chosen"]["energy_j"] < m["candidates"]["rejected"]["energy_j"]
    kto = {m["candidates"]["completion"]["id"]: m["label"] for m in _manifest(tmp_path / "trl-kto")}
    assert kto.get(cheat.id) is False and any(kto.get(c.id) for c in good)
    # the confirmed intervals make --significant usable: every kept saving clears both intervals
    code, text = _export(study, tmp_path / "sig", "--format", "trl-sft", "--split", "1,0,0", "--significant")
    assert code == 0, text
    (row,) = _rows(tmp_path / "sig", "train")
    assert row["reduction"] > 0.04


def _decided(export_study, dst: Path, best: int | None, confirmed: bool) -> tuple[int, int]:
    """A copy of a real trial file whose recorded decision is rewritten: nothing was re-measured,
    one passing candidate measured 0.6% below the source (noise, below min_improvement), and the
    trial's result names `best` (None: the source) as confirmed or not. Returns (source, that one)."""
    dst.parent.mkdir(parents=True)
    shutil.copy(export_study.study_dir / "trials" / "rowstats.cpu.t000.h5", dst)
    with TrialArchive.open(dst, writable=False) as ar:
        cands, res = ar.candidates(), ar.result()
    src = next(c for c in cands if c.id == res["source_candidate"])
    noise = next(c for c in cands if c.stage in (1, 3) and c.passed and c.files)
    with h5py.File(dst, "r+") as f:
        for c in cands:  # nothing re-measured: no confirmation attributes at all
            g = f[f"candidates/{c.id:06d}"]
            for k in [k for k in g.attrs if k.startswith("confirm")]:
                del g.attrs[k]
        f[f"candidates/{noise.id:06d}"].attrs["energy_j"] = src.energy_j * 0.994
        r = f["result"].attrs
        r["best_candidate"] = noise.id if best is not None else src.id
        r["improved"] = best is not None
        r["confirmed"] = confirmed
        r["confirm_repeats"] = 3
    return src.id, noise.id


def test_a_noise_saving_the_trial_did_not_count_is_never_a_good_answer(export_study, tmp_path):
    """The trial reported the source as its best (a 0.6% saving is below min_improvement and was
    never re-measured): no export offers that candidate as good, in any format; where the trial's
    decision names it (confirmed), the same candidate is offered."""
    study = tmp_path / "noise"
    _, noise = _decided(export_study, study / "trials" / "rowstats.cpu.t000.h5", None, False)
    positive = {"trl-sft": "completion", "trl-dpo": "chosen", "trl-kto": "completion", "trajectory": "best"}
    for fmt, role in positive.items():
        code, text = _export(study, tmp_path / f"noise-{fmt}", "--format", fmt, "--split", "1,0,0")
        if code != 0:  # nothing left to export is the clear error (SFT has positives only)
            assert "nothing to export" in text, text
            continue
        for m in _manifest(tmp_path / f"noise-{fmt}"):
            c = m["candidates"].get(role)
            if fmt == "trl-kto":
                assert not (c and c["id"] == noise and m["label"]), m
            else:
                assert c is None or c["id"] != noise, (fmt, m)
    (traj,) = _rows(tmp_path / "noise-trajectory", "train")
    assert traj["best_candidate"] == -1 and traj["reduction"] is None
    # the same file where the trial's own decision confirmed that candidate: offered as good
    study2 = tmp_path / "counted"
    _, noise2 = _decided(export_study, study2 / "trials" / "rowstats.cpu.t000.h5", noise, True)
    code, text = _export(study2, tmp_path / "counted-sft", "--format", "trl-sft", "--split", "1,0,0")
    assert code == 0, text
    assert [m["candidates"]["completion"]["id"] for m in _manifest(tmp_path / "counted-sft")] == [noise2]

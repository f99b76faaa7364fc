"""Provenance on every output (store/provenance.py): the aggregate tables and CSVs, the report's
opening, the dataset card and every exported record say which meter, LLM, device and software
made the numbers, on the real H100 demo archives (a replayed study: no live model's name)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from lassi_batch.analysis.study import StudyFile
from lassi_batch.cli import main
from lassi_batch.store.provenance import Provenance
from lassi_batch.store.reader import read_trial_summary

GPU = Path(__file__).resolve().parents[1].parent / "shared" / "measurements" / "h100-demo-gpu-2026-12-06"
pytestmark = pytest.mark.skipif(not (GPU / "trials").is_dir(), reason=f"{GPU} not present")


def _all_text(folder: Path) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in folder.rglob("*") if p.is_file())


def test_a_replayed_trial_names_its_transcripts_never_a_model():
    s = read_trial_summary(GPU / "trials" / "rowstats.cuda.t001.h5")
    assert s.llm_backend == "replay" and s.generator_model == s.judge_model == "replay of transcripts"
    assert s.llm_source.startswith("replay of transcripts (sha256 ") and s.device == "NVIDIA H100 80GB HBM3"
    assert s.package_version == "0.1.0" and s.study_k == "1,3"
    lines = Provenance.of([s]).lines()
    assert lines[0] == "Energy meter: nvml" and "Replayed" in lines[1] and "driver 580.159.04" in lines[2]


def test_aggregate_and_report_open_with_provenance_and_use_the_study_k(tmp_path: Path):
    out = tmp_path / "agg"
    r = CliRunner().invoke(main, ["aggregate", str(GPU / "trials"), "-o", str(out / "study.h5"), "--csv",
                                  str(out / "csv"), "--md", str(out / "study.md"), "--bootstrap", "200"])
    assert r.exit_code == 0, r.output
    assert "meter nvml; LLM replay of transcripts" in r.output and "@5" not in r.output  # the study's k = [1, 3]
    md = (out / "study.md").read_text().splitlines()
    assert md[2:5] == ["- Energy meter: nvml",
                       "- LLM: replay of transcripts. Replayed: answers read from recorded transcripts, no live "
                       "model was asked", "- Device: NVIDIA H100 80GB HBM3, driver 580.159.04"]
    with open(out / "csv" / "table2_energy.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(x["meter"] == "nvml" and x["llm"] == "replay of transcripts" for x in rows)
    with open(out / "csv" / "table4_energy_reduction_at_k.csv") as fh:
        header = next(csv.reader(fh))
    assert any(h.endswith("_3") for h in header) and not any(h.endswith("_5") for h in header)
    assert StudyFile(out / "study.h5").k == (1, 3)
    assert "gpt-4.1" not in _all_text(out)

    rep = tmp_path / "rep"
    r = CliRunner().invoke(main, ["report", str(out / "study.h5"), "-o", str(rep), "--bootstrap", "200"])
    assert r.exit_code == 0, r.output
    text = (rep / "report.md").read_text()
    assert text.splitlines()[2] == "- Energy meter: nvml" and "Table 2's" in text
    assert "gpt-4.1" not in (rep / "report.md").read_text() + (rep / "report.html").read_text()


def test_exporting_a_replay_needs_the_flag_and_the_card_says_so(tmp_path: Path):
    study = tmp_path / "study"
    shutil.copytree(GPU / "trials", study / "trials")
    r = CliRunner().invoke(main, ["export", str(study), "-o", str(tmp_path / "no"), "--format", "trl-sft"])
    assert r.exit_code == 2 and "--include-replayed" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "no").exists()
    out = tmp_path / "ds"
    r = CliRunner().invoke(main, ["export", str(study), "-o", str(out), "--format", "trl-sft", "--include-replayed"])
    assert r.exit_code == 0, r.output
    card = (out / "README.md").read_text()
    assert "**Replayed LLM answers**" in card and "`--include-replayed`" in card and "- Energy meter: nvml" in card
    man = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    records = [json.loads(x) for p in (out / "data").glob("*.jsonl") for x in p.read_text().splitlines()]
    assert man and records
    for m in man:
        assert m["llm_backend"] == "replay" and m["llm_source"].startswith("replay of transcripts (sha256 ")
    for rec in records:
        assert (rec["model"], rec["meter"], rec["estimate"], rec["llm_backend"]) == (
            "replay of transcripts", "nvml", False, "replay")
        assert rec["software"] == "lassi-batch 0.1.0" and rec["started"].startswith("2026-12-06T")
    assert "gpt-4.1" not in _all_text(out)

"""A folder that `lassi-batch run` wrote (trials/*.h5, no manifest) is a study for `status`,
`aggregate` and `report`: here a copy of the H100 demo's trial files without its manifest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from lassi_batch.cli import main

GPU = Path(__file__).resolve().parents[1].parent / "shared" / "measurements" / "h100-demo-gpu-2026-12-06"
pytestmark = pytest.mark.skipif(not (GPU / "trials").is_dir(), reason=f"{GPU} not present")


def test_status_aggregate_and_report_accept_a_run_folder(tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(GPU / "trials", run / "trials")
    r = CliRunner().invoke(main, ["status", str(run), "--json", "--all"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["study"] == "demo-gpu" and s["totals"]["done"] == 9 and s["scheduler"] == "none"
    assert sorted({x["app"] for x in s["rows"]}) == ["heat2d", "nbody-forces", "rowstats"]
    assert {x["index"] for x in s["rows"]} == {0, 1, 2}
    r = CliRunner().invoke(main, ["aggregate", str(run), "--bootstrap", "200"])
    assert r.exit_code == 0 and "9 trials in 3 (app, platform) pairs" in r.output, r.output
    r = CliRunner().invoke(main, ["report", str(run), "-o", str(tmp_path / "rep"), "--bootstrap", "200"])
    assert r.exit_code == 0 and (tmp_path / "rep" / "report.html").is_file(), r.output
    empty = tmp_path / "empty"
    empty.mkdir()
    r = CliRunner().invoke(main, ["status", str(empty)])
    assert r.exit_code == 2 and "no study here" in r.output and "Traceback" not in r.output

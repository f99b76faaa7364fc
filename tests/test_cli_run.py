"""`lassi-batch run` end to end through the CLI, and its one-line errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lassi_batch.cli import main as cli
from lassi_batch.store.archive import TrialArchive



def test_run_command_completes_a_trial_and_prints_a_summary(setup):
    tmp, data = setup
    app = Path(data["apps"][0]["path"])
    transcript = data["llm"]["replay_path"]
    out = tmp / "cli-out"
    r = CliRunner().invoke(cli, ["run", str(app), "--platform", "cpu", "--meter", "estimate",
                                 "--llm", f"replay:{transcript}", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "sumapp trial 0: done" in r.output and "ESTIMATES" in r.output
    files = list((out / "trials").glob("*.h5"))
    assert len(files) == 1
    with TrialArchive.open(files[0], writable=False) as ar:
        assert ar.status == "done" and ar.result()["improved"]


def test_run_command_errors_are_one_line_with_exit_2(setup, tmp_path: Path):
    tmp, data = setup
    app = data["apps"][0]["path"]
    runner = CliRunner()
    for args, needle in (
        (["run", str(tmp_path / "nope")], "app folder not found"),
        (["run", app, "--platform", "cpu", "--llm", "bogus"], "--llm 'bogus'"),
        (["run", app, "--platform", "cpu", "--llm", f"replay:{tmp_path / 'none.jsonl'}", "--out", str(tmp_path / "o")],
         "replay transcript not found"),
    ):
        r = runner.invoke(cli, args)
        assert r.exit_code == 2, (args, r.output)
        assert needle in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o").exists()  # nothing written for a failed start


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")
def test_run_into_a_read_only_folder_is_one_line_before_any_trial(setup, tmp_path: Path):
    tmp, data = setup
    ro = tmp_path / "ro"
    ro.mkdir()
    cmd = ["bwrap", "--dev-bind", "/", "/", "--ro-bind", str(ro), str(ro), sys.executable, "-m", "lassi_batch", "run",
           data["apps"][0]["path"], "--platform", "cpu", "--meter", "estimate",
           "--llm", f"replay:{data['llm']['replay_path']}", "--out", str(ro / "runs")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip() == f"error: --out: cannot write to {ro}: Read-only file system"
    assert "trial" not in r.stdout and list(ro.iterdir()) == []


def test_run_needs_an_app_or_a_study(tmp_path: Path):
    r = CliRunner().invoke(cli, ["run"])
    assert r.exit_code == 2 and "give an APP_DIR or --study FILE" in r.output
    r = CliRunner().invoke(cli, ["run", str(tmp_path), "--apps", "x"])
    assert r.exit_code == 2 and "--apps selects apps of a --study" in r.output

"""`lassi-batch run` end to end through the CLI, and its one-line errors."""

from __future__ import annotations

from pathlib import Path

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

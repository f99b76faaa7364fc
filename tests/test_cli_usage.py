"""The commands as a user meets them: where files go, what is printed off a terminal, and bad
input (one line on stderr, exit 2, nothing written or destroyed). Through click's CliRunner, in
this process, on real files."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from lassi_batch.cli import main

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "datasets" / "examples" / "demo.toml"


def cli(*args: str, cwd: Path | None = None) -> "Result":
    """Run a command; stdout and stderr apart, as a shell sees them."""
    import os
    runner = CliRunner()
    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        r = runner.invoke(main, list(args), catch_exceptions=False)
    finally:
        os.chdir(old)
    return r


def one_error_line(r) -> str:  # noqa: ANN001
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (r.exit_code, r.stderr, r.stdout)
    assert "Traceback" not in r.output
    return lines[0]


# ---------------------------------------------------------------- where a shipped study writes


def test_shipped_study_without_out_writes_under_the_working_directory(tmp_path):
    before = sorted(p.name for p in DEMO.parent.iterdir())
    r = cli("submit", str(DEMO), "--executor", "local", "--dry-run", cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert f"folder {tmp_path / 'runs' / 'demo'}" in " ".join(r.stdout.split())
    assert sorted(p.name for p in DEMO.parent.iterdir()) == before


def test_study_of_ones_own_keeps_out_relative_to_its_file(tmp_path):
    own = tmp_path / "mine"
    own.mkdir()
    text = DEMO.read_text().replace('replay_path = "transcripts"', f'replay_path = "{DEMO.parent / "transcripts"}"')
    for app in ("heat2d", "nbody-forces", "rowstats"):
        text = text.replace(f'path = "{app}"', f'path = "{DEMO.parent / app}"')
    (own / "demo.toml").write_text(text)
    r = cli("submit", str(own / "demo.toml"), "--executor", "local", "--dry-run", cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert f"folder {own / 'runs' / 'demo'}" in " ".join(r.stdout.split())


# ---------------------------------------------------------------- usage errors: one line


@pytest.mark.parametrize("args, message", [
    (["submit", str(DEMO), "--no-such-option"], "No such option '--no-such-option'"),
    (["submit", str(DEMO), "--slurm", "cpus_per_task"], "--slurm 'cpus_per_task': expected KEY=VALUE"),
    (["submit", str(DEMO), "--slurm", "cpus_per_task=0", "--dry-run"], "cpus_per_task"),
    (["submit", str(DEMO), "--cpus-per-task", "0"], "--cpus-per-task"),
])
def test_usage_errors_are_one_line_exit_2(tmp_path, args, message):
    line = one_error_line(cli(*args, cwd=tmp_path))
    assert message in line
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- container studies checked first


def _container_study(tmp_path: Path, image: Path) -> Path:
    text = DEMO.read_text().replace('replay_path = "transcripts"', f'replay_path = "{DEMO.parent / "transcripts"}"')
    for app in ("heat2d", "nbody-forces", "rowstats"):
        text = text.replace(f'path = "{app}"', f'path = "{DEMO.parent / app}"')
    text = text.replace('out = "runs/demo"', f'out = "{tmp_path / "out"}"')
    study = tmp_path / "c.toml"
    study.write_text(text + f'\n[container]\nruntime = "apptainer"\nimage = "{image}"\n')
    return study


def test_submit_refuses_a_file_that_is_not_an_apptainer_image(tmp_path):
    fake = tmp_path / "fake.sif"
    fake.write_bytes(bytes(range(256)) * 64)
    line = one_error_line(cli("submit", str(_container_study(tmp_path, fake)), "--executor", "local", cwd=tmp_path))
    assert f"{fake} is not an Apptainer image (no SIF header)" in line
    assert not (tmp_path / "out").exists()


def test_submit_refuses_apptainer_studies_where_apptainer_is_missing(tmp_path, monkeypatch):
    img = tmp_path / "ok.sif"  # the header of a SIF file (launch line, magic); apptainer itself is absent
    img.write_bytes(b"#!/usr/bin/env run-singularity\n".ljust(32, b"\0") + b"SIF_MAGIC\0" + bytes(200))
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    line = one_error_line(cli("submit", str(_container_study(tmp_path, img)), "--executor", "local", cwd=tmp_path))
    assert "'apptainer' not found on PATH" in line
    assert not (tmp_path / "out").exists()


def test_doctor_fails_a_random_bytes_image(tmp_path):
    fake = tmp_path / "fake.sif"
    fake.write_bytes(bytes(range(256)) * 64)
    r = cli("doctor", "--study", str(_container_study(tmp_path, fake)), "--platform", "cpu", cwd=tmp_path)
    assert r.exit_code == 1
    assert "image ok" not in " ".join(r.stdout.split())
    assert "not an Apptainer image" in r.stdout


# ---------------------------------------------------------------- off a terminal: whole values, JSON

LONG_APP = "an-app-with-a-rather-long-name-that-an-80-column-table-would-cut"


def _pending_study(tmp_path: Path) -> Path:
    """A submitted study whose trials have not started (the folder, manifest and settings only)."""
    from batchkit import write_study
    from lassi_batch.batch.submit import Request, commit, prepare

    study = write_study(tmp_path, trials=2)
    text = study.read_text().replace('name = "app0"', f'name = "{LONG_APP}"')
    study.write_text(text)
    app_toml = tmp_path / "app0" / "app.toml"
    app_toml.write_text(app_toml.read_text().replace('name = "app0"', f'name = "{LONG_APP}"'))
    prep = prepare(Request(study, executor="local"))
    commit(prep)
    return prep.folder.root


def test_status_off_a_terminal_keeps_every_value_whole(tmp_path, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    root = _pending_study(tmp_path)
    r = cli("status", str(root))
    assert r.exit_code == 0, r.output
    assert LONG_APP in r.stdout and "interrupted" in r.stdout and str(root) in r.stdout
    assert "…" not in r.stdout


def test_status_watch_off_a_terminal_prints_as_it_goes(tmp_path, monkeypatch):
    """Not a live display that only shows its last frame: dated blocks, here one, since every
    trial has ended (given up) before the first look."""
    from lassi_batch.batch import attempts
    from lassi_batch.batch.manifest import StudyFolder, read_manifest

    monkeypatch.delenv("COLUMNS", raising=False)
    root = _pending_study(tmp_path)
    folder = StudyFolder(root)
    for t in read_manifest(folder).trials:
        attempts.append(folder.attempts(t), event="gave_up", reason="test")
    r = cli("status", str(root), "--watch", "--interval", "1")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("--- ") and r.stdout.count("--- ") == 1
    assert LONG_APP in r.stdout and "failed" in r.stdout


def test_aggregate_json(tmp_path):
    import json

    from test_analysis_aggregate import golden_study
    golden_study(tmp_path / "study")
    r = cli("aggregate", str(tmp_path / "study"), "--json", "--bootstrap", "100")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["trials"] == 6 and data["skipped"] == [] and data["out"] == str(tmp_path / "study" / "study.h5")
    assert data["cross_app"] and data["cross_app"][0]["platform"] == "cuda"


@pytest.mark.parametrize("command", [["doctor", "--platform", "cpu"], ["validate", str(DEMO)]])
def test_json_of_doctor_and_validate(command, tmp_path):
    import json
    r = cli(*command, "--json", cwd=tmp_path)
    data = json.loads(r.stdout)
    if command[0] == "doctor":
        assert r.exit_code == (0 if data["ready"] else 1)
        assert {"area", "check", "status", "detail"} <= set(data["checks"][0])
    else:
        assert r.exit_code == 0 and data["ok"] and [a["name"] for a in data["apps"]] == ["heat2d", "nbody-forces", "rowstats"]
        assert data["out"] == str(tmp_path / "runs" / "demo")


def test_validate_json_lists_the_problems_with_exit_2(tmp_path):
    import json
    bad = tmp_path / "x.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)))
    r = cli("validate", str(bad), "--json")
    data = json.loads(r.stdout)
    assert r.exit_code == 2 and data["ok"] is False and "not a TOML file" in data["problems"][0]


def test_profile_json(tmp_path):
    import json

    from batchkit import write_study
    write_study(tmp_path, trials=1, args='"20000", "2"')
    r = cli("profile", str(tmp_path / "app0"), "--platform", "cpu", "--repeat", "1", "--meter", "estimate",
            "--compiler", "g++ -O1", "--out", str(tmp_path / "p.h5"), "--json", cwd=tmp_path)
    assert r.exit_code == 0, r.output
    [rep] = json.loads(r.stdout)
    assert rep["app"] == "app0" and rep["estimate"] is True and len(rep["runs"]) == 1 and rep["runs"][0]["ok"]
    assert rep["summary"]["energy_net_j"]["mean"] > 0 and rep["out"] == str(tmp_path / "p.h5")


# ---------------------------------------------------------------- a failed trial says why


def test_run_shows_the_recorded_reason_with_its_evidence(tmp_path):
    """The source outruns its time limit: the trial fails at stage 0, and `run` prints the
    archive's reason with the candidate's own error (the kill), not "no reason recorded"."""
    from batchkit import run_cli, write_study
    write_study(tmp_path, trials=1, args='"400000000", "50"')
    toml = tmp_path / "app0" / "app.toml"
    toml.write_text(toml.read_text().replace("time_limit_s = 30", "time_limit_s = 1"))
    r = run_cli("run", str(tmp_path / "app0"), "--platform", "cpu", "--meter", "estimate",
                "--llm", f"replay:{tmp_path / 'sumapp.jsonl'}", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("failed app0 trial 0:"))
    assert "source code failed to run; see candidate 0: " in line and "time limit" in line, line
    assert "no reason recorded" not in r.stdout
    assert "  app0 trial 0: stage0_profile (0:0" in r.stdout  # off a terminal: a line per stage, with its time
    assert "app0 trial 0: failed after " in r.stdout
    s = run_cli("status", str(tmp_path / "out"), cwd=tmp_path)  # not a submitted study: one line, exit 2
    assert s.returncode == 2 and "no study here" in s.stderr


def test_submit_and_status_show_the_compiler_error_of_a_source_that_does_not_build(tmp_path):
    from batchkit import run_cli, write_study

    from lassi_batch.batch.status import collect
    study = write_study(tmp_path, trials=1, crash=True)
    r = run_cli("submit", str(study), "--executor", "local", cwd=tmp_path)
    assert r.returncode == 1
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("failed app0.cpu.t000:"))
    assert "source code failed to build; see candidate 0: " in line and "error" in line.split("candidate 0: ", 1)[1]
    s = collect(tmp_path / "study-out")
    assert "see candidate 0: " in s.triage[0].reason and "error" in s.triage[0].reason


# ---------------------------------------------------------------- progress of long work


def test_submit_here_shows_each_trials_stages_and_its_log_says_what_it_did(tmp_path):
    from batchkit import run_cli, write_study
    study = write_study(tmp_path, trials=1, delay_s=1.0)  # LLM replies 1 s apart: stages last seconds
    r = run_cli("submit", str(study), "--executor", "local", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    for stage in ("stage0_profile", "stage3_iterate"):
        assert f"  app0.cpu.t000: {stage} (" in r.stdout, r.stdout
    assert "  app0.cpu.t000: done after " in r.stdout
    log = (tmp_path / "study-out" / "logs" / "app0.cpu.t000.out").read_text()
    for words in ("trial app0 0 of study bt: pending", " stage stage0_profile", "build, run and measure s0/eval",
                  "LLM zero_shot call", " stage stage4_report", "ended done: source "):
        assert words in log, log


# ---------------------------------------------------------------- outputs: never someone else's file


@pytest.fixture()
def golden(tmp_path):
    from test_analysis_aggregate import golden_study
    golden_study(tmp_path / "study")
    return tmp_path / "study"


def test_aggregate_never_replaces_a_file_it_did_not_write_without_force(golden, tmp_path):
    mine = tmp_path / "f.txt"
    mine.write_text("my notes\n")
    line = one_error_line(cli("aggregate", str(golden), "-o", str(mine), "--bootstrap", "100"))
    assert "exists and is not an earlier output of this command" in line and "--force" in line
    assert mine.read_text() == "my notes\n"
    one_error_line(cli("aggregate", str(golden), "-o", str(tmp_path / "s.h5"), "--md", str(mine), "--bootstrap", "100"))
    assert mine.read_text() == "my notes\n" and not (tmp_path / "s.h5").exists()
    r = cli("aggregate", str(golden), "-o", str(tmp_path / "s.h5"), "--md", str(tmp_path / "s.md"), "--bootstrap", "100")
    assert r.exit_code == 0, r.output
    r = cli("aggregate", str(golden), "-o", str(tmp_path / "s.h5"), "--md", str(tmp_path / "s.md"), "--bootstrap", "100")
    assert r.exit_code == 0, r.output  # its own earlier outputs are replaced
    r = cli("aggregate", str(golden), "-o", str(mine), "--force", "--bootstrap", "100")
    assert r.exit_code == 0 and mine.read_bytes()[:4] == b"\x89HDF"


@pytest.mark.parametrize("command", ["recompute", "report"])
def test_recompute_and_report_leave_a_folder_of_other_files_alone(golden, tmp_path, command):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "a.txt").write_text("keep")
    line = one_error_line(cli(command, str(golden), "-o", str(other)))
    assert "a folder of other files" in line
    assert sorted(p.name for p in other.iterdir()) == ["a.txt"]


@pytest.mark.parametrize("command", ["aggregate", "recompute", "report", "export"])
def test_unwritable_output_is_one_line(golden, command):
    extra = {"export": ["--format", "trl-sft"]}.get(command, [])
    line = one_error_line(cli(command, str(golden), "-o", "/proc/lassi-out/x", *extra))
    assert "cannot" in line and "/proc" in line


@pytest.mark.parametrize("command", ["aggregate", "recompute", "report", "export"])
def test_empty_folder_is_refused_and_nothing_is_written(tmp_path, command):
    empty = tmp_path / "empty"
    empty.mkdir()
    extra = {"aggregate": [], "export": ["-o", str(tmp_path / "o"), "--format", "trl-sft"]}.get(command, ["-o", str(tmp_path / "o")])
    line = one_error_line(cli(command, str(empty), *extra))
    assert "no trial files" in line
    assert list(empty.iterdir()) == [] and not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["recompute", "report"])
def test_a_source_that_is_not_hdf5_is_refused_and_nothing_is_written(tmp_path, command):
    src = tmp_path / "notes.txt"
    src.write_text("not a study\n")
    line = one_error_line(cli(command, str(src), "-o", str(tmp_path / "o")))
    assert "not an HDF5 file" in line and not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["aggregate", "recompute", "report"])
@pytest.mark.parametrize("k, message", [("1,,3", "expected whole numbers"), ("0", "expected whole numbers"),
                                        ("1,1", "given twice"), ("1000", "larger than the 6 trial file(s)")])
def test_bad_k_is_refused(golden, tmp_path, command, k, message):
    extra = [] if command == "aggregate" else ["-o", str(tmp_path / "o")]
    line = one_error_line(cli(command, str(golden), "--k", k, *extra))
    assert message in line
    assert not (golden / "study.h5").exists() and not (tmp_path / "o").exists()


def test_export_exits_1_when_a_trial_file_cannot_be_read(export_study, tmp_path):
    import shutil
    study = tmp_path / "study"
    shutil.copytree(export_study.study_dir, study)
    (study / "trials" / "broken.h5").write_bytes(bytes(range(256)) * 16)
    r = cli("export", str(study), "-o", str(tmp_path / "ds"), "--format", "trl-sft")
    assert r.exit_code == 1, r.output
    assert "1 trial file(s) could not be read" in r.stdout and (tmp_path / "ds" / "manifest.jsonl").exists()


def test_a_newer_schema_archive_is_not_counted_done(tmp_path):
    from test_analysis_aggregate import make_trial

    from lassi_batch.batch.manifest import StudyFolder, read_manifest
    from lassi_batch.batch.status import collect
    root = _pending_study(tmp_path)
    folder = StudyFolder(root)
    t = read_manifest(folder).trials[0]
    make_trial(folder.archive(t), version=99, app=t.app, platform="cpu", status="done", trial_index=0)
    s = collect(root)
    row = next(r for r in s.rows if r.key == t.key)
    assert row.status == "failed" and "schema version 99 is newer" in row.reason
    r = cli("submit", str(tmp_path / "bt.toml"), "--executor", "local", "--dry-run", cwd=tmp_path)
    assert r.exit_code == 0 and f"{t.key}: skipped (failed (archive schema version 99" in " ".join(r.stdout.split())


def test_doctor_with_an_app_the_study_lacks_is_a_usage_error(tmp_path):
    line = one_error_line(cli("doctor", "--study", str(DEMO), "--apps", "nope", cwd=tmp_path))
    assert "'nope' is not an app of" in line


# ---------------------------------------------------------------- names and help


def test_every_option_of_every_command_says_what_it_does():
    import click
    missing = [f"{name} {p.opts[0]}" for name, cmd in main.commands.items() for p in cmd.params
               if isinstance(p, click.Option) and not p.hidden and not (p.help or "").strip()]
    assert missing == []


def test_pass_policy_is_spelled_the_same_on_recompute_and_export():
    import click
    choices = {name: next(p for p in main.commands[name].params if p.name == "pass_policy").type.choices
               for name in ("recompute", "export")}
    assert list(choices["recompute"]) == list(choices["export"])
    assert "judge_and_verifier" in choices["export"] and "both" in choices["export"]
    assert isinstance(main.commands["demo"].params[0], click.Parameter)
    demo_opts = {o for p in main.commands["demo"].params for o in p.opts}
    assert "--trials-per-node" in demo_opts  # as submit names it


@pytest.mark.parametrize("policy", ["judge_and_verifier", "both"])
def test_recompute_takes_either_spelling(golden, tmp_path, policy):
    r = cli("recompute", str(golden), "-o", str(tmp_path / f"o-{policy}"), "--pass-policy", policy, "--bootstrap", "100")
    assert r.exit_code in (0, 1) and "Traceback" not in r.output, r.output  # golden trials hold no traces: skipped
    assert "invalid" not in r.stderr.lower()


def test_report_title_is_the_studys_name(tmp_path):
    from test_analysis_aggregate import golden_study
    root = _pending_study(tmp_path)
    golden_study(root)
    r = cli("report", str(root), "-o", str(tmp_path / "rep"), "--bootstrap", "100")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "rep" / "report.md").read_text().splitlines()[0] == "# lassi-batch study report: bt"

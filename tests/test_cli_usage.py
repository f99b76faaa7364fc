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

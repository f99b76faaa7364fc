"""Helpers for the batch tests: a small real study on disk, and the real local Slurm."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

import sumapp

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "slurm" / "local-cluster.sh"


def write_study(tmp: Path, *, name: str = "bt", trials: int = 2, delay_s: float = 0.0, args: str = '"300000", "4"',
                slurm_extra: str = "", out: str = "study-out", apps: int = 1, crash: bool = False,
                max_iterations: int = 2) -> Path:
    """A study of `apps` copies of the sumapp (real g++ builds, replayed LLM) as a TOML file."""
    (tmp / "sumapp.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sumapp.transcript()))
    entries = []
    for i in range(apps):
        app = tmp / f"app{i}"
        app.mkdir(exist_ok=True)
        src = sumapp.code(10)
        if crash:  # the source itself fails to compile: the trial ends failed at stage 0
            src = src.replace("double total = 0;", "double total = 0")
        (app / "main.cpp").write_text(src)
        (app / "app.toml").write_text(textwrap.dedent(f"""
            name = "app{i}"
            [platforms.cpu]
            files = ["main.cpp"]
            [run]
            args = [{args}]
            time_limit_s = 30
            [check]
            pass_regex = "^PASS$"
            checksum_regex = "^checksum = (\\\\S+)"
            work_regex = "^work: reps=(\\\\d+)"
            ignore_regex = "^work:"
        """))
        entries.append(f'[[apps]]\npath = "app{i}"\n')
    study = tmp / f"{name}.toml"
    study.write_text(textwrap.dedent(f"""
        [study]
        name = "{name}"
        trials = {trials}
        k = [1]
        out = "{out}"
        [platform]
        kind = "cpu"
        meter = "estimate"
        compiler = "g++ -O1"
        [measure]
        repeat = 1
        settle_timeout_s = 0.0
        idle_window_s = 0.05
        post_max_s = 0.05
        random_delay_s = 0.0
        [llm]
        backend = "replay"
        replay_path = "sumapp.jsonl"
        replay_delay_s = {delay_s}
        max_iterations = {max_iterations}
        [slurm]
        gres = ""
        exclusive = false
        cpus_per_task = 1
        mem_gb = 1
        time = "00:15:00"
        signal_delay_s = 30
        {slurm_extra}
    """) + "\n".join(entries))
    return study


def ensure_cluster() -> str:
    """The local Slurm's partition, starting it if needed; skip only where it cannot be installed."""
    r = subprocess.run([str(CLUSTER), "status"], capture_output=True, text=True)
    if r.returncode == 0:
        return r.stdout.strip()
    if os.geteuid() != 0:
        pytest.skip("the local Slurm needs root to install and start")
    if shutil.which("slurmctld") is None:
        if shutil.which("apt-get") is None:
            pytest.skip("Slurm is not installed and apt-get is unavailable")
        inst = subprocess.run([str(CLUSTER), "install"], capture_output=True, text=True)
        if inst.returncode != 0:
            pytest.skip(f"Slurm packages cannot be installed here: {inst.stderr.strip()[-200:]}")
    r = subprocess.run([str(CLUSTER), "start"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"local Slurm did not start: {r.stderr}"
    return r.stdout.strip()


def wait_for(pred, timeout: float, what: str, every: float = 0.5):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """The installed lassi-batch command, as a user runs it."""
    exe = shutil.which("lassi-batch") or str(Path(os.sys.executable).parent / "lassi-batch")
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


def squeue_ids() -> list[str]:
    r = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True)
    return r.stdout.split()


def release_requeued(job: str) -> None:
    """Slurm holds a requeued job about two minutes (BeginTime); start it now to keep tests short."""
    def pending() -> bool:
        r = subprocess.run(["squeue", "-h", "-j", job.split("_")[0], "-o", "%T %r"], capture_output=True, text=True)
        return "PENDING" in r.stdout
    wait_for(pending, 60, f"job {job} to be requeued")
    # Not within the second of the requeue: slurmd refuses a launch whose credential is not newer
    # than the revocation of the killed run's ("Job credential revoked"), which the hold protects.
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now+3"], check=True, capture_output=True)

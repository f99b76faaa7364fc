"""System details and the environment record, on whatever machine the tests run (GPU or not)."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from lassi_batch import __version__
from lassi_batch.system import facts as sysinfo
from lassi_batch.core.config import ContainerConfig, PlatformConfig
from lassi_batch.system.facts import environment, run_tool, system_details, tool_version


@pytest.mark.skipif(shutil.which("lscpu") is None, reason="lscpu not installed")
def test_cpu_details_come_from_lscpu() -> None:
    text = system_details("cpu")
    assert text.startswith("$ lscpu\n") and "CPU" in text


@pytest.mark.parametrize("kind, tools", [("cuda", ["nvidia-smi"]), ("hip", ["amd-smi", "rocm-smi"])])
def test_gpu_details_or_a_line_saying_the_tool_is_missing(kind: str, tools: list[str]) -> None:
    text = system_details(kind)
    assert text.strip()
    if not any(shutil.which(t) for t in tools):
        assert all(f"{t}: not available on this machine" in text for t in tools)
    else:
        assert text.startswith("$ ")


def test_missing_tool_falls_through_to_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sysinfo._DETAIL_COMMANDS, "hip", [["no-such-smi-xyz"], ["uname", "-s"]])
    text = system_details("hip")
    assert "no-such-smi-xyz" not in text.split("$ ")[-1]
    assert "$ uname -s\nLinux" in text


def test_run_tool_times_out_and_reports_missing() -> None:
    code, out = run_tool(["sleep", "5"], timeout=0.5)
    assert code is None and "no answer within 0.5 s" in out
    code, out = run_tool(["no-such-tool-xyz"])
    assert code is None and "not available" in out


def test_run_tool_hides_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-hidden-123")
    code, out = run_tool(["env"])
    assert code == 0 and "sk-hidden-123" not in out


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_tool_version_picks_a_telling_line() -> None:
    assert tool_version("g++").startswith("g++")
    assert tool_version("no-such-compiler-xyz") == ""
    if shutil.which("nvcc"):
        assert "release" in tool_version("nvcc")


def test_environment_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "7")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value-987")
    monkeypatch.setenv("SLURM_AUTH_TOKEN", "slurm-secret-654")
    img = tmp_path / "img.sif"
    img.write_bytes(b"image")
    env = environment(PlatformConfig(kind="cpu"), ContainerConfig(runtime="apptainer", image=str(img)))
    text = json.dumps(env)  # must be JSON-serialisable for the archive
    assert "sk-secret-value-987" not in text and "slurm-secret-654" not in text
    assert env["hostname"] == socket.gethostname()
    assert env["lassi_batch"] == __version__ and env["python"].count(".") == 2
    assert env["platform"] == "cpu" and env["compiler_line"].startswith("g++")
    assert env["slurm"] == {"SLURM_JOB_ID": "4242", "SLURM_ARRAY_TASK_ID": "7"}
    assert env["env"]["OMP_NUM_THREADS"] == "2"
    assert env["container"]["runtime"] == "apptainer" and len(env["container"]["digest"]) == 64
    if shutil.which("g++"):
        assert env["compiler_version"].startswith("g++") and "g++" in env["compilers"]


def test_environment_for_gpu_platforms_without_crashing() -> None:
    for kind in ("cuda", "hip"):
        env = environment(PlatformConfig(kind=kind), ContainerConfig())
        json.dumps(env)
        assert isinstance(env["gpus"], list) and env["gpu_source"]
        assert env["container"] == {"runtime": "none", "image": "", "digest": "", "version": ""}

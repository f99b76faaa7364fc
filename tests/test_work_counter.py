"""The CUPTI work counter: build, environment, reading counts, and the verifier's use of them.

The counter itself only runs under a GPU; here it is built and inspected, and the comparison
logic is tested on counts. On the device machine, scripts/check_work_counter.sh runs it for real.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from lassi_batch.sandbox import work_counter
from lassi_batch.screening.verifier import VerifierReport, work_count_finding
from lassi_batch.sandbox.toolchain import sandbox_env

needs_cupti = pytest.mark.skipif(work_counter.find_cupti() is None or shutil.which("nm") is None,
                                 reason="CUPTI (CUDA toolkit) or nm not installed")


@needs_cupti
def test_builds_an_injection_library_once(tmp_path: Path):
    lib, why = work_counter.build(tmp_path)
    assert lib is not None and why == ""
    syms = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True).stdout
    assert "InitializeInjection" in syms  # the entry point the CUDA driver calls
    again, _ = work_counter.build(tmp_path)
    assert again == lib and len(list(tmp_path.glob("*.so"))) == 1


def test_missing_cupti_is_reported_not_raised(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(work_counter, "find_cupti", lambda: None)
    lib, why = work_counter.build(tmp_path)
    assert lib is None and "CUPTI" in why


def test_run_env_reaches_the_sandboxed_program(tmp_path: Path):
    extra = work_counter.run_env(Path("/opt/x/counter.so"), tmp_path)
    env = sandbox_env("cuda", tmp_path, extra=extra)
    assert env["CUDA_INJECTION64_PATH"] == "/opt/x/counter.so"
    assert env["LASSI_WORK_COUNTS"] == str(tmp_path / work_counter.COUNTS_FILE)


def test_take_counts_reads_once_and_takes_the_larger_launch_count(tmp_path: Path):
    f = tmp_path / work_counter.COUNTS_FILE
    f.write_text(json.dumps({"runtime_launches": 120, "driver_launches": 121, "memcpy_calls": 4, "memcpy_bytes": 4096}))
    c = work_counter.take_counts(tmp_path)
    assert c == {"runtime_launches": 120, "driver_launches": 121, "memcpy_calls": 4, "memcpy_bytes": 4096,
                 "kernel_launches": 121}
    assert not f.exists() and work_counter.take_counts(tmp_path) is None  # a later run starts clean
    f.write_text("{truncated")
    assert work_counter.take_counts(tmp_path) is None


def test_far_fewer_launches_warn_and_reach_the_report():
    src = {"kernel_launches": 6000, "memcpy_bytes": 10 << 20}
    cut = work_count_finding(src, {"kernel_launches": 60, "memcpy_bytes": 1 << 20})
    assert cut is not None and cut.severity == "warn" and "6000 -> 60" in cut.message
    fused = work_count_finding(src, {"kernel_launches": 3000, "memcpy_bytes": 0})
    assert fused is not None and fused.severity == "info"  # halving launches by fusion is fine
    assert work_count_finding({}, {"kernel_launches": 1}) is None  # no counts: no claim
    rep = VerifierReport.from_findings([]).extended([cut])
    assert rep.verdict == "warn"

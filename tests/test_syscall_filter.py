"""The seccomp filter itself: built by libseccomp, reported by doctor, and fail-closed without it.

What it refuses inside a real sandbox is tested with the hostile corpus in test_sandbox.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lassi_batch.core.config import ContainerConfig, PlatformConfig
from lassi_batch.pipeline import doctor
from lassi_batch.sandbox import bwrap, syscall_filter, toolchain
from lassi_batch.sandbox.bwrap import BwrapRunner, SandboxUnavailable
from lassi_batch.sandbox.limits import Limits
from lassi_batch.sandbox.toolchain import check_platform, make_runner, run_process


def _forget() -> None:
    """Drop the per-process caches of the filter and of the sandbox probe."""
    syscall_filter.build.cache_clear()
    bwrap._probe.cache_clear()
    toolchain._default_runner.cache_clear()


@pytest.fixture
def no_binding(monkeypatch):
    """A machine without the libseccomp binding (an import of pyseccomp fails)."""
    _forget()
    monkeypatch.setitem(sys.modules, "pyseccomp", None)
    try:
        yield
    finally:
        monkeypatch.undo()
        _forget()


def test_the_filter_is_a_libseccomp_program_that_bwrap_loads(tmp_path: Path) -> None:
    built = syscall_filter.build()
    guarded = syscall_filter.build(bwrap.REPORT_PID)
    assert built.instructions > 50 and len(built.bpf) % 8 == 0 and built.library.startswith("pyseccomp ")
    assert guarded.rules > built.rules  # the same-uid variant adds the signal rules
    launch = BwrapRunner("cpu").launch(["/bin/true"], tmp_path, {"PATH": "/usr/bin:/bin"}, Limits(time_s=10))
    try:
        i = launch.argv.index("--seccomp")
        fd = int(launch.argv[i + 1])
        assert fd in launch.pass_fds and launch.argv[i + 2] == "--"  # bwrap's last option
        with open(f"/proc/self/fd/{fd}", "rb") as fh:
            assert fh.read() == built.bpf  # the program at offset 0, as bwrap reads it
    finally:
        toolchain._close_launch(launch)
    r = run_process(["/bin/sh", "-c", "sed -n 's/^Seccomp:[[:space:]]*//p' /proc/self/status; ls /proc/self/fd"],
                    tmp_path, Limits(time_s=10), runner=BwrapRunner("cpu"))
    assert r.ok and r.stdout.split() == ["2", "0", "1", "2", "3"], r.stdout + r.stderr  # no filter fd left open


def test_doctor_reports_the_filter() -> None:
    check = doctor._filter_check(opted_out=False)
    assert check.area == "sandbox" and check.status == "ok"
    assert f"{syscall_filter.build().rules} rules" in check.detail and "libseccomp" in check.detail


def test_fails_closed_without_the_filter(no_binding, tmp_path: Path) -> None:
    assert "pyseccomp is not installed" in syscall_filter.problem()
    with pytest.raises(SandboxUnavailable, match="no seccomp filter: the Python package pyseccomp") as e:
        make_runner(ContainerConfig(), "cpu")
    assert 'sandbox = "none"' in str(e.value)
    probs = check_platform(PlatformConfig(kind="cpu", compiler="/usr/bin/g++"), ContainerConfig())
    assert any("no sandbox for generated code: no seccomp filter" in p for p in probs)
    with pytest.raises(SandboxUnavailable, match="no seccomp filter"):  # a runner made by hand starts nothing
        run_process(["/bin/touch", "ran"], tmp_path, Limits(time_s=10), env={"PATH": "/usr/bin:/bin"},
                    runner=BwrapRunner("cpu"))
    assert not (tmp_path / "ran").exists()
    assert doctor._filter_check(opted_out=False).status == "fail"
    assert doctor._filter_check(opted_out=True).status == "info"
    none = make_runner(ContainerConfig(sandbox="none"), "cpu")  # only an explicit opt-out runs
    r = run_process(["/bin/sh", "-c", "echo unisolated"], tmp_path, Limits(time_s=10), runner=none)
    assert r.ok and r.stdout == "unisolated\n" and r.runner == "none"


def test_calls_this_libseccomp_cannot_name_are_named_by_doctor(monkeypatch) -> None:
    """An older libseccomp may not know a newer call: the filter is built without it, and the
    doctor's row turns to a warning that names it."""
    import pyseccomp

    full = syscall_filter.build().rules
    real = pyseccomp.resolve_syscall
    monkeypatch.setattr(pyseccomp, "resolve_syscall",
                        lambda arch, name: -1 if name == "mount_setattr" else real(arch, name))
    _forget()
    try:
        built = syscall_filter.build()
        assert built.unknown == ("mount_setattr",) and built.rules == full - 1
        check = doctor._filter_check(opted_out=False)
        assert check.status == "warn" and "not filtered: mount_setattr" in check.detail
    finally:
        monkeypatch.undo()
        _forget()
    assert syscall_filter.build().unknown == ()

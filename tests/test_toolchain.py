"""The build/run layer, exercised with real processes, real bubblewrap and the real g++.

Programs run inside the sandbox, where only the system trees exist: they are written for the
system interpreter (/usr/bin/python3), not the test's own (which may live under a home folder).
The hostile corpus is in test_sandbox.py.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
import time
from pathlib import Path

import pytest
from procs import wait_gone
from pydantic import ValidationError

from lassi_batch.sandbox import toolchain
from lassi_batch.core.config import EXE_NAME, AppConfig, ContainerConfig, PlatformBuild, PlatformConfig
from lassi_batch.sandbox.apptainer import ApptainerRunner
from lassi_batch.core.errors import LassiError, ToolchainError
from lassi_batch.sandbox.toolchain import (
    BwrapRunner, HostRunner, Limits, WorkdirError, build, check_platform, make_runner, prepare_workdir, run_app,
    run_process, sandbox_env,
)

PY = "/usr/bin/python3"  # visible inside the sandbox
needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")


def py(code: str) -> list[str]:
    return [PY, "-c", textwrap.dedent(code)]


# ---------------------------------------------------------------- run_process


def test_plain_run_records_output_times_and_cpu(tmp_path: Path) -> None:
    r = run_process(py("""
        import time, sys
        t = time.process_time()
        while time.process_time() - t < 0.3:
            pass
        print("out line"); print("err line", file=sys.stderr)
        time.sleep(0.2)
    """), tmp_path, Limits(time_s=30))
    assert r.ok and r.returncode == 0 and r.error == ""
    assert r.stdout == "out line\n" and r.stderr == "err line\n"
    assert r.t_launch < r.t_exit and r.wall_s == pytest.approx(r.t_exit - r.t_launch)
    assert r.wall_s >= 0.2
    assert r.cpu_s >= 0.25  # the child's own busy loop, not ours
    assert not r.stdout_truncated and not r.stderr_truncated


def test_the_unsandboxed_runner_counts_what_it_ends(tmp_path: Path) -> None:
    """A child left running in the program's process group is ended when the program exits, and
    counted like the sandbox counts its leftovers: the run fails with stopped = "leftovers"."""
    r = run_process(py("""
        import subprocess
        subprocess.Popen(["sleep", "3301"])
        print("PASS")
    """), tmp_path, Limits(time_s=30), runner=HostRunner())
    assert not r.ok and r.stopped == "leftovers" and r.leftovers == 1, (r.error, r.stderr)
    assert r.error == "left 1 process running after it exited (ended by the runner)"
    assert not wait_gone("sleep 3301", 5.0)  # ended: nothing of the run outlives the call
    clean = run_process(py("import subprocess; subprocess.run(['true']); print('PASS')"), tmp_path,
                        Limits(time_s=30), runner=HostRunner())
    assert clean.ok and clean.leftovers == 0, (clean.error, clean.stderr)


def test_nonzero_exit_and_stdin(tmp_path: Path) -> None:
    r = run_process(py("import sys; d = sys.stdin.read(); print(d.upper()); sys.exit(3)"), tmp_path,
                    Limits(time_s=30), stdin="hello")
    assert r.returncode == 3 and not r.ok and r.stdout.strip() == "HELLO"


def test_time_limit_kills_the_whole_group_including_a_grandchild(tmp_path: Path) -> None:
    r = run_process(py("""
        import subprocess, time, signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)   # the child shrugs off SIGTERM
        g = subprocess.Popen(["sleep", "3007"])
        print("started", flush=True)
        time.sleep(300)
    """), tmp_path, Limits(time_s=1.5))
    assert r.timed_out and not r.ok
    assert r.error == "killed: time limit 1.5 s"
    assert r.returncode is not None and r.returncode < 0
    assert r.wall_s >= 1.5
    assert r.wall_s < 60  # it did not wait for the 300 s sleeps
    assert "started" in r.stdout
    assert not wait_gone("sleep 3007"), "grandchild survived the time-limit kill"


def test_memory_hog_is_killed(tmp_path: Path) -> None:
    r = run_process(py("""
        import time
        hoard = []
        for _ in range(60):               # up to 1.2 GB if nothing stops it
            hoard.append(b"x" * (20 << 20))
            time.sleep(0.02)
        print("SURVIVED")
    """), tmp_path, Limits(time_s=60, memory_mb=200))
    assert r.error == "killed: memory limit 200 MB"
    assert not r.ok and not r.timed_out
    assert "SURVIVED" not in r.stdout
    assert r.peak_rss_mb > 200


def test_optional_address_space_limit(tmp_path: Path) -> None:
    r = run_process(py("""
        import time
        time.sleep(0.3)   # let the limit land
        try:
            b = bytearray(900 << 20)
            print("ALLOCATED")
        except MemoryError:
            print("MEMORYERROR")
    """), tmp_path, Limits(time_s=30, memory_mb=0, address_space_mb=400))
    assert "MEMORYERROR" in r.stdout


def test_output_flood_is_bounded_and_marked(tmp_path: Path) -> None:
    limit = 64 << 10
    r = run_process(py("""
        import sys
        sys.stdout.write("FIRST\\n")
        line = "y" * 1023 + "\\n"
        for _ in range(20 * 1024):       # 20 MB
            sys.stdout.write(line)
        sys.stdout.write("LAST\\n")
        sys.stderr.write("e" * (3 << 20))
    """), tmp_path, Limits(time_s=60, max_output_bytes=limit))
    assert r.ok
    assert r.stdout_truncated and r.stderr_truncated
    assert r.stdout.startswith("FIRST\n") and r.stdout.endswith("LAST\n")
    assert "bytes dropped" in r.stdout
    assert len(r.stdout.encode()) < limit + 200
    assert len(r.stderr.encode()) < limit + 200


def test_small_output_is_not_marked(tmp_path: Path) -> None:
    r = run_process(py("print('z' * 100)"), tmp_path, Limits(max_output_bytes=1000))
    assert r.stdout == "z" * 100 + "\n" and not r.stdout_truncated


@pytest.mark.parametrize("argv, needle", [
    (["/no/such/program"], "not found"),
    (["no-such-program-xyz"], "not found on PATH"),
    (["./app.exe"], "not found"),
])
def test_missing_executable_is_a_recorded_failure(tmp_path: Path, argv: list[str], needle: str) -> None:
    r = run_process(argv, tmp_path, Limits())
    assert r.returncode is None and not r.ok
    assert needle in r.error and "\n" not in r.error


def test_non_executable_file(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("x")
    r = run_process(["./data.txt"], tmp_path, Limits())
    assert r.returncode is None and "not executable" in r.error


def test_missing_container_runtime_is_a_recorded_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no apptainer here, whatever the machine has
    r = run_process(["true"], tmp_path, Limits(), runner=ApptainerRunner("img.sif", "cpu"))
    assert r.returncode is None and "apptainer" in r.error


# ---------------------------------------------------------------- environment


def test_secrets_do_not_reach_the_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-leak")
    monkeypatch.setenv("MY_TOKEN", "tok-should-not-leak")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("UNRELATED_VAR", "plain")
    env = sandbox_env("cuda", tmp_path, device="1", extra={"GITHUB_TOKEN": "x", "OMP_PLACES": "cores"})
    r = run_process(py("import os, json; print(json.dumps(dict(os.environ)))"), tmp_path, Limits(), env=env)
    import json

    seen = json.loads(r.stdout)
    assert "OPENAI_API_KEY" not in seen and "MY_TOKEN" not in seen and "GITHUB_TOKEN" not in seen
    assert "should-not-leak" not in r.stdout
    assert "UNRELATED_VAR" not in seen  # allowlist, not denylist
    assert seen["OMP_NUM_THREADS"] == "3" and seen["OMP_PLACES"] == "cores"
    assert seen["HOME"] == str(tmp_path) and seen["TMPDIR"] == "/tmp"  # the sandbox's private /tmp
    assert seen["CUDA_VISIBLE_DEVICES"] == "1" and seen["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"


def test_default_env_is_scrubbed_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_PASSWORD", "hunter2")
    r = run_process(py("import os; print(sorted(os.environ))"), tmp_path, Limits())
    assert "DB_PASSWORD" not in r.stdout and "HOME" in r.stdout


def test_sandbox_env_device_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROCR_VISIBLE_DEVICES", "2,3")  # e.g. from Slurm
    monkeypatch.delenv("HIP_PLATFORM", raising=False)
    env = sandbox_env("hip", tmp_path, device="0")
    assert env["HIP_VISIBLE_DEVICES"] == "0" and env["ROCR_VISIBLE_DEVICES"] == "2,3"
    assert env["HIP_PLATFORM"] == "amd"
    assert env.get("CUDA_VISIBLE_DEVICES") == os.environ.get("CUDA_VISIBLE_DEVICES")  # only inherited, never set
    assert (tmp_path / ".tmp").is_dir()


# ---------------------------------------------------------------- work folders, build, run


def make_app(root: Path, source: str, name: str = "main.cpp", extra: dict[str, str] | None = None) -> AppConfig:
    src = root / "app"
    src.mkdir(parents=True, exist_ok=True)
    (src / name).write_text(source)
    for k, v in (extra or {}).items():
        (src / k).parent.mkdir(parents=True, exist_ok=True)
        (src / k).write_text(v)
    return AppConfig(name="t", path=src, platforms={"cpu": PlatformBuild(files=[name], extra_files=list(extra or {}))},
                     args=["5"], test_args=["3"], time_limit_s=30.0, memory_limit_mb=1024)


GOOD = r"""#include <cstdio>
#include <cstdlib>
#include "inc/scale.h"
int main(int argc, char **argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 1;
  double s = 0;
#pragma omp parallel for reduction(+ : s)
  for (int i = 0; i < n; ++i) s += SCALE * i;
  std::printf("sum=%g\nPASS\n", s);
  return 0;
}
"""


def test_prepare_workdir_copies_and_overrides(tmp_path: Path) -> None:
    app = make_app(tmp_path, GOOD, extra={"inc/scale.h": "#define SCALE 2\n"})
    wd = tmp_path / "w1"
    files = prepare_workdir(app, "cpu", wd)
    assert files == {"main.cpp": GOOD}
    assert (wd / "inc" / "scale.h").read_text() == "#define SCALE 2\n"
    wd2 = tmp_path / "w2"
    files2 = prepare_workdir(app, "cpu", wd2, overrides={"main.cpp": "// rewritten\n"})
    assert files2 == {"main.cpp": "// rewritten\n"} and (wd2 / "main.cpp").read_text() == "// rewritten\n"
    assert (app.path / "main.cpp").read_text() == GOOD  # the app folder is never touched


@pytest.mark.parametrize("name", ["../evil.cpp", "/etc/passwd", "inc/../../x.cpp", "other.cpp", "inc/scale.h"])
def test_prepare_workdir_rejects_path_tricks(tmp_path: Path, name: str) -> None:
    app = make_app(tmp_path, GOOD, extra={"inc/scale.h": "#define SCALE 2\n"})
    with pytest.raises(WorkdirError) as e:
        prepare_workdir(app, "cpu", tmp_path / "w", overrides={name: "x"})
    assert "\n" not in str(e.value)
    assert not (tmp_path / "evil.cpp").exists()


def test_prepare_workdir_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    app = make_app(tmp_path, GOOD, extra={"inc/scale.h": ""})
    wd = tmp_path / "w"
    wd.mkdir()
    (wd / "keep.txt").write_text("user data")
    with pytest.raises(WorkdirError, match="not empty"):
        prepare_workdir(app, "cpu", wd)
    assert (wd / "keep.txt").read_text() == "user data"


def test_prepare_workdir_rejects_symlink_escape(tmp_path: Path) -> None:
    app = make_app(tmp_path, GOOD)
    (tmp_path / "secret.txt").write_text("s")
    (app.path / "link.h").symlink_to(tmp_path / "secret.txt")
    bad = AppConfig(name="t", path=app.path, platforms={"cpu": PlatformBuild(files=["main.cpp"], extra_files=["link.h"])},
                    args=[], test_args=[])
    with pytest.raises(WorkdirError, match="outside"):
        prepare_workdir(bad, "cpu", tmp_path / "w")


@needs_gxx
def test_build_and_run_app(tmp_path: Path) -> None:
    app = make_app(tmp_path, GOOD, extra={"inc/scale.h": "#define SCALE 2\n"})
    wd = tmp_path / "w"
    prepare_workdir(app, "cpu", wd)
    plat = PlatformConfig(kind="cpu")
    b = build(app, plat, wd)
    assert b.ok, b.log.stderr
    assert Path(b.exe) == wd / EXE_NAME and Path(b.exe).is_file()
    assert b.files == {"main.cpp": GOOD} and b.workdir == str(wd)
    assert b.log.argv[0] == "g++" and EXE_NAME in b.log.argv and "main.cpp" in b.log.argv
    r = run_app(app, plat, wd, app.test_args)
    assert r.ok and "PASS" in r.stdout and "sum=6" in r.stdout


@needs_gxx
def test_build_failure_is_a_result_with_the_compiler_error(tmp_path: Path) -> None:
    app = make_app(tmp_path, "int main() { return undeclared_thing; }\n")
    wd = tmp_path / "w"
    prepare_workdir(app, "cpu", wd)
    b = build(app, PlatformConfig(kind="cpu"), wd)
    assert not b.ok and b.log.returncode not in (0, None)
    assert "undeclared_thing" in b.log.stderr and "main.cpp" in b.log.stderr
    assert not (wd / EXE_NAME).exists()


@needs_gxx
def test_build_removes_a_stale_program(tmp_path: Path) -> None:
    app = make_app(tmp_path, "int main() { return 0 }\n")
    wd = tmp_path / "w"
    prepare_workdir(app, "cpu", wd)
    (wd / EXE_NAME).write_text("old")
    assert not build(app, PlatformConfig(kind="cpu"), wd).ok
    assert not (wd / EXE_NAME).exists()


def test_missing_compiler_raises_one_line(tmp_path: Path) -> None:
    app = make_app(tmp_path, GOOD)
    wd = tmp_path / "w"
    prepare_workdir(app, "cpu", wd)
    with pytest.raises(ToolchainError) as e:
        build(app, PlatformConfig(kind="cpu", compiler="no-such-cc-xyz -O2"), wd)
    assert str(e.value) == "compiler 'no-such-cc-xyz' not found on PATH"
    assert isinstance(e.value, LassiError)


def test_bad_build_template_is_refused_by_the_config() -> None:
    with pytest.raises(ValidationError, match="cannot split"):
        PlatformBuild(files=["main.cpp"], build="{compiler} 'unclosed")


@needs_gxx
def test_run_app_applies_the_apps_time_limit(tmp_path: Path) -> None:
    src = "#include <unistd.h>\nint main() { for (;;) sleep(1); }\n"
    app = make_app(tmp_path, src)
    app = AppConfig(name="t", path=app.path, platforms=app.platforms, args=[], test_args=[], time_limit_s=1.0)
    wd = tmp_path / "w"
    prepare_workdir(app, "cpu", wd)
    assert build(app, PlatformConfig(kind="cpu"), wd).ok
    r = run_app(app, PlatformConfig(kind="cpu"), wd, [])
    assert r.timed_out and r.error == "killed: time limit 1 s"


def test_check_platform(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert check_platform(PlatformConfig(kind="cpu", compiler="no-such-cc-xyz")) == [
        "compiler 'no-such-cc-xyz' not found on PATH"]
    if shutil.which("g++"):
        assert check_platform(PlatformConfig(kind="cpu")) == []
    if not any(Path("/dev").glob("nvidia[0-9]*")):
        assert any("NVIDIA" in p for p in check_platform(PlatformConfig(kind="cuda")))
    monkeypatch.setenv("PATH", str(tmp_path))
    probs = check_platform(PlatformConfig(kind="cpu"), ContainerConfig(runtime="apptainer", image=str(tmp_path / "x.sif")))
    assert "container runtime 'apptainer' not found on PATH" in probs
    assert any("image not found" in p for p in probs)
    assert not any("compiler" in p for p in probs)  # the compiler lives in the image


def test_make_runner() -> None:
    assert isinstance(make_runner(ContainerConfig(), "cpu"), BwrapRunner)
    assert isinstance(make_runner(ContainerConfig(sandbox="none"), "cpu"), HostRunner)
    assert make_runner(ContainerConfig(sandbox="none"), "cpu").name == "none"
    r = make_runner(ContainerConfig(runtime="apptainer", image="i.sif", binds=["/data"]), "cuda")
    assert isinstance(r, ApptainerRunner) and r.binds == ["/data"] and r.platform_kind == "cuda"

"""The hostile corpus (tests/hostile/) through the real sandbox: real bubblewrap, real g++ builds.

Every program is built and run through `build`/`run_app`, the path a generated candidate takes.
Each test asserts the exact outcome (the recorded failure and its reason, or the access that
failed) and then that a normal program still runs: the trial goes on. Nothing here skips when
bubblewrap is missing: CI installs it, and a sandbox that cannot be built is a failure.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from procs import alive_with, wait_gone

from lassi_batch.core.config import AppConfig, ContainerConfig, PlatformBuild, PlatformConfig
from lassi_batch.sandbox import bwrap, toolchain
from lassi_batch.sandbox.bwrap import BwrapRunner, SandboxUnavailable
from lassi_batch.sandbox.limits import Limits
from lassi_batch.sandbox.toolchain import (
    HostRunner, app_limits, build, check_platform, make_runner, prepare_workdir, run_app, run_process,
)

HOSTILE = Path(__file__).resolve().parent / "hostile"
CPU = PlatformConfig(kind="cpu", compiler="g++ -O1")
OK_SRC = '#include <cstdio>\nint main() { std::printf("PASS ok\\n"); return 0; }\n'


def make(tmp_path: Path, name: str, *, time_s: float = 20.0, memory_mb: int = 1024, source: str = "") -> tuple:
    """Build hostile program `name` (or `source`) like a candidate; returns (app, build folder)."""
    src = tmp_path / f"app-{name}"
    src.mkdir()
    (src / "main.cpp").write_text(source or (HOSTILE / f"{name}.cpp").read_text())
    app = AppConfig(name=name, path=src, platforms={"cpu": PlatformBuild(files=["main.cpp"])}, args=[],
                    test_args=[], time_limit_s=time_s, memory_limit_mb=memory_mb)
    wd = tmp_path / f"build-{name}"
    prepare_workdir(app, "cpu", wd)
    b = build(app, CPU, wd)
    assert b.ok, b.log.stderr
    assert b.log.runner == "bwrap"  # the compiler ran sandboxed too
    return app, wd


def goes_on(tmp_path: Path) -> None:
    """After a hostile run, lassi-batch is alive and the next program runs normally."""
    app, wd = make(tmp_path, "ok", source=OK_SRC)
    r = run_app(app, CPU, wd, [])
    assert r.ok and r.stdout == "PASS ok\n" and r.leftovers == 0, (r.error, r.stderr)


def test_the_sandbox_is_available_here() -> None:
    assert BwrapRunner().check() == ""
    assert isinstance(make_runner(ContainerConfig(), "cpu"), BwrapRunner)


def test_infinite_loop_is_stopped_at_the_time_limit(tmp_path: Path) -> None:
    app, wd = make(tmp_path, "spin", time_s=1.0)
    r = run_app(app, CPU, wd, [])
    assert not r.ok and r.timed_out and r.stopped == "time"
    assert r.error == "killed: time limit 1 s"
    assert 1.0 <= r.wall_s < 10
    goes_on(tmp_path)


def test_fork_bomb_hits_the_process_limit_and_its_children_are_ended(tmp_path: Path) -> None:
    app, wd = make(tmp_path, "forkbomb")
    r = run_app(app, CPU, wd, [], limits=Limits(time_s=20, processes=40))
    assert "fork failed after" in r.stdout and "Resource temporarily unavailable" in r.stdout, r.stdout
    forked = int(r.stdout.split("fork failed after ")[1].split(":")[0])
    assert 0 < forked < 40  # the program itself counts too
    assert not r.ok and r.stopped == "leftovers" and r.leftovers == forked
    assert r.error == f"left {forked} processes running after it exited (ended by the sandbox)"
    assert r.wall_s < 10  # the sleeping children did not hold the run for their 30 s
    goes_on(tmp_path)


def test_memory_hog_cpu_program_is_bounded_by_its_address_space(tmp_path: Path) -> None:
    app, wd = make(tmp_path, "memhog", memory_mb=256)
    assert app_limits(app, CPU).address_space_mb == 256
    r = run_app(app, CPU, wd, ["4096"])
    assert r.returncode == 3 and not r.ok
    got = int(r.stdout.split("alloc failed at ")[1].split()[0])
    assert got < 256
    goes_on(tmp_path)


def test_memory_hog_without_an_address_space_limit_is_killed_by_the_watchdog(tmp_path: Path) -> None:
    """GPU programs get no RLIMIT_AS (their runtimes reserve huge ranges): the resident bound holds."""
    app, wd = make(tmp_path, "memhog")
    r = run_app(app, CPU, wd, ["4096"], limits=Limits(time_s=30, memory_mb=200, address_space_mb=0))
    assert not r.ok and r.stopped == "memory" and r.error == "killed: memory limit 200 MB"
    assert "allocated" not in r.stdout
    goes_on(tmp_path)


def test_output_flood_is_bounded(tmp_path: Path) -> None:
    app, wd = make(tmp_path, "flood_out")
    r = run_app(app, CPU, wd, ["64"], limits=Limits(time_s=60, max_output_bytes=64 << 10))
    assert r.ok and r.stdout_truncated
    assert r.stdout.startswith("FIRST\n") and r.stdout.endswith("LAST\n") and "bytes dropped" in r.stdout
    assert len(r.stdout.encode()) < (64 << 10) + 200
    goes_on(tmp_path)


def test_disk_flood_of_many_files_is_stopped_at_the_folder_limit(tmp_path: Path) -> None:
    app, wd = make(tmp_path, "flood_disk")
    r = run_app(app, CPU, wd, ["many"], limits=Limits(time_s=60, disk_mb=32, file_mb=8))
    assert not r.ok and r.stopped == "disk" and r.error == "killed: disk limit 32 MB in its folder"
    assert not Path(r.workdir).exists()  # the run folder is gone with the junk
    assert not any(p.name.startswith("junk") for p in wd.iterdir())  # the build folder never saw it
    goes_on(tmp_path)


def test_one_huge_file_is_stopped_at_the_file_size_limit(tmp_path: Path) -> None:
    app, wd = make(tmp_path, "flood_disk")
    r = run_app(app, CPU, wd, ["one"], limits=Limits(time_s=60, file_mb=8))
    assert not r.ok and r.stopped == "disk" and r.error == "stopped: file size limit 8 MB"
    goes_on(tmp_path)


def test_network_connections_fail(tmp_path: Path) -> None:
    app, wd = make(tmp_path, "net")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(0.5)
    port = srv.getsockname()[1]
    try:
        r = run_app(app, CPU, wd, [str(port)])
        assert r.ok, r.error
        # the filter refuses the socket itself; the network namespace would stop it next
        assert "loopback socket failed: Address family not supported by protocol" in r.stdout
        assert "internet socket failed: Address family not supported by protocol" in r.stdout
        assert "CONNECTED" not in r.stdout
        with pytest.raises(socket.timeout):
            srv.accept()  # the host's listener never saw it
        control = run_app(app, CPU, wd, [str(port)], runner=HostRunner())
        assert "loopback CONNECTED" in control.stdout  # the same program without a sandbox reaches it
    finally:
        srv.close()
    goes_on(tmp_path)


def test_home_keys_the_api_key_and_other_archives_are_out_of_reach(tmp_path: Path, monkeypatch) -> None:
    canary = "sk-canary-5a17e0c3"
    monkeypatch.setenv("LASSI_CANARY_API_KEY", canary)  # in lassi-batch's own environment
    monkeypatch.setenv("PLAIN_CANARY", canary)  # not even named like a secret
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text(f"PRIVATE {canary}\n")
    monkeypatch.setenv("HOME", str(home))
    other = tmp_path / "out" / "trials" / "other.cpu.t000.h5"
    other.parent.mkdir(parents=True)
    other.write_text(f"archive {canary}\n")
    app, wd = make(tmp_path, "snoop")
    paths = [str(home / ".ssh" / "id_ed25519"), "/root/.ssh/id_rsa", str(other), str(wd / "main.cpp"),
             f"/proc/{os.getpid()}/environ", "/proc/1/environ", "/etc/shadow"]
    r = run_app(app, CPU, wd, [canary, *paths])
    assert r.ok, r.error
    assert canary not in r.stdout.replace(f"snoop {canary}", "")  # never echoed back from a file
    assert "CANARY" not in r.stdout
    for p in paths[:4]:
        assert f"DENIED {p} No such file or directory" in r.stdout  # not there at all
    assert "DENIED /etc/shadow Permission denied" in r.stdout  # visible, but the run uid is nobody
    procs = int(r.stdout.split("PROCS ")[1].split()[0])
    assert procs <= 4  # its own PID namespace: bwrap's init, the report shell, itself
    goes_on(tmp_path)


def test_hidden_folders_inside_visible_trees_are_masked(tmp_path: Path) -> None:
    """A study folder that sits inside a bound toolchain tree is still hidden (an empty tmpfs)."""
    tool = tmp_path / "tool"
    (tool / "archive").mkdir(parents=True)
    (tool / "archive" / "t.h5").write_text("secret")
    (tool / "lib.txt").write_text("visible\n")
    runner = BwrapRunner("cpu", binds=[str(tool)], hide=[tool / "archive"])
    work = tmp_path / "w"
    work.mkdir()
    r = run_process(["/bin/sh", "-c", f"cat {tool}/lib.txt; ls -A {tool}/archive; echo end; "
                     f"touch {tool}/x || echo RO"], work, Limits(time_s=10), runner=runner)
    assert r.stdout.split("\n")[:2] == ["visible", "end"], r.stdout + r.stderr
    assert "RO" in r.stdout and "Read-only file system" in r.stderr


def test_writes_outside_the_run_folder_fail_or_stay_private(tmp_path: Path) -> None:
    app, wd = make(tmp_path, "escape_write")
    mark = "escape-4f1d"
    targets = ["/usr/escape.txt", "/etc/escape.txt", str(wd / "escape.txt"), str(tmp_path / "escape.txt"),
               "/tmp/escape.txt", "/dev/shm/escape.txt"]
    r = run_app(app, CPU, wd, [mark, *targets])
    assert r.ok, r.error
    assert f"DENIED /usr/escape.txt Read-only file system" in r.stdout
    assert f"DENIED /etc/escape.txt Read-only file system" in r.stdout
    assert f"DENIED {wd}/escape.txt " in r.stdout  # the build folder is not there
    assert f"DENIED {tmp_path}/escape.txt " in r.stdout
    assert "WROTE /tmp/escape.txt" in r.stdout and "WROTE /dev/shm/escape.txt" in r.stdout  # private tmpfs
    assert "INSIDE ok" in r.stdout
    for t in targets:
        assert not Path(t).exists() or mark not in Path(t).read_text(errors="replace"), t
    assert not (wd / "inside.txt").exists()  # its own folder was a fresh copy, now removed
    goes_on(tmp_path)


def same_uid_runner(**kw) -> BwrapRunner:
    """bubblewrap as a plain user runs it: no uid change, so the report shell shares the program's
    uid and only the filter keeps the program off it (here: root with every capability dropped)."""
    runner = BwrapRunner("cpu", **kw)
    runner.drop_root = False
    return runner


@pytest.mark.parametrize("uid", ["run uid", "same uid"])
def test_killing_the_parent_is_refused_and_the_run_goes_on(tmp_path: Path, uid: str) -> None:
    """The report shell is out of reach: another uid (root drops to a run uid after it), or the
    filter refuses signals to it, its process group and -1 (a plain user's sandbox)."""
    app, wd = make(tmp_path, "killer")
    r = run_app(app, CPU, wd, [], runner=BwrapRunner("cpu") if uid == "run uid" else same_uid_runner())
    assert r.ok and r.stopped == "" and r.error == "", (r.error, r.stderr)
    assert r.stdout == "parent 2\nstill here\n"
    goes_on(tmp_path)


def test_a_program_that_ends_its_report_shell_is_a_recorded_failure(tmp_path: Path) -> None:
    """Should the shell die anyway (here by a trusted hand, from the host), the run is failed."""
    app, wd = make(tmp_path, "shot", source=OK_SRC)
    (wd / "app.exe").rename(wd / "inner.exe")
    (wd / "app.exe").write_text("#!/bin/sh\n./inner.exe\nexec sleep 3105\n")
    (wd / "app.exe").chmod(0o755)
    box: dict[str, object] = {}

    def shoot() -> None:
        deadline = time.monotonic() + 20
        while not (pids := alive_with("sleep 3105")) and time.monotonic() < deadline:
            time.sleep(0.02)
        for pid in pids:  # the shell is the sleeper's parent
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
            box["shell"] = Path(f"/proc/{ppid}/comm").read_text().strip()
            os.kill(ppid, signal.SIGKILL)

    import threading

    t = threading.Thread(target=shoot)
    t.start()
    r = run_app(app, CPU, wd, [], limits=Limits(time_s=20))
    t.join()
    assert box.get("shell") == "bash"
    assert not r.ok and r.stopped == "supervisor" and r.error == "the program ended its sandbox supervisor"
    goes_on(tmp_path)


@pytest.fixture
def host_sockets(tmp_path: Path):
    """World-writable unix sockets a host daemon might leave in a folder the sandbox binds read-only:
    a stream listener and a datagram receiver in a study-bound tool folder, and (where the test
    may write there) a stream listener in /opt, a system tree. Yields (paths, listeners)."""
    tool = tmp_path / "tool"
    tool.mkdir()
    tool.chmod(0o755)
    made: list[tuple[socket.socket, Path]] = []

    def listen(path: Path, kind: int) -> None:
        s = socket.socket(socket.AF_UNIX, kind)
        s.bind(str(path))
        path.chmod(0o777)
        if kind == socket.SOCK_STREAM:
            s.listen(8)
        s.settimeout(0.5)
        made.append((s, path))

    listen(tool / "x.sock", socket.SOCK_STREAM)
    listen(tool / "d.sock", socket.SOCK_DGRAM)
    if os.access("/opt", os.W_OK):
        listen(Path(f"/opt/lassi-test-{os.getpid()}.sock"), socket.SOCK_STREAM)
    try:
        yield tool, made
    finally:
        for s, path in made:
            s.close()
            path.unlink(missing_ok=True)


@pytest.mark.parametrize("uid", ["run uid", "same uid"])
def test_unix_sockets_in_bound_folders_cannot_be_reached(tmp_path: Path, host_sockets, uid: str) -> None:
    tool, made = host_sockets
    paths = [str(p) for _, p in made]
    app, wd = make(tmp_path, "unix_connect")
    runner = BwrapRunner("cpu", binds=[str(tool)]) if uid == "run uid" else same_uid_runner(binds=[str(tool)])
    r = run_app(app, CPU, wd, paths, runner=runner)
    assert r.ok, (r.error, r.stderr)
    for p in paths:
        assert f"STREAM {p} blocked: No such file or directory" in r.stdout  # connect() never gets through
        assert f"DGRAM {p} socket failed: Permission denied" in r.stdout  # no datagram sockets at all
    assert "CONNECTED" not in r.stdout and "SENT" not in r.stdout
    assert "PAIR ok" in r.stdout  # socketpair needs no address and stays
    for s, p in made:
        with pytest.raises(socket.timeout):
            s.accept() if s.type == socket.SOCK_STREAM else s.recv(16)  # the daemon heard nothing
    control = run_app(app, CPU, wd, paths, runner=HostRunner())  # the same program unsandboxed reaches them
    assert f"STREAM {paths[0]} CONNECTED" in control.stdout and f"DGRAM {paths[1]} SENT" in control.stdout
    goes_on(tmp_path)


@pytest.mark.parametrize("uid", ["run uid", "same uid"])
def test_tracing_the_report_shell_is_refused_and_the_run_goes_on(tmp_path: Path, uid: str) -> None:
    app, wd = make(tmp_path, "ptrace_parent")
    r = run_app(app, CPU, wd, [], runner=BwrapRunner("cpu") if uid == "run uid" else same_uid_runner())
    assert r.ok and r.leftovers == 0, (r.error, r.stderr)
    assert "parent 2\n" in r.stdout and "still here" in r.stdout
    assert "ATTACH refused: Operation not permitted" in r.stdout
    assert "SEIZE refused: Operation not permitted" in r.stdout
    assert "STOP refused: Operation not permitted" in r.stdout
    # its memory: another uid's, or (same uid) a process that runs an execute-only file, not dumpable
    assert "MEM refused: Permission denied" in r.stdout
    assert "FDWRITE refused: Permission denied" in r.stdout  # nor its report pipe
    assert " DONE" not in r.stdout
    goes_on(tmp_path)


def test_new_namespaces_are_refused_and_threads_still_work(tmp_path: Path) -> None:
    app, wd = make(tmp_path, "unshare")
    r = run_app(app, CPU, wd, [])
    assert r.ok, (r.error, r.stderr)
    for what in ("UNSHARE_USER_PID", "UNSHARE_USER", "UNSHARE_MOUNT", "CLONE_NEWUSER"):
        assert f"{what} refused: Operation not permitted" in r.stdout, r.stdout
    assert "CLONE3 refused: Function not implemented" in r.stdout  # the C library falls back to clone
    assert "SETNS refused:" in r.stdout
    assert "THREAD ok" in r.stdout and "FORK ok" in r.stdout
    assert "DONE" not in r.stdout
    goes_on(tmp_path)


def test_reading_a_sibling_process_memory_is_refused(tmp_path: Path) -> None:
    app, wd = make(tmp_path, "vm_read")
    r = run_app(app, CPU, wd, ["sibling-canary-31"])
    assert r.ok and r.leftovers == 0, (r.error, r.stderr)
    assert "VM_READ refused: Operation not permitted" in r.stdout
    assert "ATTACH refused: Operation not permitted" in r.stdout
    assert "sibling-canary-31" not in r.stdout and r.stdout.endswith("done\n")
    control = run_app(app, CPU, wd, ["sibling-canary-31"], runner=HostRunner())
    assert "READ sibling-canary-31" in control.stdout  # unsandboxed, the same program reads it
    goes_on(tmp_path)


def test_calls_that_widen_the_kernel_surface_are_refused(tmp_path: Path) -> None:
    app, wd = make(tmp_path, "kernel")
    r = run_app(app, CPU, wd, [])
    assert r.ok, (r.error, r.stderr)
    for what in ("BPF", "PERF", "USERFAULTFD", "IO_URING", "KEYCTL", "MOUNT", "KEXEC"):
        assert f"{what} refused: Operation not permitted" in r.stdout, r.stdout
    for what in ("INET", "INET6", "NETLINK"):
        assert f"{what} refused: Address family not supported by protocol" in r.stdout
    goes_on(tmp_path)


@pytest.mark.parametrize("how", ["setsid", "double"])
def test_daemons_are_a_recorded_failure_and_end_with_the_program(tmp_path: Path, how: str) -> None:
    app, wd = make(tmp_path, "daemon")
    secs = "3101" if how == "setsid" else "3102"
    r = run_app(app, CPU, wd, [how, secs])
    assert "PASS result=42" in r.stdout  # it printed a passing result ...
    assert r.returncode == 0 and not r.ok  # ... and exited 0, but left a worker behind
    assert r.stopped == "leftovers" and r.leftovers == 1
    assert r.error == "left 1 process running after it exited (ended by the sandbox)"
    assert not wait_gone(f"sleep {secs}", 5.0)
    goes_on(tmp_path)


def test_sigterm_ignoring_program_is_killed_at_the_time_limit(tmp_path: Path) -> None:
    app, wd = make(tmp_path, "stubborn", time_s=1.0)
    r = run_app(app, CPU, wd, [])
    assert r.timed_out and r.error == "killed: time limit 1 s" and r.stdout == "ignoring\n"
    assert r.wall_s < 10
    goes_on(tmp_path)


def test_program_that_closes_its_output_and_never_exits(tmp_path: Path) -> None:
    app, wd = make(tmp_path, "mute", time_s=1.5)
    r = run_app(app, CPU, wd, [])
    assert r.timed_out and r.error == "killed: time limit 1.5 s" and r.stdout == "closing\n"
    assert r.wall_s < 10
    goes_on(tmp_path)


def test_a_result_cached_by_one_run_is_not_seen_by_the_next(tmp_path: Path) -> None:
    app, wd = make(tmp_path, "cacher")
    first, second = run_app(app, CPU, wd, []), run_app(app, CPU, wd, [])
    assert first.stdout == "MISS\n" and second.stdout == "MISS\n"  # every repeat starts from scratch
    assert first.workdir != second.workdir
    assert not Path("/tmp/lassi_cache").exists() and not (wd / "lassi_cache").exists()


def test_cpu_time_of_unreaped_children_is_charged(tmp_path: Path) -> None:
    """The estimate meter uses RunResult.cpu_s: it must hold every process of the run."""
    app, wd = make(tmp_path, "busy_children")
    r = run_app(app, CPU, wd, ["0.4"])
    assert r.ok, r.error
    assert r.cpu_scope in ("cgroup", "pid-namespace")
    assert r.cpu_s >= 3 * 0.4 * 0.9  # parent and both children, though it waited for none


def test_sigkill_of_lassi_batch_during_a_run_leaves_nothing_behind(tmp_path: Path) -> None:
    app, wd = make(tmp_path, "daemon")
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from lassi_batch.core.config import AppConfig, PlatformBuild, PlatformConfig
        from lassi_batch.sandbox.toolchain import run_app
        app = AppConfig(name="d", path=Path({str(app.path)!r}), platforms={{"cpu": PlatformBuild(files=["main.cpp"])}},
                        args=[], test_args=[], time_limit_s=120.0, memory_limit_mb=1024)
        run_app(app, PlatformConfig(kind="cpu"), Path({str(wd)!r}), ["setsid", "3103"])
    """)
    # the program: a daemon (sleep 3103) and a main part kept busy by the long sleep below
    (wd / "app.exe").rename(wd / "daemon.exe")
    (wd / "app.exe").write_text("#!/bin/sh\n./daemon.exe \"$@\"\nexec sleep 3104\n")
    (wd / "app.exe").chmod(0o755)
    p = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not (alive_with("sleep 3103") and alive_with("sleep 3104")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert alive_with("sleep 3103") and alive_with("sleep 3104"), "the run never started"
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
        assert not wait_gone("sleep 310", 10.0), "processes outlived the killed lassi-batch"
    finally:
        if p.poll() is None:
            p.kill()
    goes_on(tmp_path)


def test_fails_closed_without_bubblewrap(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SandboxUnavailable, match="bwrap.* not found on PATH") as e:
        make_runner(ContainerConfig(), "cpu")
    assert 'sandbox = "none"' in str(e.value)
    probs = check_platform(PlatformConfig(kind="cpu", compiler="/usr/bin/g++"), ContainerConfig())
    assert any("no sandbox for generated code" in p for p in probs)
    assert check_platform(PlatformConfig(kind="cpu", compiler="/usr/bin/g++"), ContainerConfig(sandbox="none")) == []
    assert make_runner(ContainerConfig(sandbox="none"), "cpu").name == "none"


def test_gpu_nodes_and_toolchain_folders_are_passed(tmp_path: Path, monkeypatch) -> None:
    """Argv only for the device nodes (no GPU here); the nvcc tree is visible read-only."""
    monkeypatch.setattr(bwrap, "gpu_nodes", lambda kind: ["/dev/nvidia0", "/dev/nvidiactl"] if kind == "cuda" else [])
    argv, _ = BwrapRunner("cuda").bwrap_argv(tmp_path, {"CUDA_HOME": "/usr/local/cuda"})
    pairs = list(zip(argv, argv[1:], argv[2:]))
    assert ("--dev-bind", "/dev/nvidia0", "/dev/nvidia0") in pairs and ("--dev-bind", "/dev/nvidiactl", "/dev/nvidiactl") in pairs
    assert ("--ro-bind", "/usr", "/usr") in pairs and ("--bind", str(tmp_path), str(tmp_path)) in pairs
    assert "--unshare-net" in argv or "--unshare-all" in argv
    assert "--die-with-parent" in argv and "--share-net" not in argv
    monkeypatch.undo()
    r = run_process(["/bin/sh", "-c", "ls /usr/local/cuda/bin/nvcc >/dev/null && echo seen; touch /usr/local/cuda/x"],
                    tmp_path, Limits(time_s=10), runner=BwrapRunner("cuda"))
    if Path("/usr/local/cuda/bin/nvcc").exists():
        assert r.stdout == "seen\n" and "Read-only file system" in r.stderr


def test_a_trial_records_a_hostile_candidate_as_failed_and_goes_on(setup) -> None:
    """The zero-shot candidate prints a passing result but leaves a setsid daemon: the trial
    archives it as a failed run with the reason, and carries on to the end."""
    import json

    from sumapp import code, reply

    from lassi_batch.core.config import parse_study
    from lassi_batch.pipeline.session import run_trial
    from lassi_batch.store.archive import TrialArchive

    tmp, data = setup
    tr = Path(data["llm"]["replay_path"])
    rows = [json.loads(ln) for ln in tr.read_text().splitlines()]
    daemon = code(6).replace("#include <cstdlib>", "#include <cstdlib>\n#include <unistd.h>").replace(
        "  printf(\"checksum", "  if (fork() == 0) { setsid(); execlp(\"sleep\", \"sleep\", \"3201\", (char*)0); }\n"
        "  printf(\"checksum", 1)
    rows[0]["reply"] = reply(daemon)
    tr.write_text("".join(json.dumps(r) + "\n" for r in rows))
    study = parse_study(data, Path("."))
    path, out = run_trial(study, study.apps[0], 0, system_text="test machine")
    assert out.status == "done"
    with TrialArchive.open(path, writable=False) as ar:
        cands = {c.key: c for c in ar.candidates()}
        bad = cands["s1/eval0"]
        assert bad.status == "run_failed" and not bad.passed
        assert "left 1 process running after it exited (ended by the sandbox)" in bad.stderr
        assert "PASS" in bad.stdout
        assert any(c.passed for c in ar.candidates())  # later candidates still ran and passed
        assert ar.status == "done"
    assert not alive_with("sleep 3201")


def test_the_sandbox_setting_is_typed_and_labelled(setup) -> None:
    from lassi_batch.core.config import parse_study
    from lassi_batch.core.errors import ConfigError

    _, data = setup
    assert parse_study(data, Path(".")).container.sandbox == "auto"
    chosen = parse_study({**data, "container": {"sandbox": "none"}}, Path("."))
    assert chosen.container.sandbox == "none"
    assert make_runner(chosen.container, "cpu").name == "none"
    with pytest.raises(ConfigError) as e:
        parse_study({**data, "container": {"sandbox": "chroot"}}, Path("."))
    assert "sandbox" in str(e.value) and "\n" not in str(e.value)


def test_a_run_cgroup_left_by_a_killed_process_is_removed_by_the_next_run() -> None:
    """A SIGKILLed trial cannot remove its run's cgroup; the next one made beside it does."""
    import subprocess
    import sys

    from lassi_batch.sandbox.limits import Limits, RunCgroup

    first = RunCgroup.create(Limits())
    if first is None:
        pytest.skip("this machine lets no cgroup v2 child be made (the rlimit path is tested above)")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = first.path.parent / f"lassi-run-{dead}-0"
    stale.mkdir()
    first.remove()
    second = RunCgroup.create(Limits())
    assert second is not None
    try:
        assert not stale.exists() and second.path.exists()
    finally:
        second.remove()


def test_bwrap_found_on_our_path_runs_though_the_run_path_lacks_it(tmp_path: Path, monkeypatch) -> None:
    """A bwrap unpacked under a prefix (a site module, a campaign's /tmp) is on lassi-batch's
    PATH but not on the PATH the run gets: the sandbox calls it by its absolute path."""
    import shutil

    prefix = tmp_path / "prefix" / "bin"
    prefix.mkdir(parents=True)
    shutil.copy2(shutil.which("bwrap"), prefix / "bwrap")
    monkeypatch.setenv("PATH", f"{prefix}:/usr/sbin:/usr/bin:/sbin:/bin")
    (tmp_path / "run").mkdir()
    r = run_process(["/bin/sh", "-c", "echo inside"], tmp_path / "run", Limits(time_s=10),
                    env={"PATH": "/usr/bin:/bin"}, runner=BwrapRunner("cpu"))
    assert r.ok and r.stdout == "inside\n", (r.error, r.stderr)
    launch = BwrapRunner("cpu").launch(["/bin/true"], tmp_path / "run", {"PATH": "/usr/bin:/bin"}, Limits(time_s=10))
    try:  # the chain names the copy by its absolute path, and checks that one before starting
        assert str(prefix / "bwrap") in launch.argv and "bwrap" not in launch.argv
        assert launch.tools[0] == str(prefix / "bwrap")
    finally:
        for fd in (*launch.pass_fds, launch.report_fd):
            os.close(fd)
        if launch.cgroup is not None:
            launch.cgroup.remove()

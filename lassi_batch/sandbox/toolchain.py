"""Build and run programs for a platform, each run in a fresh folder, inside a sandbox.

Knows nothing of LLMs or power. Generated code is treated as hostile: every build and run goes
through a runner (bubblewrap on the host, Apptainer in a container, or nothing at all only when
the study says so), under limits set before the program starts, with bounded output capture, a
scrubbed environment without secrets, and its whole process tree ended when it ends. A run that
the sandbox had to stop, or that left processes behind, is a failed run with the reason.
"""

from __future__ import annotations

import collections
import functools
import os
import select
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence
from typing import Protocol

from ..core.config import EXE_NAME, AppConfig, ContainerConfig, PlatformConfig
from ..core.errors import LassiError, ToolchainError
from ..core.secrets import looks_secret
from ..system.gpus import cuda_device
from . import work_counter
from .apptainer import ApptainerRunner, image_problem
from .bwrap import BwrapRunner, Launch, SandboxUnavailable, chown_tree
from .limits import Limits, prlimit_argv, user_process_count

__all__ = ["BuildResult", "BwrapRunner", "HostRunner", "Limits", "RunResult", "Runner", "SandboxUnavailable",
           "WorkdirError", "build", "check_platform", "make_runner", "prepare_workdir", "run_app", "run_process",
           "sandbox_env"]


@dataclass
class RunResult:
    """Outcome of one process (a build or a program run)."""

    argv: list[str]
    returncode: int | None  # None when it never started
    stdout: str
    stderr: str
    t_launch: float  # time.monotonic() just before exec
    t_exit: float  # time.monotonic() when the process was reaped
    wall_s: float
    timed_out: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    error: str = ""  # one-line reason when it failed to start or was killed (e.g. "time limit 10 s")
    cpu_s: float = 0.0  # user+sys CPU seconds of every process of the run (for the estimate meter)
    cpu_scope: str = ""  # what cpu_s covers: cgroup | pid-namespace | waited-for children
    peak_rss_mb: float = 0.0  # largest resident set seen (the run's processes, or the kernel's max)
    runner: str = ""  # how it was wrapped: bwrap, apptainer, none
    notes: list[str] = field(default_factory=list)  # warnings, e.g. no cgroup for the run
    stopped: str = ""  # why the sandbox stopped or failed it: time, memory, disk, leftovers, supervisor
    leftovers: int = 0  # processes still alive when the program exited (ended by the sandbox)
    workdir: str = ""  # the fresh folder it ran in (removed afterwards)
    work_counts: dict[str, int] | None = None  # CUPTI counts from a counting run

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.stopped


@dataclass
class BuildResult:
    ok: bool
    exe: str  # path of the built program (inside the work folder)
    log: RunResult
    workdir: str
    files: dict[str, str] = field(default_factory=dict)  # the sources that were built (name -> text)


class WorkdirError(LassiError):
    """A work folder cannot be prepared (not empty, unsafe file name, missing source)."""


# ---------------------------------------------------------------- runners


class Runner(Protocol):
    """Turns one command into a started-ready launch (on the host, in bubblewrap, in a container)."""

    name: str

    def launch(self, argv: list[str], workdir: Path, env: dict[str, str], limits: Limits,
               ro_files: Sequence[str | Path] = ()) -> Launch:
        ...


class HostRunner:
    """No isolation at all: only for studies that say `sandbox = "none"` (labelled "none").

    Limits still hold (rlimits before exec, the process group killed at the end), but the
    program sees the host: files, network, other processes. A setsid daemon can outlive it.
    """

    name = "none"
    isolated = False

    def __init__(self) -> None:
        self.warnings = ["sandbox = none: generated code runs on the host without isolation"]

    def launch(self, argv: list[str], workdir: Path, env: dict[str, str], limits: Limits,
               ro_files: Sequence[str | Path] = ()) -> Launch:
        nproc = user_process_count(os.getuid()) + limits.processes
        return Launch(argv=[*prlimit_argv(limits, nproc), *argv], env=dict(env), tools=("prlimit",))

    def wrap(self, argv: list[str], workdir: Path, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        return list(argv), dict(env)


def make_runner(container: ContainerConfig, platform_kind: str, hide: Sequence[str | Path] = (),
                gpu_only: Sequence[str] | None = None) -> Runner:
    """The runner a study's container settings ask for; fails closed where no isolation exists.

    `[container] sandbox` = auto | bwrap | none. Inside Apptainer the container is the sandbox;
    on the host it is bubblewrap, and without a working bubblewrap nothing runs unless the study
    chose "none" explicitly. `gpu_only`: the device nodes of the one GPU bubblewrap passes (None: all).
    """
    kind = getattr(container, "sandbox", "auto") or "auto"
    if container.runtime == "apptainer":
        return ApptainerRunner(container.image, platform_kind, list(container.binds))
    if kind == "none":
        return HostRunner()
    runner = BwrapRunner(platform_kind, binds=list(container.binds), hide=hide, gpu_only=gpu_only)
    why = runner.check()
    if why:
        raise SandboxUnavailable(f"no sandbox for generated code: {why}; install bubblewrap, or set "
                                 "[container] sandbox = \"none\" to run it unisolated")
    return runner


def sandbox_problem(container: ContainerConfig) -> str:
    """Why generated code cannot run isolated here ('' when it can, or when the study opted out)."""
    if container.runtime == "apptainer" or (getattr(container, "sandbox", "auto") or "auto") == "none":
        return ""
    return BwrapRunner().check()


def describe_runner(runner: Runner) -> str:
    """The label archives and summaries carry: bwrap, apptainer or none."""
    return getattr(runner, "name", type(runner).__name__)


@functools.lru_cache(maxsize=8)
def _default_runner(platform_kind: str = "cpu") -> Runner:
    return make_runner(ContainerConfig(), platform_kind)


# ---------------------------------------------------------------- environment

_PASS_NAMES = {
    "PATH", "LANG", "LANGUAGE", "LD_LIBRARY_PATH", "LIBRARY_PATH", "CPATH", "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH", "CUDA_HOME", "CUDA_PATH", "ROCM_PATH", "ROCM_HOME", "HIP_PATH", "HIP_PLATFORM",
    "HIP_CLANG_PATH", "HSA_PATH", "DEVICE_LIB_PATH", "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "TZ",
}
_PASS_PREFIXES = ("LC_", "OMP_", "GOMP_", "KMP_")



def sandbox_env(platform_kind: str, workdir: Path, device: str = "", extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for an untrusted program: an allowlist of the parent's, never a secret.

    HOME and TMPDIR point into the work folder so that stray writes stay there.
    """
    workdir = Path(workdir)
    env = {
        k: v for k, v in os.environ.items()
        if (k in _PASS_NAMES or k.startswith(_PASS_PREFIXES)) and not looks_secret(k)
    }
    env.setdefault("PATH", os.defpath)
    env.setdefault("LANG", "C.UTF-8")
    tmp = workdir / ".tmp"
    if workdir.is_dir():
        tmp.mkdir(exist_ok=True)
    env["HOME"] = str(workdir)
    env["TMPDIR"] = str(tmp)
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # CUDA indices then match NVML / PCI order
    if platform_kind == "hip":
        env.setdefault("HIP_PLATFORM", "amd")  # without it, hipcc may pick nvcc
    if device:
        if platform_kind == "cuda":
            env["CUDA_VISIBLE_DEVICES"] = cuda_device(device)
        elif platform_kind == "hip":
            env["HIP_VISIBLE_DEVICES"] = device  # indexes within any ROCR_VISIBLE_DEVICES set by the scheduler
    for k, v in (extra or {}).items():
        if not looks_secret(k):
            env[k] = str(v)
    return env


# ---------------------------------------------------------------- running a process

_PAGE = os.sysconf("SC_PAGE_SIZE")
WATCH_EVERY_S = 0.25  # memory watchdog (only where no cgroup bounds memory) and disk checks


class _Capture:
    """Keeps the first and last bytes of a stream, counts the rest."""

    def __init__(self, limit: int):
        self.head_limit = max(limit, 0) // 2
        self.tail_limit = max(limit, 0) - self.head_limit
        self.head = bytearray()
        self.tail: collections.deque[bytes] = collections.deque()
        self.tail_size = 0
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if not chunk or self.tail_limit == 0:
            return
        self.tail.append(chunk)
        self.tail_size += len(chunk)
        while self.tail and self.tail_size - len(self.tail[0]) >= self.tail_limit:
            self.tail_size -= len(self.tail.popleft())

    def text(self) -> tuple[str, bool]:
        tail = b"".join(self.tail)[-self.tail_limit:] if self.tail_limit else b""
        kept = len(self.head) + len(tail)
        dropped = self.total - kept
        head = self.head.decode("utf-8", "replace")
        if dropped <= 0:
            return head + tail.decode("utf-8", "replace"), False
        return f"{head}\n[... {dropped} bytes dropped ...]\n{tail.decode('utf-8', 'replace')}", True


def _pump(fd: int, cap: _Capture, stop: threading.Event) -> None:
    """Drain one pipe until EOF, or until told to stop (a process that escaped the group holds it)."""
    poller = select.poll()  # not select(): fds above 1024 are common in a long-lived worker
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    while True:
        if poller.poll(100):
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            cap.feed(chunk)
        elif stop.is_set():
            return


def _descendants(pid: int) -> list[int]:
    """pid and every process below it (from /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo and len(out) < 100_000:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except (OSError, ValueError):
            continue
    return out


def _group_alive(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group `pgid`, from /proc/<pid>/stat."""
    out = []
    try:
        names = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return out
    for name in names:
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                fields = fh.read().rpartition(b")")[2].split()
            if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
                out.append(int(name))
        except (OSError, IndexError, ValueError):
            continue
    return out


def _rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as fh:
                total += int(fh.read().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            continue
    return total


def tree_bytes(root: Path, cap: int) -> int:
    """Bytes allocated under `root` (stops counting past `cap`; symlinks not followed)."""
    total, todo = 0, [str(root)]
    while todo and total <= cap:
        try:
            it = os.scandir(todo.pop())
        except OSError:
            continue
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                total += st.st_blocks * 512
                if e.is_dir(follow_symlinks=False):
                    todo.append(e.path)
    return total


def _kill_all(pid: int, launch: Launch) -> None:
    """SIGKILL the run: its cgroup, the sandbox's outer process (the namespace follows), its group."""
    if launch.cgroup is not None:
        launch.cgroup.kill()
    for fn in (os.kill, os.killpg):
        try:
            fn(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _fmt(x: float) -> str:
    return f"{x:g}"


def _program_problem(name: str, cwd: Path, path_var: str) -> str:
    """Why `name` cannot be executed ('' when it can), resolved like exec would."""
    if "/" in name:
        p = Path(name) if os.path.isabs(name) else cwd / name
        if not os.path.isfile(p):  # also False when a folder on the way is not readable
            return f"program not found: {name}"
        if not os.access(p, os.X_OK):
            return f"program not executable: {name}"
        return ""
    if shutil.which(name, path=path_var) is None:
        return f"'{name}' not found on PATH"
    return ""


def _failed(argv: list[str], error: str, runner: str = "", notes: list[str] | None = None) -> RunResult:
    t = time.monotonic()
    return RunResult(argv=list(argv), returncode=None, stdout="", stderr="", t_launch=t, t_exit=t, wall_s=0.0,
                     error=error, runner=runner, notes=list(notes or []))


def _signal_name(n: int) -> str:
    try:
        return signal.Signals(n).name
    except ValueError:
        return str(n)


def _read_report(text: str) -> tuple[int | None, int | None, str]:
    """(rc, leftovers, problem) from the report script's line(s)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return None, None, ""
    if len(lines) > 1:
        return None, None, "the sandbox's report was forged (more than one report line)"
    try:
        fields = dict(kv.split("=", 1) for kv in lines[0].split())
        return int(fields["rc"]), int(fields["left"]), ""
    except (KeyError, ValueError):
        return None, None, "the sandbox's report was unreadable"


def run_process(argv: list[str], cwd: Path, limits: Limits, env: dict[str, str] | None = None,
                runner: Runner | None = None, stdin: str | None = None,
                ro_files: Sequence[str | Path] = ()) -> RunResult:
    """Run argv in cwd (its only writable folder) under limits; never raises for a bad program.

    A missing sandbox raises SandboxUnavailable: generated code never runs unisolated by accident.
    t_launch/t_exit bracket the run as tightly as Python allows: the exit time is taken by a
    thread blocked in wait4, not by polling.
    """
    cwd = Path(cwd)
    argv = [str(a) for a in argv]
    runner = runner if runner is not None else _default_runner()
    notes = list(getattr(runner, "warnings", []))
    name = describe_runner(runner)
    if not argv:
        return _failed(argv, "empty command", name, notes)
    env = sandbox_env("cpu", cwd) if env is None else dict(env)
    if not isinstance(runner, ApptainerRunner):
        problem = _program_problem(argv[0], cwd, env.get("PATH", os.defpath))
        if problem:
            return _failed(argv, problem, name, notes)
    launch = runner.launch(argv, cwd, env, limits, ro_files)
    notes += launch.notes
    problem = next((p for t in launch.tools if (p := _program_problem(t, cwd, launch.env.get("PATH", os.defpath)))), "")
    if problem:
        _close_launch(launch)
        return _failed(argv, problem, name, notes)
    if launch.uid is not None:
        chown_tree(cwd, launch.uid)

    t_launch = time.monotonic()
    try:
        proc = subprocess.Popen(
            launch.argv, cwd=cwd, env=launch.env, start_new_session=True, close_fds=True, pass_fds=launch.pass_fds,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
    except OSError as e:
        _close_launch(launch)
        return _failed(argv, f"cannot start {launch.argv[0]}: {e.strerror or e}", name, notes)
    for fd in launch.pass_fds:  # the sandbox holds the write end now; EOF comes when it is gone
        os.close(fd)

    done = threading.Event()
    reaped: dict[str, object] = {}

    def reap() -> None:
        try:
            _, status, ru = os.wait4(proc.pid, 0)
            reaped["t_exit"] = time.monotonic()
            reaped["ru"] = ru
            proc.returncode = os.waitstatus_to_exitcode(status)
        except ChildProcessError:  # reaped elsewhere (a foreign SIGCHLD handler): exit status lost
            reaped["t_exit"] = time.monotonic()
            proc.returncode = proc.returncode if proc.returncode is not None else -1
        finally:
            done.set()

    caps = (_Capture(limits.max_output_bytes), _Capture(limits.max_output_bytes))
    report = _Capture(4096)
    stop = threading.Event()
    assert proc.stdout is not None and proc.stderr is not None
    threads = [threading.Thread(target=reap, daemon=True)]
    threads += [threading.Thread(target=_pump, args=(s.fileno(), c, stop), daemon=True)
                for s, c in zip((proc.stdout, proc.stderr), caps)]
    if launch.report_fd >= 0:
        threads.append(threading.Thread(target=_pump, args=(launch.report_fd, report, stop), daemon=True))
    if stdin is not None:
        threads.append(threading.Thread(target=_feed_stdin, args=(proc, stdin), daemon=True))
    for t in threads:
        t.start()

    cg = launch.cgroup
    watch_memory = limits.memory_mb > 0 and not (cg is not None and cg.limits_memory)
    disk_cap = limits.disk_mb << 20 if limits.disk_mb > 0 else 0
    error, stopped, timed_out, peak = "", "", False, 0
    deadline = t_launch + limits.time_s
    try:
        while not done.wait(timeout=max(0.0, min(WATCH_EVERY_S, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                error, stopped, timed_out = f"killed: time limit {_fmt(limits.time_s)} s", "time", True
                break
            if watch_memory:
                rss = _rss_bytes(cg.pids() if cg is not None else _descendants(proc.pid))
                peak = max(peak, rss)
                if rss > limits.memory_mb << 20:
                    error, stopped = f"killed: memory limit {limits.memory_mb} MB", "memory"
                    break
            if disk_cap and tree_bytes(cwd, disk_cap) > disk_cap:
                error, stopped = f"killed: disk limit {limits.disk_mb} MB in its folder", "disk"
                break
    finally:  # also on Ctrl-C: nothing of the run may outlive this call
        if not done.is_set():
            _kill_all(proc.pid, launch)
        done.wait()
        # the "none" runner has no sandbox report: the group's survivors are counted here (not for
        # apptainer, whose helpers, such as a FUSE mount, may outlive the program on the host)
        group_left = (len(_group_alive(proc.pid)) if isinstance(runner, HostRunner) and launch.report_fd < 0
                      and not (error or stopped) else 0)
        _kill_all(proc.pid, launch)  # leftovers in the cgroup or the group (the "none" runner)
    for t in threads[1:]:
        t.join(timeout=2.0)
    stop.set()
    for t in threads[1:]:
        t.join(timeout=1.0)
    for s in (proc.stdout, proc.stderr, proc.stdin):
        if s is not None:
            try:
                s.close()
            except OSError:
                pass
    if launch.report_fd >= 0:
        os.close(launch.report_fd)

    t_exit = float(reaped.get("t_exit", time.monotonic()))  # type: ignore[arg-type]
    ru = reaped.get("ru")
    out, out_trunc = caps[0].text()
    err, err_trunc = caps[1].text()
    cpu_s = (ru.ru_utime + ru.ru_stime) if ru else 0.0  # type: ignore[attr-defined]
    scope = "pid-namespace" if isinstance(runner, BwrapRunner) else "waited-for children"
    if cg is not None:
        events = cg.events()
        cg_cpu = cg.cpu_s()
        if cg_cpu is not None:
            cpu_s, scope = max(cpu_s, cg_cpu), "cgroup"
        cg.remove()
        if not error and events.get("memory.oom_kill", 0) > 0:
            error, stopped = f"killed: memory limit {limits.memory_mb} MB", "memory"
        if not error and events.get("pids.max", 0) > 0:
            error, stopped = f"stopped: process limit {limits.processes} reached", "processes"
    rc, left = proc.returncode, 0
    if group_left and not error:
        left = group_left
        error, stopped = f"left {left} process{'es' if left > 1 else ''} running after it exited " \
                         "(ended by the runner)", "leftovers"
    if launch.report_fd >= 0 and not error:
        r_rc, r_left, forged = _read_report(report.text()[0])
        if forged:
            error, stopped = forged, "supervisor"
        elif r_rc is None:
            bw = next((ln for ln in err.splitlines() if ln.startswith("bwrap:")), "")
            if bw:
                error, stopped = f"sandbox failed: {bw[len('bwrap:'):].strip()}", "sandbox"
            else:
                error, stopped = "the program ended its sandbox supervisor", "supervisor"
        elif r_left:
            left = r_left
            error, stopped = f"left {left} process{'es' if left > 1 else ''} running after it exited " \
                             "(ended by the sandbox)", "leftovers"
    if rc is not None and isinstance(runner, BwrapRunner) and 128 < rc < 128 + 65:
        rc = -(rc - 128)  # the shell's and bwrap's way of passing on a signal death
    if not error and rc == -signal.SIGXFSZ:
        error, stopped = f"stopped: file size limit {limits.file_mb} MB", "disk"
    elif not error and rc is not None and rc < 0:
        error = f"killed by signal {_signal_name(-rc)}"
    return RunResult(
        argv=argv, returncode=rc, stdout=out, stderr=err, t_launch=t_launch, t_exit=t_exit,
        wall_s=t_exit - t_launch, timed_out=timed_out, stdout_truncated=out_trunc, stderr_truncated=err_trunc,
        error=error, cpu_s=cpu_s, cpu_scope=scope,
        peak_rss_mb=max(peak / 2**20, ru.ru_maxrss / 1024 if ru else 0.0),  # type: ignore[attr-defined]
        runner=name, notes=notes, stopped=stopped, leftovers=left,
    )


def _close_launch(launch: Launch) -> None:
    for fd in (*launch.pass_fds, launch.report_fd):
        if fd >= 0:
            os.close(fd)
    if launch.cgroup is not None:
        launch.cgroup.remove()


def _feed_stdin(proc: subprocess.Popen, data: str) -> None:
    try:
        assert proc.stdin is not None
        proc.stdin.write(data.encode())
        proc.stdin.close()
    except (OSError, ValueError):
        pass


# ---------------------------------------------------------------- work folders, build, run


def _safe_rel(name: str) -> bool:
    p = Path(name)
    return bool(name) and not p.is_absolute() and ".." not in p.parts and name not in (".",) and "\0" not in name


def prepare_workdir(app: AppConfig, platform: str, dest: Path, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Make `dest` (new or empty) hold the app's files for `platform`, with `overrides` written over.

    Never deletes anything. Returns the rewritable sources as they now are (name -> text).
    """
    pb = app.build_for(platform)
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise WorkdirError(f"work folder {dest} exists and is not empty")
    for name in overrides or {}:
        if not _safe_rel(name):
            raise WorkdirError(f"refusing to write '{name}': not a plain relative path")
        if name not in pb.files:
            raise WorkdirError(f"refusing to write '{name}': not one of the app's rewritable files ({', '.join(pb.files)})")
    root = Path(app.path).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    for name in [*pb.files, *pb.extra_files]:
        if not _safe_rel(name):
            raise WorkdirError(f"app '{app.name}': file '{name}' is not a plain relative path")
        src = (root / name).resolve()
        if not src.is_relative_to(root):
            raise WorkdirError(f"app '{app.name}': file '{name}' points outside the app folder")
        if not src.is_file():
            raise WorkdirError(f"app '{app.name}': file '{name}' not found in {root}")
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name)
    for name, text in (overrides or {}).items():
        (dest / name).write_text(text, encoding="utf-8")
    return {name: (dest / name).read_bytes().decode("utf-8", "replace") for name in pb.files}


def build_argv(app: AppConfig, platform: PlatformConfig) -> list[str]:
    """The build command line, rendered from the app's template and split like a shell would."""
    pb = app.build_for(platform.kind)
    line = (pb.build.replace("{compiler}", platform.compiler_line)
            .replace("{sources}", " ".join(shlex.quote(f) for f in pb.files))
            .replace("{exe}", EXE_NAME))
    try:
        argv = shlex.split(line)
    except ValueError as e:
        raise ToolchainError(f"app '{app.name}': cannot parse build command {line!r}: {e}") from None
    if not argv:
        raise ToolchainError(f"app '{app.name}': empty build command")
    return argv


def build(app: AppConfig, platform: PlatformConfig, workdir: Path, runner: Runner | None = None,
          time_s: float = 600.0) -> BuildResult:
    """Compile the sources in `workdir` (the build's only writable folder); a failed compile is a
    result, a missing compiler an error."""
    workdir = Path(workdir)
    argv = build_argv(app, platform)
    runner = runner if runner is not None else _default_runner(platform.kind)
    env = sandbox_env(platform.kind, workdir, platform.device)
    if not isinstance(runner, ApptainerRunner) and shutil.which(argv[0], path=env.get("PATH")) is None:
        raise ToolchainError(f"compiler '{argv[0]}' not found on PATH")
    exe = workdir / EXE_NAME
    if exe.exists():
        exe.unlink()  # a stale program must not pass for a fresh build
    limits = Limits(time_s=time_s, memory_mb=max(16384, app.memory_limit_mb), tmp_mb=4096)
    log = run_process(argv, workdir, limits, env=env, runner=runner)
    if log.returncode is None:
        raise ToolchainError(f"cannot run the build: {log.error}")
    files = {f: _read_text(workdir / f) for f in app.build_for(platform.kind).files}
    return BuildResult(ok=log.ok and exe.is_file() and not exe.is_symlink(), exe=str(exe), log=log,
                       workdir=str(workdir), files={k: v for k, v in files.items() if v is not None})


def _read_text(p: Path) -> str | None:
    """A file the build left, without following a link it may have planted."""
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        return fh.read(8 << 20).decode("utf-8", "replace")


def fresh_run_folder(build_dir: Path) -> Path:
    """A new folder beside `build_dir` holding a copy of it: what one run may see and change.

    Regular files, folders and symlinks (as links) are copied; anything else a build may have
    planted (FIFOs, sockets, devices) is left out. The build folder itself is never written by a run.
    """
    build_dir = Path(build_dir)
    dest = Path(tempfile.mkdtemp(prefix=f"{build_dir.name}.run-", dir=build_dir.parent))
    todo = [(build_dir, dest)]
    while todo:
        src, dst = todo.pop()
        with os.scandir(src) as it:
            for e in it:
                if e.name == ".tmp" and src == build_dir:
                    continue
                target = dst / e.name
                if e.is_symlink():
                    os.symlink(os.readlink(e.path), target)
                elif e.is_dir(follow_symlinks=False):
                    target.mkdir()
                    todo.append((Path(e.path), target))
                elif e.is_file(follow_symlinks=False):
                    shutil.copy2(e.path, target, follow_symlinks=False)
    return dest


def app_limits(app: AppConfig, platform: PlatformConfig) -> Limits:
    """A run's limits: the app's time and memory; address space bounded for CPU programs only."""
    return Limits(time_s=app.time_limit_s, memory_mb=app.memory_limit_mb,
                  address_space_mb=app.memory_limit_mb if platform.kind == "cpu" else 0)


def run_app(app: AppConfig, platform: PlatformConfig, workdir: Path, args: list[str],
            runner: Runner | None = None, env_extra: dict[str, str] | None = None, *,
            count_work: Path | None = None, limits: Limits | None = None,
            run_dir: Path | None = None) -> RunResult:
    """Run the program built in `workdir` once, in a fresh copy of that folder, then remove the copy.

    Nothing passes from one run to the next: each gets its own folder, /tmp and /dev/shm.
    `count_work`: the CUPTI counter library, bound read-only; its counts land in `work_counts`.
    `limits`: instead of the app's (see app_limits).
    `run_dir`: a run folder the caller made (`fresh_run_folder`) and keeps: the run happens there
    and the folder stays, so that what the run left in it can be read, or a second run can find it.
    """
    workdir = Path(workdir)
    runner = runner if runner is not None else _default_runner(platform.kind)
    keep = run_dir is not None
    run_dir = Path(run_dir) if run_dir is not None else fresh_run_folder(workdir)
    try:
        env = sandbox_env(platform.kind, run_dir, platform.device, extra=env_extra)
        ro: list[Path] = []
        if count_work is not None:
            env.update(work_counter.run_env(count_work, run_dir))
            ro.append(Path(count_work))
        r = run_process([f"./{EXE_NAME}", *map(str, args)], run_dir, limits or app_limits(app, platform), env=env,
                        runner=runner, ro_files=ro)
        r.workdir = str(run_dir)
        if count_work is not None:
            r.work_counts = work_counter.take_counts(run_dir)
        return r
    finally:
        if not keep:
            shutil.rmtree(run_dir, ignore_errors=True)


def check_platform(platform: PlatformConfig, container: ContainerConfig | None = None) -> list[str]:
    """Problems that stop this machine from building and running for `platform` ([] when fine)."""
    problems: list[str] = []
    try:
        argv = shlex.split(platform.compiler_line)
    except ValueError as e:
        return [f"cannot parse compiler line {platform.compiler_line!r}: {e}"]
    if not argv:
        return ["empty compiler line"]
    if container is not None:
        why = sandbox_problem(container)
        if why:
            problems.append(f"no sandbox for generated code: {why} (install bubblewrap, or set "
                            "[container] sandbox = \"none\" to run it unisolated)")
    if container is not None and container.runtime == "apptainer":
        if not shutil.which("apptainer"):
            problems.append("container runtime 'apptainer' not found on PATH")
        why = image_problem(container.image)
        if why:
            problems.append(f"container {why}")
    elif not shutil.which(argv[0]):
        problems.append(f"compiler '{argv[0]}' not found on PATH")
    if platform.kind == "cuda" and not any(Path("/dev").glob("nvidia[0-9]*")):
        problems.append("no NVIDIA GPU device (/dev/nvidia0 missing)")
    if platform.kind == "hip" and not Path("/dev/kfd").exists():
        problems.append("no AMD GPU device (/dev/kfd missing)")
    return problems

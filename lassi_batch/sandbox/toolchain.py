"""Build and run programs for a platform in a fresh work folder, under limits.

Knows nothing of LLMs or power. Generated code is treated as hostile: wall-time limit that kills
the whole process group, memory limit, bounded output capture, no network where the OS allows,
and a scrubbed environment without secrets.
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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..core.config import EXE_NAME, AppConfig, ContainerConfig, PlatformConfig
from ..core.errors import LassiError, ToolchainError
from ..core.secrets import looks_secret
from ..system.gpus import cuda_device
from .apptainer import ApptainerRunner


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
    cpu_s: float = 0.0  # user+sys CPU seconds of the child tree (for the estimate meter)
    peak_rss_mb: float = 0.0  # largest resident set seen (process group sum, or the kernel's max)
    runner: str = ""  # how it was wrapped: host, host+netns, apptainer
    notes: list[str] = field(default_factory=list)  # warnings, e.g. network isolation unavailable

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


@dataclass
class BuildResult:
    ok: bool
    exe: str  # path of the built program (inside the work folder)
    log: RunResult
    workdir: str
    files: dict[str, str] = field(default_factory=dict)  # the sources that were built (name -> text)


class WorkdirError(LassiError):
    """A work folder cannot be prepared (not empty, unsafe file name, missing source)."""


@dataclass
class Limits:
    """Resource bounds of one process tree."""

    time_s: float = 120.0
    memory_mb: int = 8192  # resident memory of the whole process group; 0 = unlimited
    max_output_bytes: int = 4 << 20  # per stream kept (head and tail); the rest is drained and dropped
    address_space_mb: int = 0  # optional RLIMIT_AS on the child (CPU programs only: GPU runtimes reserve huge VA)


# ---------------------------------------------------------------- runners


class Runner(Protocol):
    """Wraps an argv for execution (on the host, or inside a container)."""

    name: str

    def wrap(self, argv: list[str], workdir: Path, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        ...


@functools.lru_cache(maxsize=None)
def network_isolation() -> tuple[tuple[str, ...] | None, str]:
    """Find an `unshare` prefix that gives a child its own, empty network namespace.

    Returns (prefix, how) or (None, why not). Verified by comparing namespace ids, since a
    prefix that merely exits 0 proves nothing. Cached: the answer does not change in a process.
    """
    if not shutil.which("unshare"):
        return None, "unshare not found on PATH"
    try:
        ours = os.readlink("/proc/self/ns/net")
    except OSError:
        return None, "no /proc/self/ns/net (not Linux?)"
    candidates = [("unshare", "-n"), ("unshare", "-rn")] if os.geteuid() == 0 else [("unshare", "-rn")]
    why = ""
    for prefix in candidates:
        try:
            p = subprocess.run([*prefix, "readlink", "/proc/self/ns/net"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as e:
            why = f"{' '.join(prefix)}: {e}"
            continue
        if p.returncode == 0 and p.stdout.strip() and p.stdout.strip() != ours:
            return prefix, " ".join(prefix)
        why = f"{' '.join(prefix)}: {(p.stderr.strip().splitlines() or ['failed'])[-1]}"
    return None, why


class HostRunner:
    """Runs on the host; with deny_network, inside a fresh network namespace (loopback down)."""

    def __init__(self, deny_network: bool = True):
        self.deny_network = deny_network
        self.warnings: list[str] = []
        self.prefix: list[str] = []
        if deny_network:
            prefix, how = network_isolation()
            if prefix is None:
                self.warnings.append(f"network isolation unavailable ({how}); programs keep the host network")
            else:
                self.prefix = list(prefix)
        self.name = "host+netns" if self.prefix else "host"

    def wrap(self, argv: list[str], workdir: Path, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        return [*self.prefix, *argv], dict(env)


def make_runner(container: ContainerConfig, platform_kind: str) -> Runner:
    """The runner a study's container settings ask for."""
    if container.runtime == "apptainer":
        return ApptainerRunner(container.image, platform_kind, list(container.binds))
    return HostRunner()


@functools.lru_cache(maxsize=1)
def _default_runner() -> HostRunner:
    return HostRunner()


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
_GRACE_S = 1.0  # SIGTERM -> SIGKILL


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


def _group_rss(pgid: int) -> int:
    """Resident bytes of every process in a process group (from /proc/<pid>/stat)."""
    total = 0
    try:
        entries = os.scandir("/proc")
    except OSError:
        return 0
    with entries:
        for e in entries:
            if not e.name.isdigit():
                continue
            try:
                with open(f"/proc/{e.name}/stat", "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            fields = data.rpartition(b")")[2].split()
            if len(fields) > 21 and int(fields[2]) == pgid:
                total += int(fields[21]) * _PAGE
    return total


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
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


def run_process(argv: list[str], cwd: Path, limits: Limits, env: dict[str, str] | None = None,
                runner: Runner | None = None, stdin: str | None = None) -> RunResult:
    """Run argv in cwd under limits; never raises for a program that fails, hangs or floods.

    The child leads its own session, so a time or memory kill reaches every descendant that
    stayed in the group. t_launch/t_exit bracket the child's life as tightly as Python allows:
    the exit time is taken by a thread blocked in wait4, not by polling.
    """
    cwd = Path(cwd)
    argv = [str(a) for a in argv]
    runner = runner if runner is not None else _default_runner()
    notes = list(getattr(runner, "warnings", []))
    name = getattr(runner, "name", type(runner).__name__)
    if not argv:
        return _failed(argv, "empty command", name, notes)
    env = sandbox_env("cpu", cwd) if env is None else dict(env)
    if isinstance(runner, HostRunner):
        problem = _program_problem(argv[0], cwd, env.get("PATH", os.defpath))
        if problem:
            return _failed(argv, problem, name, notes)
    full_argv, full_env = runner.wrap(argv, cwd, env)
    problem = _program_problem(full_argv[0], cwd, full_env.get("PATH", os.defpath))
    if problem:
        return _failed(argv, problem, name, notes)

    t_launch = time.monotonic()
    try:
        proc = subprocess.Popen(
            full_argv, cwd=cwd, env=full_env, start_new_session=True, close_fds=True,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
    except OSError as e:
        return _failed(argv, f"cannot start {full_argv[0]}: {e.strerror or e}", name, notes)
    pgid = proc.pid  # start_new_session: the child leads its own group
    if limits.address_space_mb > 0:
        try:  # best effort, set just after exec; the RSS watchdog is the real guard
            import resource

            n = limits.address_space_mb << 20
            resource.prlimit(proc.pid, resource.RLIMIT_AS, (n, n))
        except (OSError, ValueError):
            notes.append("could not set RLIMIT_AS")

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
    stop = threading.Event()
    assert proc.stdout is not None and proc.stderr is not None
    threads = [threading.Thread(target=reap, daemon=True)]
    threads += [threading.Thread(target=_pump, args=(s.fileno(), c, stop), daemon=True)
                for s, c in zip((proc.stdout, proc.stderr), caps)]
    if stdin is not None:
        threads.append(threading.Thread(target=_feed_stdin, args=(proc, stdin), daemon=True))
    for t in threads:
        t.start()

    error, timed_out, peak = "", False, 0
    deadline = t_launch + limits.time_s
    try:
        while not done.wait(timeout=max(0.0, min(0.05 if time.monotonic() - t_launch < 2 else 0.1,
                                                 deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                error, timed_out = f"killed: time limit {_fmt(limits.time_s)} s", True
                _signal_group(pgid, signal.SIGTERM)
                if not done.wait(_GRACE_S):
                    _signal_group(pgid, signal.SIGKILL)
                break
            rss = _group_rss(pgid)
            peak = max(peak, rss)
            if limits.memory_mb > 0 and rss > limits.memory_mb << 20:
                error = f"killed: memory limit {limits.memory_mb} MB"
                _signal_group(pgid, signal.SIGKILL)
                break
        done.wait()
    finally:  # also on Ctrl-C: the child sits in its own session and would not see SIGINT
        _signal_group(pgid, signal.SIGKILL)  # and leftovers that outlived the leader
    for t in threads[1:3]:
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

    t_exit = float(reaped.get("t_exit", time.monotonic()))  # type: ignore[arg-type]
    ru = reaped.get("ru")
    out, out_trunc = caps[0].text()
    err, err_trunc = caps[1].text()
    if not error and proc.returncode is not None and proc.returncode < 0:
        try:
            error = f"killed by signal {signal.Signals(-proc.returncode).name}"
        except ValueError:
            error = f"killed by signal {-proc.returncode}"
    return RunResult(
        argv=argv, returncode=proc.returncode, stdout=out, stderr=err, t_launch=t_launch, t_exit=t_exit,
        wall_s=t_exit - t_launch, timed_out=timed_out, stdout_truncated=out_trunc, stderr_truncated=err_trunc,
        error=error, cpu_s=(ru.ru_utime + ru.ru_stime) if ru else 0.0,  # type: ignore[attr-defined]
        peak_rss_mb=max(peak / 2**20, ru.ru_maxrss / 1024 if ru else 0.0),  # type: ignore[attr-defined]
        runner=name, notes=notes,
    )


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
    """Compile the sources in `workdir`; a failed compile is a result, a missing compiler an error."""
    workdir = Path(workdir)
    argv = build_argv(app, platform)
    runner = runner if runner is not None else _default_runner()
    env = sandbox_env(platform.kind, workdir, platform.device)
    if isinstance(runner, HostRunner) and shutil.which(argv[0], path=env.get("PATH")) is None:
        raise ToolchainError(f"compiler '{argv[0]}' not found on PATH")
    exe = workdir / EXE_NAME
    if exe.exists():
        exe.unlink()  # a stale program must not pass for a fresh build
    log = run_process(argv, workdir, Limits(time_s=time_s, memory_mb=max(16384, app.memory_limit_mb)),
                      env=env, runner=runner)
    if log.returncode is None:
        raise ToolchainError(f"cannot run the build: {log.error}")
    files = {f: (workdir / f).read_bytes().decode("utf-8", "replace")
             for f in app.build_for(platform.kind).files if (workdir / f).is_file()}
    return BuildResult(ok=log.ok and exe.is_file(), exe=str(exe), log=log, workdir=str(workdir), files=files)


def run_app(app: AppConfig, platform: PlatformConfig, workdir: Path, args: list[str],
            runner: Runner | None = None, env_extra: dict[str, str] | None = None) -> RunResult:
    """Run the built program with the app's limits in the sandbox environment."""
    workdir = Path(workdir)
    limits = Limits(time_s=app.time_limit_s, memory_mb=app.memory_limit_mb)
    env = sandbox_env(platform.kind, workdir, platform.device, extra=env_extra)
    return run_process([f"./{EXE_NAME}", *map(str, args)], workdir, limits, env=env, runner=runner)


def check_platform(platform: PlatformConfig, container: ContainerConfig | None = None) -> list[str]:
    """Problems that stop this machine from building and running for `platform` ([] when fine)."""
    problems: list[str] = []
    try:
        argv = shlex.split(platform.compiler_line)
    except ValueError as e:
        return [f"cannot parse compiler line {platform.compiler_line!r}: {e}"]
    if not argv:
        return ["empty compiler line"]
    if container is not None and container.runtime == "apptainer":
        if not shutil.which("apptainer"):
            problems.append("container runtime 'apptainer' not found on PATH")
        if "://" not in container.image and not Path(container.image).expanduser().is_file():
            problems.append(f"container image not found: {container.image}")
    elif not shutil.which(argv[0]):
        problems.append(f"compiler '{argv[0]}' not found on PATH")
    if platform.kind == "cuda" and not any(Path("/dev").glob("nvidia[0-9]*")):
        problems.append("no NVIDIA GPU device (/dev/nvidia0 missing)")
    if platform.kind == "hip" and not Path("/dev/kfd").exists():
        problems.append("no AMD GPU device (/dev/kfd missing)")
    return problems

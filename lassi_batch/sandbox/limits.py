"""Resource bounds of one sandboxed process tree, applied before the program starts.

Two layers, because neither is available everywhere:

- rlimits through util-linux `prlimit` in the launch chain (so they hold from the first
  instruction of the program, not from a later `prlimit(pid)` call): address space, processes,
  file size, core dumps, open files.
- a cgroup v2 child of our own cgroup where the system lets us create one: membership gives an
  exact kill (`cgroup.kill`) and CPU totals of every process of the run (`cpu.stat`); `memory.max`
  and `pids.max` are written when the parent delegates those controllers.
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

MB = 1 << 20


@dataclass
class Limits:
    """Resource bounds of one process tree (a build or a program run)."""

    time_s: float = 120.0
    memory_mb: int = 8192  # resident memory of the run (cgroup memory.max, else a watchdog); 0 = unlimited
    max_output_bytes: int = 4 << 20  # per stream kept (head and tail); the rest is drained and dropped
    address_space_mb: int = 0  # RLIMIT_AS (CPU programs only: GPU runtimes reserve huge address ranges)
    processes: int = 512  # processes and threads of the run (RLIMIT_NPROC for its own uid, pids.max)
    file_mb: int = 4096  # largest file the run may write (RLIMIT_FSIZE)
    disk_mb: int = 8192  # total bytes the run may leave in its folder (checked while it runs)
    tmp_mb: int = 1024  # size of each private tmpfs (/tmp, /var/tmp, /dev/shm)
    open_files: int = 4096  # RLIMIT_NOFILE


def prlimit_argv(limits: Limits, nproc: int) -> list[str]:
    """`prlimit ... --` prefix that sets the rlimits on itself and keeps them across exec."""
    pre = ["prlimit", f"--nproc={max(nproc, 1)}", "--core=0", f"--nofile={limits.open_files}"]
    if limits.file_mb > 0:
        pre.append(f"--fsize={limits.file_mb * MB}")
    if limits.address_space_mb > 0:
        pre.append(f"--as={limits.address_space_mb * MB}")
    return [*pre, "--"]


def have_prlimit() -> bool:
    return shutil.which("prlimit") is not None


def user_process_count(uid: int) -> int:
    """Processes (threads included, as RLIMIT_NPROC counts them) owned by `uid` right now."""
    n = 0
    try:
        entries = list(os.scandir("/proc"))
    except OSError:
        return 0
    for e in entries:
        if not e.name.isdigit():
            continue
        try:
            if e.stat().st_uid == uid:
                n += max(len(os.listdir(f"/proc/{e.name}/task")), 1)
        except OSError:
            continue
    return n


# ---------------------------------------------------------------- cgroup v2


def _cgroup2_mount() -> Path | None:
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                if right.split()[:1] == ["cgroup2"]:
                    return Path(left.split()[4])
    except OSError:
        return None
    return None


def _own_cgroup(mount: Path) -> Path | None:
    try:
        with open("/proc/self/cgroup") as fh:
            for line in fh:
                if line.startswith("0::"):
                    return mount / line[3:].strip().lstrip("/")
    except OSError:
        return None
    return None


_COUNTER = itertools.count()


def _sweep_stale(parent: Path) -> None:
    """Remove run cgroups left by a process that was SIGKILLed before it could (its pid gone, no
    process left inside): empty folders only, so a live run is never touched."""
    for d in parent.glob("lassi-run-*-*"):
        try:
            pid = int(d.name.split("-")[2])
        except (IndexError, ValueError):
            continue
        if pid == os.getpid() or Path(f"/proc/{pid}").exists():
            continue
        try:
            if not (d / "cgroup.procs").read_text().strip():
                d.rmdir()
        except OSError:
            continue


class RunCgroup:
    """A cgroup v2 leaf for one run; `RunCgroup.create()` returns None where none can be made."""

    def __init__(self, path: Path):
        self.path = path
        self.applied: list[str] = []

    @classmethod
    def create(cls, limits: Limits) -> RunCgroup | None:
        mount = _cgroup2_mount()
        parent = _own_cgroup(mount) if mount else None
        if parent is None or not os.access(parent, os.W_OK):
            return None
        _sweep_stale(parent)
        path = parent / f"lassi-run-{os.getpid()}-{next(_COUNTER)}"
        try:
            path.mkdir()
        except OSError:
            return None
        cg = cls(path)
        if limits.memory_mb > 0 and cg._write("memory.max", str(limits.memory_mb * MB)):
            cg._write("memory.swap.max", "0")
            cg.applied.append(f"memory.max={limits.memory_mb}M")
        if limits.processes > 0 and cg._write("pids.max", str(limits.processes)):
            cg.applied.append(f"pids.max={limits.processes}")
        return cg

    def _write(self, name: str, value: str) -> bool:
        try:
            (self.path / name).write_text(value)
            return True
        except OSError:
            return False

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    @property
    def limits_memory(self) -> bool:
        return any(a.startswith("memory.max") for a in self.applied)

    def pids(self) -> list[int]:
        try:
            return [int(x) for x in self.procs_file.read_text().split()]
        except (OSError, ValueError):
            return []

    def cpu_s(self) -> float | None:
        """User + system CPU seconds of every process that ever ran in the cgroup."""
        try:
            for line in (self.path / "cpu.stat").read_text().splitlines():
                k, _, v = line.partition(" ")
                if k == "usage_usec":
                    return int(v) / 1e6
        except (OSError, ValueError):
            return None
        return None

    def events(self) -> dict[str, int]:
        """memory.events / pids.events counters (oom_kill, max) where the controllers exist."""
        out: dict[str, int] = {}
        for name in ("memory.events", "pids.events"):
            try:
                for line in (self.path / name).read_text().splitlines():
                    k, _, v = line.partition(" ")
                    out[f"{name.split('.')[0]}.{k}"] = int(v)
            except (OSError, ValueError):
                continue
        return out

    def kill(self) -> None:
        """SIGKILL every process in the cgroup (cgroup.kill, else one by one)."""
        if not self._write("cgroup.kill", "1"):
            for pid in self.pids():
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass

    def remove(self) -> None:
        """Kill what is left and remove the folder (retried: reaping takes a moment)."""
        self.kill()
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.01)

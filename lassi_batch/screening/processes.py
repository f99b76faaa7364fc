"""Processes a run left behind: work moved into a detached child escapes the measurement.

A program that forks a daemon (setsid, double fork) to do its work outside the measured process
group looks cheap to the meter and to CPU accounting. After a run ends, every process still
executing the run's own program file (same device and inode, seen through `/proc/<pid>/exe`, so
it holds across mount namespaces and a `chdir("/")`) or sitting in the run folder is one of its
leftovers: it is reported, its CPU time read, and it is killed by pid.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Leftover:
    pid: int
    cpu_s: float  # user + system CPU time it had used when found
    how: str  # "program" (runs the run's executable), "folder" (works in the run folder) or "sandbox" (ended by it)


def _cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rpartition(b")")[2].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def find_leftovers(exe: Path, folder: Path) -> list[Leftover]:
    """Processes of ours that run `exe` or whose working directory lies inside `folder`."""
    try:
        st = os.stat(exe)
        key = (st.st_dev, st.st_ino)
    except OSError:
        key = None
    folder = Path(folder).resolve()
    me, uid = os.getpid(), os.getuid()
    out: list[Leftover] = []
    try:
        entries = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return out
    for name in entries:
        pid = int(name)
        if pid == me:
            continue
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
        except OSError:
            continue
        how = ""
        try:
            if key is not None:
                s = os.stat(f"/proc/{pid}/exe")
                if (s.st_dev, s.st_ino) == key:
                    how = "program"
        except OSError:
            pass
        if not how:
            try:
                cwd = Path(os.readlink(f"/proc/{pid}/cwd").removesuffix(" (deleted)"))
                if cwd == folder or folder in cwd.parents:
                    how = "folder"
            except OSError:
                pass
        if how:
            out.append(Leftover(pid, _cpu_s(pid), how))
    return out


def reap_leftovers(exe: Path, folder: Path) -> list[Leftover]:
    """Find the run's leftovers and kill each by pid; returns what was found."""
    found = find_leftovers(exe, folder)
    for p in found:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return found


def describe(found: list[Leftover]) -> str:
    if found and all(p.how == "sandbox" for p in found):  # counted and ended by the sandbox or runner
        return (f"{len(found)} process(es) were still running when the program exited and were ended by the "
                "sandbox (their CPU time is not counted in the run's cost)")
    cpu = sum(p.cpu_s for p in found)
    return (f"{len(found)} process(es) outlived the run (pid {', '.join(str(p.pid) for p in found[:5])}; "
            f"{cpu:.3f} CPU s not counted in the run's cost) and were killed")

"""Proof that a measurement ran alone on its device.

Locks (system.devlock) keep this package's own trials apart, but a meter reads the whole device,
and a lock cannot keep out a program that never asks for it: a foreign job on a shared node, a
process some earlier run left behind. So every measurement on a meter that can list its device's
processes is watched: from the start of the idle window to the end of the tail, the device's
process lists (NVML compute, graphics and MPS lists; amdsmi's) are polled, and every PID outside
the measuring process's own tree is recorded; just before launch the device's utilisation is read.
A measurement that saw a foreign process, or a busy device before launch, is contaminated: the
protocol takes it again (power.protocol.measure_alone).

The attribution is by host process ancestry (psutil): the measured program runs as a descendant
of the trial process whatever the runner (bubblewrap, Apptainer, none). A process that ends
before it can be looked up counts as foreign unless it was already seen as a descendant: when in
doubt, measure again. A process shorter than the poll interval can be missed; docs/measurement.md
says so.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import psutil

from .base import Meter

POLL_S = 0.1  # NVML's process lists are cheap (well under a millisecond); a run is rarely shorter
BUSY_BEFORE_PCT = 0.0  # utilisation above this just before launch: something else is on the device


@dataclass(frozen=True)
class Seen:
    """A process found on the device that is not the measured run's."""

    pid: int
    name: str
    at_s: float  # seconds after the watch started

    def describe(self) -> str:
        return f"pid {self.pid} ({self.name}) at {self.at_s:.2f} s"


@dataclass
class IsolationReport:
    """What the watch saw during one measurement."""

    checked: bool  # False: the meter cannot list its device's processes (CPU meters, old drivers)
    foreign: list[Seen] = field(default_factory=list)
    busy_before_pct: float | None = None
    polls: int = 0
    own_seen: int = 0  # processes of the measured run the device listed (the query works)
    error: str = ""  # the process query failed during the window: isolation cannot be shown

    @property
    def busy_before(self) -> bool:
        return self.busy_before_pct is not None and self.busy_before_pct > BUSY_BEFORE_PCT

    @property
    def contaminated(self) -> bool:
        return bool(self.foreign) or self.busy_before or bool(self.error)

    def describe(self) -> str:
        """One line for notes, attributes and error messages."""
        if not self.checked:
            return "not checked (the meter cannot list the device's processes)"
        parts = []
        if self.foreign:
            shown = ", ".join(s.describe() for s in self.foreign[:5])
            more = f" and {len(self.foreign) - 5} more" if len(self.foreign) > 5 else ""
            parts.append(f"other processes on the device: {shown}{more}")
        if self.busy_before:
            parts.append(f"device {self.busy_before_pct:g}% busy just before launch")
        if self.error:
            parts.append(f"process query failed during the window ({self.error})")
        return "; ".join(parts) if parts else f"alone ({self.polls} checks, {self.own_seen} own processes listed)"


def foreign_pids(listed: Iterable[int], own: Iterable[int]) -> list[int]:
    """PIDs on the device that are not the measuring process's own (pure)."""
    mine = set(own)
    return sorted({int(p) for p in listed} - mine)


def descendants(root: int) -> set[int]:
    """`root` and every live process below it."""
    try:
        return {root, *(c.pid for c in psutil.Process(root).children(recursive=True))}
    except psutil.Error:
        return {root}


def is_own(pid: int, root: int) -> bool | None:
    """Is `pid` `root` or below it? None when the process is already gone."""
    if pid == root:
        return True
    try:
        return any(p.pid == root for p in psutil.Process(pid).parents())
    except psutil.NoSuchProcess:
        return None
    except psutil.Error:
        return False  # visible but not inspectable: not a child of ours


def _name(pid: int) -> str:
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return "ended before it could be named"


class ProcessWatch:
    """Polls a meter's process list in a thread of its own between `start` and `stop`."""

    def __init__(self, meter: Meter, root_pid: int | None = None, poll_s: float = POLL_S) -> None:
        self.meter = meter
        self.root = root_pid if root_pid is not None else os.getpid()
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._own: set[int] = set()
        self._judged: dict[int, bool] = {}
        self._lock = threading.Lock()  # the watch thread and before_launch both poll
        self._t0 = time.monotonic()
        self.report = IsolationReport(checked=meter.device_processes() is not None)

    def start(self) -> ProcessWatch:
        self._t0 = time.monotonic()
        if self.report.checked:
            self._thread = threading.Thread(target=self._loop, name="lassi-process-watch", daemon=True)
            self._thread.start()
        return self

    def before_launch(self) -> None:
        """Read the device's utilisation once more, right before the measured program starts."""
        self.report.busy_before_pct = self.meter.busy_pct()
        self.poll()

    def poll(self) -> None:
        with self._lock:
            self._poll()

    def _poll(self) -> None:
        pids = self.meter.device_processes()
        if pids is None:
            return
        self.report.polls += 1
        new = [pid for pid in pids if pid not in self._judged]
        if new:  # the process tree is read only when the device lists someone not yet judged
            self._own |= descendants(self.root)
        for pid in new:
            if pid in self._own:
                self._judged[pid] = True
                self.report.own_seen += 1
                continue
            own = is_own(pid, self.root)
            self._judged[pid] = bool(own)
            if own:
                self._own.add(pid)
                self.report.own_seen += 1
            else:
                self.report.foreign.append(Seen(pid, _name(pid), time.monotonic() - self._t0))

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.poll()
            except Exception as e:  # cannot show the window was clean: the measurement is taken again
                self.report.error = f"{type(e).__name__}: {e}"
                return

    def stop(self) -> IsolationReport:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            if self.report.checked and not self.report.error:
                try:
                    self.poll()  # the end of the tail
                except Exception as e:
                    self.report.error = f"{type(e).__name__}: {e}"
        return self.report

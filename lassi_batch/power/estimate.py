"""The last resort: a CPU-time power model, never a measurement.

P = idle_watts + (cpu_watts - idle_watts) x utilisation, where utilisation is the share of all
CPUs that was busy. The trace models the whole machine from /proc/stat; for the energy of one
program the protocol prefers the run's CPU seconds (`RunResult.cpu_s`):

    net   = (cpu_watts - idle_watts) x cpu_s / n_cpus
    gross = net + idle_watts x runtime

`cpu_s` charges every process of the run, not only the one that was waited for: the run's
cgroup (`cpu.stat` usage) where one exists, else the sandbox's PID namespace, whose init reaps
every process of the run so that the wait4() rusage of the sandbox holds them all (children
never waited for and daemons that the sandbox ended included). `RunResult.cpu_scope` says which.

Every figure from this meter carries estimate=True and the word ESTIMATE wherever it is shown.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from ..core.config import PlatformConfig
from .base import Meter

NAN = math.nan
PROC_STAT = Path("/proc/stat")
SPAN_S = 0.1  # rate window for the modelled power
READ_EVERY_S = 0.04  # /proc/stat re-read interval for the power channel


def n_cpus() -> int:
    """CPUs of the whole machine: cpu_watts is a package figure, so a program's share of it is
    its CPU time over all CPUs, not over the ones this job may use."""
    return os.cpu_count() or 1


def cpu_model_energy(
    cpu_s: float, runtime_s: float, cpu_watts: float, idle_watts: float, ncpu: int
) -> tuple[float, float]:
    """(gross J, net J) of a program that used `cpu_s` CPU seconds over `runtime_s` on `ncpu` CPUs."""
    net = (cpu_watts - idle_watts) * max(cpu_s, 0.0) / max(ncpu, 1)
    return net + idle_watts * max(runtime_s, 0.0), net


def read_busy_s(path: Path = PROC_STAT) -> tuple[float, float] | None:
    """(busy CPU seconds, total CPU seconds) summed over all CPUs, or None without /proc/stat."""
    try:
        with open(path) as fh:
            first = fh.readline().split()
    except OSError:
        return None
    if not first or first[0] != "cpu":
        return None
    ticks = [float(x) for x in first[1:]]
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0.0)  # idle + iowait
    total = sum(ticks[:8])  # guest time is already inside user/nice
    return (total - idle) / hz, total / hz


class EstimateMeter(Meter):
    """Modelled machine power from /proc/stat; the protocol replaces the run's energy by the
    program's own CPU seconds when the runner reports them."""

    name = "estimate"
    counter_interval_s = 0.01  # /proc/stat moves in 10 ms ticks; a read costs microseconds
    counter_update_s = 0.0  # the modelled counter is computed at each read
    cold_start_s = 0.0
    wait_cap_s = 0.0  # nothing to cool down
    settle_hold_s = 0.1

    def __init__(self, cpu_watts: float, idle_watts: float, stat_path: Path = PROC_STAT) -> None:
        super().__init__(device="CPU power model", device_id=f"{cpu_watts:g}W/{idle_watts:g}W", estimate=True)
        self.cpu_watts = cpu_watts
        self.idle_watts = idle_watts
        self.ncpu = n_cpus()
        self._stat = stat_path
        self._t0 = time.monotonic()
        first = read_busy_s(stat_path)
        self._busy0 = first[0] if first else 0.0
        self._has_stat = first is not None
        self._recent: deque[tuple[float, float]] = deque()
        self._cached: tuple[float, float] | None = None
        self.notes.append(
            f"ESTIMATE: power modelled from CPU time ({cpu_watts:g} W loaded, {idle_watts:g} W idle, "
            f"{self.ncpu} CPUs), not measured"
        )
        if not self._has_stat:
            self.notes.append("estimate: /proc/stat unreadable: no modelled trace, only the program's CPU seconds")

    @classmethod
    def open(cls, platform: PlatformConfig, env: Mapping[str, str]) -> EstimateMeter:
        return cls(platform.cpu_watts, platform.idle_watts)

    def _model_j(self, now: float) -> float | None:
        busy = read_busy_s(self._stat)
        if busy is None:
            return None
        used = (busy[0] - self._busy0) / self.ncpu  # /proc/stat sums over every CPU of the machine
        return self.idle_watts * (now - self._t0) + (self.cpu_watts - self.idle_watts) * used

    @property
    def has_counter(self) -> bool:
        return self._has_stat

    @property
    def channels(self) -> str:
        return "modelled power and energy (CPU time)"

    def read_power(self) -> tuple[float, float, float]:
        """Modelled power over the last ~0.1 s (/proc/stat counts in 10 ms ticks)."""
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < READ_EVERY_S:
            return self._cached[1], NAN, NAN  # /proc/stat moves in 10 ms ticks: re-reading it is wasted CPU
        j = self._model_j(now)
        if j is None:
            return NAN, NAN, NAN
        q = self._recent
        q.append((now, j))
        while len(q) > 2 and now - q[1][0] >= SPAN_S:
            q.popleft()
        t_old, j_old = q[0]
        if now - t_old < SPAN_S / 2:
            return NAN, NAN, NAN  # not enough history yet for a meaningful rate
        p = (j - j_old) / (now - t_old)
        self._cached = (now, p)
        return p, NAN, NAN

    def read_counter_j(self) -> float | None:
        return self._model_j(time.monotonic())

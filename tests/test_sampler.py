"""The sampler reads the slow energy counter at full rate only around a run's edges."""

from __future__ import annotations

import time

import numpy as np

from lassi_batch.power.base import Meter
from lassi_batch.power.sampler import Sampler


class CountingMeter(Meter):
    """A 100 W device whose counter is exact; it counts how often the counter is read."""

    name = "counting"
    counter_interval_s = 0.05

    def __init__(self) -> None:
        super().__init__("test device")
        self.t0 = time.monotonic()
        self.counter_reads = 0

    @property
    def has_counter(self) -> bool:
        return True

    def read_power(self) -> tuple[float, float, float]:
        return 100.0, 100.0, float("nan")

    def read_counter_j(self) -> float:
        self.counter_reads += 1
        return 100.0 * (time.monotonic() - self.t0)

    @classmethod
    def open(cls, platform, env):  # pragma: no cover - not opened through the registry
        return cls()


def _gaps(tr) -> np.ndarray:
    return np.diff(tr.counter_t)


def test_without_edge_hints_the_counter_is_read_at_full_rate():
    m = CountingMeter()
    s = Sampler(m, interval_s=0.01)
    s.start()
    time.sleep(0.6)
    tr = s.stop()
    assert np.median(_gaps(tr)) < 0.08
    assert m.counter_reads >= 8


def test_slow_cadence_away_from_edges_and_fast_after_a_hint():
    m = CountingMeter()
    s = Sampler(m, interval_s=0.01, slow_counter_interval_s=0.4)
    s.start()
    time.sleep(1.0)  # slow: about 3 reads
    slow_reads = m.counter_reads
    t_hint = time.monotonic()
    s.fast_counter(0.4)
    time.sleep(0.45)
    tr = s.stop()
    assert slow_reads <= 4
    after = tr.counter_t[tr.counter_t >= t_hint]
    assert after.size >= 5  # ~0.4 s at 0.05 s cadence
    assert after[0] - t_hint < 0.05  # the hint triggers a read right away
    # cumulative counter: the energy between any two reads stays exact whatever the cadence
    e = tr.counter_j[-1] - tr.counter_j[0]
    assert abs(e - 100.0 * (tr.counter_t[-1] - tr.counter_t[0])) < 2.0

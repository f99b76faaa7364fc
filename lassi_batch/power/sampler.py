"""Background sampling of one meter into growable arrays.

One thread reads power every `interval_s` on an absolute schedule (a late sample does not push
the others back) and the energy counter every `meter.counter_interval_s`: NVML's counter call
costs ~4 ms, so reading it every 10 ms would cost 40% of a core and delay the power samples.
Timestamps are time.monotonic() of this process, the clock RunResult.t_launch/t_exit use.

The counter is cumulative, so the energy of a run needs precise reads only near its edges:
the protocol asks for the fast cadence (`fast_counter`) around launch and exit, and the sampler
reads it every `slow_counter_interval_s` otherwise, where linear interpolation between reads
loses nothing. On the H100 this cut the sampling thread from ~5.6% of a core to the figure in
docs/benchmarks.md.

The thread measures its own CPU time (time.thread_time) so that the cost of measuring can be
reported next to what it measures.
"""

from __future__ import annotations

import math
import threading
from array import array
import time

import numpy as np

from .base import Meter
from .trace import PowerTrace

NAN = math.nan
# A counter read slower than this is dropped: the value was taken somewhere within the call, and
# the step placement (energy.counter_steps) trusts read times to a few ms. NVML takes ~4 ms.
COUNTER_READ_MAX_S = 0.01


class _Column:
    """A growable float64 column: array.array appends in C, numpy copies out on demand."""

    def __init__(self) -> None:
        self._a = array("d")
        self.append = self._a.append

    def array(self) -> np.ndarray:
        return np.frombuffer(self._a, dtype=np.float64).copy() if len(self._a) else np.zeros(0)


class Sampler:
    """Start, let it run around the program, stop -> PowerTrace."""

    def __init__(
        self, meter: Meter, interval_s: float = 0.01, counter_interval_s: float | None = None,
        slow_counter_interval_s: float | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self.meter = meter
        self.interval_s = interval_s
        self.counter_interval_s = meter.counter_interval_s if counter_interval_s is None else counter_interval_s
        # None: always fast (no edge hints expected); the protocol passes a slow interval
        self.slow_counter_interval_s = slow_counter_interval_s or self.counter_interval_s
        self._fast_until = math.inf if slow_counter_interval_s is None else -math.inf
        self._burst_until = -math.inf
        self._cols = {k: _Column() for k in ("t", "inst", "avg", "temp")}
        self._ct, self._cj = _Column(), _Column()
        self._lock = threading.Lock()
        self._running = False  # a plain flag: Event.wait costs twice what time.sleep does per wake-up
        self._thread: threading.Thread | None = None
        self.cpu_s = 0.0  # CPU time of the sampling thread
        self.counter_cpu_s = 0.0  # part of it spent in counter reads
        self.t_start = NAN
        self.t_stop = NAN
        self.late = 0  # samples taken more than one interval behind schedule
        self.slow_reads = 0  # counter reads dropped because the call took too long to date them
        self.errors = 0
        self.first_error = ""

    # ---- control

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("sampler already started")
        self.t_start = time.monotonic()
        self._running = True
        self._thread = threading.Thread(target=self._loop, name=f"power-{self.meter.name}", daemon=True)
        self._thread.start()

    def stop(self) -> PowerTrace:
        """Stop sampling and return everything sampled."""
        if self._thread is not None:
            self._running = False
            self._thread.join()
        self.t_stop = time.monotonic()
        return self.trace()

    def fast_counter(self, seconds: float, burst_s: float = 0.0) -> None:
        """Read the counter at its full rate for the next `seconds` (a window edge is coming),
        and at every sample for the first `burst_s` of them: reads closer than the counter's
        update period pin down when it updated (energy.counter_steps)."""
        now = time.monotonic()
        until = now + seconds
        if until > self._fast_until:
            self._fast_until = until
        if now + burst_s > self._burst_until:
            self._burst_until = now + burst_s
        self._next_c = min(getattr(self, "_next_c", 0.0), time.monotonic())  # read now, not at the slow due time

    @property
    def wall_s(self) -> float:
        end = self.t_stop if math.isfinite(self.t_stop) else time.monotonic()
        return end - self.t_start if math.isfinite(self.t_start) else 0.0

    @property
    def cpu_share_pct(self) -> float:
        """CPU time of the sampling thread as a percentage of one core over its wall time."""
        w = self.wall_s
        return 100.0 * self.cpu_s / w if w > 0 else NAN

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._running:
            self.stop()

    # ---- data

    def power_so_far(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Copies of (t, instant, average) sampled so far, for settle decisions while running."""
        with self._lock:
            c = self._cols
            return c["t"].array(), c["inst"].array(), c["avg"].array()

    def trace(self) -> PowerTrace:
        m = self.meter
        with self._lock:
            c = self._cols
            tr = PowerTrace(
                meter=m.name, device=m.device, device_id=m.device_id, estimate=m.estimate,
                t=c["t"].array(), power_instant_w=c["inst"].array(), power_average_w=c["avg"].array(),
                counter_t=self._ct.array(), counter_j=self._cj.array(), temperature_c=c["temp"].array(),
                counter_update_s=float(m.counter_update_s), notes=list(m.notes),
            )
        for name, arr in (("power_instant_w", tr.power_instant_w), ("power_average_w", tr.power_average_w),
                          ("temperature_c", tr.temperature_c)):
            if arr.size and not np.isfinite(arr).any():
                setattr(tr, name, np.zeros(0))  # a channel the meter lacks is empty, never NaN-filled
        if self.errors:
            tr.notes.append(f"sampler: {self.errors} meter read(s) failed, first: {self.first_error}")
        if self.late:
            tr.notes.append(f"sampler: {self.late} sample(s) more than one interval late")
        if self.slow_reads:
            tr.notes.append(f"sampler: {self.slow_reads} counter read(s) took over {COUNTER_READ_MAX_S * 1e3:g} ms "
                            "and were dropped (their time is uncertain; the counter is cumulative)")
        return tr

    # ---- the thread

    def _error(self, e: BaseException) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = f"{type(e).__name__}: {e}"

    def _read_counter(self, due: float) -> float:
        """Read the counter once; returns when the next read is due."""
        c0 = time.thread_time()
        t0 = time.monotonic()
        try:
            j = self.meter.read_counter_j()
        except Exception as e:
            self._error(e)
            j = None
        t1 = time.monotonic()
        if t1 - t0 > COUNTER_READ_MAX_S:
            self.slow_reads += 1  # when within the call the value was taken is too uncertain: drop it
        elif j is not None and math.isfinite(j):
            with self._lock:
                self._ct.append((t0 + t1) / 2.0)  # the read took ~4 ms on NVML: its middle
                self._cj.append(j)
        self.counter_cpu_s += time.thread_time() - c0
        if t1 < self._burst_until:
            step = self.interval_s
        elif t1 < self._fast_until:
            step = self.counter_interval_s
        else:
            step = self.slow_counter_interval_s
        due += step
        return due if due > t1 else t1 + step

    def _loop(self) -> None:
        cpu0 = time.thread_time()
        meter = self.meter
        has_counter = meter.has_counter
        read_power = meter.read_power
        monotonic = time.monotonic
        lock = self._lock
        c_t, c_i, c_a, c_tc = (self._cols[k].append for k in ("t", "inst", "avg", "temp"))
        interval = self.interval_s
        next_t = monotonic()
        self._next_c = next_t
        try:
            while self._running:
                now = monotonic()
                try:
                    inst, avg, temp = read_power()
                except Exception as e:  # a flaky read is a NaN sample and a note, not a dead thread
                    self._error(e)
                    inst = avg = temp = NAN
                with lock:
                    c_t(now)
                    c_i(inst)
                    c_a(avg)
                    c_tc(temp)
                if has_counter and now >= self._next_c:
                    self._next_c = self._read_counter(self._next_c)
                next_t += interval
                delay = next_t - monotonic()
                if delay < -interval:
                    self.late += 1
                    next_t = monotonic()
                elif delay > 0:
                    time.sleep(delay)
        finally:
            self.cpu_s = time.thread_time() - cpu0

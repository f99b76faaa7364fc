"""The measurement protocol: cool down, idle window, run, tail until settled, figures.

The LASSI-EE paper waited a fixed ~2 s before and 15 s after every run. This protocol waits only
as long as the device needs, judged on the power channel it samples anyway:

1. settle: until the power is back at idle. With a known idle level (from an earlier
   measurement on this meter) that is a direct comparison. Without one, a stable reading is
   trusted only after a drop to it was seen, or after the meter's cold-start period: an H100
   holds ~133 W for ~2 s after any CUDA process exits, a plateau that looks idle but is not.
   Bounded by MeasureConfig.settle_timeout_s.
2. idle window: MeasureConfig.idle_window_s of idle samples (the settle hold counts towards it).
3. the run, marked by RunResult.t_launch / t_exit (same monotonic clock as the samples).
4. tail: until the power is back within tolerance of the pre-run baseline for a hold period,
   but at least three counter periods (so the counter has updated past the exit), at most
   MeasureConfig.post_max_s.

Every wait actually spent is recorded in Measurement.attrs, next to the paper's fixed 17 s.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np

from ..core.config import MeasureConfig
from ..core.errors import DeviceBusy
from ..sandbox.toolchain import RunResult
from . import energy
from .base import DEVICE_STATE, Meter
from .estimate import EstimateMeter, cpu_model_energy
from .floor import DRIFT_MAX, node_floor, record_idle
from .isolation import ProcessWatch
from .sampler import Sampler
from .trace import Measurement, Window

NAN = math.nan
POLL_S = 0.05  # how often the waits look at the samples
SLOW_COUNTER_S = 1.0  # counter cadence away from the run's edges (a slow read; the counter is cumulative)
EDGE_S = 0.5  # full-rate counter reads for this long from the launch and from the exit
PAPER_FIXED_WAIT_S = 17.0  # the paper: ~2 s idle before + 15 s after every run
DROP_FACTOR = 0.2  # a fall of >20% to a stable level counts as "the device left its busy state"
BURST_PERIODS = 2  # after each edge, read a periodic counter at every sample for this many update periods
MIN_COUNTER_PERIODS = 3  # post-run minimum, in counter update periods
# estimate meter: figures of the machine-wide /proc/stat model, replaced by machine_energy_net_j
MACHINE_FIGURES = ("energy_counter_j", "energy_counter_net_j", "energy_counter_precision_j", "energy_instant_j",
                   "energy_instant_net_j", "energy_instant_precision_j", "energy_average_net_j",
                   "energy_eq4_instant_j", "idle_counter_w", "idle_counter_precision_w", "idle_sensor_offset_w")
CPU_TICK_S = 0.01  # resolution of the CPU time the runner reports (clock ticks)
IDLE_WINDOW_CAPS = {"rapl": 0.5, "estimate": 0.2}  # CPU meters: no GPU to cool, keep waits short
DRIFT_FLAT_S = 5.0  # a level flat this long at the settle timeout is idle drift (an H100's post-run state lasts ~2 s)
RETAKES = 3  # a measurement not taken alone or on a settled device is taken again up to this many times
RETAKE_PAUSE_S = (2.0, 5.0, 10.0)  # waits before the retakes: a foreign job may end meanwhile

Log = Callable[[str], None]


@dataclass(frozen=True)
class SettleCheck:
    settled: bool
    reason: str
    level_w: float  # median power over the last hold period


def pre_settle_check(
    t: np.ndarray,
    p: np.ndarray,
    t_start: float,
    now: float,
    *,
    hint_w: float | None,
    tolerance: float,
    hold_s: float,
    cold_start_s: float,
    strict: bool = False,
) -> SettleCheck:
    """Is the device at idle at `now`, judging from samples since `t_start`? (pure)

    `strict`: `hint_w` is the device's known floor (power.floor) and only a level within
    `tolerance` of it counts; a stable level above it is a device still busy or still in its
    post-run state, however flat it looks."""
    t = np.asarray(t, dtype=float)
    p = np.asarray(p, dtype=float)
    m = (t >= t_start) & (t <= now) & np.isfinite(p)
    t, p = t[m], p[m]
    if now - t_start < hold_s:
        return SettleCheck(False, "collecting", NAN)
    if t.size == 0:
        return SettleCheck(True, "no power readings to judge settling by", NAN)
    recent = p[t >= now - hold_s]
    if recent.size == 0:
        return SettleCheck(False, "no recent samples", NAN)
    level = float(np.median(recent))
    limit = 1.0 + tolerance
    if hint_w is not None and math.isfinite(hint_w) and level <= hint_w * limit:
        what = "the device's idle floor" if strict else "the known idle level"
        return SettleCheck(True, f"at {what} {hint_w:.1f} W", level)
    if strict and hint_w is not None and math.isfinite(hint_w):
        return SettleCheck(False, f"at {level:.1f} W, waiting for the idle floor {hint_w:.1f} W", level)
    floor = energy.idle_baseline(t, p, t_start, now, tolerance)
    before = p[(t >= now - 2 * hold_s) & (t < now - hold_s)]
    # stable: at the lowest level seen, and not still falling from the hold period before
    at_floor = level <= floor * limit and before.size > 0 and float(np.median(before)) <= level * limit
    bins = np.floor((t - t_start) / 0.1).astype(np.int64)
    peak = max(float(np.median(p[bins == k])) for k in np.unique(bins))
    if at_floor and peak > level * (1.0 + max(4 * tolerance, DROP_FACTOR)):  # left a busy state
        return SettleCheck(True, f"dropped from {peak:.1f} W to a stable {level:.1f} W", level)
    drop = 1.0 + max(4 * tolerance, DROP_FACTOR)
    far_above_hint = hint_w is not None and math.isfinite(hint_w) and level > hint_w * drop
    if at_floor and now - t_start >= cold_start_s and not far_above_hint:
        why = f"stable at {level:.1f} W"
        if cold_start_s:
            why += f" for the cold-start period ({cold_start_s:g} s)"
        if hint_w is not None and math.isfinite(hint_w):
            why += f", above the earlier idle {hint_w:.1f} W (drift)"
        return SettleCheck(True, why, level)
    return SettleCheck(False, f"at {level:.1f} W, lowest so far {floor:.1f} W", level)


def flat_level(t: np.ndarray, p: np.ndarray, now: float, span_s: float, tolerance: float) -> float | None:
    """The median power over the last `span_s` when every sample there lies within `tolerance`
    of it (a level that is not moving), else None (pure)."""
    t = np.asarray(t, dtype=float)
    p = np.asarray(p, dtype=float)
    m = (t >= now - span_s) & (t <= now) & np.isfinite(p)
    if m.sum() < 3 or float(t[m].min()) > now - 0.9 * span_s:
        return None
    level = float(np.median(p[m]))
    return level if np.all(np.abs(p[m] - level) <= tolerance * level) else None


def _channel(inst: np.ndarray, avg: np.ndarray) -> np.ndarray:
    """Settle on the instant channel when the meter has one, else the averaged one."""
    return inst if energy.has_data(inst) else avg


def _caps(meter: Meter, cfg: MeasureConfig) -> tuple[float, float, float]:
    """(settle timeout, idle window, post max) for this meter."""
    cap = meter.wait_cap_s
    settle = cfg.settle_timeout_s if cap is None else min(cfg.settle_timeout_s, cap)
    post = cfg.post_max_s if cap is None else min(cfg.post_max_s, cap)
    idle = cfg.idle_window_s
    if meter.name in IDLE_WINDOW_CAPS:
        idle = min(idle, IDLE_WINDOW_CAPS[meter.name])
    return settle, idle, post


def measure(
    run: Callable[[], RunResult],
    meter: Meter,
    cfg: MeasureConfig,
    repeat_index: int = 0,
    *,
    log: Log | None = None,
) -> tuple[RunResult, Measurement]:
    """Measure one run of `run()` on `meter`. A failing program still yields its trace."""
    say = log or (lambda s: None)
    t_call = time.monotonic()
    tol = cfg.settle_tolerance
    hold = meter.settle_hold_s
    settle_max, idle_window, post_max = _caps(meter, cfg)
    notes: list[str] = []
    unsettled = False
    sampler = Sampler(meter, cfg.sample_interval_s, slow_counter_interval_s=SLOW_COUNTER_S)
    sampler.start()
    watch = ProcessWatch(meter)
    try:
        # 1. settle: to the device's floor on this node when one is known
        t0 = sampler.t_start
        check = SettleCheck(False, "not checked", NAN)
        cold = meter.cold_start_s
        floor: float | None = None
        floor_channel = ""
        while True:
            time.sleep(POLL_S if settle_max > 0 else 0.0)
            now = time.monotonic()
            t, inst, avg = sampler.power_so_far()
            if settle_max <= 0:
                check = SettleCheck(True, "no settling for this meter", NAN)
                break
            if meter.learns_floor and not floor_channel and t.size:
                floor_channel = "instant" if energy.has_data(inst) else "average"
                floor = node_floor(meter.device_id, floor_channel)
            hint = floor if floor is not None else meter.idle_hint_w
            chan = _channel(inst, avg)
            check = pre_settle_check(t, chan, t0, now, hint_w=hint, tolerance=tol, hold_s=hold,
                                     cold_start_s=cold, strict=floor is not None)
            if check.settled and hint is None and meter.learns_floor and cold > 0 and \
                    flat_level(t, chan, now, cold, tol) is None:
                # no floor known yet: a drop to a stable level may be the post-run state (an H100
                # holds ~133 W for ~2 s), so the level must stay flat for the cold-start period
                check = SettleCheck(False, f"{check.reason}; not yet flat for {cold:g} s", check.level_w)
            if check.settled:
                break
            if now - t0 >= settle_max:
                flat = flat_level(t, chan, now, min(DRIFT_FLAT_S, settle_max), tol) if floor is not None else None
                if flat is not None and flat <= floor * DRIFT_MAX:
                    check = SettleCheck(True, f"flat at {flat:.1f} W for {min(DRIFT_FLAT_S, settle_max):g} s, "
                                              f"above the idle floor {floor:.1f} W: taken as idle drift", flat)
                    break
                unsettled = True
                notes.append(f"device not settled after {settle_max:g} s ({check.reason})")
                break
        t_settle_done = time.monotonic()
        watch.start()  # from the idle window to the tail's end: nothing else may run on the device
        say(f"settled: {check.reason}")
        # the idle level comes from the counter too (same sensor as the run's gross energy):
        # read it at its own rate through the idle window and into the launch
        sampler.fast_counter(idle_window + EDGE_S, burst_s=_burst(meter))

        # 2. idle window (the settle hold already counts)
        # a counter's idle level needs its full-rate reads, which start now; a meter without one
        # may count the settle hold towards the window
        held = check.settled and not meter.has_counter
        t_idle_start = max(t0, t_settle_done - hold) if held else t_settle_done
        wait_until = t_idle_start + idle_window
        while time.monotonic() < wait_until:
            time.sleep(min(POLL_S, max(wait_until - time.monotonic(), 0.0)))
        t_idle_done = time.monotonic()
        t, inst, avg = sampler.power_so_far()
        chan = _channel(inst, avg)
        baseline = energy.idle_baseline(t, chan, t_idle_start, t_idle_done, tol)

        # 3. run
        # the counter is read at full rate only around the window's edges, at every sample just after them
        sampler.fast_counter(EDGE_S, burst_s=_burst(meter))
        state_start = _device_state(meter)
        watch.before_launch()
        t_before = time.monotonic()
        rr = run()
        t_after = time.monotonic()
        sampler.fast_counter(EDGE_S, burst_s=_burst(meter))
        state_end = _device_state(meter)
        t_launch, t_exit = rr.t_launch, rr.t_exit
        if not (t_before - 0.5 <= t_launch <= t_exit <= t_after + 0.5):
            notes.append("run markers outside the measured call; window taken around the call instead")
            t_launch, t_exit = t_before, t_after
        say(f"ran {t_exit - t_launch:.2f} s, exit {rr.returncode}")

        # 4. tail until settled
        min_post = max(hold, MIN_COUNTER_PERIODS * meter.counter_interval_s if meter.has_counter else 0.0)
        post_settled = False
        t_settled = NAN
        while True:
            now = time.monotonic()
            sampler.fast_counter(2 * POLL_S + meter.counter_interval_s)  # the tail's end needs a counter update after it
            if now - t_exit >= min_post and post_max <= 0:
                t_settled, post_settled = now, False  # this meter has nothing to settle (estimate)
                break
            if now - t_exit >= min_post:
                t, inst, avg = sampler.power_so_far()
                chan = _channel(inst, avg)
                if not energy.has_data(chan):
                    t_settled, post_settled = now, False
                    notes.append("no power channel to judge the tail by; stopped after the minimum wait")
                    break
                ts = energy.settle_time(t, chan, t_exit, baseline, tol, hold)
                if math.isfinite(ts):
                    t_settled, post_settled = ts, True
                    break
                if now - t_exit >= max(post_max, min_post):
                    t_settled = now
                    notes.append(f"power not back within {tol:.0%} of idle {baseline:.1f} W after {post_max:g} s")
                    break
            time.sleep(POLL_S)
        # the paper's fixed post-run window, when its Eq. 4 is wanted exactly as published
        paper_until = t_exit + cfg.paper_post_s + POLL_S
        while cfg.paper_post_s > 0 and time.monotonic() < paper_until:
            time.sleep(min(POLL_S * 4, max(paper_until - time.monotonic(), 0.0)))
    finally:
        trace = sampler.stop()
        isolation = watch.stop()
    t_end = float(trace.t[-1]) if trace.t.size else time.monotonic()
    t_settled = min(t_settled, t_end) if math.isfinite(t_settled) else t_end
    window = Window(t_idle_start=t_idle_start, t_launch=t_launch, t_exit=t_exit, t_settled=t_settled, t_end=t_end)

    analysis = energy.analyze(trace, window, tol)
    figures = analysis.figures
    method = analysis.method
    if isinstance(meter, EstimateMeter):
        method = _apply_cpu_model(meter, rr, figures, notes, method)
    trace.notes.extend(notes + analysis.notes)
    # the hint is compared with the power channel when settling, so it is that channel's idle
    chan_idle = figures["idle_post_w"] if analysis.idle_source == "post" else figures["idle_pre_w"]
    clean = not isolation.contaminated and not unsettled
    if post_settled and clean and math.isfinite(chan_idle):
        meter.idle_hint_w = chan_idle
    if clean and check.settled and floor_channel and math.isfinite(baseline):
        record_idle(meter.device_id, floor_channel, baseline)
    if isolation.contaminated:
        trace.notes.append(f"CONTAMINATED: {isolation.describe()}")

    wall = time.monotonic() - t_call
    runtime = figures["runtime_s"]
    attrs = {
        "repeat": repeat_index,
        "energy_method": method,
        "default_figure": "energy_net_j",
        "idle_source": analysis.idle_source,
        "estimate": bool(meter.estimate),
        "settle_reason": check.reason,
        "settled_before": bool(check.settled),
        "unsettled": bool(unsettled),
        "idle_floor_w": floor if floor is not None else NAN,
        "isolation_checked": bool(isolation.checked),
        "contaminated": bool(isolation.contaminated),
        "isolation": isolation.describe(),
        "busy_before_pct": isolation.busy_before_pct if isolation.busy_before_pct is not None else NAN,
        "settled_after": bool(post_settled),
        "settle_tolerance": tol,
        "settle_hold_s": hold,
        "pre_baseline_w": baseline,
        "wait_settle_s": t_settle_done - t0,
        "wait_idle_s": t_idle_done - t_settle_done,
        "wait_post_s": t_end - t_exit,
        "wait_total_s": (t_settle_done - t0) + (t_idle_done - t_settle_done) + (t_end - t_exit),
        "paper_fixed_wait_s": PAPER_FIXED_WAIT_S,
        "measure_wall_s": wall,
        "overhead_s": wall - runtime if math.isfinite(runtime) else NAN,
        "sampler_cpu_s": sampler.cpu_s,
        "sampler_counter_cpu_s": sampler.counter_cpu_s,
        "sampler_cpu_pct": sampler.cpu_share_pct,
        "sample_interval_s": cfg.sample_interval_s,
        "counter_interval_s": sampler.counter_interval_s,
        "idle_sensor": analysis.idle_sensor,
        **state_attrs(state_start, "start"),
        **state_attrs(state_end, "end"),
        "run_ok": bool(rr.ok),
        "run_error": rr.error,
        "timed_out": bool(rr.timed_out),
    }
    return rr, Measurement(trace=trace, window=window, returncode=rr.returncode, figures=figures, attrs=attrs)


def _burst(meter: Meter) -> float:
    """How long to read a periodic counter at every sample after an edge: two update periods."""
    u = meter.counter_update_s
    return BURST_PERIODS * u if math.isfinite(u) and u >= 0.02 else 0.0


def _device_state(meter: Meter) -> dict[str, float]:
    """The meter's device state (temperature, clock, power limit), NaN where it cannot tell."""
    try:
        state = meter.device_state()
    except Exception:  # a vendor call that fails must not cost the measurement
        state = {}
    return {k: float(state.get(k, NAN)) for k in DEVICE_STATE}


def state_attrs(state: dict[str, float], when: str) -> dict[str, float]:
    """{"temperature_c": 41} -> {"temperature_start_c": 41}: the unit stays the suffix."""
    out = {}
    for key, value in state.items():
        name, unit = key.rsplit("_", 1)
        out[f"{name}_{when}_{unit}"] = value
    return out


def repeat_delay(rng: random.Random, cfg: MeasureConfig, index: int) -> float:
    """Random pause before repeat `index` (none before the first): up to cfg.random_delay_s, so
    that repeats do not share the sensor's update phase (Yang et al., SC'24). Sleeps; returns it."""
    delay = rng.uniform(0.0, cfg.random_delay_s) if index > 0 and cfg.random_delay_s > 0 else 0.0
    if delay:
        time.sleep(delay)
    return delay


def _apply_cpu_model(
    meter: EstimateMeter, rr: RunResult, figures: dict[str, float], notes: list[str], method: str
) -> str:
    """Estimate meter: the program's own CPU seconds beat the machine-wide /proc/stat model."""
    runtime = figures["runtime_s"]
    if rr.cpu_s > 0 and math.isfinite(runtime) and runtime > 0:
        gross, net = cpu_model_energy(rr.cpu_s, runtime, meter.cpu_watts, meter.idle_watts, meter.ncpu)
        figures["energy_cpu_model_net_j"] = net
        figures["idle_w"] = meter.idle_watts
        figures["energy_net_j"] = net
        figures["energy_gross_j"] = gross
        figures["power_avg_w"] = gross / runtime
        figures["power_net_avg_w"] = net / runtime
        # the model spreads the CPU seconds evenly over the run, so its power is the average; the
        # machine-wide trace cannot resolve a run shorter than its 0.1 s rate window
        figures["power_peak_w"] = max(figures.get("power_peak_w", NAN), gross / runtime) if math.isfinite(
            figures.get("power_peak_w", NAN)) else gross / runtime
        figures["energy_net_precision_j"] = (meter.cpu_watts - meter.idle_watts) * CPU_TICK_S / meter.ncpu
        # The trace models the whole machine (other processes included) at 10 ms tick and 0.1 s
        # rate resolution: a different quantity, not a second estimate of this program's energy
        # (on a shared 2-core machine the two were 13x apart for a 0.034 s run). It is kept under
        # its own name; the per-program figures all come from the CPU seconds.
        machine = figures.get("energy_counter_net_j", NAN)
        figures["machine_energy_net_j"] = machine if math.isfinite(machine) else figures.get("energy_instant_net_j", NAN)
        for name in MACHINE_FIGURES:
            if name in figures:
                figures[name] = NAN
        figures["energy_tail_j"] = 0.0  # the model has the program's CPU time only: nothing after exit
        figures["cpu_s"] = rr.cpu_s
        notes.append(
            f"ESTIMATE: energy_net_j = ({meter.cpu_watts:g} - {meter.idle_watts:g}) W x {rr.cpu_s:.3f} CPU s / "
            f"{meter.ncpu} CPUs (CPU time of every process of the run: {rr.cpu_scope or 'waited-for children'})"
        )
        return "estimate:cpu_seconds"
    notes.append("ESTIMATE: the runner reported no CPU time; energy from the machine-wide /proc/stat model")
    return f"estimate:{method}"


def retake_reason(m: Measurement) -> str:
    """Why a measurement must be taken again ("" when it stands): it saw another program on the
    device, or started from a device that never settled. A failed run stands: its failure is
    the result."""
    a = m.attrs
    if not a.get("run_ok", True):
        return ""
    if a.get("contaminated"):
        return f"contaminated: {a.get('isolation', '')}"
    if a.get("unsettled"):
        return "device not settled before the run" + (
            f" (idle floor {a['idle_floor_w']:.1f} W, read {a['pre_baseline_w']:.1f} W)"
            if math.isfinite(a.get("idle_floor_w", NAN)) else "")
    return ""


def measure_alone(
    run: Callable[[], RunResult],
    meter: Meter,
    cfg: MeasureConfig,
    repeat_index: int = 0,
    *,
    log: Log | None = None,
    retakes: int = RETAKES,
) -> tuple[RunResult, Measurement]:
    """`measure`, taken again (up to `retakes` times, after growing pauses) while it was not
    alone on its device or started from an unsettled one. The measurement kept records every
    discarded try (`retakes`, `retake_reasons`). Raises DeviceBusy when no try was clean."""
    say = log or (lambda s: None)
    reasons: list[str] = []
    for attempt in range(retakes + 1):
        rr, m = measure(run, meter, cfg, repeat_index, log=log)
        why = retake_reason(m)
        if not why:
            m.attrs["retakes"] = attempt
            m.attrs["retake_reasons"] = json.dumps(reasons)
            return rr, m
        reasons.append(why)
        say(f"measurement taken again: {why}")
        if attempt < retakes:
            time.sleep(RETAKE_PAUSE_S[min(attempt, len(RETAKE_PAUSE_S) - 1)])
    raise DeviceBusy(f"{meter.device} {meter.device_id}: no measurement taken alone in {retakes + 1} tries "
                     f"(last: {reasons[-1]})")


def measure_repeats(
    run: Callable[[], RunResult],
    meter: Meter,
    cfg: MeasureConfig,
    repeat: int | None = None,
    *,
    log: Log | None = None,
    rng: random.Random | None = None,
    lock: Callable[[], AbstractContextManager[object]] | None = None,
) -> list[tuple[RunResult, Measurement]]:
    """`repeat` measurements (default cfg.repeat) with a random delay of up to
    cfg.random_delay_s before each one after the first, so that repeats do not share the
    sensor's update phase. `lock`: held around each measurement (the device's lock)."""
    n = (cfg.repeat or 1) if repeat is None else repeat
    rng = rng or random.Random()
    out: list[tuple[RunResult, Measurement]] = []
    for r in range(n):
        delay = repeat_delay(rng, cfg, r)
        with lock() if lock is not None else nullcontext():
            rr, m = measure_alone(run, meter, cfg, r, log=log)
        m.attrs["random_delay_s"] = delay
        out.append((rr, m))
    return out

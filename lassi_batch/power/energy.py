"""Energy figures from a raw power trace: pure functions, no I/O, no clock.

Every figure the project reports is derived here from a `PowerTrace` and its `Window`, so a new
definition can be recomputed from archived traces without a GPU (`lassi-batch recompute`).

Three sources can give the energy of a run, and they disagree on real hardware:

* the cumulative energy **counter** (NVML total energy, AMD energy accumulator, RAPL): the
  hardware integrates power itself; we only interpolate its ~100 ms steps at the window edges.
  Zeus trusts it on Volta and newer; on an H100 it is the reference.
* the **instant** power channel (NVML field 186, AMD current socket power), integrated by the
  trapezoid rule. On A100/H100 this reading averages only ~25 ms of each 100 ms, so it is
  unbiased for steady loads but noisy for bursty ones.
* the sensor's **moving average** (nvmlDeviceGetPowerUsage: a 1 s average on Hopper), which is
  what the LASSI-EE paper sampled. It lags the load by about a second, so integrating it over
  the run window loses the energy that shows up after the program exits: short runs are
  under-counted by up to half (measured on an H100, see docs/measurement.md).

The default figure `energy_net_j` uses the counter when the trace has one that covers the run
window, the instant channel otherwise, and the averaged channel only as a last resort (with a
note). Net means: minus the idle baseline times the runtime, never clamped (clamping noise at
zero biases the sum upwards); only the paper's Eq. 4 clamps, as published.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from .trace import PowerTrace, Window

NAN = math.nan

# Figure names written to archives (as fig_<name>) and their meaning. Units are in the suffix.
FIGURES: dict[str, str] = {
    "runtime_s": "t_exit - t_launch of the measured program",
    "idle_w": "idle baseline used for every net figure (pre-run level, or post-run level when lower; see notes)",
    "idle_pre_w": "lowest stable level of the power channel in the pre-run idle window",
    "idle_post_w": "median power after the device settled (t_settled..t_end); NaN if not sampled",
    "energy_net_j": "THE DEFAULT: energy above idle over the run window, from the source named in attrs energy_method",
    "energy_gross_j": "total device energy over the run window, same source as energy_net_j",
    "energy_counter_j": "energy counter difference over the run window (linear interpolation between counter updates)",
    "energy_counter_net_j": "energy_counter_j - idle_w * runtime_s",
    "energy_instant_j": "trapezoid integral of the instant power channel over the run window",
    "energy_instant_net_j": "trapezoid integral of (instant - idle_w) over the run window, not clamped",
    "energy_average_net_j": "trapezoid integral of (moving average - idle_w) over the run window (lags the load)",
    "energy_eq4_paper_j": "LASSI-EE Eq. 4 as published: dt * sum(max(P_avg - idle_paper_w, 0)) over the run window",
    "energy_eq4_instant_j": "Eq. 4 on the instant channel with idle_w",
    "idle_paper_w": "the paper's idle: mean of the averaged channel's pre-run mean and the post-run idle level",
    "energy_tail_j": "energy above idle from exit until the device settled (t_exit..t_settled), default source",
    "tail_s": "t_settled - t_exit",
    "power_avg_w": "energy_gross_j / runtime_s",
    "power_net_avg_w": "energy_net_j / runtime_s",
    "power_peak_w": "largest instant (else averaged) reading in the run window",
    "n_samples": "power samples inside the run window",
    "n_counter": "counter reads inside the run window",
    "sample_interval_s": "median spacing of the power samples",
    "max_gap_s": "largest spacing between power samples in the run window (sampler stalls)",
    "counter_glitches": "counter samples dropped as non-monotonic outliers",
    "counter_resets": "persistent counter drops treated as a reset or wrap",
    "temperature_max_c": "highest device temperature in the run window",
}

METHODS = ("counter", "instant", "average", "none")


# ------------------------------------------------------------------ small helpers


def _finite(t: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(t, dtype=float)
    x = np.asarray(x, dtype=float)
    if t.shape != x.shape:
        n = min(t.size, x.size)
        t, x = t[:n], x[:n]
    m = np.isfinite(t) & np.isfinite(x)
    return t[m], x[m]


def has_data(x: np.ndarray) -> bool:
    """True when the channel holds at least one real reading."""
    x = np.asarray(x, dtype=float)
    return bool(x.size) and bool(np.isfinite(x).any())


def median_dt(t: np.ndarray) -> float:
    """Nominal sample spacing (median, so that a stall does not change it)."""
    t = np.asarray(t, dtype=float)
    if t.size < 2:
        return NAN
    return float(np.median(np.diff(t)))


def median_in(t: np.ndarray, p: np.ndarray, a: float, b: float) -> float:
    t, p = _finite(t, p)
    m = (t >= a) & (t <= b)
    return float(np.median(p[m])) if m.any() else NAN


def mean_in(t: np.ndarray, p: np.ndarray, a: float, b: float) -> float:
    t, p = _finite(t, p)
    m = (t >= a) & (t <= b)
    return float(p[m].mean()) if m.any() else NAN


# ------------------------------------------------------------------ integration


def integrate(t: np.ndarray, p: np.ndarray, a: float, b: float) -> float:
    """Trapezoid integral of p(t) over [a, b], interpolating p linearly at the edges.

    NaN when the finite samples do not reach both edges: an integral over a window the sampler
    did not see would be a guess.
    """
    t, p = _finite(t, p)
    if b < a or t.size < 2 or t[0] > a or t[-1] < b:
        return NAN
    inner = (t > a) & (t < b)
    ts = np.concatenate(([a], t[inner], [b]))
    ps = np.concatenate(([np.interp(a, t, p)], p[inner], [np.interp(b, t, p)]))
    return float(np.sum((ps[1:] + ps[:-1]) * np.diff(ts)) / 2.0)


def eq4(t: np.ndarray, p: np.ndarray, a: float, b: float, idle_w: float, dt: float | None = None) -> float:
    """The paper's Eq. 4: dt * sum over samples in [a, b] of max(P_i - idle, 0).

    dt is the nominal sample interval (the paper's 0.01 s); by default the median spacing.
    """
    t_all = np.asarray(t, dtype=float)
    t, p = _finite(t, p)
    m = (t >= a) & (t <= b)
    if not m.any() or not math.isfinite(idle_w):
        return NAN
    step = median_dt(t_all) if dt is None else dt
    return float(step * np.sum(np.maximum(p[m] - idle_w, 0.0)))


# ------------------------------------------------------------------ baselines and settling


def idle_baseline(
    t: np.ndarray, p: np.ndarray, a: float, b: float, tolerance: float = 0.05, bin_s: float = 0.1
) -> float:
    """Idle level in [a, b]: the lowest stable level, robust to a "just used" device.

    The window is cut into bins of one sensor update (0.1 s). The lowest bin median marks the
    idle plateau; the bins within `tolerance` of it give a first level, and the result is the
    median of all samples in bins within `tolerance` of that level (the second pass re-centres
    the band, so noise does not pull the figure towards the lowest bin). A clean window gives
    its plain median; a window that starts in the ~133 W state an H100 keeps for ~2 s after a
    run and ends at 74 W gives ~74 W, not the mixture.
    """
    t, p = _finite(t, p)
    m = (t >= a) & (t <= b)
    t, p = t[m], p[m]
    if p.size == 0:
        return NAN
    idx = np.floor((t - a) / bin_s).astype(np.int64)
    bins = np.unique(idx)
    meds = np.array([np.median(p[idx == k]) for k in bins])
    low = float(meds.min())
    level = float(np.median(p[np.isin(idx, bins[meds <= low + tolerance * abs(low)])]))
    keep = np.isin(idx, bins[np.abs(meds - level) <= tolerance * abs(level)])
    return float(np.median(p[keep])) if keep.any() else level


def settle_time(
    t: np.ndarray,
    p: np.ndarray,
    t_from: float,
    baseline_w: float,
    tolerance: float = 0.05,
    hold_s: float = 0.3,
    quantile: float = 0.8,
) -> float:
    """First time >= t_from from which the device stays at idle for `hold_s`.

    "At idle" for a stretch [t_i, t_i + hold_s] means at least `quantile` of its readings are at
    most baseline * (1 + tolerance) (readings below idle count as settled). Returns the start of
    that stretch, so that tail energy ends where the power actually came down; NaN if no full
    stretch exists yet.
    """
    t, p = _finite(t, p)
    if t.size == 0 or not math.isfinite(baseline_w):
        return NAN
    ok = (p <= baseline_w * (1.0 + tolerance)).astype(np.int64)
    cum = np.concatenate(([0], np.cumsum(ok)))
    end = np.searchsorted(t, t + hold_s, side="right")
    count = end - np.arange(t.size)
    frac = (cum[end] - cum[np.arange(t.size)]) / np.maximum(count, 1)
    valid = (t >= t_from) & (t + hold_s <= t[-1]) & (frac >= quantile) & (count >= 2)
    hits = np.flatnonzero(valid)
    return float(t[hits[0]]) if hits.size else NAN


# ------------------------------------------------------------------ the energy counter


@dataclass
class CleanCounter:
    t: np.ndarray
    j: np.ndarray
    glitches: int = 0  # isolated non-monotonic samples dropped
    resets: int = 0  # persistent drops (wrap with unknown range, or reset), stitched


def unwrap_delta(prev_raw: float, raw: float, wrap: float) -> float:
    """Increment of a counter that wraps at `wrap` (e.g. RAPL's max_energy_range_uj)."""
    d = raw - prev_raw
    if d < 0 and wrap > 0 and -d > wrap / 2:
        d += wrap
    return d


def clean_counter(t: np.ndarray, j: np.ndarray, wrap: float | None = None) -> CleanCounter:
    """Make a cumulative counter monotonic without inventing energy.

    * an isolated sample out of line with both neighbours (a low read, or a spike) is dropped;
    * a persistent drop is a wrap (added back when `wrap` is known) or a reset, stitched so the
      total continues from the last good value (the interval of the drop counts as zero and is
      reported in `resets`).
    """
    t, j = _finite(t, j)
    glitches = 0
    for _ in range(4):  # a few passes catch two bad samples in a row
        if j.size < 3:
            break
        prev, cur, nxt = j[:-2], j[1:-1], j[2:]
        bad_mid = ((cur < prev) | (cur > nxt)) & (prev <= nxt)
        bad = np.concatenate(([False], bad_mid, [False]))
        # a final sample below its predecessor has no successor to tell: treat it as a glitch
        if j[-1] < j[-2] and j.size >= 2 and not bad[-2]:
            bad[-1] = True
        if not bad.any():
            break
        glitches += int(bad.sum())
        t, j = t[~bad], j[~bad]
    resets = 0
    if j.size >= 2:
        d = np.diff(j)
        drops = d < 0
        if drops.any():
            resets = int(drops.sum())
            if wrap:
                d = np.where(drops & (-d > wrap / 2), d + wrap, d)
            d = np.maximum(d, 0.0)
            j = np.concatenate(([j[0]], j[0] + np.cumsum(d)))
    return CleanCounter(t=t, j=j, glitches=glitches, resets=resets)


def counter_steps(t: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points (time, energy) where the counter took a new value.

    A counter that updates every ~100 ms (NVML) changed somewhere between the last read that
    showed the old value and the first that showed the new one; the midpoint is the unbiased
    estimate of that moment. The first read is not a step (its update time is unknown).
    Counters that update much faster than they are read (RAPL) are read at the sample rate, so
    the midpoint costs them at most half a sample interval.
    """
    t = np.asarray(t, dtype=float)
    j = np.asarray(j, dtype=float)
    if t.size < 2:
        return np.zeros(0), np.zeros(0)
    ch = np.flatnonzero(j[1:] != j[:-1]) + 1
    return (t[ch - 1] + t[ch]) / 2.0, j[ch]


def counter_energy(t: np.ndarray, j: np.ndarray, a: float, b: float) -> float:
    """Counter energy over [a, b] by linear interpolation between update points.

    NaN unless updates bracket both edges: the counter must have moved after `b` (a read that
    has not caught up yet would under-count the end of the run).
    """
    ts, js = counter_steps(t, j)
    if ts.size < 2 or ts[0] > a or ts[-1] < b or b < a:
        return NAN
    return float(np.interp(b, ts, js) - np.interp(a, ts, js))


def counter_power(t: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean power between consecutive counter updates (for plots): (midpoints, W)."""
    ts, js = counter_steps(t, j)
    if ts.size < 2:
        return np.zeros(0), np.zeros(0)
    dt = np.diff(ts)
    ok = dt > 0
    return ((ts[1:] + ts[:-1]) / 2.0)[ok], (np.diff(js)[ok] / dt[ok])


# ------------------------------------------------------------------ all figures of one run


@dataclass
class Analysis:
    """Figures plus how they were obtained."""

    figures: dict[str, float]
    method: str  # source of energy_net_j: counter | instant | average | none
    idle_source: str  # pre | post | none
    notes: list[str] = field(default_factory=list)


def power_channel(trace: PowerTrace) -> tuple[str, np.ndarray]:
    """The channel used for baselines and settling: instant if the meter has one, else average."""
    if has_data(trace.power_instant_w):
        return "instant", trace.power_instant_w
    if has_data(trace.power_average_w):
        return "average", trace.power_average_w
    return "none", np.full(trace.t.shape, NAN)


def analyze(trace: PowerTrace, window: Window, tolerance: float = 0.05) -> Analysis:
    """Compute every figure in FIGURES for one run (see module docstring for the choices)."""
    w = window
    notes: list[str] = []
    t = np.asarray(trace.t, dtype=float)
    a, b = float(w.t_launch), float(w.t_exit)
    runtime = b - a
    chan_name, chan = power_channel(trace)
    inst, avg = trace.power_instant_w, trace.power_average_w

    # idle baseline: the pre-run level, unless the device settled lower after the run
    idle_pre = idle_baseline(t, chan, w.t_idle_start, a, tolerance)
    # after settling the device is at idle by construction: a plain median, less noisy than the plateau search
    idle_post = median_in(t, chan, w.t_settled, w.t_end) if w.t_end - w.t_settled >= 0.1 else NAN
    idle, idle_source = idle_pre, "pre"
    if math.isfinite(idle_post) and (not math.isfinite(idle_pre) or idle_post < idle_pre * (1 - tolerance)):
        if math.isfinite(idle_pre):
            notes.append(
                f"pre-run idle {idle_pre:.1f} W is above the post-run level {idle_post:.1f} W: "
                "the device was not back at idle before the run; net figures use the post-run level"
            )
        idle, idle_source = idle_post, "post"
    if not math.isfinite(idle):
        idle_source = "none"
        notes.append("no idle baseline (no power readings around the run): net figures are NaN")

    # the three sources
    cc = clean_counter(trace.counter_t, trace.counter_j)
    if cc.glitches:
        notes.append(f"energy counter: dropped {cc.glitches} non-monotonic sample(s)")
    if cc.resets:
        notes.append(f"energy counter: stitched {cc.resets} reset(s)/wrap(s); that interval counts as zero")
    e_counter = counter_energy(cc.t, cc.j, a, b)
    if trace.counter_t.size and not math.isfinite(e_counter):
        notes.append("energy counter does not cover the run window (no update after exit?): not used")
    e_inst = integrate(t, inst, a, b)
    e_avg = integrate(t, avg, a, b)

    if math.isfinite(e_counter):
        method, gross = "counter", e_counter
    elif math.isfinite(e_inst):
        method, gross = "instant", e_inst
    elif math.isfinite(e_avg):
        method, gross = "average", e_avg
        notes.append(
            "energy from the sensor's moving average (no counter, no instant channel): "
            "it lags the load and under-counts short runs"
        )
    else:
        method, gross = "none", NAN
        notes.append("no power data cover the run window: energy figures are NaN")

    def net(e: float) -> float:
        return e - idle * runtime

    # the paper's idle: mean of the averaged channel before the run and of the idle after its 15 s
    # wait. We stop at settling, where the 1 s average still lags, so the post part is the settled
    # level (the averaged channel's last stretch only when there is none).
    pre_len = max(a - w.t_idle_start, 0.0)
    idle_paper = NAN
    if has_data(avg):
        pre_m = mean_in(t, avg, w.t_idle_start, a)
        post_m = idle_post if math.isfinite(idle_post) else mean_in(t, avg, max(b, w.t_end - pre_len), w.t_end)
        both = [x for x in (pre_m, post_m) if math.isfinite(x)]
        idle_paper = float(np.mean(both)) if both else NAN

    # tail: exit until settled, above idle, default source (instant if the counter stops short)
    tail_s = w.t_settled - b
    tail = NAN
    if tail_s > 0:
        if method == "counter":
            tail = counter_energy(cc.t, cc.j, b, w.t_settled)
        if not math.isfinite(tail) and method in ("counter", "instant"):
            tail = integrate(t, inst, b, w.t_settled)
        if not math.isfinite(tail) and method == "average":
            tail = integrate(t, avg, b, w.t_settled)
        tail = tail - idle * tail_s
    elif tail_s == 0:
        tail = 0.0

    in_run = (t >= a) & (t <= b)
    peak_src = inst if has_data(inst) else avg
    peak_vals = np.asarray(peak_src, dtype=float)[in_run] if peak_src.size == t.size else np.zeros(0)
    peak_vals = peak_vals[np.isfinite(peak_vals)]
    temps = np.asarray(trace.temperature_c, dtype=float)
    temps = temps[in_run] if temps.size == t.size else np.zeros(0)
    temps = temps[np.isfinite(temps)]
    t_run = t[in_run]
    gaps = np.diff(np.concatenate(([a], t_run, [b]))) if t_run.size else np.array([runtime])
    ct = np.asarray(trace.counter_t, dtype=float)

    fig: dict[str, float] = {
        "runtime_s": runtime,
        "idle_w": idle,
        "idle_pre_w": idle_pre,
        "idle_post_w": idle_post,
        "energy_net_j": net(gross),
        "energy_gross_j": gross,
        "energy_counter_j": e_counter,
        "energy_counter_net_j": net(e_counter),
        "energy_instant_j": e_inst,
        "energy_instant_net_j": net(e_inst),
        "energy_average_net_j": net(e_avg),
        "energy_eq4_paper_j": eq4(t, avg, a, b, idle_paper),
        "energy_eq4_instant_j": eq4(t, inst, a, b, idle),
        "idle_paper_w": idle_paper,
        "energy_tail_j": tail,
        "tail_s": tail_s,
        "power_avg_w": gross / runtime if runtime > 0 else NAN,
        "power_net_avg_w": net(gross) / runtime if runtime > 0 else NAN,
        "power_peak_w": float(peak_vals.max()) if peak_vals.size else NAN,
        "n_samples": float(in_run.sum()),
        "n_counter": float(((ct >= a) & (ct <= b)).sum()),
        "sample_interval_s": median_dt(t),
        "max_gap_s": float(gaps.max()) if gaps.size else NAN,
        "counter_glitches": float(cc.glitches),
        "counter_resets": float(cc.resets),
        "temperature_max_c": float(temps.max()) if temps.size else NAN,
    }
    if runtime <= 0:
        notes.append(f"empty run window (runtime {runtime:.3f} s)")
    return Analysis(figures=fig, method=method, idle_source=idle_source, notes=notes)


def compute_figures(trace: PowerTrace, window: Window, tolerance: float = 0.05) -> dict[str, float]:
    """All figures of FIGURES for one run; `energy_net_j` is the default (see `analyze`)."""
    return analyze(trace, window, tolerance).figures


# ------------------------------------------------------------------ repeats


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float  # sample standard deviation (n - 1); NaN for n < 2
    cv_pct: float  # 100 * std / |mean|
    n: int  # finite values used


def summarize(values: Iterable[float | None]) -> Summary:
    """Mean, spread and coefficient of variation of repeated figures; NaN/None are skipped."""
    v = np.array([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return Summary(NAN, NAN, NAN, 0)
    mean = float(v.mean())
    std = float(v.std(ddof=1)) if n >= 2 else NAN
    cv = 100.0 * std / abs(mean) if n >= 2 and mean != 0 else NAN
    return Summary(mean, std, cv, n)

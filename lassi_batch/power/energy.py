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
    "idle_w": "idle level subtracted from energy_net_j, from the same sensor as its gross energy (attrs idle_sensor); pre-run level, or post-run level when lower",
    "idle_pre_w": "lowest stable level of the power channel in the pre-run idle window",
    "idle_post_w": "median power after the device settled (t_settled..t_end); NaN if not sampled",
    "idle_counter_w": "the energy counter's mean power over the idle stretch (its slope between the first and last update inside)",
    "idle_counter_precision_w": "half-width of idle_counter_w's uncertainty, from the time bounds of its two end updates",
    "idle_sensor_offset_w": "idle_counter_w minus the power channel's idle: the offset between the two sensors at idle",
    "energy_net_j": "THE DEFAULT: energy above idle over the run window, from the source named in attrs energy_method",
    "energy_net_precision_j": "error bound of energy_net_j from the sampling of its source (counter edge reads plus idle_counter_precision_w x runtime, or readings between samples)",
    "energy_gross_j": "total device energy over the run window, same source as energy_net_j",
    "energy_counter_j": "energy counter difference over the run window (linear interpolation between counter updates)",
    "energy_counter_net_j": "energy_counter_j - idle_counter_w * runtime_s (idle_w when the counter gives no idle)",
    "energy_counter_precision_j": "width of the energy the counter's reads allow at launch plus at exit (a bound on the interpolation error)",
    "energy_instant_j": "trapezoid integral of the instant power channel over the run window",
    "energy_instant_net_j": "trapezoid integral of (instant - the instant channel's idle) over the run window, not clamped",
    "energy_instant_precision_j": "sum of |p[i+1] - p[i]| dt / 2 over the window: the trapezoid's bound when power moves monotonically between samples",
    "energy_average_net_j": "trapezoid integral of (moving average - its own idle) over the run window (lags the load)",
    "energy_eq4_paper_j": "LASSI-EE Eq. 4 as published: dt * sum(max(P_avg - idle_paper_w, 0)) over the run window; NaN unless the trace covers 15 s after exit",
    "energy_eq4_settled_j": "Eq. 4 with idle_paper_settled_w (the post-run idle taken once settled instead of over 15 s)",
    "energy_eq4_instant_j": "Eq. 4 on the instant channel with idle_w",
    "idle_paper_w": "the paper's idle: mean of the averaged channel's pre-run mean and its mean over the 15 s after exit",
    "idle_paper_settled_w": "mean of the averaged channel's pre-run mean and the settled post-run level",
    "energy_tail_j": "energy above idle from exit until the device settled (t_exit..t_settled), default source and its idle",
    "tail_s": "t_settled - t_exit",
    "power_avg_w": "energy_gross_j / runtime_s",
    "power_net_avg_w": "energy_net_j / runtime_s",
    "power_peak_w": "largest instant or averaged reading in the run window (edges interpolated), at least power_avg_w (a run shorter than a sensor update shows no reading)",
    "n_samples": "power samples inside the run window",
    "n_counter": "counter reads inside the run window",
    "sample_interval_s": "median spacing of the power samples",
    "max_gap_s": "largest spacing between power samples in the run window (sampler stalls)",
    "counter_glitches": "counter samples dropped as non-monotonic outliers",
    "counter_resets": "persistent counter drops treated as a reset or wrap",
    "temperature_max_c": "highest device temperature in the run window",
}

METHODS = ("counter", "instant", "average", "none")
PAPER_POST_S = 15.0  # the paper's post-run window, over which it averaged the post-run idle
PAPER_POST_SLACK_S = 0.05
PERIODIC_GAP = 0.9  # read gaps up to this fraction of the update period hold at most one update
PERIODIC_JITTER_S = 0.005  # irregular updates, and when within a read call (NVML: ~4 ms) the value was taken
IDLE_GUARD_S = 0.1  # the idle plateau is judged up to this long before launch
IDLE_MIN_SPAN_S = 0.3  # ... and spans at least this (three NVML updates), or half the quiet stretch  # a trace that ends this close to exit + 15 s still covers the window


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


def quiet_since(
    t: np.ndarray, p: np.ndarray, a: float, b: float, level_w: float, tolerance: float = 0.05, bin_s: float = 0.1
) -> float:
    """Start of the last stretch of [a, b] whose 0.1 s bins all sit within `tolerance` of
    `level_w` (the idle plateau); `a` when the channel has no data, `b` when no bin does."""
    t, p = _finite(t, p)
    m = (t >= a) & (t <= b)
    t, p = t[m], p[m]
    if p.size == 0 or not math.isfinite(level_w):
        return a
    idx = np.floor((t - a) / bin_s).astype(np.int64)
    bins = np.unique(idx)
    ok = np.array([abs(float(np.median(p[idx == k])) - level_w) <= tolerance * abs(level_w) for k in bins])
    if ok.all():
        return a
    bad = np.flatnonzero(~ok)
    if bad[-1] == bins.size - 1:
        return b
    return float(a + bins[bad[-1] + 1] * bin_s)


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


def _step_bounds(
    t: np.ndarray, j: np.ndarray, update_s: float = NAN
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(earliest, latest) possible update time and value of every counter change seen."""
    t = np.asarray(t, dtype=float)
    j = np.asarray(j, dtype=float)
    if t.size < 2:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    ch = np.flatnonzero(j[1:] != j[:-1]) + 1
    prev, cur = t[ch - 1], t[ch]
    periodic = math.isfinite(update_s) and update_s > 0
    lo = np.maximum(prev, cur - update_s) if math.isfinite(update_s) and update_s >= 0 else prev.copy()
    hi = cur.copy()
    if periodic and ch.size >= 2:
        # a change seen after a read gap shorter than one period is exactly one update after the
        # previous change (no read in between saw a change): u[k+1] = u[k] + period. Chains of
        # such steps share their bounds, so a burst of fine reads at an edge also pins the update
        # just before it.
        one = (cur[1:] - prev[1:]) <= PERIODIC_GAP * update_s
        jit = PERIODIC_JITTER_S
        for _ in range(2):
            for k in np.flatnonzero(one):  # forward
                lo[k + 1] = max(lo[k + 1], lo[k] + update_s - jit)
                hi[k + 1] = min(hi[k + 1], hi[k] + update_s + jit)
            for k in np.flatnonzero(one)[::-1]:  # backward
                lo[k] = max(lo[k], lo[k + 1] - update_s - jit)
                hi[k] = min(hi[k], hi[k + 1] - update_s + jit)
        bad = lo > hi  # not periodic after all (a skipped or extra update): keep the plain bounds
        lo[bad], hi[bad] = np.maximum(prev, cur - update_s)[bad], cur[bad]
    return lo, hi, j[ch]


def counter_steps(t: np.ndarray, j: np.ndarray, update_s: float = NAN) -> tuple[np.ndarray, np.ndarray]:
    """Points (time, energy) where the counter took a new value.

    The value first seen at read t_k was set by the counter's latest update before t_k. That
    update happened after the previous read t_{k-1}, and, for a counter that updates every
    `update_s`, no earlier than t_k - update_s: with reads 1 s apart and 100 ms updates (NVML
    away from the run's edges) the update is in the last 100 ms before t_k, not anywhere in the
    gap. The step is placed in the middle of that interval. `update_s` 0 means the counter is
    computed at each read (the step is at the read); NaN (unknown) falls back to the middle of
    the gap between reads. The first read is not a step (its update time is unknown).
    """
    lo, hi, js = _step_bounds(t, j, update_s)
    return (lo + hi) / 2.0, js


def counter_at(ts: np.ndarray, js: np.ndarray, x: float, quiet: str = "") -> float:
    """Counter energy at time `x` from update points (ts, js).

    Plain linear interpolation assumes constant power across the update period that holds `x`;
    at a run edge that period holds a jump (idle before launch, load after it), which linear
    interpolation smears, under-counting the run by about a sixth of the jump x the period at
    each edge. With `quiet` = "before" (a launch) or "after" (an exit) the quiet side keeps
    the power of its neighbouring period and the rest of the period's energy goes to the run.
    """
    if ts.size < 2 or x < ts[0] or x > ts[-1]:
        return NAN
    k = int(np.searchsorted(ts, x, side="right")) - 1
    k = min(max(k, 0), ts.size - 2)
    lin = float(np.interp(x, ts, js))
    e0, e1 = float(js[k]), float(js[k + 1])
    if quiet == "before" and k >= 1 and ts[k] > ts[k - 1]:
        p_side = (js[k] - js[k - 1]) / (ts[k] - ts[k - 1])
        return float(min(max(e0 + p_side * (x - ts[k]), e0), e1))
    if quiet == "after" and k + 2 < ts.size and ts[k + 2] > ts[k + 1]:
        p_side = (js[k + 2] - js[k + 1]) / (ts[k + 2] - ts[k + 1])
        return float(min(max(e1 - p_side * (ts[k + 1] - x), e0), e1))
    return lin


def counter_energy(t: np.ndarray, j: np.ndarray, a: float, b: float, update_s: float = NAN,
                   edges: bool = False) -> float:
    """Counter energy over [a, b] between update points; `edges`: [a, b] is a run window
    (quiet before a, quiet after b; see counter_at), otherwise plain linear interpolation.

    NaN unless updates bracket both edges: the counter must have moved after `b` (a read that
    has not caught up yet would under-count the end of the run).
    """
    ts, js = counter_steps(t, j, update_s)
    if ts.size < 2 or ts[0] > a or ts[-1] < b or b < a:
        return NAN
    if edges:  # two edges inside one update period can cross over by their timing error: energy is >= 0
        return max(counter_at(ts, js, b, "after") - counter_at(ts, js, a, "before"), 0.0)
    return float(np.interp(b, ts, js) - np.interp(a, ts, js))


def counter_edge_bound(t: np.ndarray, j: np.ndarray, edge: float, update_s: float = NAN) -> float:
    """Width of the energy interval the counter's reads allow at time `edge` (J).

    The counter's value at `edge` lies between the last step that surely happened before it
    (latest possible update time <= edge) and the first that surely happened after it
    (earliest possible update time >= edge); any interpolation lands inside, so this width
    bounds its error. NaN when no step brackets the edge.
    """
    lo, hi, js = _step_bounds(t, j, update_s)
    before = np.flatnonzero(hi <= edge)
    after = np.flatnonzero(lo >= edge)
    if before.size == 0 or after.size == 0:
        return NAN
    return float(js[after[0]] - js[before[-1]])


def counter_slope_bounds(t: np.ndarray, j: np.ndarray, a: float, b: float, update_s: float = NAN,
                         min_span_s: float = 0.0) -> tuple[float, float]:
    """Mean power (W) from the counter over [a, b], and its uncertainty (W, half-width).

    This is how the idle level is taken from the same sensor as the run's gross energy. Only
    updates that surely happened inside [a, b] count; of those, the best-dated one in each half
    of the stretch are the ends (reads closer than the update period pin an update, see
    _step_bounds), so the slope is the energy between them over the time between them. The
    half-width follows from the ends' time bounds. NaN with fewer than two steps or a span
    below `min_span_s`.
    """
    lo, hi, js = _step_bounds(t, j, update_s)
    idx = np.flatnonzero((lo >= a) & (hi <= b))  # updates that surely happened inside [a, b]
    if idx.size < 2:
        return NAN, NAN
    mid = (lo + hi) / 2.0
    width = hi - lo
    half = mid[idx[0]] + (mid[idx[-1]] - mid[idx[0]]) / 2.0
    first, last = idx[mid[idx] <= half], idx[mid[idx] > half]
    if first.size == 0 or last.size == 0:
        first, last = idx[:1], idx[-1:]
    k0 = int(first[np.argmin(width[first])])
    k1 = int(last[np.argmin(width[last])])
    span = float(mid[k1] - mid[k0])
    if span <= 0 or span < min_span_s:
        return NAN, NAN
    energy = float(js[k1] - js[k0])
    slope = energy / span
    short, long_ = float(lo[k1] - hi[k0]), float(hi[k1] - lo[k0])
    err = (energy / short - energy / long_) / 2.0 if short > 0 else math.inf
    return slope, err


def counter_slope(t: np.ndarray, j: np.ndarray, a: float, b: float, update_s: float = NAN,
                  min_span_s: float = 0.0) -> float:
    """Mean power (W) from the counter over [a, b] (see counter_slope_bounds)."""
    return counter_slope_bounds(t, j, a, b, update_s, min_span_s)[0]


def counter_power(t: np.ndarray, j: np.ndarray, update_s: float = NAN) -> tuple[np.ndarray, np.ndarray]:
    """Mean power between consecutive counter updates (for plots): (midpoints, W)."""
    ts, js = counter_steps(t, j, update_s)
    if ts.size < 2:
        return np.zeros(0), np.zeros(0)
    dt = np.diff(ts)
    ok = dt > 0
    return ((ts[1:] + ts[:-1]) / 2.0)[ok], (np.diff(js)[ok] / dt[ok])


def trapezoid_bound(t: np.ndarray, p: np.ndarray, a: float, b: float) -> float:
    """Error bound (J) of `integrate` over [a, b] when power moves monotonically between samples.

    Between two samples the true integral lies between p_i dt and p_{i+1} dt; the trapezoid takes
    the middle, so each interval errs by at most |p_{i+1} - p_i| dt / 2. The partial intervals at
    the window's edges use an interpolated value, so they get the full |p_{i+1} - p_i| x length.
    """
    t, p = _finite(t, p)
    if b < a or t.size < 2 or t[0] > a or t[-1] < b:
        return NAN
    inner = t[(t > a) & (t < b)]
    pin = p[(t > a) & (t < b)]
    total = float(np.sum(np.abs(np.diff(pin)) * np.diff(inner)) / 2.0) if inner.size >= 2 else 0.0

    def bracket_jump(x: float) -> float:
        k = min(max(int(np.searchsorted(t, x, side="right")) - 1, 0), t.size - 2)
        return abs(float(p[k + 1] - p[k]))

    if inner.size:
        total += bracket_jump(a) * (inner[0] - a) + bracket_jump(b) * (b - inner[-1])
    else:
        total += max(bracket_jump(a), bracket_jump(b)) * (b - a)
    return total


def window_peak(t: np.ndarray, p: np.ndarray, a: float, b: float) -> float:
    """Largest reading of a sampled channel over [a, b], its interpolated edge values included
    (so that it bounds the trapezoid average over the window)."""
    t, p = _finite(t, p)
    if t.size == 0:
        return NAN
    m = (t >= a) & (t <= b)
    vals = [p[m]]
    if t.size >= 2 and t[0] <= a <= t[-1]:
        vals.append(np.interp([a], t, p))
    if t.size >= 2 and t[0] <= b <= t[-1]:
        vals.append(np.interp([b], t, p))
    v = np.concatenate(vals)
    return float(v.max()) if v.size else NAN


# ------------------------------------------------------------------ all figures of one run


@dataclass
class Analysis:
    """Figures plus how they were obtained."""

    figures: dict[str, float]
    method: str  # source of energy_net_j: counter | instant | average | none
    idle_source: str  # pre | post | none
    notes: list[str] = field(default_factory=list)
    idle_sensor: str = "none"  # counter | instant | average | none: where idle_w comes from


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
    ustep = float(getattr(trace, "counter_update_s", NAN))

    # idle level of the power channel: the pre-run level, unless the device settled lower after the run
    idle_pre = idle_baseline(t, chan, w.t_idle_start, a, tolerance)
    # after settling the device is at idle by construction: a plain median, less noisy than the plateau search
    idle_post = median_in(t, chan, w.t_settled, w.t_end) if w.t_end - w.t_settled >= 0.1 else NAN
    idle_chan, idle_source = idle_pre, "pre"
    if math.isfinite(idle_post) and (not math.isfinite(idle_pre) or idle_post < idle_pre * (1 - tolerance)):
        if math.isfinite(idle_pre):
            notes.append(
                f"pre-run idle {idle_pre:.1f} W is above the post-run level {idle_post:.1f} W: "
                "the device was not back at idle before the run; net figures use the post-run level"
            )
        idle_chan, idle_source = idle_post, "post"

    # the three sources
    cc = clean_counter(trace.counter_t, trace.counter_j)
    if cc.glitches:
        notes.append(f"energy counter: dropped {cc.glitches} non-monotonic sample(s)")
    if cc.resets:
        notes.append(f"energy counter: stitched {cc.resets} reset(s)/wrap(s); that interval counts as zero")
    e_counter = counter_energy(cc.t, cc.j, a, b, ustep, edges=True)
    if trace.counter_t.size and not math.isfinite(e_counter):
        notes.append("energy counter does not cover the run window (no update after exit?): not used")
    e_inst = integrate(t, inst, a, b)
    e_avg = integrate(t, avg, a, b)

    # the counter's own idle (its slope over the idle stretch), so that gross and idle share a sensor
    if idle_source == "post":
        idle_counter, idle_counter_err = counter_slope_bounds(
            cc.t, cc.j, w.t_settled, w.t_end, ustep, min_span_s=min(IDLE_MIN_SPAN_S, 0.5 * (w.t_end - w.t_settled)))
    else:
        # over the stretch before launch where the power channel sits at its idle level (a window
        # that begins in the "just used" state must not count); updates surely before launch
        edge = a
        quiet = quiet_since(t, chan, w.t_idle_start, a - IDLE_GUARD_S, idle_pre, tolerance)
        idle_counter, idle_counter_err = counter_slope_bounds(
            cc.t, cc.j, quiet, edge, ustep, min_span_s=min(IDLE_MIN_SPAN_S, 0.5 * (edge - quiet)))
    idle_avg = idle_chan if chan_name == "average" else idle_baseline(t, avg, w.t_idle_start, a, tolerance)

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

    idle, idle_sensor = idle_chan, chan_name
    if method == "counter":
        if math.isfinite(idle_counter):
            idle, idle_sensor = idle_counter, "counter"
        elif math.isfinite(idle_chan):
            notes.append(f"energy counter: too few updates in the idle window for its own idle level; "
                         f"net figures use the {chan_name} channel's idle")
    elif method == "average":
        idle, idle_sensor = idle_avg, "average"
    if not math.isfinite(idle):
        idle_source, idle_sensor = "none", "none"
        notes.append("no idle baseline (no power readings around the run): net figures are NaN")
    idle_counter_or_idle = idle_counter if math.isfinite(idle_counter) else idle

    # the paper's idle as published: mean of the averaged channel before the run and over the
    # 15 s after exit. The protocol waits that long only when asked (MeasureConfig.paper_post_s);
    # otherwise the published figure is NaN and the settled variant stands beside it.
    idle_paper = idle_paper_settled = NAN
    if has_data(avg):
        pre_m = mean_in(t, avg, w.t_idle_start, a)
        pre_len = max(a - w.t_idle_start, 0.0)
        if w.t_end >= b + PAPER_POST_S - PAPER_POST_SLACK_S:
            post_paper = mean_in(t, avg, b, b + PAPER_POST_S)
            if math.isfinite(pre_m) and math.isfinite(post_paper):
                idle_paper = (pre_m + post_paper) / 2.0
        post_m = idle_post if math.isfinite(idle_post) else mean_in(t, avg, max(b, w.t_end - pre_len), w.t_end)
        both = [x for x in (pre_m, post_m) if math.isfinite(x)]
        idle_paper_settled = float(np.mean(both)) if both else NAN

    # tail: exit until settled, above idle, default source and its own idle
    tail_s = w.t_settled - b
    tail = NAN
    if tail_s > 0:
        if method == "counter":
            ts_c, js_c = counter_steps(cc.t, cc.j, ustep)
            # the exit value as the run window took it, so that run + tail add up
            tail = counter_at(ts_c, js_c, w.t_settled) - counter_at(ts_c, js_c, b, "after") - idle * tail_s
        if not math.isfinite(tail) and method in ("counter", "instant"):
            tail = integrate(t, inst, b, w.t_settled) - idle_chan * tail_s
        if not math.isfinite(tail) and method == "average":
            tail = integrate(t, avg, b, w.t_settled) - idle * tail_s
    elif tail_s == 0:
        tail = 0.0

    # precision of each source from its sampling (edge timing, readings between samples)
    prec_counter = counter_edge_bound(cc.t, cc.j, a, ustep) + counter_edge_bound(cc.t, cc.j, b, ustep)
    prec_inst = trapezoid_bound(t, inst, a, b)
    prec_avg = trapezoid_bound(t, avg, a, b)
    prec = {"counter": prec_counter, "instant": prec_inst, "average": prec_avg}.get(method, NAN)
    if idle_sensor == "counter":
        prec += idle_counter_err * max(runtime, 0.0)  # the idle slope's own uncertainty, over the run

    # peak: the largest reading in the window (edges interpolated), and never below the window's
    # average: a run shorter than the sensor's update period shows no reading of its own, and
    # the true peak of a power curve is at least its mean
    peaks = [window_peak(t, inst, a, b), window_peak(t, avg, a, b), gross / runtime if runtime > 0 else NAN]
    peaks = [x for x in peaks if math.isfinite(x)]

    in_run = (t >= a) & (t <= b)
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
        "idle_counter_w": idle_counter,
        "idle_counter_precision_w": idle_counter_err,
        "idle_sensor_offset_w": idle_counter - idle_chan,
        "energy_net_j": gross - idle * runtime,
        "energy_net_precision_j": prec,
        "energy_gross_j": gross,
        "energy_counter_j": e_counter,
        "energy_counter_net_j": e_counter - idle_counter_or_idle * runtime,
        "energy_counter_precision_j": prec_counter,
        "energy_instant_j": e_inst,
        "energy_instant_net_j": e_inst - idle_chan * runtime,
        "energy_instant_precision_j": prec_inst,
        "energy_average_net_j": e_avg - idle_avg * runtime,
        "energy_eq4_paper_j": eq4(t, avg, a, b, idle_paper),
        "energy_eq4_settled_j": eq4(t, avg, a, b, idle_paper_settled),
        "energy_eq4_instant_j": eq4(t, inst, a, b, idle_chan),
        "idle_paper_w": idle_paper,
        "idle_paper_settled_w": idle_paper_settled,
        "energy_tail_j": tail,
        "tail_s": tail_s,
        "power_avg_w": gross / runtime if runtime > 0 else NAN,
        "power_net_avg_w": (gross - idle * runtime) / runtime if runtime > 0 else NAN,
        "power_peak_w": max(peaks) if peaks else NAN,
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
    return Analysis(figures=fig, method=method, idle_source=idle_source, notes=notes, idle_sensor=idle_sensor)


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

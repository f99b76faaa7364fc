"""Pure energy math: synthetic traces with known integrals, and the real H100 trace."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lassi_batch.power.energy import (
    FIGURES,
    analyze,
    clean_counter,
    compute_figures,
    counter_energy,
    counter_steps,
    eq4,
    idle_baseline,
    integrate,
    settle_time,
    summarize,
    unwrap_delta,
)
from lassi_batch.power.trace import PowerTrace, Window

DATA = Path(__file__).parent / "data"
IDLE = 74.0


# ------------------------------------------------------------------ a synthetic GPU


def synth(power: Callable[[np.ndarray], np.ndarray], t_end: float, dt: float = 0.01, update_s: float = 0.1,
          avg_window_s: float = 1.0, noise_w: float = 0.0, seed: int = 0) -> PowerTrace:
    """Sample a known power function like an H100 would report it.

    instant: the true power; average: a `avg_window_s` moving average refreshed every `update_s`;
    counter: the exact cumulative energy, refreshed every `update_s`.
    """
    fine = np.arange(0.0, t_end + 2.0, 0.001)
    p_fine = power(fine)
    e_fine = np.concatenate(([0.0], np.cumsum((p_fine[1:] + p_fine[:-1]) / 2 * 0.001)))
    t = np.arange(0.0, t_end, dt)
    tick = np.floor(t / update_s + 1e-9) * update_s
    e_tick = np.interp(tick, fine, e_fine)
    e_back = np.interp(np.maximum(tick - avg_window_s, 0.0), fine, e_fine)
    avg = (e_tick - e_back) / np.maximum(np.minimum(tick, avg_window_s), 1e-9)
    avg[tick < 1e-9] = power(np.zeros(1))[0]
    rng = np.random.default_rng(seed)
    inst = power(t) + (rng.normal(0.0, noise_w, t.size) if noise_w else 0.0)
    return PowerTrace(meter="synthetic", device="synthetic GPU", t=t, power_instant_w=inst,
                      power_average_w=avg, counter_t=t.copy(), counter_j=e_tick + 1e6)


def step(t0: float, t1: float, load: float, idle: float = IDLE) -> Callable[[np.ndarray], np.ndarray]:
    return lambda t: np.where((t >= t0) & (t < t1), load, idle)


def window(t_launch: float, t_exit: float, t_settled: float | None = None, t_end: float | None = None,
           pre: float = 1.0) -> Window:
    ts = t_exit + 0.5 if t_settled is None else t_settled
    return Window(t_launch - pre, t_launch, t_exit, ts, ts + 0.5 if t_end is None else t_end)


# ------------------------------------------------------------------ integration


def test_integrate_constant_and_step() -> None:
    t = np.arange(0, 5, 0.01)
    assert integrate(t, np.full(t.size, 100.0), 1.0, 3.0) == pytest.approx(200.0)
    p = np.where(t < 2.0, 100.0, 300.0)
    # trapezoid smears the step over one sample interval: exact to within that
    assert integrate(t, p, 1.0, 3.0) == pytest.approx(100 + 300, abs=200 * 0.01)


def test_integrate_refuses_uncovered_window() -> None:
    t = np.arange(1, 2, 0.01)
    assert math.isnan(integrate(t, np.ones(t.size), 0.5, 1.5))
    assert math.isnan(integrate(t, np.ones(t.size), 1.2, 2.5))


def test_integrate_skips_nan_samples() -> None:
    t = np.arange(0, 2, 0.01)
    p = np.full(t.size, 50.0)
    p[::7] = np.nan
    assert integrate(t, p, 0.2, 1.8) == pytest.approx(80.0)


@settings(max_examples=60, deadline=None)
@given(a=st.floats(0.0, 4.0), length=st.floats(0.05, 5.0), slope=st.floats(-20, 20), c=st.floats(0, 500))
def test_integrate_is_exact_for_linear_power(a: float, length: float, slope: float, c: float) -> None:
    t = np.linspace(0, 10, 1001)
    b = a + length
    exact = c * length + slope * (b * b - a * a) / 2
    assert integrate(t, c + slope * t, a, b) == pytest.approx(exact, rel=1e-9, abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(a=st.floats(0.0, 3.0), m=st.floats(0.01, 3.0), n=st.floats(0.01, 3.0))
def test_integrate_is_additive(a: float, m: float, n: float) -> None:
    t = np.arange(0, 10, 0.01)
    p = 100 + 50 * np.sin(t * 3)
    assert integrate(t, p, a, a + m) + integrate(t, p, a + m, a + m + n) == pytest.approx(integrate(t, p, a, a + m + n))


# ------------------------------------------------------------------ Eq. 4


def test_eq4_clamps_negative_and_uses_dt() -> None:
    t = np.arange(0, 1, 0.01)
    p = np.where(np.arange(t.size) % 2 == 0, IDLE + 10, IDLE - 10)
    # half the samples are 10 W above idle, the rest clamped to 0
    assert eq4(t, p, 0.0, 0.99, IDLE) == pytest.approx(0.01 * 50 * 10)
    assert eq4(t, p, 0.0, 0.99, IDLE, dt=0.02) == pytest.approx(0.02 * 50 * 10)
    assert math.isnan(eq4(t, p, 5.0, 6.0, IDLE))


def test_negative_noise_biases_eq4_but_not_the_unclamped_net() -> None:
    tr = synth(lambda t: np.full(t.shape, IDLE), 6.0, noise_w=5.0, seed=3)
    f = compute_figures(tr, window(3.0, 4.5))
    assert abs(f["energy_instant_net_j"]) < 2.0  # noise averages out
    assert f["energy_eq4_instant_j"] > 2.0  # clamping keeps only the positive half: ~ 1.5 s x 2 W
    assert f["energy_eq4_instant_j"] > f["energy_instant_net_j"] + 1.5


# ------------------------------------------------------------------ baselines and settling


def test_idle_baseline_clean_window_is_its_median() -> None:
    t = np.arange(0, 1, 0.01)
    p = IDLE + np.sin(t * 40)
    assert idle_baseline(t, p, 0, 1) == pytest.approx(float(np.median(p)))


def test_idle_baseline_ignores_the_just_used_plateau() -> None:
    t = np.arange(0, 2, 0.01)
    p = np.where(t < 1.7, 133.0, IDLE)  # 85% of the window in the "just used" state
    assert idle_baseline(t, p, 0, 2) == pytest.approx(IDLE)
    assert float(np.median(p)) == pytest.approx(133.0)  # what a plain median would say


@settings(max_examples=40, deadline=None)
@given(level=st.floats(30, 400), noise=st.floats(0, 0.01), seed=st.integers(0, 1000))
def test_idle_baseline_within_noise(level: float, noise: float, seed: int) -> None:
    t = np.arange(0, 1, 0.01)
    p = level * (1 + np.random.default_rng(seed).uniform(-noise, noise, t.size))
    assert idle_baseline(t, p, 0, 1) == pytest.approx(level, rel=noise + 1e-9)


def test_settle_time_finds_the_drop() -> None:
    t = np.arange(0, 5, 0.01)
    p = np.where(t < 2.0, 133.0, IDLE)
    assert settle_time(t, p, 0.5, IDLE, 0.05, 0.3) == pytest.approx(2.0, abs=0.08)
    assert math.isnan(settle_time(t, np.full(t.size, 133.0), 0.5, IDLE, 0.05, 0.3))
    # readings below idle count as settled
    assert settle_time(t, np.full(t.size, 60.0), 1.0, IDLE, 0.05, 0.3) == pytest.approx(1.0, abs=0.011)


def test_settle_time_needs_a_full_hold_of_data() -> None:
    t = np.arange(0, 2.1, 0.01)
    p = np.where(t < 2.0, 133.0, IDLE)
    assert math.isnan(settle_time(t, p, 0.0, IDLE, 0.05, 0.3))


# ------------------------------------------------------------------ the counter


def test_counter_steps_use_the_midpoint_between_reads() -> None:
    t = np.array([0.0, 0.03, 0.06, 0.09, 0.12, 0.15])
    j = np.array([10.0, 10.0, 10.0, 12.0, 12.0, 14.0])
    ts, js = counter_steps(t, j)
    assert ts == pytest.approx([0.075, 0.135]) and list(js) == [12.0, 14.0]


def test_counter_energy_on_100ms_steps_is_close_to_exact() -> None:
    tr = synth(lambda t: np.full(t.shape, 250.0), 5.0)
    for a, b in [(1.0, 2.5), (1.234, 3.987), (0.31, 0.77)]:
        assert counter_energy(tr.counter_t, tr.counter_j, a, b) == pytest.approx(250 * (b - a), rel=1e-6)


def test_counter_energy_needs_an_update_after_the_window() -> None:
    t = np.arange(0, 1, 0.01)
    j = np.floor(t / 0.1) * 10.0
    assert math.isfinite(counter_energy(t, j, 0.2, 0.8))
    assert math.isnan(counter_energy(t, j, 0.2, 0.97))  # last update at 0.9: end not covered


@settings(max_examples=50, deadline=None)
@given(p=st.floats(20, 700), a=st.floats(1.0, 3.0), length=st.floats(0.2, 4.0), read=st.sampled_from([0.01, 0.05, 0.1]))
def test_counter_error_bounded_by_one_read_interval(p: float, a: float, length: float, read: float) -> None:
    tr = synth(lambda t: np.full(t.shape, p), 8.0)
    idx = np.arange(0, tr.t.size, int(round(read / 0.01)))
    e = counter_energy(tr.counter_t[idx], tr.counter_j[idx], a, a + length)
    assert e == pytest.approx(p * length, abs=p * max(read, 0.1))


def test_clean_counter_drops_isolated_glitches_and_spikes() -> None:
    t = np.arange(8.0)
    j = np.array([100.0, 101, 50, 102, 103, 9000, 104, 105])
    cc = clean_counter(t, j)
    assert list(cc.j) == [100, 101, 102, 103, 104, 105] and cc.glitches == 2 and cc.resets == 0


def test_clean_counter_stitches_a_reset() -> None:
    cc = clean_counter(np.arange(6.0), np.array([100.0, 101, 102, 1, 2, 3]))
    assert list(cc.j) == [100, 101, 102, 102, 103, 104] and cc.resets == 1


def test_clean_counter_unwraps_with_known_range() -> None:
    cc = clean_counter(np.arange(5.0), np.array([80.0, 90, 98, 4, 10]), wrap=100.0)
    assert list(cc.j) == [80, 90, 98, 104, 110]
    assert unwrap_delta(98.0, 4.0, 100.0) == 6.0 and unwrap_delta(4.0, 10.0, 100.0) == 6.0


def test_counter_wrap_inside_a_run_window() -> None:
    tr = synth(step(2.0, 3.5, 400.0), 6.0)
    raw = tr.counter_j.copy()
    wrap = 1e6 + 600.0  # wraps during the run
    tr.counter_j = np.mod(raw, wrap)
    cc = clean_counter(tr.counter_t, tr.counter_j, wrap=wrap)
    assert cc.resets == 1
    assert counter_energy(cc.t, cc.j, 2.0, 3.5) == pytest.approx(counter_energy(tr.counter_t, raw, 2.0, 3.5))


# ------------------------------------------------------------------ whole runs


def test_step_load_all_sources_agree_when_the_sensor_does_not_lag() -> None:
    tr = synth(step(2.0, 5.0, 400.0), 9.0, avg_window_s=0.1)
    an = analyze(tr, window(2.0, 5.0, 5.5, 6.5))
    f = an.figures
    assert an.method == "counter"
    true_net = (400 - IDLE) * 3.0
    assert f["energy_net_j"] == pytest.approx(true_net, rel=0.01)
    assert f["energy_instant_net_j"] == pytest.approx(true_net, rel=0.01)
    assert f["energy_gross_j"] == pytest.approx(400 * 3.0, rel=0.01)
    # the idle from the counter's slope; the synthetic counter's 1 ms integration grid puts a
    # sliver of the load into the update at launch, hence not exact
    assert f["idle_w"] == pytest.approx(IDLE, rel=0.005)
    assert f["runtime_s"] == pytest.approx(3.0)
    assert f["power_avg_w"] == pytest.approx(400, rel=0.01)


def test_one_second_average_lag_undercounts_short_runs_like_on_hopper() -> None:
    tr = synth(step(2.0, 3.5, 400.0), 9.0, avg_window_s=1.0)
    f = compute_figures(tr, window(2.0, 3.5, 4.0, 5.0))
    true_net = (400 - IDLE) * 1.5
    assert f["energy_net_j"] == pytest.approx(true_net, rel=0.02)  # the default does not lag
    # the averaged sensor ramps up over 1 s: within the run window it shows ~2/3 of the energy
    assert f["energy_average_net_j"] == pytest.approx(true_net * 2 / 3, rel=0.05)
    assert f["energy_eq4_settled_j"] < 0.75 * f["energy_net_j"]
    assert math.isnan(f["energy_eq4_paper_j"])  # the trace ends 1.5 s after exit, not 15 s: not as published


def test_eq4_as_published_averages_the_idle_over_15_s_after_exit() -> None:
    # after exit the GPU holds 133 W for 2 s, then idles: the paper's 15 s post window includes it
    def power(t: np.ndarray) -> np.ndarray:
        return np.where((t >= 2.0) & (t < 3.5), 400.0, np.where((t >= 3.5) & (t < 5.5), 133.0, IDLE))

    tr = synth(power, 20.0, avg_window_s=1.0)
    w = Window(1.0, 2.0, 3.5, 6.0, float(tr.t[-1]))
    f = compute_figures(tr, w)
    avg, t = tr.power_average_w, tr.t
    pre = avg[(t >= 1.0) & (t <= 2.0)].mean()
    post = avg[(t >= 3.5) & (t <= 18.5)].mean()
    assert f["idle_paper_w"] == pytest.approx((pre + post) / 2, rel=1e-9)
    in_run = (t >= 2.0) & (t <= 3.5)
    assert f["energy_eq4_paper_j"] == pytest.approx(0.01 * np.maximum(avg[in_run] - (pre + post) / 2, 0).sum(), rel=1e-9)
    # the settled variant takes the post-run idle once settled, so its idle is lower, its energy higher
    assert f["idle_paper_settled_w"] < f["idle_paper_w"]
    assert f["energy_eq4_settled_j"] > f["energy_eq4_paper_j"]
    short = compute_figures(tr, Window(1.0, 2.0, 3.5, 6.0, 18.0))  # stopped 14.5 s after exit
    assert math.isnan(short["energy_eq4_paper_j"]) and math.isfinite(short["energy_eq4_settled_j"])


def test_tail_energy_after_exit() -> None:
    def power(t: np.ndarray) -> np.ndarray:
        return np.where((t >= 2.0) & (t < 3.0), 400.0, np.where((t >= 3.0) & (t < 4.8), 133.0, IDLE))

    tr = synth(power, 9.0)
    ts = settle_time(tr.t, tr.power_instant_w, 3.0, IDLE)
    assert ts == pytest.approx(4.8, abs=0.06)
    f = compute_figures(tr, window(2.0, 3.0, ts, ts + 0.6))
    assert f["energy_tail_j"] == pytest.approx((133 - IDLE) * 1.8, rel=0.05)
    assert f["tail_s"] == pytest.approx(1.8, abs=0.06)


def test_falls_back_to_instant_then_average_and_never_to_zero() -> None:
    tr = synth(step(2.0, 3.5, 300.0), 6.0, avg_window_s=0.1)
    w = window(2.0, 3.5)
    tr.counter_t, tr.counter_j = np.zeros(0), np.zeros(0)
    an = analyze(tr, w)
    assert an.method == "instant" and an.figures["energy_net_j"] == pytest.approx(226 * 1.5, rel=0.02)
    tr.power_instant_w = np.zeros(0)
    an = analyze(tr, w)
    assert an.method == "average" and any("moving average" in n for n in an.notes)
    tr.power_average_w = np.zeros(0)
    an = analyze(tr, w)
    assert an.method == "none" and math.isnan(an.figures["energy_net_j"])
    assert any("NaN" in n for n in an.notes)


def test_counter_that_stops_before_exit_is_not_used() -> None:
    tr = synth(step(2.0, 3.5, 300.0), 6.0)
    keep = tr.counter_t < 3.4
    tr.counter_t, tr.counter_j = tr.counter_t[keep], tr.counter_j[keep]
    an = analyze(tr, window(2.0, 3.5))
    assert an.method == "instant" and any("does not cover" in n for n in an.notes)


def test_polluted_pre_window_uses_the_post_run_level() -> None:
    def power(t: np.ndarray) -> np.ndarray:
        return np.where(t < 2.0, 133.0, np.where(t < 3.0, 400.0, IDLE))

    tr = synth(power, 6.0)
    an = analyze(tr, window(2.0, 3.0, 3.2, 4.5))
    assert an.idle_source == "post" and an.figures["idle_w"] == pytest.approx(IDLE)
    assert any("not back at idle" in n for n in an.notes)


def test_figure_names_are_documented() -> None:
    tr = synth(step(2.0, 3.0, 200.0), 5.0)
    assert set(compute_figures(tr, window(2.0, 3.0))) == set(FIGURES)


def test_summarize() -> None:
    s = summarize([10.0, 12.0, 14.0, None, float("nan")])
    assert s.n == 3 and s.mean == pytest.approx(12.0) and s.std == pytest.approx(2.0)
    assert s.cv_pct == pytest.approx(100 * 2 / 12)
    one = summarize([5.0])
    assert one.n == 1 and one.mean == 5.0 and math.isnan(one.std) and math.isnan(one.cv_pct)
    assert summarize([]).n == 0


# ------------------------------------------------------------------ the real H100 trace


def h100_trace() -> tuple[PowerTrace, dict]:
    rows = np.array(json.loads((DATA / "h100-nvml-trace.json").read_text()))
    probe = json.loads((DATA / "h100-nvml-probe.json").read_text())
    t = rows[:, 0] - rows[0, 0]
    tr = PowerTrace(meter="nvml", device=probe["name"], t=t, power_average_w=rows[:, 1] / 1e3,
                    counter_t=t.copy(), counter_j=rows[:, 2] / 1e3, power_instant_w=rows[:, 3] / 1e3)
    return tr, probe


def test_real_h100_trace_reproduces_the_probe() -> None:
    tr, probe = h100_trace()
    run = probe["runs"][0]
    t_launch = 2.0  # the probe's window: the first sample at/after launch, ~2.0 s in
    t_exit = t_launch + run["runtime"]
    idle_guess = idle_baseline(tr.t, tr.power_instant_w, 1.0, t_launch)
    ts = settle_time(tr.t, tr.power_instant_w, t_exit, idle_guess)
    # the probe's protocol: pre-run idle = everything before launch, post window as long
    an = analyze(tr, Window(0.0, t_launch, t_exit, ts, float(tr.t[-1])))
    f = an.figures
    assert an.method == "counter"
    assert f["n_samples"] == pytest.approx(run["n"], abs=2)
    # the paper's Eq. 4 on GetPowerUsage with the probe's (polluted pre, settled post) idle: ~110.7 J
    assert f["idle_paper_settled_w"] == pytest.approx((run["idle_pre"] + run["idle_post"]) / 2, rel=0.03)
    assert f["energy_eq4_settled_j"] == pytest.approx(run["e_net_sampled"], rel=0.08)
    # as published, the post-run idle is the mean over 15 s after exit, tail plateau included
    assert math.isfinite(f["energy_eq4_paper_j"])  # the probe sampled 15 s after exit
    assert f["idle_paper_w"] > f["idle_paper_settled_w"] and f["energy_eq4_paper_j"] < f["energy_eq4_settled_j"]
    # the counter over the window (the probe took whole steps; we interpolate them)
    assert f["energy_counter_j"] == pytest.approx(run["e_counter"], rel=0.04)
    # the probe's counter net used the polluted ~108 W idle; with it we land near its 237 J
    assert f["energy_counter_j"] - f["idle_paper_settled_w"] * f["runtime_s"] == pytest.approx(run["e_counter_net"], rel=0.06)
    # our baseline finds the true idle despite the 133 W "just used" state before the run ...
    assert 73.0 < f["idle_w"] < 78.0
    # ... so this first run agrees with the warm runs 2-6 (281-298 J), unlike the probe's 237 J
    assert 270.0 < f["energy_net_j"] < 300.0
    # the instant field lands within 3% of the counter (DESIGN.md), the averaged sensor far below
    assert f["energy_instant_net_j"] == pytest.approx(f["energy_counter_net_j"], rel=0.03)
    assert f["energy_eq4_settled_j"] < 0.5 * f["energy_net_j"]
    # ~90-100 J after exit until the GPU is back at idle
    assert 80.0 < f["energy_tail_j"] < 120.0
    assert 1.5 < f["tail_s"] < 3.0


def test_real_trace_protocol_window_idle_of_one_second() -> None:
    tr, probe = h100_trace()
    t_exit = 2.0 + probe["runs"][0]["runtime"]
    an = analyze(tr, Window(1.0, 2.0, t_exit, 5.3, 7.0))
    assert an.idle_source == "pre" and 73.0 < an.figures["idle_w"] < 78.0


# ------------------------------------------------------------------ consistency of one measurement


@settings(max_examples=80, deadline=None)
@given(
    levels=st.lists(st.floats(20.0, 700.0), min_size=1, max_size=5),
    lengths=st.lists(st.floats(0.02, 1.5), min_size=5, max_size=5),
    launch=st.floats(1.2, 2.0),
    runtime=st.floats(0.01, 3.0),
    read_s=st.sampled_from([0.01, 0.05, 0.1, 0.5, 1.0]),
    phase=st.floats(0.0, 0.0999),
)
def test_one_measurement_is_consistent(levels: list[float], lengths: list[float], launch: float, runtime: float,
                                       read_s: float, phase: float) -> None:
    """peak >= average >= 0, and the counter and the instant channel agree within the precision
    each states, for any piecewise-constant load, run length and counter read cadence."""
    starts = launch + np.concatenate(([0.0], np.cumsum(lengths[: len(levels) - 1])))

    def power(x: np.ndarray) -> np.ndarray:
        out = np.full(np.shape(x), IDLE)
        for s, w in zip(starts, levels):
            out = np.where((x >= s) & (x < launch + runtime), w, out)
        return out

    t_end = launch + runtime + 2.0
    fine = np.arange(0.0, t_end + 0.5, 0.0005)
    e_fine = np.concatenate(([0.0], np.cumsum(power(fine[:-1]) * 0.0005)))  # exact for steps on the grid
    t = np.arange(0.0, t_end, 0.01)
    reads = np.unique(np.concatenate((np.arange(0.0, t_end, read_s), np.arange(launch + runtime, t_end, 0.01))))
    upd = np.floor((reads - phase) / 0.1) * 0.1 + phase
    tr = PowerTrace(meter="synthetic", device="synthetic GPU", t=t, power_instant_w=power(t),
                    counter_t=reads, counter_j=np.interp(upd, fine, e_fine) + 1e5, counter_update_s=0.1)
    f = analyze(tr, Window(launch - 1.0, launch, launch + runtime, launch + runtime + 1.0, t_end - 0.01)).figures
    assert f["power_avg_w"] >= 0.0
    assert f["power_peak_w"] >= f["power_avg_w"] - 1e-9
    assert f["energy_gross_j"] >= 0.0
    if math.isfinite(f["energy_counter_j"]):
        gap = abs(f["energy_counter_j"] - f["energy_instant_j"])
        assert gap <= f["energy_counter_precision_j"] + f["energy_instant_precision_j"] + 1e-6
        # the default's bound: the counter's edges, plus its idle slope's uncertainty over the run
        idle_part = f["idle_counter_precision_w"] * f["runtime_s"] if math.isfinite(f["idle_counter_w"]) else 0.0
        assert f["energy_net_precision_j"] == pytest.approx(f["energy_counter_precision_j"] + idle_part)

"""Statistics for fair comparisons: t distribution against tabulated values (SciPy 1.17 as the
reference), Welch's test, Fieller's interval against a brute-force scan of its definition."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lassi_batch.power.stats import is_lower, sample, saving_interval, t_cdf, t_ppf, welch_df


@pytest.mark.parametrize(("q", "df", "expected"), [
    (0.975, 1, 12.706204736174694), (0.975, 2, 4.302652729749462), (0.975, 3.5, 2.9400886379827282),
    (0.975, 10, 2.228138851986274), (0.95, 3, 2.3533634348018233), (0.995, 4, 4.604094871349992),
    (0.9, 7.25, 1.409884895325902),
])
def test_t_quantiles_match_tables(q: float, df: float, expected: float) -> None:
    assert t_ppf(q, df) == pytest.approx(expected, rel=1e-9)
    assert t_ppf(1 - q, df) == pytest.approx(-expected, rel=1e-9)


@pytest.mark.parametrize(("t", "df", "expected"), [
    (-2.0, 3, 0.06966298427942152), (0.5, 1, 0.6475836176504333), (1.7, 12.3, 0.9428712548243935),
    (-4.2, 2.2, 0.022095717991925008),
])
def test_t_cdf_matches_tables(t: float, df: float, expected: float) -> None:
    assert t_cdf(t, df) == pytest.approx(expected, rel=1e-9)


def test_welch_one_sided_test_matches_scipy() -> None:
    a, b = [10.2, 10.5, 9.9, 10.4], [9.1, 9.6, 9.3]
    r = is_lower(a, b, min_gain=0.0, alpha=0.05)
    assert r.tested and r.lower
    assert r.p_value == pytest.approx(0.0034151319366137346, rel=1e-6)  # scipy ttest_ind(b, a, equal_var=False, 'less')
    sa, sb = sample(a), sample(b)
    assert welch_df(sa.sem2, sb.sem2, 4, 3) == pytest.approx(4.588221325100927, rel=1e-9)


def test_margin_and_noise_both_decide() -> None:
    a = [100.0, 101.0, 99.0]
    assert not is_lower(a, [99.0, 99.5, 98.5], min_gain=0.02).lower  # 1.5% lower: under the margin
    assert is_lower(a, [95.0, 95.2, 94.8], min_gain=0.02).lower  # 5% lower, tight
    noisy = is_lower([100.0, 130.0, 70.0], [95.0, 60.0, 120.0], min_gain=0.02)
    assert noisy.tested and not noisy.lower and noisy.p_value > 0.05  # lower mean, but within the noise
    single = is_lower([100.0], [90.0], min_gain=0.02)
    assert single.lower and not single.tested  # one repeat: the margin alone, noted as untested
    assert not is_lower([], [1.0]).lower


def _fieller_scan(a: list[float], b: list[float], level: float) -> tuple[float, float]:
    """Brute force: the ratios r with (mB - r mA)^2 <= t^2 (vB + r^2 vA) on a fine grid."""
    sa, sb = sample(a), sample(b)
    t = t_ppf((1 + level) / 2, welch_df(sa.sem2, sb.sem2, sa.n, sb.n))
    rs = np.linspace(0.0, 2.0, 400001)
    inside = rs[(sb.mean - rs * sa.mean) ** 2 <= t**2 * (sb.sem2 + rs**2 * sa.sem2)]
    return 1 - inside.max(), 1 - inside.min()


def test_fieller_interval_matches_its_definition() -> None:
    a, b = [100.0, 104.0, 97.0, 101.0], [80.0, 83.0, 79.0]
    s = saving_interval(a, b, 0.95)
    lo, hi = _fieller_scan(a, b, 0.95)
    assert s.reduction == pytest.approx(1 - (242 / 3) / 100.5)
    assert s.ci_low == pytest.approx(lo, abs=2e-5) and s.ci_high == pytest.approx(hi, abs=2e-5)
    assert s.ci_low < s.reduction < s.ci_high and s.confirmed


def test_a_saving_within_the_noise_does_not_confirm() -> None:
    s = saving_interval([100.0, 120.0, 85.0], [95.0, 110.0, 80.0])
    assert s.reduction > 0 and s.ci_low < 0 < s.ci_high and not s.confirmed
    flat = saving_interval([10.0, 10.0, 10.0], [8.0, 8.0, 8.0])
    assert flat.ci_low == pytest.approx(0.2) and flat.ci_high == pytest.approx(0.2) and flat.confirmed
    few = saving_interval([10.0], [8.0, 8.1])
    assert math.isnan(few.ci_low) and not few.confirmed
    wild = saving_interval([1.0, -1.0, 0.5], [0.3, 0.2, 0.1])  # denominator not clear of zero
    assert wild.ci_low == -math.inf and wild.ci_high == 1.0 and not wild.confirmed


def test_the_interval_never_passes_100_percent() -> None:
    """The nbody-forces case of a GPU demo whose confirmations overlapped other runs: a candidate
    whose energies scatter near zero. Fieller's unclipped set reached 108-111%; energy cannot be
    negative, so the ratio is clipped at 0 and the saving's interval ends at 100%."""
    s = saving_interval([900.0, 950.0, 1000.0], [30.0, 140.0, 5.0])
    assert s.confirmed and s.ci_high == 1.0 and s.ci_low < s.reduction < 1.0
    negative = saving_interval([90.9, 88.0, 91.0], [-7.4, -4.1, -6.3])  # an unsettled baseline's figures
    assert math.isnan(negative.reduction) and math.isnan(negative.ci_low) and not negative.confirmed


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.001, 2000), min_size=2, max_size=8), st.lists(st.floats(0.0001, 2000), min_size=2, max_size=8),
       st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_property_intervals_that_can_exist(a: list[float], b: list[float], level: float) -> None:
    """Over random positive energies: a saving below 100%, an interval ending at 100% at most and
    containing it, and a confirmed saving always a real one."""
    s = saving_interval(a, b, level)
    assert s.reduction < 1.0
    assert s.ci_high <= 1.0
    assert s.ci_low <= s.reduction + 1e-9 <= s.ci_high + 2e-9
    if s.confirmed:
        assert 0.0 < s.ci_low <= s.reduction


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(50, 150), min_size=2, max_size=6), st.lists(st.floats(50, 150), min_size=2, max_size=6),
       st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_interval_contains_the_point_and_widens_with_level(a: list[float], b: list[float], level: float) -> None:
    s = saving_interval(a, b, level)
    wider = saving_interval(a, b, min(level + 0.005, 0.999))
    assert s.ci_low <= s.reduction + 1e-12 and s.reduction <= s.ci_high + 1e-12
    assert wider.ci_low <= s.ci_low + 1e-12 and wider.ci_high >= s.ci_high - 1e-12

"""pass@k and energy-reduction@k against brute-force enumeration of every k-subset."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lassi_batch.analysis import metrics as m

values = st.lists(st.floats(-0.5, 1.0, allow_nan=False, width=32), min_size=1, max_size=9)


def brute_er(vals, k):
    v = [max(0.0, x) for x in vals]
    return float(np.mean([max(s) for s in itertools.combinations(v, k)]))


def brute_pass(n, c, k):
    outcomes = [True] * c + [False] * (n - c)
    return float(np.mean([any(s) for s in itertools.combinations(outcomes, k)]))


@settings(max_examples=300, deadline=None)
@given(values, st.data())
def test_energy_reduction_at_k_is_the_mean_over_all_subsets(vals, data):
    k = data.draw(st.integers(1, len(vals)))
    assert m.energy_reduction_at_k(vals, k) == pytest.approx(brute_er(vals, k), rel=1e-9, abs=1e-12)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 12), st.data())
def test_pass_at_k_is_the_fraction_of_subsets_with_a_pass(n, data):
    c = data.draw(st.integers(0, n))
    k = data.draw(st.integers(1, n))
    assert m.pass_at_k(n, c, k) == pytest.approx(brute_pass(n, c, k), rel=1e-9, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(values, st.data())
def test_paper_definition_matches_its_own_brute_force(vals, data):
    passed = data.draw(st.lists(st.booleans(), min_size=len(vals), max_size=len(vals)))
    k = data.draw(st.integers(1, len(vals)))
    valid = [max(0.0, v) for v, p in zip(vals, passed) if p]
    want = 0.0 if not valid else brute_pass(len(vals), len(valid), k) * brute_er(valid, min(k, len(valid)))
    assert m.paper_energy_reduction_at_k(vals, passed, k) == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_weights_favour_the_best_values_and_impossible_ranks_get_zero():
    w = m.order_weights(5, 3)
    assert w[0] == 0.0 and w[1] == 0.0  # the two smallest can never be the max of 3
    assert w.sum() == pytest.approx(1.0) and np.all(np.diff(w[2:]) > 0)
    # the largest value is the max of a 3-subset in C(4,2)/C(5,3) = 6/10 of them
    assert w[-1] == pytest.approx(0.6)


def test_failed_trials_count_as_zero_not_dropped():
    # two trials, one failed: the best of one random trial is 0.4 half the time
    assert m.energy_reduction_at_k([0.4, math.nan], 1) == pytest.approx(0.2)
    assert m.energy_reduction_at_k([0.4, 0.0], 1) == pytest.approx(0.2)
    assert m.energy_reduction_at_k([0.4], 1) == pytest.approx(0.4)


def test_paper_and_exact_differ_when_few_pass():
    red, ok = [0.5, 0.0, 0.2, 0.0], [True, False, True, True]
    assert m.energy_reduction_at_k(red, 3) == pytest.approx(0.425)
    assert m.paper_energy_reduction_at_k(red, ok, 3) == pytest.approx(0.5)
    # at k = 1 both are the mean reduction
    assert m.paper_energy_reduction_at_k(red, ok, 1) == pytest.approx(m.energy_reduction_at_k(red, 1))


def test_large_n_is_stable_and_monte_carlo_agrees():
    rng = np.random.default_rng(3)
    r = np.where(rng.random(5000) < 0.3, 0.0, rng.random(5000))
    exact = m.energy_reduction_at_k(r, 5)
    assert 0 < exact < 1 and math.isfinite(exact)
    assert m.energy_reduction_at_k_mc(r, 5, draws=4000) == pytest.approx(exact, abs=0.01)
    assert m.pass_at_k(100000, 10, 5) == pytest.approx(brute_free(100000, 10, 5), rel=1e-9)


def brute_free(n, c, k):
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        m.pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        m.energy_reduction_at_k([0.1, 0.2], 3)


def test_bootstrap_interval_covers_the_mean_and_degenerate_data():
    v = np.array([0.1, 0.2, 0.3, 0.5, 0.4, 0.25])
    lo, hi = m.bootstrap_ci(v, resamples=500)
    assert lo < v.mean() < hi
    assert m.bootstrap_ci([0.3, 0.3, 0.3]) == (0.3, 0.3)
    assert all(math.isnan(x) for x in m.bootstrap_ci([0.3]))
    s = m.spread([1.0, 2.0, 3.0, 4.0, math.nan])
    assert (s.n, s.median, s.q1, s.q3) == (4, 2.5, 1.75, 3.25)

"""The study metrics as pure functions: pass@k, energy-reduction@k (exact and as the paper
defines it), and the summary statistics the tables print. No I/O.

Conventions (docs/metrics.md explains them):

* `n` is the number of trials of one (app, platform), fixed: failed trials stay in and count as
  reduction 0 (nothing better than the source was kept), so a method that fails often is not
  flattered by dropping its failures.
* Reductions are fractions of the source's energy (0.25 = 25% less). A NaN reduction (no figure)
  counts as a failure, 0. Values below 0 (a passing candidate that used more energy) are raised to
  0 before taking the best of k: a user who draws k candidates keeps the source when all are
  worse, which is the paper's `(.)^+` as well.
* energy-reduction@k is the expected best of k trials drawn without replacement from the n, the
  exact mean over all C(n, k) subsets, by order statistics. The paper's definition (Eq. 2-3),
  pass@k times the expected best over k *passing* candidates, is kept beside it; the two differ
  when few trials pass (see `paper_energy_reduction_at_k`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

NAN = math.nan


def _check_k(n: int, k: int) -> None:
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and n={n}, got {k}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k).

    As the product 1 - prod(1 - k / i) for i = n-c+1 .. n, which never forms a binomial (no
    overflow for large n) and is exactly 1 when fewer than k trials failed.
    """
    if not 0 <= c <= n:
        raise ValueError(f"c must be between 0 and n={n}, got {c}")
    _check_k(n, k)
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def _clean(reductions: Sequence[float] | np.ndarray, floor: float | None) -> np.ndarray:
    v = np.asarray(reductions, dtype=np.float64).ravel()
    v = np.where(np.isfinite(v), v, 0.0)
    return np.maximum(v, floor) if floor is not None else v


def order_weights(n: int, k: int) -> np.ndarray:
    """w[j-1] = P(the j-th smallest of n values is the maximum of a random k-subset)
    = C(j-1, k-1) / C(n, k), zero for j < k.

    Built from the top, w_n = k/n and w_{j-1} = w_j (j-k)/(j-1): every factor is at most 1, so
    nothing overflows and the weights of impossible positions are exactly 0.
    """
    _check_k(n, k)
    w = np.zeros(n, dtype=np.float64)
    j = np.arange(n, k, -1, dtype=np.float64)  # n, n-1, ..., k+1
    ratios = (j - k) / (j - 1)  # w_{j-1} / w_j
    w[n - 1] = k / n
    if n > k:
        w[k - 1 : n - 1] = (k / n) * np.cumprod(ratios)[::-1]
    return w


def expected_max_of_k(values: Sequence[float] | np.ndarray, k: int) -> float:
    """Exact mean of max over all k-subsets of `values` (drawn without replacement)."""
    v = np.sort(np.asarray(values, dtype=np.float64).ravel())  # ascending: weights grow with rank
    return float(np.dot(order_weights(v.size, k), v))


def energy_reduction_at_k(reductions: Sequence[float] | np.ndarray, k: int, floor: float | None = 0.0) -> float:
    """Expected best reduction when k of the n trials are drawn: exact, by order statistics.

    `reductions` holds one value per trial, failed trials included (NaN or 0 both mean "no
    saving"); `floor` raises worse-than-source values to 0 (None keeps them).
    """
    return expected_max_of_k(_clean(reductions, floor), k)


def energy_reduction_at_k_mc(
    reductions: Sequence[float] | np.ndarray, k: int, draws: int = 20000, seed: int = 0, floor: float | None = 0.0
) -> float:
    """Monte Carlo estimate of energy_reduction_at_k (a cross-check only: it has sampling error)."""
    v = _clean(reductions, floor)
    _check_k(v.size, k)
    rng = np.random.default_rng(seed)
    picks = np.argsort(rng.random((draws, v.size)), axis=1)[:, :k]
    return float(v[picks].max(axis=1).mean())


def paper_energy_reduction_at_k(
    reductions: Sequence[float] | np.ndarray, passed: Sequence[bool] | np.ndarray, k: int
) -> float:
    """energy-reduction@k as the paper writes it (Eq. 2-3): pass@k(n, c, k) times the expected
    best of k draws from the c passing trials' reductions, (.)^+ applied.

    Eq. 3 draws k from c values; when c < k that draw does not exist, and we take all c (the
    best passing value). The product treats "some trial passes" and "how good the best passing
    one is" as independent, which over-states the metric when c is small: a k-subset that holds
    one passing trial gets the best of k passing values, not of one.
    """
    r = _clean(reductions, 0.0)
    p = np.asarray(passed, dtype=bool).ravel()
    if p.size != r.size:
        raise ValueError("reductions and passed differ in length")
    n, c = r.size, int(p.sum())
    _check_k(n, k)
    if c == 0:
        return 0.0
    return pass_at_k(n, c, k) * expected_max_of_k(r[p], min(k, c))


# ------------------------------------------------------------------ distributions


@dataclass(frozen=True)
class Spread:
    n: int
    mean: float
    median: float
    q1: float
    q3: float

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1


def spread(values: Sequence[float] | np.ndarray) -> Spread:
    """Mean, median and quartiles of the finite values (NaN when there are none)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return Spread(0, NAN, NAN, NAN, NAN)
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return Spread(int(v.size), float(v.mean()), float(med), float(q1), float(q3))


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    statistic: Callable[[np.ndarray], float] = np.mean,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Bootstrap confidence interval of `statistic` over the values (BCa; percentile when BCa is
    undefined, e.g. all values equal). (NaN, NaN) for fewer than 2 values."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size < 2:
        return NAN, NAN
    if np.all(v == v[0]):
        s = float(statistic(v))
        return s, s
    # the mean vectorizes over resamples; any other statistic is called once per resample
    vectorized = statistic is np.mean
    fn = (lambda x, axis=-1: np.mean(x, axis=axis)) if vectorized else statistic
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = stats.bootstrap((v,), fn, vectorized=vectorized, confidence_level=confidence,
                                  n_resamples=resamples, method=method, random_state=np.random.default_rng(seed))
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(lo) and math.isfinite(hi):
            return lo, hi
    return NAN, NAN

"""Statistics for comparing repeated energy figures: pure functions, no I/O.

Two questions are asked of repeated measurements, and both must respect the measured noise:

* while searching (stage 3): is candidate B's energy lower than the current best A's by more
  than a relative margin `min_gain`? A one-sided Welch t-test of mean(B) < (1 - min_gain) x
  mean(A) at level `alpha` (unequal variances, Welch-Satterthwaite degrees of freedom);
* when confirming (stage 4): what is the saving 1 - mean(B)/mean(A), with a confidence
  interval? The interval of the ratio of two independent means is Fieller's (1954), with
  Welch-Satterthwaite degrees of freedom; it is exact for normal data and, unlike the delta
  method, stays honest when the denominator is noisy (it becomes unbounded when mean(A) is
  not significantly above zero).

Energy is never negative, so the ratio's interval is clipped at zero: a saving's interval never
reaches past 100%, and a side whose mean energy is not positive gives no interval at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scipy.stats import norm as _norm
from scipy.stats import t as _t

NAN = math.nan


# ------------------------------------------------------------------ Student's t distribution


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` (> 0, not necessarily whole) degrees of freedom."""
    if math.isnan(t) or not df > 0:
        return NAN
    return float(_t.cdf(t, df))


def t_ppf(q: float, df: float) -> float:
    """Quantile of Student's t: the t with t_cdf(t, df) = q."""
    if not (0.0 < q < 1.0) or not df > 0:
        return NAN
    return float(_t.ppf(q, df))


# ------------------------------------------------------------------ samples


@dataclass(frozen=True)
class Sample:
    """Finite values of one figure over repeats."""

    n: int
    mean: float
    var: float  # sample variance (n - 1); NaN for n < 2

    @property
    def sem2(self) -> float:
        """Squared standard error of the mean."""
        return self.var / self.n if self.n >= 2 else NAN


def sample(values: Iterable[float | None]) -> Sample:
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    n = len(v)
    if n == 0:
        return Sample(0, NAN, NAN)
    m = math.fsum(v) / n
    var = math.fsum((x - m) ** 2 for x in v) / (n - 1) if n >= 2 else NAN
    return Sample(n, m, var)


def welch_df(va: float, vb: float, na: int, nb: int) -> float:
    """Welch-Satterthwaite degrees of freedom from the squared standard errors va, vb."""
    num = (va + vb) ** 2
    den = (va * va / (na - 1) if na > 1 else 0.0) + (vb * vb / (nb - 1) if nb > 1 else 0.0)
    if den <= 0.0:
        return math.inf  # no spread on either side: the t distribution becomes the normal
    return num / den


# ------------------------------------------------------------------ decisions while searching


@dataclass(frozen=True)
class LowerTest:
    """Outcome of `is_lower`: is B below (1 - min_gain) x A?"""

    lower: bool
    p_value: float  # one-sided Welch p-value; NaN when the test could not run
    tested: bool  # False: too few repeats, decided on the means and the margin alone
    reason: str


def is_lower(a: Sequence[float], b: Sequence[float], min_gain: float = 0.0, alpha: float = 0.05) -> LowerTest:
    """Is the energy `b` lower than `a` by more than `min_gain` (relative) and than the noise?

    The rule (docs/trial.md): mean(B) < (1 - min_gain) x mean(A) is required; with at least two
    finite repeats on each side it must also hold at one-sided level `alpha` under Welch's
    t-test of H0: mean(B) >= (1 - min_gain) x mean(A). With fewer repeats the noise is not
    measured and the margin alone decides (`tested` False); confirmation re-checks the winner.
    """
    sa, sb = sample(a), sample(b)
    if sa.n == 0 or sb.n == 0:
        return LowerTest(False, NAN, False, "no finite energy on one side")
    bound = (1.0 - min_gain) * sa.mean
    if not sb.mean < bound:
        return LowerTest(False, NAN, False, f"mean {sb.mean:.4g} not below {bound:.4g} (margin {min_gain:.1%})")
    if sa.n < 2 or sb.n < 2:
        return LowerTest(True, NAN, False, "below the margin; too few repeats to test the noise")
    va = (1.0 - min_gain) ** 2 * sa.sem2
    vb = sb.sem2
    se = math.sqrt(va + vb)
    if se == 0.0:
        return LowerTest(True, 0.0, True, "below the margin with no spread")
    t = (sb.mean - bound) / se
    p = t_cdf(t, welch_df(va, vb, sa.n, sb.n))
    ok = p < alpha
    why = f"Welch p = {p:.3g} {'<' if ok else '>='} {alpha:g}"
    return LowerTest(ok, p, True, why)


# ------------------------------------------------------------------ confirmation


@dataclass(frozen=True)
class Saving:
    """The saving 1 - mean(B)/mean(A) with its interval, from interleaved repeats."""

    reduction: float
    ci_low: float  # NaN: not computable; -inf/inf: unbounded (A's mean not clear of zero)
    ci_high: float
    level: float  # confidence level, e.g. 0.95
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    method: str = "fieller-welch"

    @property
    def confirmed(self) -> bool:
        """The whole interval shows a saving (its lower end is above zero)."""
        return math.isfinite(self.ci_low) and self.ci_low > 0.0


def saving_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Saving:
    """Saving of B against A (1 - mean(B)/mean(A)) with a two-sided Fieller interval.

    For the ratio r = mean(B)/mean(A) of two independent means with squared standard errors
    vA, vB, the interval is the set of r with (mB - r mA)^2 <= t^2 (vB + r^2 vA), t the
    (1 + level)/2 quantile of Student's t with Welch-Satterthwaite degrees of freedom. It is
    bounded only when mA^2 > t^2 vA; otherwise the bounds are infinite. Needs >= 2 values per
    side. Energy is never negative, so the ratio's lower bound is clipped at 0: the saving's
    interval (1 - the ratio's) ends at 100% at most. A side whose mean is not positive was not
    measured against a settled idle level and gives no interval (NaN) and no point saving.
    """
    sa, sb = sample(a), sample(b)
    if sa.n and sb.n and not (sa.mean > 0 and sb.mean > 0):
        return Saving(NAN, NAN, NAN, level, sa.n, sb.n, sa.mean, sb.mean, "fieller-welch: a mean energy <= 0")
    red = 1.0 - sb.mean / sa.mean if sa.n and sb.n else NAN
    if sa.n < 2 or sb.n < 2 or not math.isfinite(red):
        return Saving(red, NAN, NAN, level, sa.n, sb.n, sa.mean, sb.mean)
    va, vb = sa.sem2, sb.sem2
    df = welch_df(va, vb, sa.n, sb.n)
    t = t_ppf((1.0 + level) / 2.0, df) if math.isfinite(df) else float(_norm.ppf((1.0 + level) / 2.0))
    t2 = t * t
    qa = sa.mean * sa.mean - t2 * va
    if qa <= 0.0:
        return Saving(red, -math.inf, 1.0, level, sa.n, sb.n, sa.mean, sb.mean)
    qb = sa.mean * sb.mean
    disc = qb * qb - qa * (sb.mean * sb.mean - t2 * vb)
    disc = max(disc, 0.0)
    root = math.sqrt(disc)
    r_lo, r_hi = max((qb - root) / qa, 0.0), (qb + root) / qa
    return Saving(red, 1.0 - r_hi, 1.0 - r_lo, level, sa.n, sb.n, sa.mean, sb.mean)

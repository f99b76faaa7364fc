"""Stage 3's stopping rule and the pass policy, as pure functions.

The paper retries the same plan at a temperature raised by 0.2 after every non-improving
iteration and stops once it exceeds 0.8; models that take no temperature stop after a fixed
number of non-improving iterations instead. A new best candidate brings a new plan, and the
schedule starts again from the base temperature for that plan.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    base: float = 0.2
    step: float = 0.2
    stop_above: float = 0.8
    max_nonimproving: int = 4  # for models without temperature
    max_iterations: int = 10
    uses_temperature: bool = True


@dataclass(frozen=True)
class LoopState:
    iteration: int = 0  # iterations finished
    temperature: float | None = 0.2  # for the next iteration (None: model takes none)
    nonimproving: int = 0  # consecutive iterations without a new best


def initial_state(s: Schedule) -> LoopState:
    return LoopState(0, s.base if s.uses_temperature else None, 0)


def advance(s: Schedule, st: LoopState, improved: bool) -> LoopState:
    """State after an iteration; `improved` = a new best was found (a new plan follows)."""
    if improved:
        return LoopState(st.iteration + 1, s.base if s.uses_temperature else None, 0)
    t = None if st.temperature is None else round(st.temperature + s.step, 6)
    return LoopState(st.iteration + 1, t, st.nonimproving + 1)


def should_stop(s: Schedule, st: LoopState) -> str:
    """Reason to stop before the next iteration, or '' to go on."""
    if st.iteration >= s.max_iterations:
        return f"max_iterations ({s.max_iterations}) reached"
    if s.uses_temperature and st.temperature is not None and st.temperature > s.stop_above + 1e-9:
        return f"temperature {st.temperature:.1f} above {s.stop_above:.1f}"
    if not s.uses_temperature and st.nonimproving >= s.max_nonimproving:
        return f"{st.nonimproving} iterations without improvement"
    return ""


def passes(policy: str, judge_verdict: str, verifier_verdict: str) -> bool:
    """Whether a candidate that built and ran counts as passing screening."""
    judge_ok = judge_verdict == "VALID"
    verifier_ok = verifier_verdict in ("pass", "warn")
    if policy == "judge":
        return judge_ok
    if policy == "verifier":
        return verifier_ok
    return judge_ok and verifier_ok


def improves(candidate_energy: float | None, best_energy: float | None, min_gain: float = 0.0) -> bool:
    """A lower energy than the best by more than `min_gain` (relative) is an improvement."""
    if candidate_energy is None or best_energy is None:
        return False
    return candidate_energy < best_energy * (1.0 - min_gain)

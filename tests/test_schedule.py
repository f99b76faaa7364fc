"""Stage 3 stopping rule, pass policy and improvement test (pure functions)."""

from lassi_batch.pipeline import schedule as sch


def _run(s: sch.Schedule, improved_at: set[int]) -> tuple[list[float | None], str]:
    st = sch.initial_state(s)
    temps = []
    while not (reason := sch.should_stop(s, st)):
        temps.append(st.temperature)
        st = sch.advance(s, st, st.iteration + 1 in improved_at)
    return temps, reason


def test_temperature_rises_by_step_and_stops_above_max():
    temps, reason = _run(sch.Schedule(), set())
    assert temps == [0.2, 0.4, 0.6, 0.8]
    assert "temperature 1.0" in reason


def test_improvement_resets_to_base_for_the_new_plan():
    temps, _ = _run(sch.Schedule(max_iterations=20), {2})
    assert temps == [0.2, 0.4, 0.2, 0.4, 0.6, 0.8]


def test_max_iterations_caps_the_loop():
    temps, reason = _run(sch.Schedule(max_iterations=3), {1, 2, 3})
    assert len(temps) == 3 and "max_iterations" in reason


def test_models_without_temperature_stop_after_nonimproving_iterations():
    temps, reason = _run(sch.Schedule(uses_temperature=False, max_nonimproving=2), {1})
    assert temps == [None, None, None]
    assert "2 iterations without improvement" in reason


def test_pass_policy():
    assert sch.passes("judge_and_verifier", "VALID", "pass")
    assert sch.passes("judge_and_verifier", "VALID", "warn")
    assert not sch.passes("judge_and_verifier", "VALID", "fail")
    assert not sch.passes("judge_and_verifier", "INVALID", "pass")
    assert sch.passes("judge", "VALID", "fail")
    assert sch.passes("verifier", "", "pass")
    assert not sch.passes("verifier", "VALID", "fail")


def test_improves():
    assert sch.improves(9.0, 10.0)
    assert not sch.improves(10.0, 10.0)
    assert not sch.improves(9.95, 10.0, min_gain=0.01)
    assert not sch.improves(None, 10.0)

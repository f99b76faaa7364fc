"""The one derivation of a trial's headline figures (store/headline.py): its decisions on
hand-made records (no compiler), and the round trip on real archives measured on an H100."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lassi_batch.core.records import Candidate
from lassi_batch.store.headline import Confirmation, Entry, Repeat, Rules, TrialRecords, confirm_queue, derive, select_best
from roundtrip import assert_round_trip

GPU_ARCHIVES = Path(__file__).resolve().parents[1].parent / "shared" / "measurements" / "h100-demo-gpu-2026-12-06" / "trials"


def entry(cid: int, stage: int, energies: list[float], passed: bool = True, verdict: str = "pass",
          findings: list[dict] | None = None, tails: list[float] | None = None) -> Entry:
    c = Candidate(key=f"c{cid}", stage=stage, iteration=cid, status="measured", build_ok=True, run_ok=True,
                  passed=passed, verdict=verdict, findings_json=json.dumps(findings or []))
    c.id = cid
    tails = tails or [1.0] * len(energies)
    return Entry(c, tuple(Repeat(e, t, 1.0, e) for e, t in zip(energies, tails)), passed)


SOURCE = [100.0, 101.0, 99.0]


def test_selection_replays_the_noise_rule_and_ignores_held_candidates():
    rules = Rules(confirm_repeats=0)
    src = entry(0, 0, SOURCE, passed=False)
    small = entry(2, 3, [99.0, 99.5, 98.5])  # 1% lower: inside the 2% margin
    noisy = entry(3, 3, [40.0, 160.0, 80.0])  # lower mean, but not beyond the noise
    held = entry(4, 3, [5.0, 5.0, 5.0], passed=False, verdict="held")
    good = entry(5, 3, [60.0, 61.0, 59.0])
    rec = TrialRecords((src, entry(1, 1, [100.0], passed=False), small, noisy, held, good), finished=True)
    assert select_best(rec, rules).id == 5
    h = derive(rec, rules)
    assert (h.best_candidate, h.selection_best_candidate, h.confirmed) == (5, 5, False)
    assert h.reduction == h.selection_reduction == pytest.approx(0.4)
    assert h.reduction_with_tail == pytest.approx(1 - 61.0 / 101.0)  # tails of 1 J added on both sides
    assert math.isnan(h.reduction_ci_low) and h.source_energy_j == 100.0 and h.best_energy_j == 60.0
    # a recorded stage-3 best wins over the replay
    assert derive(TrialRecords(rec.entries, finished=True, selection_best=2), rules).best_candidate == 2


def test_confirmation_queue_puts_lower_held_candidates_and_the_best_first():
    rules = Rules(confirm_candidates=3)
    src = entry(0, 0, SOURCE, passed=False)
    best = entry(1, 3, [60.0, 60.5, 59.5])
    other = entry(2, 3, [70.0, 70.0, 70.0])  # passed, beats the source, but not the best
    held = entry(3, 3, [8.0, 8.0, 8.0], passed=False, verdict="held")
    released = entry(4, 3, [9.0, 9.0, 9.0], findings=[{"kind": "confirmation", "severity": "cosmetic"}])
    worse = entry(5, 3, [99.5, 99.5, 99.5])  # within the margin of the source: never confirmed
    rec = TrialRecords((src, best, other, held, released, worse), finished=True)
    assert [e.id for e in confirm_queue(rec, rules)] == [3, 4, 1]  # a released hold was held at selection
    assert [e.id for e in confirm_queue(rec, Rules(confirm_candidates=5))] == [3, 4, 1, 2]


def _confirm(cid: int, source: list[float], cand: list[float], ok: bool = True) -> Confirmation:
    return Confirmation(cid, ok, tuple(Repeat(e, 2.0) for e in source), tuple(Repeat(e, 2.0) for e in cand))


def test_the_first_confirmed_candidate_in_queue_order_gives_the_figures():
    rules = Rules()
    src, best, other = entry(0, 0, SOURCE, passed=False), entry(1, 3, [60.0, 61.0, 59.0]), entry(2, 3, [70.0] * 3)
    wide = _confirm(1, [10.0, 100.0, 190.0], [60.0, 61.0, 59.0])  # the source spread: no bound
    tight = _confirm(2, [100.0, 100.5, 99.5], [70.0, 70.2, 69.8])
    h = derive(TrialRecords((src, best, other), (wide, tight), finished=True), rules)
    assert h.confirmed and h.best_candidate == 2 and h.selection_best_candidate == 1
    assert h.source_energy_j == pytest.approx(100.0) and h.best_energy_j == pytest.approx(70.0)
    assert h.reduction == pytest.approx(0.3) and 0 < h.reduction_ci_low < 0.3 < h.reduction_ci_high
    assert h.reduction_with_tail == pytest.approx(1 - 72.0 / 102.0) and h.confirm_level == 0.95
    assert [ok for _, _, ok in h.tried] == [False, True]
    # a run that failed does not confirm, whatever its figures
    failed = derive(TrialRecords((src, best, other), (wide, _confirm(2, [100.0] * 3, [70.0] * 3, ok=False)),
                                 finished=True), rules)
    assert not failed.confirmed and failed.best_candidate == 0 and failed.reduction == 0.0
    assert failed.reduction_with_tail == 0.0 and failed.selection_reduction == pytest.approx(0.4)


def test_before_stage_4_the_source_is_the_best_and_vanilla_is_against_the_reported_source():
    src = entry(0, 0, SOURCE, passed=False)
    van = entry(1, 1, [80.0, 80.0, 80.0])
    h = derive(TrialRecords((src, van, entry(2, 3, [50.0] * 3))), Rules())
    assert (h.best_candidate, h.reduction, h.confirmed) == (0, 0.0, False) and math.isnan(h.reduction_with_tail)
    assert h.vanilla_passed and h.vanilla_reduction == pytest.approx(0.2) and h.n_passed == 2
    assert derive(TrialRecords(()), Rules()).source_candidate is None


def test_rules_come_from_the_recorded_measure_settings():
    r = Rules.from_config({"study": {"measure": {"confirm_repeats": 0, "min_improvement": 0.1, "repeat": 2}}})
    assert r == Rules(min_improvement=0.1, confirm_repeats=0) and isinstance(r.confirm_repeats, int)
    assert Rules.from_config({}) == Rules()


@pytest.mark.skipif(not GPU_ARCHIVES.is_dir(), reason=f"{GPU_ARCHIVES} not present")
@pytest.mark.parametrize("name", sorted(p.name for p in GPU_ARCHIVES.glob("*.h5")) if GPU_ARCHIVES.is_dir() else [])
def test_round_trip_on_the_h100_demo_archives(name: str):
    """Real NVML traces of the GPU demo (confirmed, not confirmed, resumed trials): every figure
    recomputed from the traces equals the recorded one."""
    assert_round_trip(GPU_ARCHIVES / name)

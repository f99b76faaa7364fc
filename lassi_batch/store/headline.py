"""A trial's headline figures (best, reduction, interval, confirmed, with-tail, vanilla) derived
from its records by one pure function, `derive`.

Every place that states a trial's saving calls it: stage 4 (which writes the result), the
summary the writer refreshes, `recompute` (with energies re-derived from the raw traces), the
CLI and the exports read what it produced. So a figure has one definition, and `recompute` with
the settings the trial recorded reproduces every recorded figure exactly.

The derivation replays the trial's decisions on the records (docs/metrics.md, "one derivation"):

1. the selection: the vanilla candidate becomes the best when it passed and `is_lower` than the
   source; then each stage-3 candidate in turn when it passed and `is_lower` than the best (the
   noise rule of power/stats.py over the selection-time repeats). Held candidates do not pass
   at selection. A recorded stage-3 best (`selection_best`) replaces the replay where given;
2. the confirmation queue (`confirm_queue`), and the interleaved confirmations in that order
   until one shows a saving whose whole interval is above zero (`saving_interval`);
3. the figures: a confirmed candidate's interleaved means and interval; with confirmation
   switched off, the selection-time figures; otherwise the source (no saving, 0.0).

No I/O here: `reader.trial_records` builds the records from a trial file.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

from ..core.records import Candidate
from ..power.stats import Saving, is_lower, saving_interval
from .summary import TrialSummary

NAN = math.nan
# how `saving_interval` bounds a saving (power/stats.py); recorded with every confirmed result, so
# that a reader knows which interval method made an archive's intervals
CONFIRM_METHOD = "interleaved A B, Fieller interval with Welch df, ratio clipped at 0"


@dataclass(frozen=True)
class Repeat:
    """One measured run's figures: net energy and the post-exit tail energy (J)."""

    energy_j: float
    tail_j: float = NAN
    runtime_s: float = NAN
    power_w: float = NAN


@dataclass(frozen=True)
class Entry:
    """One candidate as the derivation sees it."""

    cand: Candidate
    repeats: tuple[Repeat, ...] = ()  # selection-time runs on the trial's device, in order
    passed: bool = False  # passes screening (as recorded, or re-decided by a pass policy)

    @property
    def id(self) -> int | None:
        return self.cand.id

    @property
    def stage(self) -> int:
        return self.cand.stage

    @property
    def held(self) -> bool:
        """Held at selection time: still held, or released by its confirmation in stage 4."""
        return self.cand.verdict == "held" or _released(self.cand)

    @property
    def selectable(self) -> bool:
        """Passed at selection time (a held candidate passes only after its confirmation)."""
        return self.passed and not self.held

    def figure(self, name: str) -> float | None:
        """Mean of one figure over the repeats (as the bench computed it); None when not measured."""
        if not self.cand.run_ok or not self.repeats:
            return None
        return fmean(getattr(r, name) for r in self.repeats)

    @property
    def energy_j(self) -> float | None:
        return self.figure("energy_j")


def _released(c: Candidate) -> bool:
    try:
        items = json.loads(c.findings_json or "[]")
    except (json.JSONDecodeError, TypeError):
        return False
    return isinstance(items, list) and any(isinstance(f, dict) and f.get("kind") == "confirmation" for f in items)


@dataclass(frozen=True)
class Confirmation:
    """One stage-4 interleaved re-measurement of a candidate against the source."""

    candidate: int
    ok: bool  # every run built and ran
    source: tuple[Repeat, ...]
    runs: tuple[Repeat, ...]  # the candidate's

    def saving(self, level: float) -> Saving:
        return saving_interval([r.energy_j for r in self.source], [r.energy_j for r in self.runs], level)

    def confirmed(self, level: float) -> bool:
        return self.ok and self.saving(level).confirmed

    def with_tail(self) -> float:
        return tail_reduction(self.source, self.runs)


@dataclass(frozen=True)
class Rules:
    """The trial's settings that decide its figures ([measure] of the study, as recorded)."""

    min_improvement: float = 0.02
    significance: float = 0.05
    confidence: float = 0.95
    confirm_repeats: int = 3
    confirm_candidates: int = 3

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Rules:
        """From a trial file's `config` (the study's [measure]); defaults where a key is absent."""
        study = config.get("study") if isinstance(config.get("study"), Mapping) else {}
        m = study.get("measure") if isinstance(study.get("measure"), Mapping) else {}
        kw = {f.name: (int if f.type == "int" else float)(m[f.name])
              for f in dataclasses.fields(cls) if m.get(f.name) is not None}
        return cls(**kw)

    @classmethod
    def of(cls, measure: Any) -> Rules:
        """From a live study's MeasureConfig."""
        return cls(**{f.name: getattr(measure, f.name) for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class TrialRecords:
    """What the derivation reads: candidates with their runs, confirmations in the order tried."""

    entries: tuple[Entry, ...]
    confirmations: tuple[Confirmation, ...] = ()
    finished: bool = False  # stage 4 ran (its result is recorded)
    selection_best: int | None = None  # the stage-3 best as recorded; None: replay the selection

    def by_id(self, cid: int | None) -> Entry | None:
        return next((e for e in self.entries if e.id == cid), None)


@dataclass(frozen=True)
class Headline:
    """A trial's headline figures; names as in the summary and result (docs/hdf5-schema.md)."""

    source_candidate: int | None = None
    best_candidate: int | None = None  # the final best; = source_candidate when nothing counts
    selection_best_candidate: int | None = None
    source_energy_j: float = NAN
    best_energy_j: float = NAN
    reduction: float = 0.0
    confirmed: bool = False
    reduction_ci_low: float = NAN
    reduction_ci_high: float = NAN
    confirm_level: float = NAN
    reduction_with_tail: float = NAN
    selection_source_energy_j: float = NAN
    selection_best_energy_j: float = NAN
    selection_reduction: float = 0.0
    vanilla_candidate: int | None = None
    vanilla_passed: bool = False
    vanilla_energy_j: float = NAN
    vanilla_reduction: float = 0.0
    source_runtime_s: float = NAN
    source_power_w: float = NAN
    best_runtime_s: float = NAN
    best_power_w: float = NAN
    best_stage: int = -1
    best_iteration: int = -1
    best_self_corrections: int = -1
    n_passed: int = 0
    tried: tuple[tuple[Confirmation, Saving, bool], ...] = field(default=(), repr=False)  # (c, saving, confirmed)

    @property
    def improved(self) -> bool:
        return self.best_candidate is not None and self.best_candidate != self.source_candidate


def _nan(v: float | None) -> float:
    return NAN if v is None else float(v)


def tail_reduction(a: Sequence[Repeat], b: Sequence[Repeat]) -> float:
    """The saving with the post-exit tail energy added to every run (NaN without tails)."""
    ea = [r.energy_j + r.tail_j for r in a if math.isfinite(r.energy_j) and math.isfinite(r.tail_j)]
    eb = [r.energy_j + r.tail_j for r in b if math.isfinite(r.energy_j) and math.isfinite(r.tail_j)]
    if not ea or not eb or fmean(ea) == 0:
        return NAN
    return 1.0 - fmean(eb) / fmean(ea)


def beats(cand: Entry, best: Entry, rules: Rules) -> bool:
    """A new best: lower by more than min_improvement and than the measured noise (stats.is_lower)."""
    if cand.energy_j is None or best.energy_j is None:
        return False
    return is_lower([r.energy_j for r in best.repeats], [r.energy_j for r in cand.repeats],
                    rules.min_improvement, rules.significance).lower


def select_best(rec: TrialRecords, rules: Rules) -> Entry | None:
    """The stage-3 best: as recorded, else replayed over the records (stage 1, then stage 3)."""
    src = _source(rec)
    recorded = rec.by_id(rec.selection_best) if rec.selection_best is not None else None
    if recorded is not None or src is None:
        return recorded or src
    best = src
    van = _vanilla(rec)
    if van is not None and van.selectable and beats(van, src, rules):
        best = van
    for e in sorted((e for e in rec.entries if e.stage == 3), key=lambda e: e.id if e.id is not None else -1):
        if e.selectable and beats(e, best, rules):
            best = e
    return best


def confirm_queue(rec: TrialRecords, rules: Rules) -> list[Entry]:
    """Candidates to confirm, in turn: held candidates measured lower than the stage-3 best
    (they could not become the best before a confirmation) and the best, lowest energy first;
    then the other passing (or held) candidates that beat the source at selection time."""
    src, best = _source(rec), select_best(rec, rules)
    if src is None or best is None or src.energy_j is None:
        return []
    limit = src.energy_j * (1.0 - rules.min_improvement)
    ok = [e for e in rec.entries if e.stage in (1, 3) and e.energy_j is not None
          and (e.selectable or e.held) and e.energy_j < limit]
    bound = best.energy_j if best.id != src.id and best.energy_j is not None else src.energy_j

    def first(e: Entry) -> bool:
        return e.id == best.id or (e.held and bound is not None and e.energy_j < bound)  # type: ignore[operator]

    ok.sort(key=lambda e: (not first(e), e.energy_j))
    return ok[: rules.confirm_candidates]


def _source(rec: TrialRecords) -> Entry | None:
    return next((e for e in rec.entries if e.stage == 0), None)


def _vanilla(rec: TrialRecords) -> Entry | None:
    return next((e for e in rec.entries if e.stage == 1), None)


def derive(rec: TrialRecords, rules: Rules) -> Headline:
    """The trial's headline figures from its records (see the module's docstring)."""
    src = _source(rec)
    if src is None:
        return Headline()
    src_e = src.energy_j
    van = _vanilla(rec)
    passed = sum(1 for e in rec.entries if e.stage in (1, 3) and e.passed)
    common = dict(source_candidate=src.id, source_runtime_s=_nan(src.figure("runtime_s")),
                  source_power_w=_nan(src.figure("power_w")), n_passed=passed,
                  vanilla_candidate=van.id if van is not None else None)
    if not rec.finished:  # no stage 4 yet: the source is the best so far
        final, best, sel = src, src, 0.0
        src_c, best_c, red, lo, hi, tail, conf = _nan(src_e), _nan(src_e), 0.0, NAN, NAN, NAN, None
        tried: list[tuple[Confirmation, Saving, bool]] = []
    else:
        best = select_best(rec, rules) or src
        sel = ((src_e - best.energy_j) / src_e
               if best.id != src.id and src_e and best.energy_j is not None else 0.0)
        final, conf, tried = (best if rules.confirm_repeats <= 0 else src), None, []
        if rules.confirm_repeats > 0:
            done = {c.candidate: c for c in rec.confirmations}
            for e in confirm_queue(rec, rules):
                c = done.get(e.id)  # type: ignore[arg-type]
                if c is None:
                    continue  # never re-measured (recompute chose another queue): not confirmed
                sv = c.saving(rules.confidence)
                ok = c.confirmed(rules.confidence)
                tried.append((c, sv, ok))
                if ok:
                    final, conf = e, (c, sv)
                    break
        if conf is not None:
            c, sv = conf
            src_c, best_c, red, lo, hi, tail = sv.mean_a, sv.mean_b, sv.reduction, sv.ci_low, sv.ci_high, c.with_tail()
        elif final.id != src.id:  # confirmation switched off: the selection-time figures
            src_c, best_c, red, lo, hi = _nan(src_e), _nan(final.energy_j), sel, NAN, NAN
            tail = tail_reduction(src.repeats, final.repeats)
        else:
            src_c, best_c, red, lo, hi, tail = _nan(src_e), _nan(src_e), 0.0, NAN, NAN, 0.0
    van_ok = van is not None and van.passed
    van_e = van.energy_j if van is not None else None
    good = van_ok and src_c > 0 and van_e is not None
    return Headline(
        **common, best_candidate=final.id, selection_best_candidate=best.id,
        source_energy_j=src_c, best_energy_j=best_c, reduction=red, confirmed=conf is not None,
        reduction_ci_low=lo, reduction_ci_high=hi, confirm_level=rules.confidence if conf is not None else NAN,
        reduction_with_tail=tail, selection_source_energy_j=_nan(src_e),
        selection_best_energy_j=_nan(best.energy_j), selection_reduction=sel,
        vanilla_passed=van_ok, vanilla_energy_j=_nan(van_e) if van_ok else NAN,
        vanilla_reduction=(1.0 - van_e / src_c) if good else 0.0,  # type: ignore[operator]
        best_runtime_s=_nan(final.figure("runtime_s")), best_power_w=_nan(final.figure("power_w")),
        best_stage=final.stage, best_iteration=final.cand.iteration if final is not src else -1,
        best_self_corrections=final.cand.self_corrections if final is not src else -1,
        tried=tuple(tried),
    )


def apply(s: TrialSummary, h: Headline) -> TrialSummary:
    """`s` with the headline's figures (the summary fields that `derive` defines)."""
    return dataclasses.replace(
        s, source_energy_j=h.source_energy_j, best_energy_j=h.best_energy_j, reduction=h.reduction,
        selection_best_energy_j=h.selection_best_energy_j, selection_reduction=h.selection_reduction,
        confirmed=h.confirmed, reduction_ci_low=h.reduction_ci_low, reduction_ci_high=h.reduction_ci_high,
        reduction_with_tail=h.reduction_with_tail, vanilla_energy_j=h.vanilla_energy_j,
        vanilla_reduction=h.vanilla_reduction, vanilla_passed=h.vanilla_passed, passed=h.improved,
        source_runtime_s=h.source_runtime_s, source_power_w=h.source_power_w,
        best_runtime_s=h.best_runtime_s, best_power_w=h.best_power_w,
        best_candidate=h.best_candidate if h.improved and h.best_candidate is not None else -1,
        best_iteration=h.best_iteration, best_self_corrections=h.best_self_corrections, n_passed=h.n_passed,
    )

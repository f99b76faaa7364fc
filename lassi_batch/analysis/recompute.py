"""Re-derive a study's energies from its raw power traces under other choices, and every metric
from them: "what would the paper's method have said about my study?"

Per measurement the figures are recomputed by `power.energy` from the archived trace and window
(never from the stored figures); a candidate's pass is re-decided under the chosen policy from
its stored verdicts; then the trial's figures come from the one derivation the trial itself
used (store/headline.py, with the [measure] settings the trial recorded): its selection is
replayed with the noise rule, its stage-4 confirmations re-derived from their own traces. The
"old" figures are the trial's recorded summary (what `aggregate` reads), so with the trial's
own choices ("auto", "recorded") old and new are equal, and otherwise differ only by the
choices made here. Trial files are opened read-only and never written.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ArchiveError
from ..core.records import Candidate
from ..power import energy
from ..power.trace import Measurement
from ..store.headline import Repeat, Rules, apply, derive
from ..store.layout import index_from_name
from ..store.reader import open_trial, stored_repeat, trial_records
from ..store.summary import TrialSummary
from . import metrics
from .aggregate import (Options, PriceTable, build_tables, cross_app_rows, group_trials, stamp_provenance,
                        study_provenance)
from .study import StudyWriter, is_study_file
from .tables import Table, count, num, pct, text
from .trials import FINISHED, Skipped, Trial

ENERGY_METHODS = ("auto", "counter", "instant", "paper-eq4")
IDLE_CHOICES = ("auto", "pre", "post", "both")
TAIL_CHOICES = ("exclude", "include")
PASS_POLICIES = ("recorded", "judge", "verifier", "both", "strict")


@dataclass(frozen=True)
class Choices:
    """How to turn traces into energies and verdicts into passes ("auto"/"recorded": as the trial did)."""

    energy: str = "auto"
    idle: str = "auto"
    tail: str = "exclude"
    pass_policy: str = "recorded"

    def __post_init__(self) -> None:
        for value, allowed, what in ((self.energy, ENERGY_METHODS, "energy method"), (self.idle, IDLE_CHOICES, "idle"),
                                     (self.tail, TAIL_CHOICES, "tail"), (self.pass_policy, PASS_POLICIES, "pass policy")):
            if value not in allowed:
                raise ValueError(f"unknown {what} {value!r} (one of {', '.join(allowed)})")

    def describe(self) -> str:
        return f"energy={self.energy}, idle={self.idle}, tail={self.tail}, pass={self.pass_policy}"


# ------------------------------------------------------------------ one measurement


def _idle(f: dict[str, float], choice: str, recorded: float) -> float:
    """The chosen idle baseline from the trace's figures; the trial's recorded idle when the trace
    has no power readings around the run (e.g. a meter that only models an energy counter)."""
    if choice == "pre":
        v = f["idle_pre_w"]
    elif choice == "post":
        v = f["idle_post_w"]
    elif choice == "both":  # the paper: the mean of the pre- and post-run levels
        both = [x for x in (f["idle_pre_w"], f["idle_post_w"]) if math.isfinite(x)]
        v = float(np.mean(both)) if both else math.nan
    else:
        v = f["idle_w"]
    return v if math.isfinite(v) else recorded


def measured_repeat(m: Measurement, c: Choices) -> Repeat:
    """One measured run's figures under `c`, from its raw trace: net energy (NaN when the trace
    cannot give it, e.g. no counter for `counter`), tail energy on the same idle baseline (0 when
    the energy already includes the tail), runtime and mean power. A run the `estimate` meter
    figured from the program's own CPU seconds keeps that model's figures under `auto`: its
    trace models the whole machine, a different quantity (power/protocol.py)."""
    if c.energy == "auto" and is_cpu_model(m):
        return stored_repeat(m)
    f = energy.analyze(m.trace, m.window).figures
    e, idle = _energy(m, f, c)
    tail = 0.0 if c.tail == "include" else f["energy_tail_j"] + (_base_idle(f, idle) - idle) * _tail_s(f)
    return Repeat(e, tail, f["runtime_s"], f["power_avg_w"])


def is_cpu_model(m: Measurement) -> bool:
    """The run's energy is the estimate meter's CPU-time model, not a trace integral."""
    return str(m.attrs.get("energy_method", "")).startswith("estimate:cpu_seconds")


def _tail_s(f: dict[str, float]) -> float:
    return f["tail_s"] if math.isfinite(f["tail_s"]) and f["tail_s"] > 0 else 0.0


def _base_idle(f: dict[str, float], idle: float) -> float:
    """The idle level the stored tail energy is net of (the trace's own; the chosen one without)."""
    return f["idle_w"] if math.isfinite(f["idle_w"]) else idle


def _energy(m: Measurement, f: dict[str, float], c: Choices) -> tuple[float, float]:
    """(net energy in J, the idle level in W subtracted) of one run under `c`."""
    w, tr = m.window, m.trace
    recorded_idle = float(m.figures.get("idle_w", math.nan))
    runtime = f["runtime_s"]
    tail_s = _tail_s(f)
    end = w.t_settled if c.tail == "include" else w.t_exit
    if c.energy == "paper-eq4":
        # Eq. 4 sums the sensor's averaged power; without one, the instant channel; without any
        # power channel, the power the energy counter implies between its updates
        if energy.has_data(tr.power_average_w):
            t, p = tr.t, tr.power_average_w
        elif energy.has_data(tr.power_instant_w):
            t, p = tr.t, tr.power_instant_w
        else:
            t, p = energy.counter_power(tr.counter_t, tr.counter_j)
        idle = f["idle_paper_w"] if c.idle == "auto" and math.isfinite(f["idle_paper_w"]) else _idle(f, c.idle, recorded_idle)
        return energy.eq4(t, p, w.t_launch, end, idle), idle
    idle = _idle(f, c.idle, recorded_idle)
    gross = {"auto": f["energy_gross_j"], "counter": f["energy_counter_j"], "instant": f["energy_instant_j"]}[c.energy]
    if c.energy == "auto" and not math.isfinite(gross):
        gross = f["energy_counter_j"]
    e = gross - idle * runtime
    if c.tail == "include" and tail_s > 0:
        # energy_tail_j is net of the trace's idle_w; put it back on the chosen baseline
        e += f["energy_tail_j"] + (_base_idle(f, idle) - idle) * tail_s
    return float(e), idle


# ------------------------------------------------------------------ one trial


def passes(cand: Candidate, policy: str) -> bool:
    """Whether a candidate that ran passes screening under `policy` (its stored verdicts)."""
    if not cand.run_ok:
        return False
    if policy == "recorded":
        return bool(cand.passed)
    verdict = cand.verdict
    judge_ok = cand.judge_verdict == "VALID"
    verifier_ok = verdict == "pass" if verdict in ("pass", "fail", "held") else cand.verifier_verdict in ("pass", "warn")
    if policy == "judge":
        return judge_ok
    if policy == "verifier":
        return verifier_ok
    if policy == "both":
        return judge_ok and verifier_ok
    # strict: a clean verifier pass (no warnings) and nothing held for a human
    return judge_ok and cand.verifier_verdict == "pass" and verdict != "held"


@dataclass(frozen=True)
class Recomputed:
    path: Path
    old: TrialSummary  # the trial's recorded summary (what aggregate reads)
    new: TrialSummary  # re-derived by store/headline.py from recomputed energies and re-decided passes
    stored_reduction: float  # the reduction in the file's /summary (NaN for a file without one)


def recompute_trial(path: Path, c: Choices) -> Recomputed:
    """Recorded and recomputed figures of one trial file (opened read-only): the new ones come
    from the one derivation (store/headline.py) over energies re-derived from the traces, with
    the trial's recorded settings and its selection replayed. ArchiveError when unreadable."""
    with open_trial(path) as t:
        old = t.summary()
        rec = trial_records(t, repeat=lambda m: measured_repeat(m, c), passes=lambda x: passes(x, c.pass_policy),
                            replay=True)
        new = apply(old, derive(rec, Rules.from_config(t.config())))
        if new.trial_index < 0:
            new = replace(new, trial_index=index_from_name(path))
        stored = old.reduction if t.version >= 2 else math.nan
    return Recomputed(path, old, new, stored)


def recompute_all(paths: Iterable[Path], c: Choices, include_running: bool = False) -> Iterator[Recomputed | Skipped]:
    """Recompute every file; a file that cannot be read becomes a Skipped with its reason."""
    seen: dict[tuple[str, str, str], Path] = {}
    for p in paths:
        try:
            r = recompute_trial(p, c)
        except ArchiveError as e:
            if is_study_file(p):  # our own output inside the study folder
                continue
            yield Skipped(p, str(e).removeprefix(f"{p.absolute()}: ").removeprefix(f"{p}: "))
            continue
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
            yield Skipped(p, f"corrupt trial file ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
            continue
        if r.new.status not in FINISHED and not include_running:
            yield Skipped(p, f"trial still {r.new.status} (use --include-running to count it)")
            continue
        key = (r.new.study, r.new.app, r.new.platform,
               str(r.new.trial_index) if r.new.trial_index >= 0 else f"id:{r.new.trial_id}")
        if key in seen:
            yield Skipped(p, f"duplicate of {seen[key]} (same study, app, platform, index)")
            continue
        seen[key] = p
        yield r


def as_trials(results: Iterable[Recomputed], which: str) -> Iterator[Trial]:
    for r in results:
        yield Trial(r.path, r.old if which == "old" else r.new)


# ------------------------------------------------------------------ the study


def _mean(xs: Iterable[float]) -> float:
    v = [x for x in xs if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else math.nan


def compare_table(old: dict, new: dict, ks: tuple[int, ...], c: Choices) -> Table:
    """Old vs new per (app, platform): energies, pass@1 and energy-reduction@k, pipeline and vanilla."""
    rows = []
    for key, gn in new.items():
        go = old[key]
        row: dict[str, Any] = {"app": gn.app, "platform": gn.platform, "n": gn.n}
        for tag, g in (("old", go), ("new", gn)):
            row[f"{tag}_source_energy_j"] = _mean(g.array("source_energy_j"))
            imp = (g.array("pipeline_pass") > 0) & (g.array("reduction") > 0)
            row[f"{tag}_best_energy_j"] = _mean(g.array("best_energy_j")[imp])
            row[f"{tag}_pass_1"] = metrics.pass_at_k(g.n, int(g.array("pipeline_pass").sum()), 1)
            for k in ks:
                red = np.where(g.array("pipeline_pass") > 0, g.array("reduction"), 0.0)
                row[f"{tag}_er_{k}"] = metrics.energy_reduction_at_k(red, k) if k <= g.n else math.nan
            vred = np.where(g.array("vanilla_passed") > 0, g.array("vanilla_reduction"), 0.0)
            row[f"{tag}_vanilla_er_1"] = metrics.energy_reduction_at_k(vred, 1)
        rows.append(row)
    keys = [k for k in (rows[0] if rows else {}) if k.startswith(("old_", "new_"))]
    rows += cross_app_rows(rows, keys)
    cols = [text("app"), text("platform"), count("n"),
            num("old_source_energy_j", "source E old (J)", 2), num("new_source_energy_j", "new", 2),
            num("old_best_energy_j", "best E old (J)", 2), num("new_best_energy_j", "new", 2),
            pct("old_pass_1", "pass@1 old"), pct("new_pass_1", "new")]
    for k in ks:
        cols += [pct(f"old_er_{k}", f"e-red@{k} old"), pct(f"new_er_{k}", "new")]
    cols += [pct("old_vanilla_er_1", "vanilla e-red@1 old"), pct("new_vanilla_er_1", "new")]
    return Table("recompute_compare", f"Recorded vs recomputed ({c.describe()})", cols, rows,
                 note="old: the energies and passes recorded in the trial files; new: re-derived from the raw "
                      "traces and stored verdicts. Both select each trial's best the same way.")


def trial_compare_rows(results: list[Recomputed]) -> Table:
    rows = [{"path": str(r.path), "app": r.new.app, "platform": r.new.platform, "trial_index": r.new.trial_index,
             "old_source_energy_j": r.old.source_energy_j, "new_source_energy_j": r.new.source_energy_j,
             "old_best_energy_j": r.old.best_energy_j, "new_best_energy_j": r.new.best_energy_j,
             "old_reduction": r.old.reduction, "new_reduction": r.new.reduction,
             "stored_reduction": r.stored_reduction, "old_passed": r.old.passed, "new_passed": r.new.passed,
             "old_best_candidate": r.old.best_candidate, "new_best_candidate": r.new.best_candidate}
            for r in results]
    keys = ["path", "app", "platform", "trial_index", "old_source_energy_j", "new_source_energy_j",
            "old_best_energy_j", "new_best_energy_j", "old_reduction", "new_reduction", "stored_reduction",
            "old_passed", "new_passed", "old_best_candidate", "new_best_candidate"]
    return Table("recompute_trials", "Per trial: recorded vs recomputed", [text(k) for k in keys], rows)


def recompute_study(paths: Iterable[Path], c: Choices, out_dir: Path, o: Options,
                    include_running: bool = False) -> tuple[Table, list[Skipped], int]:
    """Recompute every trial in `paths`; write OUT/recompute.h5 (a study file of the new figures
    plus the comparison tables), OUT/csv/ and OUT/recompute.md. Returns (comparison, skipped, n)."""
    results: list[Recomputed] = []
    skipped: list[Skipped] = []
    for r in recompute_all(paths, c, include_running):
        (skipped if isinstance(r, Skipped) else results).append(r)
    old = group_trials(as_trials(results, "old"), PriceTable())
    writer = StudyWriter(out_dir / "recompute.h5", out_dir / "csv")
    try:
        new = group_trials(as_trials(results, "new"), PriceTable(), sink=writer)
        o = o.with_study_k(new)
        cmp = compare_table(old, new, o.k, c)
        tables = [*stamp_provenance([cmp, trial_compare_rows(results)], new), *build_tables(new, o)]
        writer.finish(tables, skipped, f"recompute ({c.describe()})", o, out_dir / "recompute.md",
                      f"Recomputed study: {len(results)} trials, {c.describe()}", study_provenance(new).lines())
    except BaseException:
        writer.abort()
        raise
    return cmp, skipped, len(results)

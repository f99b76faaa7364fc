"""Re-derive a study's energies from its raw power traces under other choices, and every metric
from them: "what would the paper's method have said about my study?"

Per measurement the figures are recomputed by `power.energy` from the archived trace and window
(never from the stored figures); a candidate's energy is the mean over its repeats; its pass is
re-decided under the chosen policy from its stored verdicts; each trial's best is re-selected
(the lowest-energy passing generated candidate below the source's energy) and the trial's
reductions follow. The same selection applied to the *recorded* energies and passes gives the
"old" figures, so old and new differ only by the choices made here. Trial files are opened
read-only and never written.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..core.errors import ArchiveError
from ..core.records import Candidate
from ..power import energy
from ..power.trace import Measurement
from ..store.archive import TrialArchive
from ..store.summary import SUMMARY_GROUP, TrialSummary, read_summary, screening_counts
from . import metrics
from .aggregate import Options, PriceTable, build_tables, cross_app_rows, group_trials
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


def measurement_energy(m: Measurement, c: Choices) -> tuple[float, float]:
    """(net energy in J, mean power in W) of one measured run under `c`, from its raw trace;
    NaN when the trace cannot give it (e.g. no counter for `counter`)."""
    f = energy.analyze(m.trace, m.window).figures
    return _energy(m, f, c), f["power_avg_w"]


def _energy(m: Measurement, f: dict[str, float], c: Choices) -> float:
    w, tr = m.window, m.trace
    recorded_idle = float(m.figures.get("idle_w", math.nan))
    runtime = f["runtime_s"]
    tail_s = f["tail_s"] if math.isfinite(f["tail_s"]) and f["tail_s"] > 0 else 0.0
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
        return energy.eq4(t, p, w.t_launch, end, idle)
    idle = _idle(f, c.idle, recorded_idle)
    gross = {"auto": f["energy_gross_j"], "counter": f["energy_counter_j"], "instant": f["energy_instant_j"]}[c.energy]
    if c.energy == "auto" and not math.isfinite(gross):
        gross = f["energy_counter_j"]
    e = gross - idle * runtime
    if c.tail == "include" and tail_s > 0:
        # energy_tail_j is net of the trace's idle_w; put it back on the chosen baseline
        base = f["idle_w"] if math.isfinite(f["idle_w"]) else idle
        e += f["energy_tail_j"] + (base - idle) * tail_s
    return float(e)


# ------------------------------------------------------------------ one trial


def passes(cand: Candidate, policy: str, verdict: str = "") -> bool:
    """Whether a candidate that ran passes screening under `policy` (its stored verdicts)."""
    if not cand.run_ok:
        return False
    if policy == "recorded":
        return bool(cand.passed)
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


@dataclass
class CandidateFigures:
    cand: Candidate
    verdict: str  # the screening contract's verdict attribute, "" when absent
    energy_j: float  # recomputed
    runtime_s: float
    power_w: float


def _mean(xs: Iterable[float]) -> float:
    v = [x for x in xs if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else math.nan


def select(base: TrialSummary, rows: list[tuple[Candidate, float, float, float, bool]]) -> TrialSummary:
    """The trial's figures from (candidate, energy, runtime, power, passes) rows: source, vanilla
    and the best passing generated candidate below the source."""
    src = next((r for r in rows if r[0].stage == 0), None)
    van = next((r for r in rows if r[0].stage == 1), None)
    gen = [r for r in rows if r[0].stage != 0]
    s = replace(base)
    if src is None:
        return s
    e_src = src[1]
    s.source_energy_j, s.source_runtime_s, s.source_power_w = src[1], src[2], src[3]
    ok = [r for r in gen if r[4] and math.isfinite(r[1])]
    s.n_passed = len(ok)
    better = [r for r in ok if math.isfinite(e_src) and r[1] < e_src]
    best = min(better, key=lambda r: r[1]) if better else None
    s.passed = best is not None
    if best is None:
        s.best_energy_j, s.best_runtime_s, s.best_power_w = e_src, src[2], src[3]
        s.reduction, s.best_candidate, s.best_iteration, s.best_self_corrections = 0.0, -1, -1, -1
    else:
        s.best_energy_j, s.best_runtime_s, s.best_power_w = best[1], best[2], best[3]
        s.reduction = 1.0 - best[1] / e_src
        s.best_candidate = int(best[0].id if best[0].id is not None else -1)
        s.best_iteration, s.best_self_corrections = best[0].iteration, best[0].self_corrections
    s.selection_best_energy_j, s.selection_reduction = s.best_energy_j, s.reduction
    s.confirmed, s.reduction_ci_low, s.reduction_ci_high = False, math.nan, math.nan
    s.vanilla_passed = bool(van is not None and van[4] and math.isfinite(van[1]))
    s.vanilla_energy_j = van[1] if s.vanilla_passed else math.nan
    s.vanilla_reduction = 1.0 - van[1] / e_src if s.vanilla_passed and math.isfinite(e_src) and e_src else 0.0
    return s


def _base_summary(path: Path, arc: TrialArchive) -> tuple[TrialSummary, bool]:
    """The stored summary when the file has one (True), else the identity from the archive's
    metadata (False)."""
    with h5py.File(path, "r", locking=False) as f:
        if SUMMARY_GROUP in f:
            return read_summary(f), True
        else:
            meta = arc.meta
            s = TrialSummary(app=str(meta.get("app", "")), platform=str(meta.get("platform", "")),
                             trial_id=str(meta.get("trial_id", "")), status=str(meta.get("status", "done")))
            s.trial_index = _index_from_name(path)
            s.n_candidates = len(arc.candidates())
            for k, v in screening_counts(f).items():
                setattr(s, k, v)
    return s, False


def _index_from_name(path: Path) -> int:
    """`<app>.<platform>.t007.h5` -> 7 (the trial program's file names), else -1."""
    stem = path.name.removesuffix(".h5")
    tail = stem.rsplit(".", 1)[-1]
    return int(tail[1:]) if tail.startswith("t") and tail[1:].isdigit() else -1


@dataclass(frozen=True)
class Recomputed:
    path: Path
    old: TrialSummary  # recorded energies and passes, same selection
    new: TrialSummary  # recomputed energies, re-decided passes
    stored_reduction: float  # the reduction in the file's /summary (NaN without one)


def recompute_trial(path: Path, c: Choices) -> Recomputed:
    """Old and new figures of one trial file (opened read-only). ArchiveError when unreadable."""
    with TrialArchive.open(path, writable=False) as arc:
        base, has_summary = _base_summary(path, arc)
        verdicts = _verdicts(path)
        old_rows, new_rows = [], []
        for cand in arc.candidates():
            ms = arc.measurements(cand.id) if cand.run_ok else []
            v = verdicts.get(int(cand.id), "")
            figs = [measurement_energy(m, c) for m in ms]
            runtime = _mean(m.window.t_exit - m.window.t_launch for m in ms)
            e_new = _mean(e for e, _ in figs)
            power = _mean(p for _, p in figs)
            ok_old = bool(cand.run_ok and cand.passed)
            e_old = cand.energy_j if cand.energy_j is not None else math.nan
            old_rows.append((cand, float(e_old), _nan(cand.runtime_s), _nan(cand.power_w), ok_old))
            new_rows.append((cand, e_new, runtime, power, passes(cand, c.pass_policy, v)))
    stored = base.reduction if has_summary else math.nan
    return Recomputed(path, select(base, old_rows), select(base, new_rows), stored)


def _nan(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _verdicts(path: Path) -> dict[int, str]:
    """The screening contract's per-candidate `verdict` attributes (absent in older files)."""
    out: dict[int, str] = {}
    with h5py.File(path, "r", locking=False) as f:
        g = f.get("candidates")
        for name in g or ():
            if name.isdigit() and "verdict" in g[name].attrs:
                v = g[name].attrs["verdict"]
                out[int(name)] = v.decode() if isinstance(v, bytes) else str(v)
    return out


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
        cmp = compare_table(old, new, o.k, c)
        tables = [cmp, trial_compare_rows(results), *build_tables(new, o)]
        writer.finish(tables, skipped, f"recompute ({c.describe()})", o, out_dir / "recompute.md",
                      f"Recomputed study: {len(results)} trials, {c.describe()}")
    except BaseException:
        writer.abort()
        raise
    return cmp, skipped, len(results)

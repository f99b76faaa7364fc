"""A study's trials -> the paper's tables and the ones it lacked.

One pass over the trial summaries. Per trial only the numeric summary fields are kept (8 bytes
each, in per-(app, platform) columns), and the per-trial table goes to disk in chunks as it
streams; traces and texts are never loaded. The metric tables are then computed from those
columns by the pure functions in `metrics`, so `recompute` builds the same tables from
re-derived columns.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..core.errors import ConfigError
from ..store.provenance import Provenance
from ..store.summary import FINDING_KINDS, STATUSES, TrialSummary
from . import metrics
from .tables import Column, Table, count, num, pct, text
from .trials import Trial

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_K = (1, 3, 5)
CROSS_APP = "cross-app average"
_NUMERIC_TYPES = {"int", "float", "bool"}
NUMERIC_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(TrialSummary) if f.type in _NUMERIC_TYPES)
STRING_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(TrialSummary) if f.type == "str")
# columns derived per trial while streaming
DERIVED = ("pipeline_pass", "cost_usd", "status_code")


# ------------------------------------------------------------------ prices


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt_per_mtok: float = Field(ge=0, description="USD per million prompt tokens")
    completion_per_mtok: float = Field(ge=0, description="USD per million completion tokens")


class PriceTable(BaseModel):
    """USD per million tokens by model name (`[models."<name>"]` tables in TOML)."""

    model_config = ConfigDict(extra="forbid")
    models: dict[str, Price] = Field(default_factory=dict)

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        p = self.models.get(model)
        if p is None:
            return math.nan
        return (prompt_tokens * p.prompt_per_mtok + completion_tokens * p.completion_per_mtok) / 1e6


def load_prices(path: str | Path | None) -> PriceTable:
    """The price table in `path` (TOML); an empty table (costs n/a) when None."""
    if path is None:
        return PriceTable()
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"price table {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"price table {path}: {e}") from None
    try:
        return PriceTable.model_validate(data)
    except ValidationError as e:
        raise ConfigError([f"price table {path}: {'.'.join(map(str, err['loc']))}: {err['msg']}"
                           for err in e.errors()]) from None


def parse_k(text_: str | None) -> tuple[int, ...] | None:
    """'1,3,5' -> (1, 3, 5); None -> None (the study's k); ConfigError on anything else."""
    if text_ is None:
        return None
    try:
        ks = tuple(sorted({int(x) for x in text_.split(",") if x.strip()}))
    except ValueError:
        raise ConfigError(f"--k: {text_!r} is not a comma-separated list of integers") from None
    if not ks or ks[0] < 1:
        raise ConfigError(f"--k: {text_!r}: every k must be at least 1")
    return ks


# ------------------------------------------------------------------ per-group columns


@dataclass
class Group:
    """The numeric summary fields of one (app, platform)'s trials, column by column."""

    app: str
    platform: str
    cols: dict[str, array] = field(default_factory=dict)
    best_path: str = ""  # trial with the lowest best energy among the improved ones
    _best_energy: float = math.inf
    models: set[str] = field(default_factory=set)
    prov: Provenance = field(default_factory=Provenance)
    ks: set[str] = field(default_factory=set)  # the studies' k, as the trials recorded them

    def add(self, s: TrialSummary, path: Path | str, prices: PriceTable) -> None:
        if not self.cols:
            self.cols = {k: array("d") for k in (*NUMERIC_FIELDS, *DERIVED)}
        for k in NUMERIC_FIELDS:
            self.cols[k].append(float(getattr(s, k)))
        self.cols["pipeline_pass"].append(float(s.passed or s.n_passed > 0))
        self.cols["cost_usd"].append(prices.cost(s.generator_model, s.prompt_tokens, s.completion_tokens))
        self.cols["status_code"].append(float(STATUSES.index(s.status)) if s.status in STATUSES else -1.0)
        self.models.add(s.generator_model)
        self.prov.add(s)
        if s.study_k:
            self.ks.add(s.study_k)
        if s.passed and s.reduction > 0 and s.best_energy_j < self._best_energy:
            self._best_energy, self.best_path = s.best_energy_j, str(path)

    def array(self, key: str) -> np.ndarray:
        return np.frombuffer(self.cols[key], dtype=np.float64) if self.cols else np.zeros(0)

    @property
    def n(self) -> int:
        return len(self.cols["reduction"]) if self.cols else 0


def group_trials(trials: Iterable[Trial], prices: PriceTable, sink: Any = None) -> dict[tuple[str, str], Group]:
    """Stream `trials` into per-(app, platform) groups; each trial also goes to `sink.add`."""
    groups: dict[tuple[str, str], Group] = {}
    for t in trials:
        s = t.summary
        g = groups.get((s.app, s.platform))
        if g is None:
            g = groups[(s.app, s.platform)] = Group(s.app, s.platform)
        g.add(s, t.path, prices)
        if sink is not None:
            sink.add(t)
    return dict(sorted(groups.items()))


# ------------------------------------------------------------------ tables


def _mean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan


def _delta(new: float, old: float) -> float:
    return new / old - 1.0 if math.isfinite(new) and math.isfinite(old) and old != 0 else math.nan


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def _at_k(fn: Any, n: int, k: int, *args: Any) -> float:
    return fn(*args, k) if 1 <= k <= n else math.nan


def cross_app_rows(rows: list[dict[str, Any]], keys: Sequence[str], by: str = "platform") -> list[dict[str, Any]]:
    """One 'cross-app average' row per platform: the plain mean over apps of each key."""
    out = []
    for plat in sorted({r[by] for r in rows}):
        rs = [r for r in rows if r[by] == plat]
        row: dict[str, Any] = {"app": CROSS_APP, by: plat, "n": len(rs)}
        for k in keys:
            row[k] = _mean(np.array([r.get(k, math.nan) for r in rs], dtype=float))
        out.append(row)
    return out


@dataclass(frozen=True)
class Options:
    k: tuple[int, ...] | None = None  # None: the study's k (`with_study_k`)
    resamples: int = 2000  # bootstrap resamples
    confidence: float = 0.95
    seed: int = 0

    def with_study_k(self, groups: dict[tuple[str, str], Group]) -> Options:
        """These options with k resolved: as given, else every k the trials' studies named, else
        DEFAULT_K (trials that recorded none)."""
        if self.k is not None:
            return self
        ks = sorted({int(x) for g in groups.values() for text_ in g.ks for x in text_.split(",") if x.strip()})
        return replace(self, k=tuple(ks) or DEFAULT_K)


def table2(groups: dict[tuple[str, str], Group]) -> Table:
    rows = []
    for g in groups.values():
        improved = (g.array("pipeline_pass") > 0) & (g.array("reduction") > 0)
        src_e, src_p, src_t = (_mean(g.array(k)) for k in ("source_energy_j", "source_power_w", "source_runtime_s"))
        be, bp, bt = (_mean(g.array(k)[improved]) for k in ("best_energy_j", "best_power_w", "best_runtime_s"))
        row = {"app": g.app, "platform": g.platform, "n": g.n, "n_improved": int(improved.sum()),
               "source_energy_j": src_e, "best_energy_j": be, "energy_delta": _delta(be, src_e),
               "source_power_w": src_p, "best_power_w": bp, "power_delta": _delta(bp, src_p),
               "source_runtime_s": src_t, "best_runtime_s": bt, "runtime_delta": _delta(bt, src_t),
               "best_self_corrections": math.nan, "best_iteration": math.nan,
               "time_min": _mean(g.array("time_total_s")) / 60.0}
        if improved.any():
            e = np.where(improved, g.array("best_energy_j"), np.inf)
            i = int(np.argmin(e))
            row["best_self_corrections"] = g.array("best_self_corrections")[i]
            row["best_iteration"] = g.array("best_iteration")[i]
        rows.append(row)
    rows += cross_app_rows(rows, ("energy_delta", "power_delta", "runtime_delta", "best_self_corrections",
                          "best_iteration", "time_min"))
    return Table(
        "table2_energy", "Source vs best code: energy, power, runtime (paper Table 2/13)",
        [text("app"), text("platform"), count("n"), count("n_improved", "improved"),
         num("source_energy_j", "source E (J)", 2), num("best_energy_j", "best E (J)", 2), pct("energy_delta", "E Δ%"),
         num("source_power_w", "source P (W)", 1), num("best_power_w", "best P (W)", 1), pct("power_delta", "P Δ%"),
         num("source_runtime_s", "source t (s)", 3), num("best_runtime_s", "best t (s)", 3), pct("runtime_delta", "t Δ%"),
         count("best_self_corrections", "best: self-corr."), count("best_iteration", "best: iteration"),
         num("time_min", "time (min)", 1)],
        rows,
        note="Source figures: mean over all trials; best: mean over the trials whose pipeline kept a passing "
             "candidate that saves energy; Δ% of the means. 'best:' columns describe the lowest-energy trial.",
    )


def table_pass_at_k(groups: dict[tuple[str, str], Group], ks: Sequence[int]) -> Table:
    rows, keys = [], []
    for g in groups.values():
        cv, cp = int(g.array("vanilla_passed").sum()), int(g.array("pipeline_pass").sum())
        row: dict[str, Any] = {"app": g.app, "platform": g.platform, "n": g.n, "c_vanilla": cv, "c_pipeline": cp}
        for k in ks:
            v, p = _at_k(metrics.pass_at_k, g.n, k, g.n, cv), _at_k(metrics.pass_at_k, g.n, k, g.n, cp)
            row |= {f"vanilla_{k}": v, f"pipeline_{k}": p, f"diff_{k}": p - v}
        rows.append(row)
    keys = [f"{w}_{k}" for k in ks for w in ("vanilla", "pipeline", "diff")]
    rows += cross_app_rows(rows, keys)
    cols = [text("app"), text("platform"), count("n"), count("c_vanilla", "c vanilla"), count("c_pipeline", "c pipeline")]
    for k in ks:
        cols += [pct(f"vanilla_{k}", f"vanilla @{k}"), pct(f"pipeline_{k}", f"pipeline @{k}"), pct(f"diff_{k}", f"Δpp @{k}")]
    return Table("table3_pass_at_k", "pass@k, vanilla LLM vs pipeline (paper Table 3/14)", cols, rows,
                 note="n trials per (app, platform), c of them passed screening; unbiased estimator. "
                      "'n/a' where k > n.")


def table_energy_at_k(groups: dict[tuple[str, str], Group], ks: Sequence[int]) -> Table:
    rows = []
    for g in groups.values():
        rv, rp = g.array("vanilla_reduction"), g.array("reduction")
        pv, pp = g.array("vanilla_passed") > 0, g.array("pipeline_pass") > 0
        row: dict[str, Any] = {"app": g.app, "platform": g.platform, "n": g.n}
        for k in ks:
            v = _at_k(metrics.energy_reduction_at_k, g.n, k, np.where(pv, rv, 0.0))
            p = _at_k(metrics.energy_reduction_at_k, g.n, k, np.where(pp, rp, 0.0))
            row |= {f"vanilla_{k}": v, f"pipeline_{k}": p, f"diff_{k}": p - v,
                    f"paper_vanilla_{k}": _at_k(metrics.paper_energy_reduction_at_k, g.n, k, rv, pv),
                    f"paper_pipeline_{k}": _at_k(metrics.paper_energy_reduction_at_k, g.n, k, rp, pp)}
        rows.append(row)
    keys = [f"{w}_{k}" for k in ks for w in ("vanilla", "pipeline", "diff", "paper_vanilla", "paper_pipeline")]
    rows += cross_app_rows(rows, keys)
    cols = [text("app"), text("platform"), count("n")]
    for k in ks:
        cols += [pct(f"vanilla_{k}", f"vanilla @{k}"), pct(f"pipeline_{k}", f"pipeline @{k}"),
                 pct(f"diff_{k}", f"Δpp @{k}"), pct(f"paper_vanilla_{k}", f"Eq.2 vanilla @{k}"),
                 pct(f"paper_pipeline_{k}", f"Eq.2 pipeline @{k}")]
    return Table("table4_energy_reduction_at_k", "energy-reduction@k, vanilla LLM vs pipeline (paper Table 4/15)",
                 cols, rows,
                 note="Exact expected best reduction over k of the n trials (failed trials count 0); "
                      "'Eq.2' columns: the paper's pass@k x best of k passing (docs/metrics.md).")


def table_distributions(groups: dict[tuple[str, str], Group], o: Options) -> Table:
    rows = []
    for g in groups.values():
        row: dict[str, Any] = {"app": g.app, "platform": g.platform, "n": g.n}
        for name, red, ok in (("pipeline", "reduction", "pipeline_pass"), ("vanilla", "vanilla_reduction", "vanilla_passed")):
            r = np.maximum(np.where(g.array(ok) > 0, g.array(red), 0.0), 0.0)
            sp = metrics.spread(r)
            lo, hi = metrics.bootstrap_ci(r, np.mean, o.confidence, o.resamples, o.seed)
            plo, phi = metrics.bootstrap_ci(g.array(ok), np.mean, o.confidence, o.resamples, o.seed)
            row |= {f"{name}_mean": sp.mean, f"{name}_ci_low": lo, f"{name}_ci_high": hi,
                    f"{name}_median": sp.median, f"{name}_q1": sp.q1, f"{name}_q3": sp.q3,
                    f"{name}_pass1_ci_low": plo, f"{name}_pass1_ci_high": phi}
        rows.append(row)
    cols = [text("app"), text("platform"), count("n")]
    for name in ("pipeline", "vanilla"):
        cols += [pct(f"{name}_mean", f"{name} mean"), pct(f"{name}_ci_low", "CI low"), pct(f"{name}_ci_high", "CI high"),
                 pct(f"{name}_median", "median"), pct(f"{name}_q1", "Q1"), pct(f"{name}_q3", "Q3"),
                 pct(f"{name}_pass1_ci_low", "pass@1 CI low"), pct(f"{name}_pass1_ci_high", "pass@1 CI high")]
    return Table("distributions", "Reduction per trial: mean (= energy-reduction@1) with bootstrap CI over trials, "
                 "median and quartiles", cols, rows,
                 note=f"{o.confidence:.0%} bootstrap intervals (BCa, {o.resamples} resamples) over the trials of "
                      "each (app, platform); failed trials count 0.")


def table_cross_app(groups: dict[tuple[str, str], Group], ks: Sequence[int], o: Options) -> Table:
    """Per platform: the mean over apps, with a bootstrap interval over apps (apps resampled)."""
    rows = []
    for plat in sorted({g.platform for g in groups.values()}):
        gs = [g for g in groups.values() if g.platform == plat]
        row: dict[str, Any] = {"platform": plat, "apps": len(gs), "trials": sum(g.n for g in gs)}
        for k in ks:
            for name, red, ok in (("pipeline", "reduction", "pipeline_pass"), ("vanilla", "vanilla_reduction", "vanilla_passed")):
                per_app = np.array([_at_k(metrics.energy_reduction_at_k, g.n, k, np.where(g.array(ok) > 0, g.array(red), 0.0))
                                    for g in gs])
                lo, hi = metrics.bootstrap_ci(per_app, np.mean, o.confidence, o.resamples, o.seed)
                row |= {f"{name}_{k}": _mean(per_app), f"{name}_{k}_ci_low": lo, f"{name}_{k}_ci_high": hi}
        rows.append(row)
    cols = [text("platform"), count("apps"), count("trials")]
    for k in ks:
        for name in ("pipeline", "vanilla"):
            cols += [pct(f"{name}_{k}", f"{name} @{k}"), pct(f"{name}_{k}_ci_low", "CI low"), pct(f"{name}_{k}_ci_high", "CI high")]
    return Table("cross_app", "energy-reduction@k averaged over apps, with bootstrap CI over apps", cols, rows,
                 note="An app with fewer than k trials is left out of that k's mean.")


def table_screening(groups: dict[tuple[str, str], Group]) -> Table:
    rows = []
    for g in groups.values():
        s = {k: float(np.nansum(g.array(k))) for k in ("n_generated", "n_built", "n_ran", "n_judged",
                                                       "n_judge_valid", "n_verifier_ok", "n_passed", "n_held")}
        gen = s["n_generated"]
        st = g.array("status_code")
        rows.append({"app": g.app, "platform": g.platform, "n": g.n,
                     "done": int((st == STATUSES.index("done")).sum()),
                     "failed": int((st == STATUSES.index("failed")).sum()), "generated": gen,
                     "built": _ratio(s["n_built"], gen), "ran": _ratio(s["n_ran"], gen),
                     "judge_valid": _ratio(s["n_judge_valid"], s["n_judged"]),
                     "verifier_ok": _ratio(s["n_verifier_ok"], s["n_ran"]),
                     "passed": _ratio(s["n_passed"], gen), "held": int(s["n_held"]),
                     "trials_passed": _ratio(float(g.array("pipeline_pass").sum()), g.n)})
    return Table("screening", "Success rates by stage (over generated candidates)",
                 [text("app"), text("platform"), count("n", "trials"), count("done"), count("failed"),
                  count("generated", "candidates"), pct("built"), pct("ran", "ran OK"), pct("judge_valid", "judge VALID"),
                  pct("verifier_ok", "verifier OK"), pct("passed"), count("held"), pct("trials_passed", "trials passed")],
                 rows, note="built and ran: of generated candidates; judge VALID: of judged; verifier OK: of those "
                            "that ran; passed: of generated.")


def table_findings(groups: dict[tuple[str, str], Group]) -> Table:
    kinds = [*FINDING_KINDS, "other"]
    rows = [{"app": g.app, "platform": g.platform, "n": g.n,
             **{k: float(np.nansum(g.array(f"findings_{k}"))) for k in kinds}} for g in groups.values()]
    return Table("findings", "Verifier findings raised, by kind (sum over all candidates)",
                 [text("app"), text("platform"), count("n", "trials"), *(count(k) for k in kinds)], rows)


def table_confirmation(groups: dict[tuple[str, str], Group]) -> Table:
    rows = []
    for g in groups.values():
        c = g.array("confirmed") > 0
        conf, sel = g.array("reduction")[c], g.array("selection_reduction")[c]
        width = (g.array("reduction_ci_high") - g.array("reduction_ci_low"))[c]
        tail = g.array("reduction_with_tail")
        rows.append({"app": g.app, "platform": g.platform, "n": g.n, "confirmed": int(c.sum()),
                     "confirmed_reduction": _mean(conf), "selection_reduction": _mean(sel),
                     "selection_minus_confirmed": _mean(sel - conf), "ci_width": _mean(width),
                     "reduction_with_tail": _mean(tail[c]) if c.any() else _mean(tail)})
    return Table("confirmation", "Confirmed saving (interleaved re-measurement) vs the saving seen at selection",
                 [text("app"), text("platform"), count("n", "trials"), count("confirmed"),
                  pct("confirmed_reduction", "confirmed"), pct("selection_reduction", "at selection"),
                  pct("selection_minus_confirmed", "selection − confirmed (pp)"), pct("ci_width", "mean CI width (pp)"),
                  pct("reduction_with_tail", "with tail energy")], rows,
                 note="Over the confirmed trials only; a positive 'selection − confirmed' is the winner's curse of "
                      "picking the best of noisy single measurements.")


def table_cost_time(groups: dict[tuple[str, str], Group]) -> Table:
    rows = []
    for g in groups.values():
        parts = {k: _mean(g.array(f"time_{k}_s")) for k in ("total", "llm", "build", "measure", "lock_wait")}
        other = parts["total"] - sum(v for k, v in parts.items() if k != "total" and math.isfinite(v))
        cost = g.array("cost_usd")
        rows.append({"app": g.app, "platform": g.platform, "n": g.n,
                     "llm_calls": _mean(g.array("n_llm_calls")),
                     "prompt_tokens": _mean(g.array("prompt_tokens")), "completion_tokens": _mean(g.array("completion_tokens")),
                     "cost_usd": _mean(cost), "cost_total_usd": float(cost.sum()) if np.isfinite(cost).all() else math.nan,
                     "time_total_s": parts["total"], "time_llm_s": parts["llm"], "time_build_s": parts["build"],
                     "time_measure_s": parts["measure"], "time_lock_wait_s": parts["lock_wait"], "time_other_s": other,
                     "models": " ".join(sorted(m for m in g.models if m))})
    return Table("cost_time", "LLM use, cost and wall time per trial (means)",
                 [text("app"), text("platform"), count("n", "trials"), num("llm_calls", "LLM calls"),
                  count("prompt_tokens", "prompt tok"), count("completion_tokens", "completion tok"),
                  Column("cost_usd", "cost/trial (USD)", "{:.4f}"), Column("cost_total_usd", "cost total (USD)", "{:.2f}"),
                  num("time_total_s", "total (s)"), num("time_llm_s", "LLM wait (s)"), num("time_build_s", "build (s)"),
                  num("time_measure_s", "measure (s)"), num("time_lock_wait_s", "GPU lock (s)"),
                  num("time_other_s", "other (s)"), text("models", "generator")], rows,
                 note="Cost from the price table (--prices) at the generator model's rates for all tokens; "
                      "n/a for models it does not list.")


def study_provenance(groups: dict[tuple[str, str], Group], platform: str | None = None,
                     app: str | None = None) -> Provenance:
    """The provenance of the groups of one platform and app (all of them when None)."""
    p = Provenance()
    for g in groups.values():
        if (platform is None or g.platform == platform) and (app in (None, CROSS_APP) or g.app == app):
            p = p.merge(g.prov)
    return p


def table_provenance(groups: dict[tuple[str, str], Group]) -> Table:
    rows = [{"app": g.app, "platform": g.platform, "n": g.n, **g.prov.columns()} for g in groups.values()]
    return Table("provenance", "Where the numbers come from: meter, LLM, device, software, dates",
                 [text("app"), text("platform"), count("n", "trials"), text("meter"), text("llm", "LLM"),
                  text("device"), text("software"), text("started"), text("finished")], rows,
                 note="meter (ESTIMATE: energies from a CPU-time model, not a measurement); LLM: the models as "
                      "answered, or the replayed transcripts; device and driver of the last attempt.")


def stamp_provenance(tables: list[Table], groups: dict[tuple[str, str], Group]) -> list[Table]:
    """Every table with a platform column gets the meter and LLM of each row's trials, so that a
    row (and its CSV line) says whether its energies are ESTIMATES and whether its LLM was a replay."""
    for t in tables:
        keys = {c.key for c in t.columns}
        if "platform" not in keys or "meter" in keys:
            continue
        for r in t.rows:
            cols = study_provenance(groups, r.get("platform"), r.get("app")).columns()
            r["meter"], r["llm"] = cols["meter"], cols["llm"]
        t.columns += [text("meter"), text("llm", "LLM")]
    return tables


def build_tables(groups: dict[tuple[str, str], Group], o: Options) -> list[Table]:
    o = o.with_study_k(groups)
    return stamp_provenance([
        table2(groups), table_pass_at_k(groups, o.k), table_energy_at_k(groups, o.k),
        table_distributions(groups, o), table_cross_app(groups, o.k, o), table_screening(groups),
        table_findings(groups), table_confirmation(groups), table_cost_time(groups), table_provenance(groups)], groups)

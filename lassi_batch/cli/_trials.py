"""Shared by `run` and `demo`: run a study's trials locally with a live rich display."""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..batch.state import explained_reason
from ..batch.trialproc import elapsed
from ..core.config import StudyConfig
from ..system.gpus import default_platform_kind
from ..pipeline.session import run_trial, trial_path
from ..store.archive import TrialArchive


def default_platform() -> str:
    """The GPU platform doctor would pick, when its compiler is also here; else cpu."""
    kind = default_platform_kind()
    compiler = {"cuda": "nvcc", "hip": "hipcc"}.get(kind)
    return kind if compiler is None or shutil.which(compiler) else "cpu"


def _fmt(v: float | None, unit: str, prec: int = 2) -> str:
    return "-" if v is None else f"{v:.{prec}f} {unit}"


def run_study_trials(study: StudyConfig, console: Console, trials: int | None = None) -> list[dict[str, Any]]:
    """Run every (app, trial) of `study` in turn; returns one summary row per trial."""
    rows: list[dict[str, Any]] = []
    n = trials or study.trials
    state: dict[str, Any] = {}

    max_it = study.llm.max_iterations

    def render() -> Text:
        it = state.get("iteration")
        best = state.get("best")
        return Text.assemble(
            ("  ", ""), (f"{state.get('app', '')} trial {state.get('trial', '')}", "bold"),
            f"  {elapsed(time.monotonic() - state.get('t0', time.monotonic()))}",
            f"  stage {state.get('stage', '-')}",
            f"  iteration {it if it is not None else '-'}/{max_it}",
            f"  best {_fmt(best, 'J')}",
            f"  [{state.get('last', '')}]",
        )

    # On a terminal a live line (its clock ticks); elsewhere a printed line per stage.
    live_or_none = Live(get_renderable=render, console=console, refresh_per_second=4, transient=True) \
        if console.is_terminal else contextlib.nullcontext()
    with live_or_none as live:

        def on_event(ev: dict[str, Any]) -> None:
            kind = ev.get("event")
            if kind == "stage":
                state["stage"] = ev["stage"]
                if live is None:
                    console.print(f"  {state.get('app')} trial {state.get('trial')}: {ev['stage']} "
                                  f"({elapsed(time.monotonic() - state['t0'])} so far)", highlight=False)
            elif kind == "iteration":
                state["iteration"] = ev["iteration"]
            elif kind == "best":
                state["best"] = ev.get("energy_j")
            elif kind == "confirm":
                state["confirm_repeats"] = ev.get("repeats")
            elif kind in ("confirmed", "not_confirmed"):
                verdict = "confirmed" if kind == "confirmed" else "NOT confirmed (the interval includes no saving)"
                console.print(f"    stage 4: candidate {ev['candidate']} re-measured against the source, interleaved "
                              f"({state.get('confirm_repeats', '?')} runs each): saving "
                              f"{_saving(ev['reduction'], ev['ci_low'], ev['ci_high'], ev['level'])}, {verdict}")
            state["last"] = ev.get("key", kind)

        for sapp in study.apps:
            for t in range(n):
                state.clear()
                state.update(app=sapp.app.name, trial=t, t0=time.monotonic())
                before = trial_path(study, sapp.app.name, t)
                finished = before.exists() and _status_of(before) == "done"
                path, out = run_trial(study, sapp, t, progress=on_event)
                meter, estimate = _meter_of(path)
                row = {"meter": meter, "estimate": estimate, "app": sapp.app.name, "trial": t, "path": str(path), "status": out.status,
                       "source_j": out.source_energy_j, "best_j": out.best_energy_j,
                       "reduction": out.reduction, "vanilla_passed": out.vanilla_passed,
                       "candidates": out.candidates, "stop": out.stop_reason,
                       "reason": _reason_of(path) if out.status == "failed" else "", "already_done": finished}
                row.update(confirmed=out.confirmed, ci_low=out.reduction_ci_low, ci_high=out.reduction_ci_high,
                           selection_reduction=out.selection_reduction)
                rows.append(row)
                if finished:
                    console.print(f"  {sapp.app.name} trial {t}: already done, result read from {path} (--fresh runs it again)")
                    continue
                if out.confirmed:
                    red = _saving(out.reduction, out.reduction_ci_low, out.reduction_ci_high, out.confirm_level) + ", confirmed"
                else:
                    red = ("-" if out.reduction is None else f"{100 * out.reduction:.1f}%") + ", not confirmed"
                sel = "" if out.selection_reduction is None else f"; at selection {100 * out.selection_reduction:.1f}%"
                console.print(f"  {sapp.app.name} trial {t}: {out.status} after {elapsed(time.monotonic() - state['t0'])}, source {_fmt(out.source_energy_j, 'J')}, "
                              f"best {_fmt(out.best_energy_j, 'J')} (saved {red}{sel}), {out.candidates} candidates -> {path}")
    return rows


def _saving(red: float | None, lo: float, hi: float, level: float) -> str:
    """"23.1% [95% CI 20.4..25.9%]"; n/a where a bound is missing."""
    if red is None or not math.isfinite(red):
        return "n/a"
    ci = (f"{100 * lo:.1f}..{100 * hi:.1f}%" if math.isfinite(lo) and math.isfinite(hi) else "unbounded")
    return f"{100 * red:.1f}% [{level:.0%} CI {ci}]"


def archive_row(path: Path, app: str, trial: int) -> dict[str, Any]:
    """A summary-table row read back from a finished trial's archive (for trials run by workers)."""
    with TrialArchive.open(path, writable=False) as ar:
        r = ar.result()
        status = ar.status
        n = len(ar.candidates())
    src, best = r.get("source_energy_j"), r.get("best_energy_j")
    meter, estimate = _meter_of(path) if status == "done" else ("-", False)
    red = r.get("reduction", (src - best) / src if src and best is not None else None)
    return {"meter": meter, "estimate": estimate, "app": app, "trial": trial, "path": str(path), "status": status,
            "source_j": src, "best_j": best, "reduction": red,
            "vanilla_passed": bool(r.get("vanilla_passed")), "candidates": n,
            "confirmed": bool(r.get("confirmed", False)), "ci_low": r.get("reduction_ci_low", math.nan),
            "ci_high": r.get("reduction_ci_high", math.nan), "selection_reduction": r.get("selection_reduction")}


def _status_of(path: Path) -> str:
    with TrialArchive.open(path, writable=False) as ar:
        return ar.status


def _reason_of(path: Path) -> str:
    return explained_reason(path)


def report_failures(rows: list[dict[str, Any]], console: Console) -> int:
    """Print each failed trial's reason; the exit status for the command (1 when any failed)."""
    failed = [r for r in rows if r["status"] == "failed"]
    for r in failed:
        console.print(f"[red]failed[/] {r['app']} trial {r['trial']}: {r['reason']}", highlight=False)
    return 1 if failed else 0


def _meter_of(path: Path) -> tuple[str, bool]:
    """Which meter measured the trial's source run, and whether its figures are estimates."""
    with TrialArchive.open(path, writable=False) as ar:
        sid = ar.result().get("source_candidate")
        ms = ar.measurements(sid, traces=False) if sid is not None else []
    return (ms[0].trace.meter, ms[0].trace.estimate) if ms else ("-", False)


def summary_table(rows: list[dict[str, Any]]) -> Table:
    meters = sorted({r.get("meter", "-") for r in rows})
    est = any(r.get("estimate") for r in rows)
    title = f"Trials (energy from meter {', '.join(meters)}" + ("; ESTIMATES, not measurements)" if est else ")")
    t = Table(title=title)
    for col in ("app", "trial", "status", "source J", "best J", "saved", "CI", "at selection", "vanilla", "cands"):
        t.add_column(col, no_wrap=True)
    for r in rows:
        red = "-" if r["reduction"] is None else f"{100 * r['reduction']:.1f}%"
        lo, hi = r.get("ci_low", math.nan), r.get("ci_high", math.nan)
        ci = f"{100 * lo:.1f}..{100 * hi:.1f}%" if r.get("confirmed") and math.isfinite(lo) and math.isfinite(hi) else "not confirmed"
        sel = r.get("selection_reduction")
        sel_s = "-" if sel is None else f"{100 * sel:.1f}%"
        src = "-" if r["source_j"] is None else f"{r['source_j']:.2f}"
        best = "-" if r["best_j"] is None else f"{r['best_j']:.2f}"
        t.add_row(r["app"], str(r["trial"]), r["status"], src, best, red, ci, sel_s,
                  "yes" if r["vanilla_passed"] else "no", str(r["candidates"]))
    return t

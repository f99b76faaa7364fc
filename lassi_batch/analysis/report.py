"""A study report: Markdown with PNG plots, and one self-contained HTML page of the same.

Plots come from the study's per-trial columns (pass@k and energy-reduction@k curves, saving bars
with bootstrap intervals, screening outcomes) and, for what the summaries do not hold, from a
bounded sample of the trial files read through the archive reader (power traces of the best
trials, energy vs runtime of every candidate, optimization categories). Matplotlib draws on Agg
canvases without pyplot: no display, no global state.
"""

from __future__ import annotations

import base64
import html
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..core.errors import ArchiveError
from ..llm.extract import CATEGORIES, OTHER
from ..power import energy
from ..power.trace import Measurement
from ..store.reader import open_trial
from . import metrics
from .aggregate import CROSS_APP, Group, Options, build_tables, study_provenance
from .tables import Table

DPI = 110
COLORS = {"vanilla": "tab:blue", "pipeline": "tab:orange"}


@dataclass
class Plot:
    name: str  # file stem
    title: str
    caption: str = ""


@dataclass
class Report:
    plots: list[Plot] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    opening: list[str] = field(default_factory=list)  # the study's provenance, one line each


def _figure(w: float = 8.0, h: float = 4.5) -> Figure:
    fig = Figure(figsize=(w, h), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out: Path, name: str) -> None:
    fig.tight_layout()
    fig.savefig(out / f"{name}.png")


# ------------------------------------------------------------------ plots from the columns


def _curve(g: Group, which: str, k: int) -> tuple[float, float]:
    ok = g.array("pipeline_pass" if which == "pipeline" else "vanilla_passed") > 0
    red = g.array("reduction" if which == "pipeline" else "vanilla_reduction")
    return (metrics.pass_at_k(g.n, int(ok.sum()), k),
            metrics.energy_reduction_at_k(np.where(ok, red, 0.0), k))


def plot_curves(groups: dict[tuple[str, str], Group], out: Path) -> Plot:
    platforms = sorted({g.platform for g in groups.values()})
    fig = _figure(5.0 * len(platforms), 7.0)
    for col, plat in enumerate(platforms):
        gs = [g for g in groups.values() if g.platform == plat]
        kmax = max(1, min(10, max(g.n for g in gs)))
        ks = np.arange(1, kmax + 1)
        for row, (label, idx) in enumerate((("pass@k", 0), ("energy-reduction@k", 1))):
            ax = fig.add_subplot(2, len(platforms), row * len(platforms) + col + 1)
            for which in ("vanilla", "pipeline"):
                ys = [np.mean([_curve(g, which, int(k))[idx] for g in gs if g.n >= k]) for k in ks]
                ax.plot(ks, 100 * np.array(ys), "o-", color=COLORS[which], label=which)
            ax.set_title(f"{plat}: {label} (mean over {len(gs)} apps)", fontsize=9)
            ax.set_xlabel("k")
            ax.set_xticks(ks)
            ax.set_ylabel("%")
            ax.set_ylim(0, 105 if idx == 0 else None)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    _save(fig, out, "curves")
    return Plot("curves", "pass@k and energy-reduction@k, vanilla LLM vs pipeline",
                "Exact estimators over each app's n trials, averaged over apps with at least k trials.")


def plot_savings(dist: Table, out: Path) -> Plot:
    rows = [r for r in dist.rows if r["app"] != CROSS_APP]
    platforms = sorted({r["platform"] for r in rows})
    fig = _figure(max(6.0, 0.45 * len(rows) + 2), 4.0 * len(platforms))
    for i, plat in enumerate(platforms):
        rs = [r for r in rows if r["platform"] == plat]
        ax = fig.add_subplot(len(platforms), 1, i + 1)
        x = np.arange(len(rs))
        for j, which in enumerate(("vanilla", "pipeline")):
            m = np.array([r[f"{which}_mean"] for r in rs]) * 100
            lo = np.array([r[f"{which}_ci_low"] for r in rs]) * 100
            hi = np.array([r[f"{which}_ci_high"] for r in rs]) * 100
            err = np.vstack([np.nan_to_num(m - lo), np.nan_to_num(hi - m)])
            ax.bar(x + (j - 0.5) * 0.4, m, 0.4, yerr=err, capsize=2, color=COLORS[which], label=which)
        ax.set_xticks(x, [r["app"] for r in rs], rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("mean saving (%)")
        ax.set_title(f"{plat}: energy saving per trial (failed = 0), with bootstrap CI", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, out, "savings")
    return Plot("savings", "Per-app energy saving with confidence intervals",
                "Mean reduction over the trials (= energy-reduction@1); bars: bootstrap interval over trials.")


def plot_screening(groups: dict[tuple[str, str], Group], out: Path) -> Plot:
    stages = [("n_generated", "generated"), ("n_built", "built"), ("n_ran", "ran"), ("n_judge_valid", "judge VALID"),
              ("n_verifier_ok", "verifier OK"), ("n_passed", "passed"), ("n_held", "held")]
    platforms = sorted({g.platform for g in groups.values()})
    fig = _figure(8.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(stages))
    width = 0.8 / max(1, len(platforms))
    for i, plat in enumerate(platforms):
        gs = [g for g in groups.values() if g.platform == plat]
        ys = [sum(float(np.nansum(np.maximum(g.array(k), 0))) for g in gs) for k, _ in stages]
        ax.bar(x + i * width - 0.4 + width / 2, ys, width, label=plat)
    ax.set_xticks(x, [s for _, s in stages], fontsize=8)
    ax.set_ylabel("candidates")
    ax.set_title("Screening outcomes of the generated candidates", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, out, "screening")
    return Plot("screening", "Screening outcomes", "Counts over all generated candidates of the study.")


# ------------------------------------------------------------------ plots from trial files


def _power(m: Measurement) -> tuple[np.ndarray, np.ndarray, str]:
    tr = m.trace
    if energy.has_data(tr.power_instant_w):
        return tr.t - m.window.t_launch, tr.power_instant_w, "instant"
    if energy.has_data(tr.power_average_w):
        return tr.t - m.window.t_launch, tr.power_average_w, "average"
    t, p = energy.counter_power(tr.counter_t, tr.counter_j)
    return t - m.window.t_launch, p, "from counter"


def plot_traces(groups: dict[tuple[str, str], Group], table2: Table, out: Path, limit: int,
                notes: list[str]) -> Plot | None:
    """Source vs best power trace of each pair's best trial (the paper's jacobi figure); the
    legends give Table 2's energies, so that the plot and the table state one figure."""
    picks = [g for g in groups.values() if g.best_path][:limit]
    if not picks:
        return None
    figures = {(r["app"], r["platform"]): r for r in table2.rows}
    cols = min(3, len(picks))
    rows = math.ceil(len(picks) / cols)
    fig = _figure(4.6 * cols, 3.2 * rows)
    drawn = 0
    for i, g in enumerate(picks):
        try:
            with open_trial(g.best_path) as t:
                res = t.result()
                src_id, best_id = res.get("source_candidate", 0), res.get("best_candidate")
                ms = {"source": t.measurements(int(src_id)), "best": t.measurements(int(best_id))}
        except (ArchiveError, OSError, KeyError, TypeError, ValueError) as e:
            notes.append(f"power traces of {g.best_path}: {str(e).splitlines()[0] if str(e) else e}")
            continue
        ax = fig.add_subplot(rows, cols, i + 1)
        row = figures.get((g.app, g.platform), {})
        for label, color in (("source", "tab:gray"), ("best", "tab:green")):
            if ms[label]:
                t_, p, kind = _power(ms[label][0])
                e = row.get(f"{label}_energy_j", math.nan)
                ax.plot(t_, p, lw=0.9, color=color, label=f"{label} ({kind}); Table 2: {e:.4g} J")
        ax.set_title(f"{g.app} / {g.platform} ({Path(g.best_path).name})", fontsize=9)
        ax.set_xlabel("time from launch (s)", fontsize=8)
        ax.set_ylabel("W", fontsize=8)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        drawn += 1
    if not drawn:
        return None
    _save(fig, out, "traces")
    return Plot("traces", "Power traces: source vs best candidate",
                "First measured run of the source and of the best candidate, in each pair's best trial; the "
                "energies in the legends are Table 2's (source: mean over the pair's trials; best: mean over "
                "the trials that improved), not the single run drawn.")


def _sample(paths: list[str], limit: int) -> list[str]:
    if len(paths) <= limit:
        return paths
    idx = np.linspace(0, len(paths) - 1, limit).round().astype(int)
    return [paths[i] for i in sorted(set(idx))]


def plot_candidates(paths: list[str], out: Path, limit: int, notes: list[str]) -> tuple[Plot | None, Counter]:
    """Energy vs runtime of every measured candidate (relative to its trial's source), and the
    optimization categories of the improved trials' final reports."""
    pts: list[tuple[float, float, bool]] = []
    cats: Counter = Counter()
    sample = _sample(paths, limit)
    for p in sample:
        try:
            with open_trial(p) as arc:
                cands = arc.candidates()
                res = arc.result()
        except (ArchiveError, OSError, KeyError, TypeError, ValueError) as e:
            notes.append(f"candidates of {p}: {str(e).splitlines()[0] if str(e) else e}")
            continue
        src = next((c for c in cands if c.stage == 0), None)
        if src is None or not src.energy_j or not src.runtime_s:
            continue
        for c in cands:
            if c.stage != 0 and c.energy_j is not None and c.runtime_s:
                pts.append((c.runtime_s / src.runtime_s, c.energy_j / src.energy_j, bool(c.passed)))
        if res.get("improved"):
            for o in res.get("optimizations", []):
                cats[o.get("category", OTHER) if o.get("category") in (*CATEGORIES, OTHER) else OTHER] += 1
    if len(sample) < len(paths):
        notes.append(f"candidate scatter and categories from {len(sample)} of {len(paths)} trials (evenly spaced)")
    if not pts:
        return None, cats
    fig = _figure(6.0, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    a = np.array(pts, dtype=float)
    for ok, color, label in ((False, "tab:red", "did not pass"), (True, "tab:green", "passed")):
        m = a[:, 2] == ok
        ax.scatter(a[m, 0], a[m, 1], s=10, alpha=0.6, color=color, label=f"{label} ({int(m.sum())})")
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.axvline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("runtime / source runtime")
    ax.set_ylabel("net energy / source net energy")
    ax.set_title("All measured candidates", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, out, "candidates")
    return Plot("candidates", "Energy vs runtime of every measured candidate",
                "Each point is one generated candidate, relative to its trial's source code."), cats


def plot_categories(cats: Counter, out: Path) -> Plot | None:
    if not cats:
        return None
    names = [*CATEGORIES, OTHER]
    fig = _figure(6.0, 3.5)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(range(len(names)), [cats.get(n, 0) for n in names], color="tab:purple")
    ax.set_xticks(range(len(names)), [n.replace("_", " ") for n in names], fontsize=8)
    ax.set_ylabel("optimizations")
    ax.set_title("Optimization categories in the final comparisons of improved trials", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, out, "categories")
    return Plot("categories", "Optimization categories",
                "Memory hierarchy, algorithmic, device-specific tuning, parallelism (the paper's Figure 4).")


# ------------------------------------------------------------------ the documents


def build_report(groups: dict[tuple[str, str], Group], paths: list[str], out: Path, o: Options,
                 max_trials: int = 400, max_traces: int = 12) -> Report:
    out.mkdir(parents=True, exist_ok=True)
    rep = Report(tables=build_tables(groups, o), opening=study_provenance(groups).lines())
    if not groups:
        rep.notes.append("no trials to report")
        return rep
    dist = next(t for t in rep.tables if t.name == "distributions")
    rep.plots += [plot_curves(groups, out), plot_savings(dist, out), plot_screening(groups, out)]
    tr = plot_traces(groups, next(t for t in rep.tables if t.name == "table2_energy"), out, max_traces, rep.notes)
    sc, cats = plot_candidates(paths, out, max_trials, rep.notes)
    cat = plot_categories(cats, out)
    rep.plots += [p for p in (tr, sc, cat) if p is not None]
    return rep


def write_markdown(rep: Report, out: Path, title: str) -> Path:
    parts = [f"# {title}", ""] + [f"- {line}" for line in rep.opening] + ([""] if rep.opening else [])
    for p in rep.plots:
        parts += [f"## {p.title}", "", f"![{p.title}]({p.name}.png)", "", p.caption, ""]
    parts += ["## Tables", ""] + [t.to_markdown() for t in rep.tables]
    if rep.notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in rep.notes] + [""]
    path = out / "report.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _html_table(t: Table) -> str:
    head = "".join(f"<th>{html.escape(c.header or c.key)}</th>" for c in t.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c.show(r.get(c.key)))}</td>" for c in t.columns) + "</tr>"
                   for r in t.rows)
    note = f"<p class='note'>{html.escape(t.note)}</p>" if t.note else ""
    return f"<h3>{html.escape(t.title)}</h3>{note}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_html(rep: Report, out: Path, title: str) -> Path:
    """One file with the images inlined (data: URIs), readable offline and mailable."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
             "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:12px;margin-bottom:1.5em;display:block;overflow-x:auto}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#f3f3f3}"
             "img{max-width:100%}.note{color:#555;font-size:12px}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    if rep.opening:
        parts.append("<ul class='provenance'>" + "".join(f"<li>{html.escape(x)}</li>" for x in rep.opening) + "</ul>")
    for p in rep.plots:
        data = base64.b64encode((out / f"{p.name}.png").read_bytes()).decode("ascii")
        parts.append(f"<h2>{html.escape(p.title)}</h2><img alt='{html.escape(p.title)}' "
                     f"src='data:image/png;base64,{data}'><p class='note'>{html.escape(p.caption)}</p>")
    parts.append("<h2>Tables</h2>")
    parts += [_html_table(t) for t in rep.tables]
    if rep.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in rep.notes) + "</ul>")
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("".join(parts), encoding="utf-8")
    return path

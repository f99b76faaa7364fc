"""`lassi-batch aggregate STUDY_DIR`: a folder of trial files -> study.h5, CSV and Markdown tables."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..analysis.aggregate import Options, load_prices, parse_k
from ..analysis.study import aggregate_study
from ..analysis.tables import Table
from ..analysis.trials import Skipped
from ..core.errors import ConfigError
from . import _files, _out

PROGRESS_FROM = 200  # files; smaller studies finish before a bar is worth drawing


def progress_wrap(console: Console, label: str):
    """A function that wraps a path list in a rich progress bar (large lists on a terminal only)."""

    def wrap(paths: list[Path]):
        if len(paths) < PROGRESS_FROM or not console.is_terminal:
            yield from paths
            return
        cols = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*cols, console=console, transient=True) as bar:
            task = bar.add_task(label, total=len(paths))
            for p in paths:
                yield p
                bar.advance(task)

    return wrap


def print_skipped(skipped: list[Skipped]) -> None:
    """One unwrapped line per skipped file on stderr (grep-able, whatever the terminal width)."""
    for s in skipped:
        click.echo(f"skipped {s.path}: {s.reason}", err=True)


def print_headline(tables: list[Table]) -> None:
    """The cross-app averages per platform, one line each."""
    t = next(t for t in tables if t.name == "cross_app")
    ks = sorted({int(c.key.split("_")[1]) for c in t.columns if c.key.startswith("pipeline_") and c.key.count("_") == 1})
    for r in t.rows:
        parts = [f"@{k} {_p(r.get(f'pipeline_{k}'))} [{_p(r.get(f'pipeline_{k}_ci_low'))}, "
                 f"{_p(r.get(f'pipeline_{k}_ci_high'))}] vs vanilla {_p(r.get(f'vanilla_{k}'))}" for k in ks]
        click.echo(f"{r['platform']}: {r['apps']} apps, {r['trials']} trials; energy-reduction " + "; ".join(parts))


def _p(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{100 * v:.1f}%"


@click.command("aggregate")
@click.argument("study_dir", type=click.Path())
@click.option("-o", "--out", default=None, type=click.Path(), metavar="FILE.h5",
              help="Study file (HDF5) to write (default: STUDY_DIR/study.h5).")
@_files.k_option
@click.option("--csv", "csv_dir", type=click.Path(), help="Also write every table as CSV into this folder.")
@click.option("--md", "md_file", type=click.Path(), help="Also write the tables as Markdown.")
@click.option("--prices", type=click.Path(dir_okay=False), help='Price table (TOML: [models."NAME"] prompt_per_mtok, completion_per_mtok).')
@click.option("--bootstrap", "resamples", type=click.IntRange(min=100), default=2000, show_default=True,
              help="Bootstrap resamples for the confidence intervals.")
@click.option("--include-running", is_flag=True, help="Count trials that have not finished (running, interrupted).")
@_files.force_option
@_out.json_option
def command(study_dir: str, out: str | None, k_text: str, csv_dir: str | None, md_file: str | None,
            prices: str | None, resamples: int, include_running: bool, force: bool, as_json: bool) -> None:
    """Aggregate the trial files under STUDY_DIR. Exit 1 when any file was skipped."""
    root = Path(study_dir)
    if not root.exists():
        raise ConfigError(f"study folder not found: {study_dir}")
    out_path = Path(out) if out else (root / "study.h5" if root.is_dir() else root.with_name("study.h5"))
    _files.check_k(k_text, len(_files.trial_sources(root, exclude=[out_path])))
    options = Options(k=parse_k(k_text), resamples=resamples)
    price_table = load_prices(prices)
    _files.out_file(out_path, _files.study_h5, force, "-o")
    if md_file:
        _files.out_file(Path(md_file), _files.first_line("# Study "), force, "--md")
    if csv_dir:
        _files.out_dir(Path(csv_dir), "skipped.csv", force, "--csv")
    err = _out.console(stderr=True)
    groups, tables, skipped = aggregate_study(
        root, out_path, Path(csv_dir) if csv_dir else None, Path(md_file) if md_file else None,
        options, price_table, include_running, wrap=progress_wrap(err, "reading trials"))
    n = sum(g.n for g in groups.values())
    if as_json:
        _out.print_json({"out": out_path, "trials": n, "pairs": len(groups),
                         "skipped": [{"path": s.path, "reason": s.reason} for s in skipped],
                         "cross_app": next(t.rows for t in tables if t.name == "cross_app")})
        sys.exit(1 if skipped else 0)
    print_headline(tables)
    print_skipped(skipped)
    click.echo(f"{n} trials in {len(groups)} (app, platform) pairs -> {out_path}"
               + (f"; {len(skipped)} file(s) skipped" if skipped else ""))
    sys.exit(1 if skipped else 0)

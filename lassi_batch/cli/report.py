"""`lassi-batch report STUDY_DIR|study.h5 -o DIR`: Markdown + PNG plots + one self-contained HTML page."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..analysis.aggregate import Options, load_prices, parse_k
from ..analysis.report import build_report, write_html, write_markdown
from ..analysis.study import StudyFile, aggregate_study, is_study_file
from ..batch.manifest import StudyFolder, read_manifest
from ..core.errors import ConfigError
from .aggregate import print_skipped, progress_wrap
from . import _files, _out


@click.command("report")
@click.argument("source", type=click.Path())
@click.option("-o", "--out", required=True, type=click.Path(), metavar="DIR", help="Output folder (report.md, report.html, PNG plots, study.h5).")
@_files.k_option
@click.option("--prices", type=click.Path(dir_okay=False), help="Price table (TOML), as for aggregate.")
@click.option("--bootstrap", "resamples", type=click.IntRange(min=100), default=2000, show_default=True,
              help="Bootstrap resamples for the confidence intervals.")
@click.option("--max-trials", type=click.IntRange(min=1), default=400, show_default=True,
              help="Trial files read for the candidate scatter and the optimization categories.")
@click.option("--include-running", is_flag=True, help="When aggregating a folder: count unfinished trials.")
@_files.force_option
def command(source: str, out: str, k_text: str, prices: str | None, resamples: int, max_trials: int,
            include_running: bool, force: bool) -> None:
    """Report on SOURCE (a study folder, aggregated first into OUT/study.h5, or a study.h5)."""
    src = Path(source)
    if not src.exists():
        raise ConfigError(f"not found: {source}")
    from_study_file = src.is_file() and is_study_file(src)
    if not from_study_file:
        _files.check_k(k_text, len(_files.trial_sources(src)))
    options = Options(k=parse_k(k_text), resamples=resamples)
    price_table = load_prices(prices)
    out_dir = _files.out_dir(Path(out), "report.md", force, "-o",
                             {"report.md": _files.first_line("# lassi-batch study report"),
                              "report.html": _files.first_line("<!doctype html>", "<title>lassi-batch study report"), "study.h5": _files.study_h5})
    skipped = []
    if from_study_file:
        study = StudyFile(src)
    else:
        _, _, skipped = aggregate_study(src, out_dir / "study.h5", options=options, prices=price_table,
                                        include_running=include_running,
                                        wrap=progress_wrap(_out.console(stderr=True), "reading trials"))
        study = StudyFile(out_dir / "study.h5")
    groups = study.groups(price_table)
    rep = build_report(groups, study.paths, out_dir, options, max_trials=max_trials)
    rep.notes += [f"skipped {s.path}: {s.reason}" for s in study.skipped]
    title = f"lassi-batch study report: {_study_name(src, study.source)}"
    md = write_markdown(rep, out_dir, title)
    page = write_html(rep, out_dir, title)
    print_skipped(skipped)
    click.echo(f"{len(study.paths)} trials, {len(rep.plots)} plots -> {md}, {page}")
    sys.exit(1 if skipped else 0)


def _study_name(src: Path, source: str) -> str:
    """The study's own name (its folder's manifest), else the folder's name."""
    for folder in (src if src.is_dir() else src.parent, Path(source)):
        m = read_manifest(StudyFolder(folder)) if folder.is_dir() else None
        if m is not None:
            return m.study_name
    return Path(source).name or source

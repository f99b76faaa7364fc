"""`lassi-batch recompute STUDY_DIR|study.h5 -o OUT`: energies and metrics re-derived from the raw traces."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import click

from ..analysis.aggregate import Options, parse_k
from ..analysis.recompute import ENERGY_METHODS, IDLE_CHOICES, TAIL_CHOICES, Choices, recompute_study
from ..analysis.study import StudyFile, is_study_file
from ..core.errors import ConfigError
from ._select import pass_policy_option
from .aggregate import print_skipped, progress_wrap
from . import _files, _out


def study_paths(source: str) -> list[Path]:
    """Trial files of a study folder, or the trials a study.h5 aggregated (refused when none)."""
    p = Path(source)
    if p.is_file() and is_study_file(p):
        paths = [Path(x) for x in StudyFile(p).paths]
        if not paths:
            raise ConfigError(f"{source}: a study file that lists no trials")
        return paths
    return _files.trial_sources(p)


@click.command("recompute")
@click.argument("source", type=click.Path())
@click.option("-o", "--out", required=True, type=click.Path(), metavar="DIR",
              help="Output folder (recompute.h5, recompute.md, csv/).")
@click.option("--energy-method", type=click.Choice(ENERGY_METHODS), default="auto", show_default=True,
              help="auto: as the trial measured; counter / instant: that source, net of idle; paper-eq4: the "
                   "paper's Eq. 4 on the 1 s averaged power.")
@click.option("--tail", type=click.Choice(TAIL_CHOICES), default="exclude", show_default=True,
              help="Count the energy between exit and settling.")
@click.option("--idle", type=click.Choice(IDLE_CHOICES), default="auto", show_default=True,
              help="Idle baseline: pre-run, post-run, both (their mean, the paper's).")
@pass_policy_option({"judge_and_verifier": "both"})
@_files.k_option
@click.option("--bootstrap", "resamples", type=click.IntRange(min=100), default=2000, show_default=True,
              help="Bootstrap resamples for the confidence intervals.")
@click.option("--include-running", is_flag=True, help="Also recompute trials that have not finished.")
@_files.force_option
@_out.json_option
def command(source: str, out: str, energy_method: str, tail: str, idle: str, pass_policy: str, k_text: str,
            resamples: int, include_running: bool, force: bool, as_json: bool) -> None:
    """Re-derive every energy of the trials in SOURCE from their raw traces, and every metric from
    those; trial files are only read. Exit 1 when any file was skipped."""
    choices = Choices(energy=energy_method, idle=idle, tail=tail, pass_policy=pass_policy)
    options = Options(k=parse_k(k_text), resamples=resamples)
    paths = study_paths(source)
    _files.check_k(k_text, len(paths))
    out_dir = _files.out_dir(Path(out), "recompute.h5", force, "-o",
                             {"recompute.h5": _files.study_h5, "recompute.md": _files.first_line("# Recomputed study")})
    wrap = progress_wrap(_out.console(stderr=True), "recomputing")
    cmp, skipped, n = recompute_study(wrap(paths), choices, out_dir, options, include_running)
    if as_json:
        _out.print_json({"out": [out_dir / "recompute.h5", out_dir / "recompute.md"], "trials": n,
                         "choices": choices.describe(),
                         "skipped": [{"path": s.path, "reason": s.reason} for s in skipped],
                         "cross_app": [r for r in cmp.rows if r["app"] == "cross-app average"]})
        sys.exit(1 if skipped else 0)
    for r in cmp.rows:
        if r["app"] != "cross-app average":
            continue
        ers = "; ".join(f"e-red@{k} {_p(r.get(f'old_er_{k}'))} -> {_p(r.get(f'new_er_{k}'))}" for k in options.k)
        click.echo(f"{r['platform']}: source E {_j(r.get('old_source_energy_j'))} -> {_j(r.get('new_source_energy_j'))} "
                   f"(mean over apps); pass@1 {_p(r.get('old_pass_1'))} -> {_p(r.get('new_pass_1'))}; {ers}")
    print_skipped(skipped)
    click.echo(f"{n} trials recomputed ({choices.describe()}) -> {out_dir / 'recompute.h5'}, "
               f"{out_dir / 'recompute.md'}" + (f"; {len(skipped)} file(s) skipped" if skipped else ""))
    sys.exit(1 if skipped else 0)


def _p(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{100 * v:.1f}%"


def _j(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3g} J"

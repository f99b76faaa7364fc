"""`lassi-batch export STUDY_DIR -o OUT_DIR --format FORMAT`: a fine-tuning dataset from trial files."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table

from ..batch.state import UNREADABLE, read_state
from ..core.errors import ConfigError
from ..core.paths import ensure_writable_dir
from ..export import FORMATS, ExportOptions, export_study
from . import _files, _out
from ._select import pass_policy_option


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(sorted({x.strip() for x in (value or "").split(",") if x.strip()}))


def _fractions(value: str) -> tuple[float, float, float]:
    parts = value.split(",")
    try:
        nums = tuple(float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--split '{value}': expected three numbers TRAIN,VALIDATION,TEST, e.g. 0.8,0.1,0.1") from None
    if len(nums) != 3:
        raise ConfigError(f"--split '{value}': expected three numbers TRAIN,VALIDATION,TEST, e.g. 0.8,0.1,0.1")
    return nums  # type: ignore[return-value]


@click.command("export")
@click.argument("study_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--out", "out", required=True, type=click.Path(path_type=Path), metavar="DIR", help="Output folder (created; an earlier export there is replaced).")
@click.option("--format", "fmt", required=True, type=click.Choice(FORMATS), help="Record format.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split and of pair sampling.")
@click.option("--min-reduction", type=float, default=0.0, show_default=True, help="Minimum energy saving (fraction of the source's energy) of a preferred candidate.")
@click.option("--significant", is_flag=True, help="Prefer only savings outside the noise interval (needs confirmed intervals).")
@pass_policy_option()
@click.option("--platforms", help="Comma-separated platforms to keep (cuda, hip, cpu).")
@click.option("--models", help="Comma-separated generator model patterns to keep (shell globs).")
@click.option("--apps", help="Comma-separated app name patterns to keep (shell globs).")
@click.option("--holdout-apps", help="Comma-separated app name patterns held out whole for the test split.")
@click.option("--split", "split", default="0.8,0.1,0.1", show_default=True, help="Record fractions TRAIN,VALIDATION,TEST.")
@click.option("--near-dup", type=float, default=0.9, show_default=True, help="Jaccard similarity at which two records are near copies; 1 keeps near copies (exact copies are always dropped).")
@click.option("--max-pairs", type=int, default=16, show_default=True, help="Preference pairs kept per trial at most (DPO).")
@click.option("--license", "license_", default="other", show_default=True, help="License identifier written to the dataset card.")
def command(study_dir: Path, out: Path, fmt: str, seed: int, min_reduction: float, significant: bool, pass_policy: str,
            platforms: str | None, models: str | None, apps: str | None, holdout_apps: str | None, split: str,
            near_dup: float, max_pairs: int, license_: str) -> None:
    """Write the trials under STUDY_DIR as a fine-tuning dataset in OUT_DIR (JSONL per split, a
    dataset card README.md, manifest.jsonl). Exit 1 when no record passes the filters."""
    opts = ExportOptions.parse(
        format=fmt, seed=seed, min_reduction=min_reduction, significant=significant, pass_policy=pass_policy,
        platforms=_csv(platforms), models=_csv(models), apps=_csv(apps), holdout_apps=_csv(holdout_apps),
        fractions=_fractions(split), near_dup_threshold=None if near_dup >= 1.0 else near_dup,
        max_pairs_per_trial=max_pairs, license=license_,
    )
    if not study_dir.is_dir():
        raise ConfigError(f"study folder not found: {study_dir}")
    sources = _files.trial_sources(study_dir)  # an empty folder is an input error, not an empty dataset
    if out.exists() and not out.is_dir():
        raise ConfigError(f"-o {out}: exists and is not a folder")
    ensure_writable_dir(out, "-o")
    res = export_study(study_dir, out, opts)
    c = _out.console()
    t = Table(title=f"{fmt} export -> {res.out}")
    t.add_column("split")
    t.add_column("records", justify="right")
    for s, n in res.counts.items():
        t.add_row(s, str(n))
    c.print(t)
    dropped = ", ".join(f"{v} {k}" for k, v in res.dropped.items() if v)
    if dropped:
        c.print(f"dropped: {dropped}")
    for line in res.skipped:
        c.print(f"[yellow]skipped[/] {line}")
    c.print(f"dataset card: {res.out / 'README.md'}; manifest: {res.out / 'manifest.jsonl'}")
    unreadable = [p for p in sources if read_state(p).reason.startswith(UNREADABLE)]
    if unreadable:  # as aggregate: a damaged file left out is worth a non-zero exit
        c.print(f"[red]{len(unreadable)} trial file(s) could not be read[/] (listed above); exit 1")
        sys.exit(1)

"""`lassi-batch demo`: the whole flow on the bundled examples with recorded LLM replies."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click
from rich.console import Console

from ..config import PLATFORMS, load_study
from ..errors import ConfigError
from ._trials import default_platform, run_study_trials, summary_table

DEMO_STUDY = Path(__file__).resolve().parents[2] / "datasets" / "examples" / "demo.toml"
NOT_YET = ("aggregate (pass@k, energy-reduction@k tables)", "report (plots)", "export (fine-tuning dataset)")


@click.command("demo")
@click.option("--platform", type=click.Choice(PLATFORMS), help="Default: cuda when an NVIDIA GPU is usable, else cpu.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default: runs/demo).")
@click.option("--trials", type=click.IntRange(min=1), default=None, help="Trials per app (default 3).")
@click.option("--fresh", is_flag=True, help="Start over instead of resuming trials already in the output folder.")
def command(platform: str | None, out: str | None, trials: int | None, fresh: bool) -> None:
    """Run a small study (bundled apps x 3 trials) locally with the shipped LLM transcripts."""
    console = Console()
    if not DEMO_STUDY.is_file():
        raise ConfigError(f"demo study not found at {DEMO_STUDY} (run from a source checkout: pip install -e .)")
    study = load_study(DEMO_STUDY)
    kind = platform or default_platform()
    skipped: list[str] = []
    if kind == "cpu" and platform is None:
        skipped.append("GPU platform: no usable NVIDIA GPU (driver + nvcc) or AMD GPU (amdsmi + hipcc) found; ran on CPU (OpenMP)")
    apps = [a for a in study.apps if kind in a.app.platforms]
    if kind != "cpu":
        # Quick sizes on a GPU: the measurement sizes take 5-10 s per run and a trial has ~10 runs.
        apps = [replace(a, args=a.app.test_args) for a in apps]
    study = replace(study, platform=replace(study.platform, kind=kind, meter="auto"), apps=apps)
    if out:
        study = replace(study, out=Path(out).resolve())
    else:
        study = replace(study, out=Path("runs/demo").resolve())
    if trials:
        study = replace(study, trials=trials)
    if fresh and (study.out / "trials").is_dir():
        for f in (study.out / "trials").glob("*.h5"):
            f.unlink()
    console.print(f"[bold]lassi-batch demo[/]: {len(study.apps)} apps x {study.trials} trials on platform "
                  f"[bold]{kind}[/], LLM replies replayed from {study.llm.replay_path}")
    rows = run_study_trials(study, console)
    console.print(summary_table(rows))
    console.print(f"Trial archives (HDF5): {study.out / 'trials'}")
    for s in skipped + [f"{step}: not implemented yet" for step in NOT_YET]:
        console.print(f"[yellow]skipped[/]: {s}")

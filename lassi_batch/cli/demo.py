"""`lassi-batch demo`: the whole flow on the bundled examples with recorded LLM replies."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from ..core.config import PLATFORMS, load_study
from ..core.errors import ConfigError
from ..core.paths import ensure_writable_dir
from ..core.resources import data_path
from ._select import app_names
from ._trials import default_platform, run_study_trials, summary_table

EXAMPLES = data_path("datasets/examples")
DEMO_STUDIES = {"cpu": EXAMPLES / "demo.toml", "cuda": EXAMPLES / "demo-gpu.toml"}  # HIP: no transcripts yet
NOT_YET = ("aggregate (pass@k, energy-reduction@k tables)", "report (plots)")


@click.command("demo")
@click.option("--platform", type=click.Choice(PLATFORMS), help="Default: cuda when an NVIDIA GPU is usable, else cpu.")
@click.option("--apps", "only_apps", help="Comma-separated subset of the demo's apps.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default: runs/demo).")
@click.option("--trials", type=click.IntRange(min=1), default=None, help="Trials per app (default 3).")
@click.option("--fresh", is_flag=True, help="Start over instead of resuming trials already in the output folder.")
def command(platform: str | None, only_apps: str | None, out: str | None, trials: int | None, fresh: bool) -> None:
    """Run a small study (bundled apps x 3 trials) locally with the shipped LLM transcripts.

    On an NVIDIA GPU it runs the CUDA versions (datasets/examples/demo-gpu.toml), otherwise the
    OpenMP versions on the CPU (demo.toml), where energy comes from RAPL or a labelled estimate.
    """
    console = Console()
    skipped: list[str] = []
    kind = platform or default_platform()
    if kind == "cpu" and platform is None:
        skipped.append("GPU platform: no usable NVIDIA GPU (driver + nvcc) or AMD GPU (amdsmi + hipcc) found; ran on CPU (OpenMP)")
    if kind not in DEMO_STUDIES:
        if platform is not None:
            raise ConfigError(f"no demo transcripts for platform '{kind}' yet (available: {', '.join(DEMO_STUDIES)})")
        skipped.append(f"platform {kind}: no demo transcripts for it yet; ran on CPU (OpenMP) instead")
        kind = "cpu"
    path = DEMO_STUDIES[kind]
    if not path.is_file():
        raise ConfigError(f"demo study not found at {path} (reinstall lassi-batch, or run from a source checkout)")
    over: dict = {"platform": {"kind": kind, "meter": "auto"}, "study": {"out": str(Path(out or f"runs/{path.stem}").resolve())}}
    if trials:
        over["study"]["trials"] = trials
    study = load_study(path, apps=app_names(only_apps), overrides=over)
    ensure_writable_dir(study.out / "trials", "--out" if out else "output folder")
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

"""`lassi-batch demo`: the whole flow on the bundled examples with recorded LLM replies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click

from ..core.config import PLATFORMS, load_study
from ..core.errors import ConfigError
from ..core.paths import ensure_writable_dir
from ..core.resources import data_path
from ..batch.submit import Request
from ._select import app_names
from ._trials import default_platform
from .submit import run_request
from . import _out

EXAMPLES = data_path("datasets/examples")
DEMO_STUDIES = {"cpu": EXAMPLES / "demo.toml", "cuda": EXAMPLES / "demo-gpu.toml"}  # HIP: no transcripts yet
# Steps after the trials, run when this installation has them (each takes the study folder).
NEXT_STEPS = (("aggregate", "aggregate (pass@k, energy-reduction@k tables)"), ("report", "report (plots)"),
              ("export", "export (fine-tuning dataset)"))


@click.command("demo")
@click.option("--platform", type=click.Choice(PLATFORMS), help="Default: cuda when an NVIDIA GPU is usable, else cpu.")
@click.option("--apps", "only_apps", help="Comma-separated subset of the demo's apps.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default: runs/demo).")
@click.option("--trials", type=click.IntRange(min=1), default=None, help="Trials per app (default 3).")
@click.option("--trials-per-node", "--parallel", "parallel", type=click.IntRange(min=1), default=2, show_default=True,
              help="Trials run at once, as submit's --trials-per-node (their measured runs still take turns).")
@click.option("--fresh", is_flag=True, help="Start over instead of resuming trials already in the output folder.")
@click.pass_context
def command(ctx: click.Context, platform: str | None, only_apps: str | None, out: str | None, trials: int | None,
            parallel: int, fresh: bool) -> None:
    """Run a small study (bundled apps x 3 trials) locally with the shipped LLM transcripts.

    It is `lassi-batch submit` of the demo study on the local executor, then the analysis steps.
    On an NVIDIA GPU it runs the CUDA versions (datasets/examples/demo-gpu.toml), otherwise the
    OpenMP versions on the CPU (demo.toml), where energy comes from RAPL or a labelled estimate.
    """
    console = _out.console()
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
    out_dir = Path(out).resolve() if out else Path(f"runs/{path.stem}").resolve()
    over: dict = {"platform": {"kind": kind, "meter": "auto"}, "study": {"out": str(out_dir)}}
    if trials:
        over["study"]["trials"] = trials
    apps = app_names(only_apps)
    base = load_study(path, apps=apps, overrides=over)  # every problem (unknown app...) before anything runs
    ensure_writable_dir(base.out / "trials", "--out" if out else "output folder")
    n = base.trials
    console.print(f"[bold]lassi-batch demo[/]: {len(base.apps)} apps x {n} trials on platform "
                  f"[bold]{kind}[/], LLM replies replayed from {base.llm.replay_path}")
    req = Request(path, executor="local", overrides=over, apps=apps, trials_per_node=parallel, fresh=fresh)
    rc = run_request(req, console)
    console.print(f"Trial archives (HDF5): {out_dir / 'trials'}; study status: lassi-batch status {out_dir}")
    group = ctx.parent.command if ctx.parent is not None else None
    for name, what in NEXT_STEPS:
        cmd = group.get_command(ctx, name) if isinstance(group, click.Group) else None
        if cmd is None:
            skipped.append(f"{what}: not available in this version")
            continue
        extra = {"report": ["-o", str(out_dir / "report")],
                 "export": ["-o", str(out_dir / "dataset"), "--format", "trl-sft"]}.get(name, [])
        argv = [name, str(out_dir), *extra]
        r = subprocess.run([sys.executable, "-m", "lassi_batch", *argv])
        if r.returncode != 0:
            skipped.append(f"{what}: `lassi-batch {' '.join(argv)}` exited {r.returncode}")
    for s in skipped:
        console.print(f"[yellow]skipped[/]: {s}")
    sys.exit(rc)

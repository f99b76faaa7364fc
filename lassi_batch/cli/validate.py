"""`lassi-batch validate STUDY.toml`: check a study config without running anything."""

from __future__ import annotations

import click
from rich.console import Console

from ..core.config import load_study


@click.command("validate")
@click.argument("study", type=click.Path(dir_okay=False))
def command(study: str) -> None:
    """Check STUDY (TOML) and list its apps; exit 2 on any problem."""
    cfg = load_study(study)
    c = Console()
    c.print(f"[bold]{cfg.name}[/]: {len(cfg.apps)} apps x {cfg.trials} trials on {cfg.platform.kind}, k={cfg.k}")
    for a in cfg.apps:
        c.print(f"  {a.app.name:24s} {a.app.path}  args={a.args}")
    c.print(f"output: {cfg.out}")

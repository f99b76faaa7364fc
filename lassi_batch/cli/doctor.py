"""`lassi-batch doctor [--platform] [--study FILE]`: what this machine can do; exit 1 if the platform can't run."""

from __future__ import annotations

import dataclasses

import click
from rich.console import Console
from rich.table import Table

from ..core.config import PLATFORMS, ContainerConfig, LLMConfig, PlatformConfig, load_study
from ..pipeline.doctor import run_doctor

_STYLE = {"ok": "green", "fail": "bold red", "warn": "yellow", "missing": "dim", "info": "cyan"}


@click.command("doctor")
@click.option("--platform", "kind", type=click.Choice(PLATFORMS), default=None,
              help="Platform to judge (default: the study's, else cuda/hip/cpu by the GPUs found).")
@click.option("--study", type=click.Path(dir_okay=False), default=None,
              help="Take the platform, container and LLM settings from this study.toml.")
def command(kind: str | None, study: str | None) -> None:
    """Check GPUs, meters, compilers, container, Slurm, sandbox and LLM settings.

    Exits 0 when the platform can build and run a test program, 1 otherwise.
    """
    platform: PlatformConfig | None = None
    container, llm = ContainerConfig(), LLMConfig()
    if study:
        cfg = load_study(study)
        platform, container, llm = cfg.platform, cfg.container, cfg.llm
        if kind and kind != platform.kind:  # the study's compiler line belongs to its own kind
            platform = dataclasses.replace(platform, kind=kind, compiler="")
    elif kind:
        platform = PlatformConfig(kind=kind)
    report = run_doctor(platform, container, llm)

    table = Table(title=f"lassi-batch doctor (platform: {report.platform.kind})")
    for col in ("area", "check", "status", "detail"):
        table.add_column(col, overflow="fold")
    for c in report.checks:
        style = _STYLE.get(c.status, "")
        table.add_row(c.area, c.name, f"[{style}]{c.status}[/]" if style else c.status, c.detail)
    console = Console()
    console.print(table)
    if report.ok:
        console.print(f"[green]platform {report.platform.kind}: ready[/] ({report.platform.compiler_line})")
        return
    console.print(f"[bold red]platform {report.platform.kind}: not ready[/]")
    for p in report.problems:
        console.print(f"  - {p}", markup=False, highlight=False)
    raise SystemExit(1)

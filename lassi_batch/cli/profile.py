"""`lassi-batch profile APP_DIR`: build an app and measure its energy (no LLM)."""

from __future__ import annotations

import sys

import click
from rich.console import Console

from ..core.config import METERS, PLATFORMS


@click.command("profile")
@click.argument("app_dir", type=click.Path(file_okay=False))
@click.option("--platform", type=click.Choice(PLATFORMS), default=None,
              help="Build to measure; default: cuda/hip when such a GPU is present and the app has it, else cpu.")
@click.option("--repeat", type=click.IntRange(min=1), default=3, show_default=True, help="Measured runs.")
@click.option("--meter", type=click.Choice(METERS), default="auto", show_default=True,
              help="Power source; auto = nvml (cuda), amdsmi (hip), rapl (cpu), falling back to estimate.")
@click.option("--args", "run_args", default=None,
              help='Program arguments, e.g. --args "4096 120" (default: the app\'s run.args).')
@click.option("--test-size", is_flag=True, help="Use the app's small test_args instead of its measurement args.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="HDF5 file to write (default: <app>.<platform>.profile.h5).")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="PNG of the median repeat's power trace.")
@click.option("--compiler", default=None, help='Compiler command line, e.g. "nvcc -O3 -arch=sm_90".')
def command(app_dir: str, platform: str | None, repeat: int, meter: str, run_args: str | None, test_size: bool,
            out: str | None, plot: str | None, compiler: str | None) -> None:
    """Build APP_DIR in a fresh folder and measure REPEAT runs of it."""
    from ..pipeline.profile import profile_app, render

    if run_args is not None and test_size:
        raise click.UsageError("--args and --test-size exclude each other")
    err = Console(stderr=True)
    res = profile_app(app_dir, platform=platform, repeat=repeat, meter=meter, args=run_args, test_size=test_size,
                      out=out, plot=plot, compiler=compiler, log=lambda s: err.print(f"[dim]{s}[/]"))
    render(res, Console())
    failed = res.failed_runs
    if failed:
        codes = ", ".join(str(res.results[r][0].returncode) for r in failed)
        click.echo(f"error: {len(failed)} of {len(res.results)} runs failed (exit {codes}); "
                   f"measurements kept in {res.out}", err=True)
        sys.exit(1)

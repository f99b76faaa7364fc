"""`lassi-batch validate STUDY.toml|APP_DIR`: check a study or an app without running anything."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from ..core.config import AppConfig, load_app, load_study
from ._select import app_names, apps_option


def _warn(c: Console, app: AppConfig) -> None:
    weak = app.check.weakness()
    if weak:
        c.print(f"[yellow]warning[/]: app '{app.name}': {weak}", highlight=False)


@click.command("validate")
@click.argument("target", type=click.Path())
@apps_option
def command(target: str, only_apps: str | None) -> None:
    """Check TARGET (a study TOML or an app folder) and list its apps; exit 2 on any problem.

    Apps whose output is not checked deterministically get a warning (exit 0) that says what to add.
    """
    c = Console(soft_wrap=True)
    if Path(target).is_dir():
        if only_apps:
            raise click.UsageError("--apps applies to a study file, not an app folder")
        app = load_app(target)
        c.print(f"[bold]{app.name}[/]: {', '.join(sorted(app.platforms))}; args={app.args} test_args={app.test_args}")
        for kind, pb in sorted(app.platforms.items()):
            c.print(f"  {kind:5s} {pb.dir or app.path}  files={pb.files}" + (f" extra={pb.extra_files}" if pb.extra_files else ""))
        _warn(c, app)
        return
    cfg = load_study(target, apps=app_names(only_apps))
    c.print(f"[bold]{cfg.name}[/]: {len(cfg.apps)} apps x {cfg.trials} trials on {cfg.platform.kind}, k={cfg.k}")
    for a in cfg.apps:
        c.print(f"  {a.app.name:24s} {a.app.path}  args={a.args}")
    c.print(f"output: {cfg.out}")
    for a in cfg.apps:
        _warn(c, a.app)

"""`lassi-batch validate STUDY.toml|APP_DIR`: check a study or an app without running anything."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console

from ..core.config import AppConfig, load_app, load_study
from ..core.errors import ConfigError
from ._select import app_names, apps_option, shipped_overrides
from . import _out


def _warn(c: Console, app: AppConfig) -> None:
    weak = app.check.weakness()
    if weak:
        c.print(f"[yellow]warning[/]: app '{app.name}': {weak}", highlight=False)


@click.command("validate")
@click.argument("target", type=click.Path())
@apps_option
@_out.json_option
def command(target: str, only_apps: str | None, as_json: bool) -> None:
    """Check TARGET (a study TOML or an app folder) and list its apps; exit 2 on any problem.

    Apps whose output is not checked deterministically get a warning (exit 0) that says what to add.
    """
    c = _out.console()
    if as_json:
        try:
            _out.print_json(_as_json(target, only_apps))
        except ConfigError as e:
            _out.print_json({"ok": False, "problems": e.problems})
            sys.exit(e.exit_code)
        return
    if Path(target).is_dir():
        if only_apps:
            raise click.UsageError("--apps applies to a study file, not an app folder")
        app = load_app(target)
        c.print(f"[bold]{app.name}[/]: {', '.join(sorted(app.platforms))}; args={app.args} test_args={app.test_args}")
        for kind, pb in sorted(app.platforms.items()):
            c.print(f"  {kind:5s} {pb.dir or app.path}  files={pb.files}" + (f" extra={pb.extra_files}" if pb.extra_files else ""))
        _warn(c, app)
        return
    cfg = load_study(target, apps=app_names(only_apps), overrides=shipped_overrides(target))
    c.print(f"[bold]{cfg.name}[/]: {len(cfg.apps)} apps x {cfg.trials} trials on {cfg.platform.kind}, k={cfg.k}")
    for a in cfg.apps:
        c.print(f"  {a.app.name:24s} {a.app.path}  args={a.args}")
    c.print(f"output: {cfg.out}")
    for a in cfg.apps:
        _warn(c, a.app)


def _app_json(app: AppConfig, args: list[str] | None = None) -> dict:
    return {"name": app.name, "path": app.path, "platforms": sorted(app.platforms), "args": app.args if args is None else args,
            "test_args": app.test_args, "warning": app.check.weakness() or None}


def _as_json(target: str, only_apps: str | None) -> dict:
    """What validate prints, as data (a ConfigError carries the problems)."""
    if Path(target).is_dir():
        if only_apps:
            raise ConfigError("--apps applies to a study file, not an app folder")
        return {"ok": True, "kind": "app", "app": _app_json(load_app(target))}
    cfg = load_study(target, apps=app_names(only_apps), overrides=shipped_overrides(target))
    return {"ok": True, "kind": "study", "name": cfg.name, "platform": cfg.platform.kind, "trials": cfg.trials,
            "k": cfg.k, "out": cfg.out, "apps": [_app_json(a.app, a.args) for a in cfg.apps]}

"""`lassi-batch validate STUDY.toml|APP_DIR`: check a study or an app without running anything."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from ..core.config import AppConfig, PlatformConfig, cuda_release, load_app, load_study, std_warning
from ..core.errors import LassiError
from ..sandbox.toolchain import build_argv
from ..system.tools import tool_version
from ._select import app_names, apps_option


def _warn(c: Console, app: AppConfig) -> None:
    weak = app.check.weakness()
    if weak:
        c.print(f"[yellow]warning[/]: app '{app.name}': {weak}", highlight=False)


def _warn_std(c: Console, apps: list[AppConfig], platform: PlatformConfig) -> None:
    """Warn where a CUDA build line's -std is older than the installed nvcc's headers need.

    Knowable only with nvcc on PATH (its release) and for sources that include Thrust/CUB/libcu++.
    """
    releases: dict[str, tuple[int, int] | None] = {}
    for app in apps:
        if "cuda" not in app.platforms:
            continue
        try:
            argv = build_argv(app, platform)
        except LassiError:
            continue  # an unparsable line is reported where it is built
        if Path(argv[0]).name != "nvcc":
            continue
        if argv[0] not in releases:
            releases[argv[0]] = cuda_release(tool_version(argv[0]))
        pb, folder = app.build_for("cuda"), app.on("cuda").path
        sources = {}
        for name in [*pb.files, *pb.extra_files]:
            try:
                sources[name] = (folder / name).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
        why = std_warning(argv, releases[argv[0]], sources)
        if why:
            c.print(f"[yellow]warning[/]: app '{app.name}': {why}", highlight=False)


@click.command("validate")
@click.argument("target", type=click.Path())
@apps_option
def command(target: str, only_apps: str | None) -> None:
    """Check TARGET (a study TOML or an app folder) and list its apps; exit 2 on any problem.

    Apps whose output is not checked deterministically get a warning (exit 0) that says what to add,
    and so does a CUDA build line whose -std is older than the installed nvcc's Thrust/CUB need.
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
        _warn_std(c, [app], PlatformConfig(kind="cuda"))
        return
    cfg = load_study(target, apps=app_names(only_apps))
    c.print(f"[bold]{cfg.name}[/]: {len(cfg.apps)} apps x {cfg.trials} trials on {cfg.platform.kind}, k={cfg.k}")
    for a in cfg.apps:
        c.print(f"  {a.app.name:24s} {a.app.path}  args={a.args}")
    c.print(f"output: {cfg.out}")
    for a in cfg.apps:
        _warn(c, a.app)
    if cfg.platform.kind == "cuda":
        _warn_std(c, [a.app for a in cfg.apps], cfg.platform)

"""`lassi-batch validate STUDY.toml|APP_DIR`: check a study or an app without running anything."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click
from rich.console import Console

from ..core.config import PLATFORMS, AppConfig, PlatformConfig, cuda_release, load_app, load_study, std_warning
from ..core.errors import ConfigError, LassiError
from ..pipeline.profile import check_run, choose_platform
from ..sandbox.toolchain import build_argv
from ..system.tools import tool_version
from . import _out
from ._select import app_names, apps_option, shipped_overrides


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


def _run_checks(c: Console, jobs: list[tuple[AppConfig, PlatformConfig]]) -> None:
    """--run: build and run each app once at its test_args; exit 1 when one fails, 2 when its check lines do not match."""
    failed = mismatched = 0
    for app, plat in jobs:
        res = check_run(app, plat, list(app.test_args))
        what = f"{res.app} ({res.platform}) ./app.exe {shlex.join(res.args)}"
        if res.run is None:
            failed += 1
            click.echo(f"error: {res.app}: the build failed; log: {res.build_log}", err=True)
        elif not res.run.ok:
            failed += 1
            why = res.run.error or f"exit {res.run.returncode}"
            click.echo(f"error: {res.app}: the run failed ({why}): {res.run.stderr.strip()[-300:]}", err=True)
        elif res.problems:
            mismatched += 1
            for problem in res.problems:
                click.echo(f"error: {res.app}: {problem}; fix the app's [check]", err=True)
        else:
            chk = app.check
            tried = any((chk.pass_regex, chk.fail_regex, chk.checksum_regex, chk.work_regex))
            c.print(f"ran {what}: exit 0 in {res.run.wall_s:.1f} s; "
                    + ("its check lines match its output" if tried else "no check lines to try"), highlight=False)
    if mismatched:
        sys.exit(2)
    if failed:
        sys.exit(1)


@click.command("validate")
@click.argument("target", type=click.Path())
@apps_option
@click.option("--run", "run_apps", is_flag=True,
              help="Also build and run each app once at its test_args in the sandbox and try its check lines on the output.")
@click.option("--platform", type=click.Choice(PLATFORMS), default=None,
              help="With --run: the build to run (default: the study's; for an app folder, this machine's GPU kind if the app has it, else cpu).")
@_out.json_option
def command(target: str, only_apps: str | None, run_apps: bool, platform: str | None, as_json: bool) -> None:
    """Check TARGET (a study TOML or an app folder) and list its apps; exit 2 on any problem.

    Apps whose output is not checked deterministically get a warning (exit 0) that says what to add,
    and so does a CUDA build line whose -std is older than the installed nvcc's Thrust/CUB need.
    With --run each app is also built and run once (test_args): a failed build or run exits 1, a
    pass/checksum/work line that matches nothing the program prints (or its own failure line) exits 2.
    """
    c = _out.console()
    if platform and not run_apps:
        raise click.UsageError("--platform applies with --run")
    if as_json:
        if run_apps:
            raise click.UsageError("--json lists the study; run --run without it")
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
        _warn_std(c, [app], PlatformConfig(kind="cuda"))
        if run_apps:
            kind, _note = choose_platform(sorted(app.platforms), platform)
            _run_checks(c, [(app, PlatformConfig(kind=kind))])
        return
    overrides = shipped_overrides(target)
    if platform:
        overrides = {**overrides, "platform": {"kind": platform}}
    cfg = load_study(target, apps=app_names(only_apps), overrides=overrides or None)
    c.print(f"[bold]{cfg.name}[/]: {len(cfg.apps)} apps x {cfg.trials} trials on {cfg.platform.kind}, k={cfg.k}")
    for a in cfg.apps:
        c.print(f"  {a.app.name:24s} {a.app.path}  args={a.args}")
    c.print(f"output: {cfg.out}")
    for a in cfg.apps:
        _warn(c, a.app)
    if cfg.platform.kind == "cuda":
        _warn_std(c, [a.app for a in cfg.apps], cfg.platform)
    if run_apps:
        _run_checks(c, [(a.app, cfg.platform) for a in cfg.apps])


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

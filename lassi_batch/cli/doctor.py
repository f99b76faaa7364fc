"""`lassi-batch doctor [--platform] [--study FILE [--apps a,b]]`: what this machine can do; exit 1 if it can't run."""

from __future__ import annotations

import click
from rich.table import Table

from ..core.config import PLATFORMS, ContainerConfig, LLMConfig, PlatformConfig, load_study, study_app_names
from ..core.errors import ConfigError
from ..pipeline.doctor import Check, run_doctor
from ._select import app_names, apps_option
from . import _out

_STYLE = {"ok": "green", "fail": "bold red", "warn": "yellow", "missing": "dim", "info": "cyan"}


def _app_checks(study: str, names: list[str] | None, kind: str | None) -> tuple[list[Check], list[str]]:
    """One row per app of the study: its folder and files are there for the platform (or why not)."""
    checks: list[Check] = []
    problems: list[str] = []
    over = {"platform": {"kind": kind}} if kind else None
    for name in names if names is not None else study_app_names(study):
        try:
            sapp = load_study(study, apps=[name], overrides=over).apps[0]
        except ConfigError as e:
            checks.append(Check("apps", name, "fail", e.problems[0]))
            problems.extend(e.problems)
            continue
        weak = sapp.app.check.weakness()
        checks.append(Check("apps", name, "warn" if weak else "ok", f"{sapp.app.path}" + (f"; {weak}" if weak else "")))
    return checks, problems


@click.command("doctor")
@click.option("--platform", "kind", type=click.Choice(PLATFORMS), default=None,
              help="Platform to judge (default: the study's, else cuda/hip/cpu by the GPUs found).")
@click.option("--study", type=click.Path(dir_okay=False), default=None,
              help="Take the platform, container and LLM settings from this study file, and check its apps.")
@apps_option
@_out.json_option
def command(kind: str | None, study: str | None, only_apps: str | None, as_json: bool) -> None:
    """Check GPUs, meters, compilers, container, Slurm, sandbox and LLM settings (and a study's apps).

    Exits 0 when the platform can build and run a test program and every app checked is usable,
    1 otherwise.
    """
    platform: PlatformConfig | None = None
    container, llm = ContainerConfig(), LLMConfig()
    app_checks: list[Check] = []
    app_problems: list[str] = []
    if only_apps is not None and not study:
        raise click.UsageError("--apps selects apps of a --study")
    if study:
        cfg = load_study(study, apps=[], overrides={"platform": {"kind": kind}} if kind else None)
        unknown = [n for n in app_names(only_apps) or [] if n not in study_app_names(study)]
        if unknown:
            raise ConfigError(f"--apps: '{unknown[0]}' is not an app of {study} "
                              f"(apps: {', '.join(study_app_names(study))})")
        platform, container, llm = cfg.platform, cfg.container, cfg.llm
        app_checks, app_problems = _app_checks(study, app_names(only_apps), kind)
    elif kind:
        platform = PlatformConfig(kind=kind)
    report = run_doctor(platform, container, llm)
    problems = report.problems + app_problems
    if as_json:
        _out.print_json({"platform": report.platform.kind, "ready": not problems, "platform_ready": report.ok,
                         "checks": [{"area": c.area, "check": c.name, "status": c.status, "detail": c.detail}
                                    for c in report.checks + app_checks],
                         "problems": problems})
        raise SystemExit(1 if problems else 0)

    table = Table(title=f"lassi-batch doctor (platform: {report.platform.kind})")
    for col in ("area", "check", "status", "detail"):
        table.add_column(col, overflow="fold")
    for c in report.checks + app_checks:
        style = _STYLE.get(c.status, "")
        table.add_row(c.area, c.name, f"[{style}]{c.status}[/]" if style else c.status, c.detail)
    console = _out.console()
    console.print(table)
    if not problems:
        console.print(f"[green]platform {report.platform.kind}: ready[/] ({report.platform.compiler_line})")
        return
    console.print(f"[bold red]platform {report.platform.kind}: {'ready' if report.ok else 'not ready'}"
                  f"{'' if not app_problems else ', apps not ready'}[/]")
    for p in problems:
        console.print(f"  - {p}", markup=False, highlight=False)
    raise SystemExit(1)

"""`lassi-batch profile APP_DIR | --study FILE [--apps a,b]`: build apps and measure their energy (no LLM)."""

from __future__ import annotations

import sys

import click

from ..core.config import METERS, PLATFORMS, AppConfig, load_study
from ..pipeline.profile import ProfileResult, profile_app, render
from ._select import app_names, apps_option
from . import _out


@click.command("profile")
@click.argument("app_dir", type=click.Path(file_okay=False), required=False)
@click.option("--study", "study_file", type=click.Path(dir_okay=False), default=None,
              help="Profile the study's apps (or those named by --apps) with its platform and measure settings.")
@apps_option
@click.option("--platform", type=click.Choice(PLATFORMS), default=None,
              help="Build to measure; default: the study's, else cuda/hip when such a GPU is present and the app has it, else cpu.")
@click.option("--repeat", type=click.IntRange(min=1), default=None, help="Measured runs (default 3).")
@click.option("--meter", type=click.Choice(METERS), default=None,
              help="Power source (default: the study's, else auto = nvml (cuda), amdsmi (hip), rapl (cpu), falling back to estimate).")
@click.option("--args", "run_args", default=None,
              help='Program arguments, e.g. --args "4096 120" (default: the app\'s run.args, or the study entry\'s).')
@click.option("--test-size", is_flag=True, help="Use the app's small test_args instead of its measurement args.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="HDF5 file to write (default: <app>.<platform>.profile.h5).")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="PNG of the median repeat's power trace.")
@click.option("--compiler", default=None, help='Compiler command line, e.g. "nvcc -O3 -arch=sm_90".')
@_out.json_option
def command(app_dir: str | None, study_file: str | None, only_apps: str | None, platform: str | None,
            repeat: int | None, meter: str | None, run_args: str | None, test_size: bool, out: str | None,
            plot: str | None, compiler: str | None, as_json: bool) -> None:
    """Build an app in a fresh folder and measure REPEAT runs of it.

    The app is APP_DIR, or each app of a study (inline entries need no app.toml). The app's [check]
    patterns are tried on the successful runs' output: one that matches nothing (or the source's own
    failure line) is an error (exit 2), since no candidate could be screened by it.
    """
    if run_args is not None and test_size:
        raise click.UsageError("--args and --test-size exclude each other")
    if (app_dir is None) == (study_file is None):
        raise click.UsageError("give either APP_DIR or --study FILE")
    if only_apps is not None and study_file is None:
        raise click.UsageError("--apps selects apps of a --study")
    err = _out.console(stderr=True)
    jobs: list[tuple[AppConfig | str, list[str] | str | None]] = []
    measure = platform_cfg = None
    if study_file:
        over = {"platform": {"kind": platform}} if platform else None
        study = load_study(study_file, apps=app_names(only_apps), overrides=over)
        if len(study.apps) > 1 and (out or plot):
            raise click.UsageError("--out and --plot name one file: pick one app with --apps")
        measure, platform_cfg = study.measure, study.platform
        for a in study.apps:
            jobs.append((a.app, run_args if (run_args is not None or test_size) else a.args))
    else:
        jobs.append((app_dir, run_args))
    failed_total = bad_checks = 0
    reports: list[dict] = []
    for app, args in jobs:
        res = profile_app(app, platform=platform, repeat=repeat or 3, meter=meter, args=args, test_size=test_size, out=out, plot=plot, compiler=compiler,
                          measure_cfg=measure, platform_cfg=platform_cfg, log=lambda s: err.print(f"[dim]{s}[/]"))
        if as_json:
            reports.append(_json_of(res))
        else:
            render(res, _out.console())
        failed = res.failed_runs
        if failed:
            failed_total += 1
            codes = ", ".join(str(res.results[r][0].returncode) for r in failed)
            click.echo(f"error: {res.app}: {len(failed)} of {len(res.results)} runs failed (exit {codes}); "
                       f"measurements kept in {res.out}", err=True)
        for problem in res.check_problems:  # the app's description, not its code, is wrong: exit 2
            bad_checks += 1
            click.echo(f"error: {res.app}: {problem}; fix the app's [check] (measurements kept in {res.out})", err=True)
    if as_json:
        _out.print_json(reports)
    if bad_checks:
        sys.exit(2)
    if failed_total:
        sys.exit(1)


def _json_of(res: ProfileResult) -> dict:
    """One app's profile as data: every repeat's figures and exit, the means and CVs."""
    return {"app": res.app, "platform": res.platform, "meter": res.meter, "device": res.device,
            "estimate": res.estimate, "args": res.args, "out": res.out, "plot": res.plot,
            "runs": [{"exit": rr.returncode, "ok": rr.ok, "timed_out": rr.timed_out, "figures": dict(meas.figures)}
                     for rr, meas in res.results],
            "summary": {k: {"mean": s.mean, "cv_pct": s.cv_pct} for k, s in res.summary.items()},
            "notes": res.notes}

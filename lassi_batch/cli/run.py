"""`lassi-batch run [APP_DIR] [--study FILE [--apps a,b]]`: run LASSI-EE trials on this machine."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from ..core.config import METERS, PLATFORMS, StudyApp, StudyConfig, load_app, load_study, parse_study
from ..core.errors import ConfigError
from ..core.paths import check_workdir, ensure_writable_dir
from ..pipeline.session import trial_path, with_llm
from ._select import app_names, apps_option, shipped_overrides
from ._trials import default_platform, report_failures, run_study_trials, summary_table
from . import _out


def _overrides(platform: str | None, meter: str | None, repeat: int | None, trials: int | None,
               out: str | None) -> dict[str, Any]:
    """Command-line flags as study keys (validated by the same model as the file)."""
    o: dict[str, Any] = {"platform": {}, "measure": {}, "study": {}}
    if platform:
        o["platform"]["kind"] = platform
    if meter:
        o["platform"]["meter"] = meter
    if repeat:
        o["measure"]["repeat"] = repeat
    if trials:
        o["study"]["trials"] = trials
    if out:
        o["study"]["out"] = str(Path(out).resolve())
    return o


def _with_folder(study: StudyConfig, app_path: Path, study_file: str, over: dict[str, Any]) -> StudyConfig:
    """The study's settings for the app in APP_DIR; the study's entry for it brings its run arguments."""
    app = load_app(app_path).on(study.platform.kind)
    try:
        entry = load_study(study_file, apps=[app.name], overrides=over).apps[0]
    except ConfigError:  # no (usable) entry of that name: the folder's own arguments
        entry = None
    if entry is not None and entry.app.path == app.path:
        return replace(study, apps=[replace(entry, app=app)])
    return replace(study, apps=[StudyApp(app=app, args=app.args)])


@click.command("run")
@click.argument("app_dir", type=click.Path(), required=False)
@click.option("--study", "study_file", type=click.Path(dir_okay=False), help="Take settings (and apps) from a study TOML.")
@apps_option
@click.option("--platform", type=click.Choice(PLATFORMS), help="Default: the study's, else cuda/hip when a GPU is present, else cpu.")
@click.option("--llm", help="replay:PATH (transcript .jsonl, folder, or trial .h5) or openai[:MODEL].")
@click.option("--trials", type=click.IntRange(min=1), default=None, help="Trials to run (default: study's, else 1).")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default: the study's, else runs/<app>).")
@click.option("--meter", type=click.Choice(METERS), default=None,
              help="Power source (default: the study's, else auto = nvml (cuda), amdsmi (hip), rapl (cpu), falling back to estimate).")
@click.option("--repeat", type=click.IntRange(min=1), default=None, help="Measured runs per candidate.")
@click.option("--test-size", is_flag=True, help="Use the apps' quick test arguments instead of the measurement ones.")
@click.option("--fresh", is_flag=True, help="Start the trials over instead of resuming (or reusing) their archives.")
def command(app_dir: str | None, study_file: str | None, only_apps: str | None, platform: str | None, llm: str | None,
            trials: int | None, out: str | None, meter: str | None, repeat: int | None, test_size: bool,
            fresh: bool) -> None:
    """Run trials of the app in APP_DIR, or of a study's apps, locally and print a summary.

    With --study and no APP_DIR, every app of the study runs (or those named by --apps), each
    from its study entry; inline entries need no app.toml.
    """
    console = _out.console()
    names = app_names(only_apps)
    if app_dir is None and study_file is None:
        raise click.UsageError("give an APP_DIR or --study FILE")
    if names is not None and (study_file is None or app_dir is not None):
        raise click.UsageError("--apps selects apps of a --study (without APP_DIR)")
    over = _overrides(platform, meter, repeat, trials, out)
    if study_file:
        if not out:  # a shipped study writes under the working directory, not into the package
            over["study"].update(shipped_overrides(study_file).get("study", {}))
        study = load_study(study_file, apps=[] if app_dir else names, overrides=over)
        if app_dir:
            app_path = Path(app_dir).resolve()
            if not app_path.is_dir():
                raise ConfigError(f"app folder not found: {app_dir}")
            study = _with_folder(study, app_path, study_file, over)
    else:
        app_path = Path(app_dir or ".").resolve()
        if not app_path.is_dir():
            raise ConfigError(f"app folder not found: {app_dir}")
        over["platform"].setdefault("kind", default_platform())
        over["study"].setdefault("out", str(Path(f"runs/{app_path.name}").resolve()))
        data = {"study": {"name": "run", "trials": 1, "k": [1]}, "apps": [{"path": str(app_path)}]}
        study = parse_study({**data, **{k: {**data.get(k, {}), **v} for k, v in over.items()}}, Path.cwd(),
                            where=str(app_path))
        study = replace(study, name=study.apps[0].app.name)
    if test_size:
        study = replace(study, apps=[replace(a, args=a.app.test_args) for a in study.apps])
    study = with_llm(study, llm)
    if study.llm.backend == "replay" and not study.llm.replay_path:
        raise ConfigError("no LLM transcript given: use --llm replay:PATH or --llm openai[:MODEL]")
    ensure_writable_dir(study.out / "trials", "--out" if out else "output folder")
    check_workdir()
    names_line = ", ".join(a.app.name for a in study.apps)
    console.print(f"[bold]lassi-batch run[/]: {names_line} on {study.platform.kind}, "
                  f"{study.trials} trial(s), LLM {study.llm.backend}, out {study.out}")
    if fresh:
        for sapp in study.apps:
            for t in range(study.trials):
                p = trial_path(study, sapp.app.name, t)
                for q in [p, *p.parent.glob(p.name + ".*")] if p.parent.is_dir() else []:
                    q.unlink(missing_ok=True)
    rows = run_study_trials(study, console)
    console.print(summary_table(rows))
    sys.exit(report_failures(rows, console))

"""`lassi-batch run APP_DIR`: run LASSI-EE trials of one app on this machine."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from ..core.config import PLATFORMS, load_study, parse_study
from ..core.errors import ConfigError
from ..pipeline.session import with_llm
from ._trials import default_platform, run_study_trials, summary_table


@click.command("run")
@click.argument("app_dir", type=click.Path())
@click.option("--study", "study_file", type=click.Path(dir_okay=False), help="Take settings from a study TOML.")
@click.option("--platform", type=click.Choice(PLATFORMS), help="Default: cuda/hip when a GPU is present, else cpu.")
@click.option("--llm", help="replay:PATH (transcript .jsonl, folder, or trial .h5) or openai[:MODEL].")
@click.option("--trials", type=click.IntRange(min=1), default=None, help="Trials to run (default: study's, else 1).")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default: runs/<app>).")
@click.option("--meter", type=click.Choice(["auto", "nvml", "amdsmi", "rapl", "estimate"]), default=None)
@click.option("--repeat", type=click.IntRange(min=1), default=None, help="Measured runs per candidate.")
@click.option("--test-size", is_flag=True, help="Use the app's quick test arguments instead of the measurement ones.")
def command(app_dir: str, study_file: str | None, platform: str | None, llm: str | None, trials: int | None,
            out: str | None, meter: str | None, repeat: int | None, test_size: bool) -> None:
    """Run trials of the app in APP_DIR locally and print a summary."""
    console = Console()
    app_path = Path(app_dir).resolve()
    if not app_path.is_dir():
        raise ConfigError(f"app folder not found: {app_dir}")
    if study_file:
        base = load_study(study_file)
        data: dict = {}
        raw = base.to_dict()
        for sect in ("platform", "measure", "llm", "slurm", "container"):
            data[sect] = {k: v for k, v in raw[sect].items()}
        data["study"] = {"name": base.name, "trials": base.trials, "k": [k for k in base.k if k <= (trials or base.trials)] or [1],
                         "out": str(out or base.out)}
    else:
        data = {"study": {"name": app_path.name, "trials": trials or 1, "k": [1], "out": str(Path(out or f"runs/{app_path.name}").resolve())},
                "platform": {}, "llm": {}, "measure": {}}
    plat = data["platform"]
    plat["kind"] = platform or plat.get("kind") or default_platform()
    if meter:
        plat["meter"] = meter
    if repeat:
        data["measure"]["repeat"] = repeat
    if trials:
        data["study"]["trials"] = trials
    entry: dict = {"path": str(app_path)}
    if study_file:  # the study's own entry for this app brings its run arguments
        match = next((a for a in base.apps if a.app.path == app_path), None)
        if match is not None:
            entry["args"] = match.args
    data["apps"] = [entry]
    study = parse_study(data, Path.cwd())
    if test_size:
        from dataclasses import replace

        study = replace(study, apps=[replace(a, args=a.app.test_args) for a in study.apps])
    study = with_llm(study, llm)
    if study.llm.backend == "replay" and not study.llm.replay_path:
        raise ConfigError("no LLM transcript given: use --llm replay:PATH or --llm openai[:MODEL]")
    console.print(f"[bold]lassi-batch run[/]: {study.apps[0].app.name} on {study.platform.kind}, "
                  f"{study.trials} trial(s), LLM {study.llm.backend}, out {study.out}")
    rows = run_study_trials(study, console)
    console.print(summary_table(rows))

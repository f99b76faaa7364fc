"""Set up and run trials of a study on this machine: archive, LLM backend, meter, bench.

The batch executors (local, Slurm) call `run_trial` for one (app, trial) in a worker; `run` and
`demo` call it in-process.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from ..core.config import StudyApp, StudyConfig
from ..core.errors import ConfigError
from ..llm.client import make_backend
from ..llm.prompts import PromptSet
from ..power.base import open_meter
from ..store.archive import TrialArchive
from ..system.facts import environment, system_details
from ..sandbox.toolchain import check_platform, describe_runner, make_runner
from ..sandbox import work_counter
from .bench import Bench
from .trial import Progress, Trial, TrialOutcome


def trial_path(study: StudyConfig, app_name: str, index: int) -> Path:
    return study.out / "trials" / f"{app_name}.{study.platform.kind}.t{index:03d}.h5"


def with_llm(study: StudyConfig, llm: str | None) -> StudyConfig:
    """Apply a `--llm` override: `replay:PATH` or `openai[:MODEL]`."""
    if not llm:
        return study
    if llm.startswith("replay:"):
        path = llm.split(":", 1)[1]
        if not path:
            raise ConfigError("--llm replay:PATH needs a path to a transcript (.jsonl), a folder of them, or a trial .h5")
        return replace(study, llm=replace(study.llm, backend="replay", replay_path=str(Path(path).resolve())))
    if llm == "openai" or llm.startswith("openai:"):
        model = llm.split(":", 1)[1] if ":" in llm else ""
        cfg = replace(study.llm, backend="openai")
        if model:
            cfg = replace(cfg, generator_model=model, judge_model=model, context_model=model)
        return replace(study, llm=cfg)
    raise ConfigError(f"--llm '{llm}': use replay:PATH or openai[:MODEL]")


def _backend(study: StudyConfig, app_name: str, index: int) -> Any:
    cfg = study.llm
    if cfg.backend == "replay":
        path = Path(cfg.replay_path)
        if not path.is_absolute() and study.source is not None:
            path = study.source.parent / path
        if not path.exists():
            raise ConfigError(f"replay transcript not found: {path}")
        cfg = replace(cfg, replay_path=str(path))
    return make_backend(cfg, app=f"{app_name}.{study.platform.kind}", trial=index)


def _work_counter(study: StudyConfig) -> tuple[Path | None, str]:
    """The CUPTI work counter for CUDA runs on the host, and a line saying what was used."""
    if study.platform.kind != "cuda" or not study.measure.count_work:
        return None, "off"
    if study.container.runtime != "none":
        return None, "not available inside a container yet"
    lib, why = work_counter.build()
    return lib, ("cupti" if lib else why)


def run_trial(
    study: StudyConfig, sapp: StudyApp, index: int, progress: Callable[[dict[str, Any]], None] | None = None,
    system_text: str | None = None,
) -> tuple[Path, TrialOutcome]:
    """Run (or resume) one trial; returns its archive path and outcome. A finished trial is not rerun."""
    problems = check_platform(study.platform, study.container)
    if problems:
        raise ConfigError(problems)
    path = trial_path(study, sapp.app.name, index)
    backend = _backend(study, sapp.app.name, index)  # a bad LLM setting fails before anything is written
    path.parent.mkdir(parents=True, exist_ok=True)
    env = environment(study.platform, study.container)
    counter_lib, env["work_counter"] = _work_counter(study)
    runner = make_runner(study.container, study.platform.kind, hide=[study.out])
    env["sandbox"] = describe_runner(runner)
    config = {"study": study.to_dict(), "app": sapp.app.to_dict(), "args": sapp.args, "trial": index}
    archive = TrialArchive.open_or_create(
        path, trial_id=f"{study.name}/{sapp.app.name}/{study.platform.kind}/{index}", app=sapp.app.name,
        platform=study.platform.kind, config=config, environment=env,
    )
    with archive:
        _same_settings(path, archive.config(), config)
        if archive.status == "done":
            return path, _outcome_from(archive)
        meter = open_meter(study.platform.meter, study.platform)
        workroot = Path(tempfile.mkdtemp(prefix=f"lassi-{sapp.app.name}-t{index}-", dir=os.environ.get("LASSI_WORKDIR")))
        bench = Bench(sapp.app, study.platform, study.measure, sapp.args, meter, workroot,
                      runner=runner, counter_lib=counter_lib)
        prompts = PromptSet(platform=study.platform.kind)
        sysd = system_text if system_text is not None else system_details(study.platform.kind)
        trial = Trial(study, sapp.app, archive, backend, prompts, bench, sysd, Progress(progress))
        try:
            outcome = trial.run()
        except BaseException as e:  # keep what was written; record why it stopped
            if not isinstance(e, KeyboardInterrupt):
                archive.set_status("failed", f"{type(e).__name__}: {e}")
            raise
        finally:
            bench.cleanup()
            meter.close()
    return path, outcome


# Settings that may differ between a trial's first run and its resumption without changing its
# results: where files go and what the LLM backend is (a replay may finish a live trial).
_FREE = {("study", "out"), ("study", "source"), ("study", "llm"), ("study", "slurm"), ("study", "trials"),
         ("study", "k"), ("study", "apps")}


def _comparable(cfg: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(cfg, sort_keys=True, default=str))
    for sect, key in _FREE:
        out.get(sect, {}).pop(key, None)
    return out


def _first_difference(a: Any, b: Any, where: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{where}.{k}" if where else k)
    return f"{where}: {a!r} then, {b!r} now"


def _same_settings(path: Path, stored: dict[str, Any], new: dict[str, Any]) -> None:
    """Refuse to resume a trial under settings that change what it measures."""
    old, now = _comparable(stored), _comparable(new)
    if old != now:
        raise ConfigError(f"{path} was started with other settings ({_first_difference(old, now)}); "
                          "use another --out, or delete the file to start over")


def _outcome_from(archive: TrialArchive) -> TrialOutcome:
    r = archive.result()
    return TrialOutcome(
        status=archive.status, source_energy_j=r.get("source_energy_j"), best_energy_j=r.get("best_energy_j"),
        best_candidate=r.get("best_candidate"), vanilla_passed=bool(r.get("vanilla_passed")),
        candidates=len(archive.candidates()), stop_reason=r.get("stop_reason", ""),
    )

"""Set up and run trials of a study on this machine: archive, LLM backend, meter, bench.

The batch executors (local, Slurm) call `run_trial` for one (app, trial) in a worker; `run` and
`demo` call it in-process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import psutil

from ..core.config import StudyApp, StudyConfig
from ..core.errors import ArchiveError, ConfigError, DeviceBusy, GpuMismatch, TrialInterrupted
from ..llm.client import make_backend
from ..llm.replay import ReplayBackend
from ..llm.prompts import PromptSet
from ..power.base import open_meter
from ..store.archive import TrialArchive
from ..system.facts import environment, system_details
from ..system.tools import run_tool
from ..sandbox.toolchain import check_platform, describe_runner, make_runner
from ..sandbox import work_counter
from .bench import Bench
from .pinning import check_gpu, pin_trial
from .trial import Progress, Trial, TrialOutcome


GPU_METERS = ("nvml", "amdsmi")  # meters that read one GPU: its pinning is checked before a trial measures


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


def _sha256_file(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def prompts_digest(prompts: PromptSet, kind: str) -> dict[str, str]:
    """sha256 of every prompt template the trial uses and of the background document."""
    out = {k: _sha256_file(prompts.source(k)) for k in prompts.kinds()}
    out["background"] = hashlib.sha256(prompts.background(kind).encode()).hexdigest()
    return out


def _plain(obj: Any) -> Any:
    """A settings object as JSON-able data (pydantic model or dataclass)."""
    if hasattr(obj, "model_dump"):
        return json.loads(json.dumps(obj.model_dump(mode="json"), default=str))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return json.loads(json.dumps(dataclasses.asdict(obj), default=str))
    return json.loads(json.dumps(obj, default=str))


# LLM settings that change a trial's results; the backend, endpoint, key, timeouts and retries do not.
_LLM_RESULT_FIELDS = ("generator_model", "judge_model", "context_model", "reasoning_models", "max_tokens",
                      "temperature", "temperature_step", "temperature_max", "max_iterations",
                      "max_self_corrections", "max_nonimproving", "pass_policy")


def resume_settings(study: StudyConfig, sapp: StudyApp, prompts_sha: dict[str, str]) -> dict[str, Any]:
    """Everything that changes a trial's results, and nothing that does not: the out folder,
    trial count, k, Slurm and container paths and the checkout's location may change between
    a trial's first run and its resumption; the app's file contents, prompts, platform,
    measurement settings, differential probes, models, pass policy and schedule may not."""
    app = sapp.app
    build = app.build_for(study.platform.kind)
    folder = Path(getattr(build, "dir", None) or app.path)
    names = sorted({*build.files, *getattr(build, "extra_files", [])})
    build_settings = {k: v for k, v in _plain(build).items() if k != "dir"}  # a folder: may move
    return {
        "platform": _plain(study.platform),
        "measure": _plain(study.measure),
        "llm": {k: _plain(getattr(study.llm, k, None)) for k in _LLM_RESULT_FIELDS},
        "container": {"runtime": study.container.runtime},
        "app": {"name": app.name, "build": build_settings, "check": _plain(app.check), "args": list(sapp.args),
                "time_limit_s": app.time_limit_s, "memory_limit_mb": app.memory_limit_mb,
                "probe": _plain(app.probe)},
        "app_files_sha256": {n: _sha256_file(folder / n) for n in names},
        "prompts_sha256": prompts_sha,
    }


def _git_revision() -> str:
    """The source revision of this lassi-batch checkout ('' for an installed wheel)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return ""
    rc, out = run_tool(["git", "-C", str(root), "rev-parse", "HEAD"], timeout=5)
    return out.strip() if rc == 0 else ""


def attempt_info(env: dict[str, Any], prompts_sha: dict[str, str], replay_file: Path | None) -> dict[str, Any]:
    """What an attempt records about where and with what it ran (archive attempts/)."""
    gpus = [g for g in env.get("gpus") or [] if isinstance(g, dict)]
    mine = str((env.get("gpu_pinning") or {}).get("program_gpu", ""))  # the GPU the programs see
    gpu = next((g for g in gpus if mine and mine in (g.get("uuid"), g.get("pci_bus_id"))), gpus[0] if gpus else {})
    blob = json.dumps(prompts_sha, sort_keys=True).encode()
    return {
        "slurm_job_id": os.environ.get("SLURM_JOB_ID", ""),
        "slurm_array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID", ""),
        "slurm_restart_count": os.environ.get("SLURM_RESTART_COUNT", ""),
        "gpu_name": str(gpu.get("name", "")), "gpu_uuid": str(gpu.get("uuid", "")),
        "driver": str(gpu.get("driver", "")),
        "git_revision": _git_revision(),
        "prompts_sha256": hashlib.sha256(blob).hexdigest(),
        "replay_sha256": _sha256_file(replay_file) if replay_file is not None else "",
        "image_digest": str((env.get("container") or {}).get("digest", "")),
    }


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)


def end_child_process_groups() -> None:
    """SIGKILL every child of this process with its whole process group (a running candidate
    and whatever it forked), so a stop leaves a clean process table."""
    me, own_group = psutil.Process(), os.getpgrp()
    try:
        children = me.children(recursive=True)
    except psutil.Error:
        return
    for child in children:
        try:
            pgid = os.getpgid(child.pid)
            if pgid != own_group:
                os.killpg(pgid, signal.SIGKILL)
            else:
                child.kill()
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    psutil.wait_procs(children, timeout=5)


class StopOnSignals:
    """SIGTERM, SIGINT and SIGUSR2 stop the trial: the running program's process group is ended,
    then TrialInterrupted is raised in the trial program (deferred while the archive publishes a
    commit, so a stop lands on a step boundary). Only installable in the main thread."""

    def __init__(self, archive: TrialArchive):
        self.archive = archive
        self.reason = ""
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.reason:  # already stopping: the cleanup must not be cut short
            return
        self.reason = f"stopped by {signal.Signals(signum).name}"
        end_child_process_groups()
        exc = TrialInterrupted(self.reason)
        if self.archive.in_critical_section:
            self.archive.deferred = exc
        else:
            raise exc

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old.clear()


def run_trial(
    study: StudyConfig, sapp: StudyApp, index: int, progress: Callable[[dict[str, Any]], None] | None = None,
    system_text: str | None = None,
) -> tuple[Path, TrialOutcome]:
    """Run (or resume) one trial; returns its archive path and outcome. A finished trial is not rerun.

    A stop signal raises TrialInterrupted (exit EXIT_INTERRUPTED) after the archive recorded the
    status `interrupted` and the attempt's end; the trial resumes where it stopped."""
    problems = check_platform(study.platform, study.container)
    if problems:
        raise ConfigError(problems)
    path = trial_path(study, sapp.app.name, index)
    backend = _backend(study, sapp.app.name, index)  # a bad LLM setting fails before anything is written
    prompts = PromptSet(platform=study.platform.kind)
    prompts_sha = prompts_digest(prompts, study.platform.kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    env = environment(study.platform, study.container)
    counter_lib, env["work_counter"] = _work_counter(study)
    pin = pin_trial(study.platform)  # the GPU this trial's programs see (the worker's pin wins)
    env["gpu_pinning"] = pin.record()
    runner = make_runner(study.container, study.platform.kind, hide=[study.out], gpu_only=pin.nodes)
    env["sandbox"] = describe_runner(runner)
    resume = resume_settings(study, sapp, prompts_sha)
    config = {"study": study.to_dict(), "app": sapp.app.to_dict(), "args": sapp.args, "trial": index,
              "resume": resume}
    archive = TrialArchive.open_or_create(
        path, trial_id=f"{study.name}/{sapp.app.name}/{study.platform.kind}/{index}", app=sapp.app.name,
        platform=study.platform.kind, config=config, environment=env, study=study.name, trial_index=index,
    )
    with archive:
        _same_settings(path, archive.config().get("resume"), resume)
        if archive.status == "done":
            return path, _outcome_from(archive)
        if isinstance(backend, ReplayBackend):  # answer as the uninterrupted run would have
            backend.resume_from(archive.llm_calls())
        archive.begin_attempt(attempt_info(env, prompts_sha, getattr(backend, "path", None)
                                           if isinstance(backend, ReplayBackend) else None))
        archive.set_environment(env)  # where the rest of the trial runs
        sysd = system_text if system_text is not None else system_details(study.platform.kind)
        with StopOnSignals(archive) as stop:
            try:
                meter = open_meter(study.platform.meter, pin.platform)
                if meter.name in GPU_METERS:  # before anything is measured: the meter reads the program's GPU
                    try:
                        env["gpu_check"] = check_gpu(pin, runner, measured=meter.device_id).record()
                    except GpuMismatch as e:
                        meter.close()
                        env["gpu_check"] = {"ok": False, "reason": str(e)}
                        archive.set_environment(env)
                        raise
                    archive.set_environment(env)
                workroot = _scratch(sapp.app.name, index, path)
                bench = Bench(sapp.app, pin.platform, study.measure, sapp.args, meter, workroot,
                              runner=runner, counter_lib=counter_lib,
                              program_device_id=pin.gpu.key if pin.gpu else "")
                try:
                    trial = Trial(study, sapp.app, archive, backend, prompts, bench, sysd, Progress(progress))
                    outcome = trial.run()
                finally:
                    bench.cleanup()
                    meter.close()
                archive.end_attempt(outcome.status, outcome.stop_reason if outcome.status == "failed" else "")
            except TrialInterrupted as e:
                _record_stop(archive, "interrupted", stop.reason or str(e))
                raise
            except (ArchiveError, DeviceBusy, GpuMismatch) as e:  # the archive cannot be written (disk full,
                _record_stop(archive, "interrupted", str(e))  # lease lost), the device is not ours alone, or
                raise  # not the GPU the program runs on
            except BaseException as e:  # keep what was written; record why it stopped
                if isinstance(e, KeyboardInterrupt):
                    _record_stop(archive, "interrupted", "stopped by SIGINT")
                else:
                    _record_stop(archive, "failed", _one_line(e))
                raise
    return path, outcome


SCRATCH_OWNER = ".lassi-archive"  # in a trial's scratch folder: the archive it works for


def _scratch(app: str, index: int, archive_path: Path) -> Path:
    """A fresh scratch folder for the trial. Those left by earlier attempts of the same archive
    (a kill -9 skips the cleanup) are removed first: the archive's lease is held here, so no live
    attempt owns them."""
    base = Path(os.environ.get("LASSI_WORKDIR") or tempfile.gettempdir())
    for old in base.glob(f"lassi-{app}-t{index}-*"):
        try:
            owner = (old / SCRATCH_OWNER).read_text().strip()
        except OSError:
            continue
        if owner == str(archive_path.resolve()):
            shutil.rmtree(old, ignore_errors=True)
    d = Path(tempfile.mkdtemp(prefix=f"lassi-{app}-t{index}-", dir=base))
    (d / SCRATCH_OWNER).write_text(str(archive_path.resolve()))
    return d


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def _record_stop(archive: TrialArchive, status: str, reason: str) -> None:
    """Best effort: the status and the attempt's end (a full disk may refuse even these)."""
    try:
        archive.set_status(status, reason)
        archive.end_attempt(status, reason)
    except ArchiveError:
        pass


# Resume settings recorded only by later versions (dotted paths): an archive without one was
# started before it was recorded, and is resumed without comparing it.
_ADDED_LATER = ("app.probe",)


def _get(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def _without(d: dict[str, Any], dotted: str) -> dict[str, Any]:
    head, _, rest = dotted.partition(".")
    if not rest:
        return {k: v for k, v in d.items() if k != head}
    return {**d, head: _without(d[head], rest)}


def _same_settings(path: Path, stored: dict[str, Any] | None, new: dict[str, Any]) -> None:
    """Refuse to resume a trial under settings that change what it measures (first difference)."""
    now = json.loads(json.dumps(new, sort_keys=True, default=str))
    if stored is None:
        raise ConfigError(f"{path} records no resume settings; use another --out, or delete the file to start over")
    for key in _ADDED_LATER:  # trials started before a setting was recorded resume as they were
        if _get(stored, key) is None and _get(now, key) is not None:
            now = _without(now, key)
    if stored != now:
        raise ConfigError(f"{path} was started with other settings ({_first_difference(stored, now)}); "
                          "use another --out, or delete the file to start over")


def _first_difference(a: Any, b: Any, where: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{where}.{k}" if where else k)
    return f"{where}: {a!r} then, {b!r} now"


def _outcome_from(archive: TrialArchive) -> TrialOutcome:
    r = archive.result()
    return TrialOutcome(
        status=archive.status, source_energy_j=r.get("source_energy_j"), best_energy_j=r.get("best_energy_j"),
        best_candidate=r.get("best_candidate"), vanilla_passed=bool(r.get("vanilla_passed")),
        candidates=len(archive.candidates()), stop_reason=r.get("stop_reason", ""),
    )

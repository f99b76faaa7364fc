"""Submitting a study: checks, the plan (which trials to start), the Slurm and local executors.

Submitting is idempotent. Each trial is looked at before anything is started: done trials are
skipped, unfinished ones (pending, interrupted) are started again and resume from their
journal, failed ones only with `retry_failed`, and a trial whose last job is still queued or
running (or whose archive is being written here) is never started twice. Every check that can
refuse the submission runs before the study folder is written.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..core.config import StudyConfig, retarget
from ..core.errors import ConfigError, LassiError
from ..core.paths import check_workdir
from ..core.resources import data_path
from ..sandbox.apptainer import apptainer_exec_argv, image_problem
from ..sandbox.toolchain import EXE_NAME, build_argv
from ..system.facts import DIGEST_ENV, digest_hint
from . import attempts, slurm
from .manifest import (STUDY_COPY, Manifest, Settings, StudyFolder, Submission, TrialRef, check_folder,
                       file_sha256, now_iso, read_manifest, study_data, trial_list, write_json_atomic,
                       write_manifest)
from .state import explained_reason, read_state
from .worker import GroupRunner, NodeWorker, TrialResult

EXECUTORS = ("auto", "slurm", "local")


@dataclass
class Request:
    """What the user asked for (the study file plus command-line choices)."""

    study_file: Path
    executor: str = "auto"
    overrides: dict[str, Any] = field(default_factory=dict)  # merged into the study's TOML data
    apps: list[str] | None = None
    array_parallelism: int | None = None
    trials_per_node: int | None = None
    retry_failed: bool = False
    fresh: bool = False
    dry_run: bool = False


@dataclass
class PlanItem:
    trial: TrialRef
    action: str  # start | resume | retry | skip
    why: str = ""


@dataclass
class Prepared:
    request: Request
    study: StudyConfig
    settings: Settings
    folder: StudyFolder
    sha: str
    manifest: Manifest | None
    executor: str
    trials: list[TrialRef]
    plan: list[PlanItem] = field(default_factory=list)
    spec: slurm.JobSpec | None = None
    max_array: int = 0
    scripts: list[str] = field(default_factory=list)
    image_hint: dict[str, list] = field(default_factory=dict)

    @property
    def to_run(self) -> list[TrialRef]:
        return [p.trial for p in self.plan if p.action != "skip"]


def resolve_executor(name: str) -> str:
    if name not in EXECUTORS:
        raise ConfigError(f"--executor '{name}': use one of {', '.join(EXECUTORS)}")
    if name == "auto":
        return "slurm" if slurm.have_slurm() else "local"
    return name


def shipped_study(path: Path) -> bool:
    """Whether `path` is one of the study files shipped with the package (its data folder)."""
    try:
        shipped = data_path("datasets").resolve()
    except LassiError:
        return False
    return path.resolve().is_relative_to(shipped)


def defaults_for(data: dict[str, Any], study: StudyConfig, path: Path, cwd: Path) -> dict[str, Any]:
    """Settings a study gets from where and how it runs, as overrides (the file wins where it says):

    - a CPU study asks Slurm for no GPU unless its [slurm] table names a gres;
    - a shipped study's relative `out` is a folder of the working directory, not of the
      installed package (which may be read-only, and is no place for results).
    """
    over: dict[str, Any] = {}
    slurm_table = data.get("slurm") if isinstance(data.get("slurm"), dict) else {}
    if study.platform.kind == "cpu" and "gres" not in slurm_table:
        over["slurm"] = {"gres": ""}
    out = shipped_out(data, path, cwd)
    if out:
        over["study"] = {"out": out}
    return over


def shipped_out(data: dict[str, Any], path: Path, cwd: Path) -> str | None:
    """A shipped study's relative [study].out made a folder of `cwd`; None for any other study."""
    study_table = data.get("study") if isinstance(data.get("study"), dict) else {}
    out = study_table.get("out")
    if isinstance(out, str) and not Path(out).expanduser().is_absolute() and shipped_study(path):
        return str((cwd / out).resolve())
    return None


def load(req: Request) -> tuple[StudyConfig, Settings, str]:
    path = req.study_file.expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"{req.study_file}: file not found")
    data = retarget(study_data(path), req.overrides)
    settings = Settings(data=data, base=str(path.parent), source=str(path), apps=req.apps)
    study = settings.study()
    extra = defaults_for(data, study, path, Path.cwd())
    if extra:
        settings.data = retarget(settings.data, extra)
        study = settings.study()
    # Freeze the output folder as an absolute path: workers run elsewhere (another cwd, node).
    settings.data = retarget(settings.data, {"study": {"out": str(study.out.resolve())}})
    return study, settings, file_sha256(path)


def plan(folder: StudyFolder, trials: list[TrialRef], manifest: Manifest | None, executor: str,
         retry_failed: bool, fresh: bool, accounting: bool = True) -> list[PlanItem]:
    """What to do with each trial; see the module docstring for the rules."""
    last = manifest.last_job() if manifest else {}
    active_jobs: dict[str, str] = {}
    if executor == "slurm" or any(j != "local" for j in last.values()):
        wanted = [last[t.key] for t in trials if t.key in last and last[t.key] != "local"]
        if wanted and slurm.have_slurm():
            active_jobs = {j: s for j, s in slurm.job_states(wanted, accounting).items() if slurm.is_active(s)}
    out: list[PlanItem] = []
    for t in trials:
        job = last.get(t.key, "")
        path = folder.archive(t)
        here = attempts.read(folder.attempts(t)).running_here()
        if not fresh and not here and read_state(path).status == "done":
            out.append(PlanItem(t, "skip", "already done"))
            continue
        if job in active_jobs:
            out.append(PlanItem(t, "skip", f"job {job} is {active_jobs[job].lower()}"))
            continue
        if here:
            out.append(PlanItem(t, "skip", "running here now"))
            continue
        st = read_state(path)
        if fresh:
            out.append(PlanItem(t, "start", "started again (--fresh)" if st.status != "pending" else ""))
        elif st.status == "done":
            out.append(PlanItem(t, "skip", "already done"))
        elif st.status == "failed":
            if retry_failed:
                out.append(PlanItem(t, "retry", f"failed before: {st.reason}"))
            else:
                out.append(PlanItem(t, "skip", f"failed ({st.reason}); --retry-failed runs it again"))
        elif st.status == "pending":
            out.append(PlanItem(t, "start"))
        else:
            out.append(PlanItem(t, "resume", st.status))
    return out


def prepare(req: Request) -> Prepared:
    """Every check that can refuse the submission; nothing is written."""
    study, settings, sha = load(req)
    executor = resolve_executor(req.executor)
    folder = StudyFolder(study.out.resolve())
    manifest = check_folder(folder, sha, req.study_file)
    trials = trial_list(study)
    prep = Prepared(req, study, settings, folder, sha, manifest, executor, trials)
    cfg = study.slurm
    if req.trials_per_node:
        cfg = replace(cfg, trials_per_node=req.trials_per_node)
    if req.array_parallelism:
        cfg = replace(cfg, array_parallelism=req.array_parallelism)
    prep.study = replace(study, slurm=cfg)
    cont = study.container
    if cont.runtime == "apptainer":
        why = image_problem(cont.image)
        if why:
            raise ConfigError(f"[container].image: {why} (build it with containers/Apptainer.def)")
        if not req.dry_run and not shutil.which("apptainer") and not (executor == "slurm" and study.slurm.setup):
            # under Slurm, [slurm].setup may make it available on the nodes (module load apptainer)
            raise ConfigError("[container].runtime = \"apptainer\": 'apptainer' not found on PATH "
                              "(install it, or add [slurm].setup = [\"module load apptainer\"] for the nodes)")
        if not req.dry_run:
            prep.image_hint = digest_hint(cont.image)  # hashed once here, not by every trial
    if executor == "local":
        check_workdir()  # under Slurm it names a folder of the nodes; the trial program checks it there
    accounting = True
    if executor == "slurm":
        if not slurm.have_slurm() and not req.dry_run:
            raise ConfigError("sbatch/srun not found: not a Slurm node (use --executor local to run here)")
        if slurm.have_slurm():
            conf = slurm.cluster_config()
            accounting = slurm.accounting_enabled(conf)
            prep.max_array = slurm.max_array_size(conf)
            slurm.check_partition(cfg.partition)
            slurm.check_resources(cfg)
        else:
            prep.max_array = 1001
        prep.spec = slurm.JobSpec.of(cfg, f"lassi-{study.name}", cfg.trials_per_node, cfg.array_parallelism)
    if req.fresh and manifest is not None and not req.dry_run:
        busy = plan(folder, trials, manifest, executor, False, False, accounting)
        running = [p for p in busy if p.action == "skip" and ("job " in p.why or "running" in p.why)]
        if running:
            raise ConfigError(f"--fresh: {len(running)} trial(s) are still queued or running "
                              f"(e.g. {running[0].trial.key}: {running[0].why}); cancel them first")
    prep.plan = plan(folder, trials, manifest, executor, req.retry_failed, req.fresh, accounting)
    if executor == "slurm" and prep.spec is not None:
        groups = slurm.split(prep.to_run, cfg.trials_per_node)
        for chunk in slurm.split(groups, prep.max_array):
            prep.scripts.append(slurm.sbatch_script(prep.spec, folder.slurm_dir / "%j", len(chunk)))
        if prep.scripts and slurm.have_slurm():
            for s in {s for s in prep.scripts}:
                slurm.test_only(s, slurm.asked(cfg))
    return prep


def at_once(prep: Prepared) -> str:
    """How many array tasks may run at once, as the sbatch scripts say it (%N): submitit caps
    array_parallelism at the array's size, and arrays hold at most MaxArraySize tasks."""
    cfg = prep.study.slurm
    sizes = [len(c) for c in slurm.split(slurm.split(prep.to_run, cfg.trials_per_node), prep.max_array or 1)]
    n = min(cfg.array_parallelism, max(sizes, default=1))
    text = f"at most {n} task(s) of each array at once"
    if n < cfg.array_parallelism:
        text += f" (array_parallelism {cfg.array_parallelism}; arrays here hold at most {max(sizes, default=1)} tasks)"
    return text


def container_lines(study: StudyConfig, trial: TrialRef) -> list[str]:
    """The `apptainer exec` lines a trial runs for a build and a measured run (for --dry-run)."""
    cont = study.container
    if cont.runtime != "apptainer":
        return []
    sapp = next(a for a in study.apps if a.app.name == trial.app)
    wd = Path("/tmp") / f"lassi-{trial.app}-t{trial.index}-XXXX" / "s0"
    env = {"OMP_NUM_THREADS": "<cpus>", "TMPDIR": str(wd / ".tmp")}
    if study.platform.kind in ("cuda", "hip"):
        env["CUDA_VISIBLE_DEVICES" if study.platform.kind == "cuda" else "ROCR_VISIBLE_DEVICES"] = "<GPU UUID>"
    b = apptainer_exec_argv(cont.image, study.platform.kind, wd, build_argv(sapp.app, study.platform), env, cont.binds)
    r = apptainer_exec_argv(cont.image, study.platform.kind, wd, [f"./{EXE_NAME}", *sapp.args], env, cont.binds)
    return [shlex.join(b), shlex.join(r)]


def _remove_archive(folder: StudyFolder, t: TrialRef) -> None:
    p = folder.archive(t)
    for q in [p, *p.parent.glob(p.name + ".*")]:
        q.unlink(missing_ok=True)
    for q in (folder.stdout(t), folder.stderr(t), folder.attempts(t)):
        q.unlink(missing_ok=True)


def commit(prep: Prepared) -> tuple[Submission, Path]:
    """Write the study folder: study copy, settings of this submission, manifest."""
    folder = prep.folder
    try:
        folder.root.mkdir(parents=True, exist_ok=True)
        probe = folder.root / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write the study folder {folder.root}: {e.strerror}") from None
    with folder.lock():
        m = read_manifest(folder) or Manifest(
            study_name=prep.study.name, study_file=str(prep.request.study_file.resolve()), study_sha256=prep.sha,
            base=prep.settings.base)
        if m.study_sha256 != prep.sha:  # another submit got in between
            raise ConfigError(f"{folder.root} was just claimed by another study")
        copy = folder.root / STUDY_COPY
        if not copy.exists():
            shutil.copyfile(prep.request.study_file, copy)
        known = {t.key for t in m.trials}
        m.trials += [t for t in prep.trials if t.key not in known]
        number = len(m.submissions) + 1
        settings_path = folder.submission(number)
        write_json_atomic(settings_path, prep.settings.to_json())
        sub = Submission(number=number, at=now_iso(), executor=prep.executor,
                         settings=str(settings_path.relative_to(folder.root)))
        m.submissions.append(sub)
        if prep.request.fresh:
            for t in prep.to_run:
                _remove_archive(folder, t)
        write_manifest(folder, m)
    return sub, settings_path


def record_jobs(folder: StudyFolder, number: int, jobs: dict[str, str], arrays: list[str]) -> None:
    with folder.lock():
        m = read_manifest(folder)
        assert m is not None
        sub = next(s for s in m.submissions if s.number == number)
        sub.jobs.update(jobs)
        sub.arrays += [a for a in arrays if a not in sub.arrays]
        write_manifest(folder, m)


def submit_slurm(prep: Prepared, sub: Submission, settings_path: Path) -> list[str]:
    """One submitit array per chunk of at most MaxArraySize node groups; returns the array ids."""
    assert prep.spec is not None
    cfg = prep.study.slurm
    groups = slurm.split(prep.to_run, cfg.trials_per_node)
    arrays: list[str] = []
    env_hint = {DIGEST_ENV: json.dumps(prep.image_hint)} if prep.image_hint else {}
    spec = prep.spec
    if env_hint:
        spec = slurm.JobSpec({**spec.params, "setup": [*spec.params.get("setup", []),
                                                        f"export {DIGEST_ENV}={shlex.quote(env_hint[DIGEST_ENV])}"]})
    for chunk in slurm.split(groups, prep.max_array):
        workers = [NodeWorker(str(prep.folder.root), str(settings_path), g, cfg.trials_per_node, prep.study.platform.kind,
                              cfg.max_attempts, cfg.max_restarts) for g in chunk]
        ids = slurm.submit_array(prep.folder.slurm_dir / "%j", spec, workers, max_num_timeout=cfg.max_restarts)
        jobs = {t.key: jid for jid, g in zip(ids, chunk) for t in g}
        base = ids[0].split("_", 1)[0]
        arrays.append(base)
        record_jobs(prep.folder, sub.number, jobs, [base])
    return arrays


def run_local(prep: Prepared, settings_path: Path, parallel: int,
              on_event: Callable[[str, TrialRef, dict[str, Any]], None] | None = None) -> list[TrialResult]:
    """Run the planned trials here, `parallel` at a time, under the same per-device lock."""
    record_jobs(prep.folder, int(settings_path.stem), {t.key: "local" for t in prep.to_run}, [])
    if prep.image_hint:
        os.environ[DIGEST_ENV] = json.dumps(prep.image_hint)
    runner = GroupRunner(prep.folder.root, settings_path, prep.to_run, parallel, prep.study.platform.kind,
                         prep.study.slurm.max_attempts, on_event=on_event)
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}

    def stop(signum: int, frame: Any) -> None:
        runner.stop(signal.SIGTERM)

    for s in previous:
        signal.signal(s, stop)
    try:
        return runner.run()
    except KeyboardInterrupt:
        runner.stop(signal.SIGINT)
        runner.wait_stopped()
        raise
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def failed_reasons(folder: StudyFolder, results: list[TrialResult]) -> list[tuple[TrialRef, str]]:
    out = []
    for r in results:
        if r.outcome in ("failed", "crashed", "gave up", "config error"):
            reason = explained_reason(folder.archive(r.trial), r.reason or read_state(folder.archive(r.trial)).reason)
            if not reason or reason == "no reason recorded":
                tail = attempts.tail(folder.stderr(r.trial), 1)
                reason = tail[0] if tail else f"exit {r.exit}"
            out.append((r.trial, reason))
    return out

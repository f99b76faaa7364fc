"""Run a group of trials on one node: N trial programs at once, each pinned to a GPU.

Trials spend most of their time waiting for the LLM and compiling; running several on one
node overlaps those waits while the per-GPU measurement lock (system.devlock) keeps measured
runs one at a time. Each trial is its own process (`batch.trialproc`), pinned through
CUDA_VISIBLE_DEVICES / ROCR_VISIBLE_DEVICES to one GPU; worker slots are spread over the GPUs.

`NodeWorker` is the submitit callable of one Slurm array task. It is Checkpointable: on USR2
(time limit near, or preemption) submitit calls `checkpoint`, which lets every trial stop at a
step boundary and hands back a copy of itself to requeue; the requeued job resumes the trials
on whatever node it gets. Requeues are bounded by [slurm].max_restarts and crashes of one trial
by [slurm].max_attempts: a trial that keeps failing ends `failed` with its reason.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit

from ..store.summary import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from ..system.devlock import DEVICE_ENV
from ..system.gpus import discover, visible_devices
from . import attempts
from .manifest import StudyFolder, TrialRef
from .state import explained_reason, mark, read_state
from .trialproc import ALREADY_DONE, EXIT_BUSY, PARENT_ENV

VISIBLE_ENV = {"cuda": "CUDA_VISIBLE_DEVICES", "hip": "ROCR_VISIBLE_DEVICES"}
STOP_WAIT_S = 60.0  # how long a stop waits for trials to reach a step boundary (submitit signals 90 s early)

# What one trial program's exit means for the batch.
OUTCOMES = {EXIT_OK: "done", EXIT_FAILED: "failed", EXIT_USAGE: "config error", EXIT_INTERRUPTED: "interrupted",
            EXIT_BUSY: "busy"}


def node_gpus(platform_kind: str) -> list[str]:
    """UUIDs of the GPUs this job may use, in PCI order, after the scheduler's *_VISIBLE_DEVICES."""
    if platform_kind not in VISIBLE_ENV:
        return []
    found, _ = discover(platform_kind)
    visible, _ = visible_devices(os.environ.get(VISIBLE_ENV[platform_kind]), [d for d in found if d.uuid])
    return [d.uuid for d in visible]


def omp_threads(env: dict[str, str]) -> str:
    """OpenMP threads for a trial under Slurm: the job's CPUs per task, unless OMP_NUM_THREADS is
    set already (by the user or a [slurm].setup line). Without it OpenMP starts a thread per CPU
    of the node, whatever the allocation ('' outside Slurm: nothing to set)."""
    if env.get("OMP_NUM_THREADS") or not env.get("SLURM_JOB_ID"):
        return ""
    cpus = env.get("SLURM_CPUS_PER_TASK", "")
    return cpus if cpus.isdigit() and int(cpus) > 0 else ""


def job_id() -> str:
    """This Slurm job's id as sacct spells it (array tasks as ARRAY_TASK), '' outside Slurm."""
    arr, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if arr and task:
        return f"{arr}_{task}"
    return os.environ.get("SLURM_JOB_ID", "")


@dataclass
class TrialResult:
    trial: TrialRef
    outcome: str  # done | already done | failed | interrupted | config error | busy | crashed | gave up
    exit: int | None
    reason: str = ""
    seconds: float = 0.0


Event = Callable[[str, TrialRef, dict[str, Any]], None]


@dataclass
class GroupRunner:
    """Runs trials with `parallel` trial programs at once; `stop()` interrupts them all."""

    root: Path
    settings: Path
    trials: list[TrialRef]
    parallel: int
    platform_kind: str
    max_attempts: int = 3
    on_event: Event | None = None
    gpus: list[str] | None = None  # None: discover
    _procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _emit(self, kind: str, t: TrialRef, **info: Any) -> None:
        if self.on_event is not None:
            self.on_event(kind, t, info)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Ask every running trial to stop at its next step boundary; start no new ones."""
        self._stopping.set()
        with self._lock:
            procs = list(self._procs.values())
        for p in procs:
            if p.poll() is None:
                try:
                    p.send_signal(sig)
                except ProcessLookupError:
                    pass

    def wait_stopped(self, timeout: float = STOP_WAIT_S) -> bool:
        """After stop(): wait for the trial programs to exit; kill what is left at the end."""
        end = time.monotonic() + timeout
        with self._lock:
            procs = list(self._procs.values())
        for p in procs:
            try:
                p.wait(timeout=max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
        for th in self._threads:  # let each slot write its attempt's end record
            th.join(max(0.1, min(5.0, end - time.monotonic())))
        return all(p.poll() is not None for p in procs)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self) -> list[TrialResult]:
        gpus = self.gpus if self.gpus is not None else node_gpus(self.platform_kind)
        queue = list(self.trials)
        results: list[TrialResult] = []
        qlock = threading.Lock()

        def slot(n: int) -> None:
            gpu = gpus[n % len(gpus)] if gpus else ""
            while not self._stopping.is_set():
                with qlock:
                    if not queue:
                        return
                    t = queue.pop(0)
                r = self._run_one(t, gpu)
                with qlock:
                    results.append(r)

        threads = [threading.Thread(target=slot, args=(n,), daemon=True)
                   for n in range(max(1, min(self.parallel, len(queue))))]
        self._threads = threads
        for th in threads:
            th.start()
        for th in threads:
            while th.is_alive():
                th.join(0.2)  # short joins keep the main thread responsive to signals
        return results

    def _run_one(self, t: TrialRef, gpu: str) -> TrialResult:
        folder = StudyFolder(self.root)
        log = folder.attempts(t)
        info = attempts.read(log)
        path = folder.archive(t)
        if info.crashes >= self.max_attempts:
            why = (f"gave up after {info.crashes} crashed attempts ([slurm].max_attempts = {self.max_attempts}); "
                   f"last exit {info.last_exit}")
            if read_state(path).status not in ("done", "failed"):
                mark(path, "failed", why)
                attempts.append(log, event="gave_up", reason=why)
            self._emit("end", t, outcome="gave up", reason=why)
            return TrialResult(t, "gave up", None, why)
        env = dict(os.environ)
        env[PARENT_ENV] = str(os.getpid())
        threads = omp_threads(env)
        if threads:
            env["OMP_NUM_THREADS"] = threads
        if gpu and self.platform_kind in VISIBLE_ENV:
            env[VISIBLE_ENV[self.platform_kind]] = gpu
            env[DEVICE_ENV] = gpu
        job = job_id()
        attempts.append(log, event="start", job=job, gpu=gpu, restart=int(os.environ.get("SLURM_RESTART_COUNT", "0")))
        self._emit("start", t, gpu=gpu, job=job)
        out_p, err_p = folder.stdout(t), folder.stderr(t)
        out_p.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        argv = [sys.executable, "-m", "lassi_batch.batch.trialproc", str(self.settings), t.app, str(t.index)]
        with open(out_p, "ab") as out, open(err_p, "ab") as err:
            stamp = f"--- attempt {info.starts + 1} on {os.uname().nodename} job {job or '-'} gpu {gpu or '-'}\n"
            out.write(stamp.encode())
            err.write(stamp.encode())
            out.flush()
            err.flush()
            with self._lock:
                if self._stopping.is_set():
                    attempts.append(log, event="end", exit=EXIT_INTERRUPTED, outcome="not started")
                    return TrialResult(t, "interrupted", EXIT_INTERRUPTED, "stopped before it started")
                proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
                self._procs[t.key] = proc
            rc = proc.wait()
        with self._lock:
            self._procs.pop(t.key, None)
        outcome = OUTCOMES.get(rc, "crashed")
        if rc == EXIT_OK and attempts.tail(out_p, 1) and attempts.tail(out_p, 1)[0].startswith(ALREADY_DONE):
            outcome = "already done"
        reason = ""
        if outcome == "failed":
            reason = explained_reason(path)
        elif outcome == "interrupted":
            reason = read_state(path).reason
            last = attempts.tail(err_p, 1)
            if (not reason or read_state(path).status == "running") and last and last[0].startswith("error: "):
                reason = last[0].removeprefix("error: ")  # the archive could not record it (disk full)
        elif outcome in ("crashed", "config error", "busy"):
            last = attempts.tail(err_p, 1)
            sig = f"killed by {signal.Signals(-rc).name}" if rc < 0 and -rc in signal.Signals._value2member_map_ else f"exit {rc}"
            reason = f"{sig}: {last[0]}" if last else sig
        attempts.append(log, event="end", exit=rc, outcome=outcome, crash=outcome == "crashed", reason=reason)
        r = TrialResult(t, outcome, rc, reason, time.monotonic() - t0)
        self._emit("end", t, outcome=outcome, reason=reason, exit=rc)
        return r


@dataclass
class NodeWorker(submitit.helpers.Checkpointable):
    """One Slurm array task: a group of trials run `parallel` at a time on the node it lands on."""

    root: str
    settings: str
    trials: list[TrialRef]
    parallel: int
    platform_kind: str
    max_attempts: int = 3
    max_restarts: int = 3

    def __post_init__(self) -> None:
        self._runner: GroupRunner | None = None

    def __call__(self) -> dict[str, str]:
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
        runner = GroupRunner(Path(self.root), Path(self.settings), list(self.trials), self.parallel,
                             self.platform_kind, self.max_attempts)
        self._runner = runner
        self._chain_sigterm(runner)
        results = runner.run()
        out = {r.trial.key: r.outcome for r in results}
        interrupted = [r for r in results if r.outcome == "interrupted"]
        if interrupted and not runner.stopping and job_id():
            # A trial stopped by a signal that reached it alone: requeue this task to resume it.
            if restarts < self.max_restarts:
                subprocess.run(["scontrol", "requeue", job_id()], check=False, timeout=60)
            else:
                self._give_up(restarts)
        return out

    def _chain_sigterm(self, runner: GroupRunner) -> None:
        """SIGTERM (scancel, scontrol requeue, node shutdown) reaches the trial programs directly;
        note it so that the worker does not requeue a job that Slurm is already ending."""
        prev = signal.getsignal(signal.SIGTERM)

        def on_term(signum: int, frame: Any) -> None:
            runner._stopping.set()
            if callable(prev):
                prev(signum, frame)

        try:
            signal.signal(signal.SIGTERM, on_term)
        except ValueError:  # not the main thread (debug executors): nothing to chain
            pass

    def _give_up(self, restarts: int) -> None:
        folder = StudyFolder(Path(self.root))
        why = f"stopped by the scheduler {restarts + 1} times ([slurm].max_restarts = {self.max_restarts}); not requeued"
        for t in self.trials:
            p = folder.archive(t)
            if read_state(p).status in ("running", "interrupted"):
                mark(p, "failed", why)
                attempts.append(folder.attempts(t), event="gave_up", reason=why)

    def checkpoint(self) -> submitit.helpers.DelayedSubmission | None:
        """Called by submitit on USR2: stop every trial at a step boundary, then requeue."""
        runner = self._runner
        if runner is not None:
            runner.stop(signal.SIGUSR2)
            runner.wait_stopped()
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
        if restarts >= self.max_restarts:
            self._give_up(restarts)
            return None
        folder = StudyFolder(Path(self.root))
        left = [t for t in self.trials if read_state(folder.archive(t)).status not in ("done", "failed")]
        if not left:
            return None
        return submitit.helpers.DelayedSubmission(
            NodeWorker(self.root, self.settings, left, self.parallel, self.platform_kind,
                       self.max_attempts, self.max_restarts))

"""Slurm: what the cluster allows, the sbatch settings of a study, submission through submitit,
and the scheduler's view of a study's jobs.

Everything a user can get wrong is checked before the study folder is touched: the partition
must exist, and the exact script submitit will submit is first given to `sbatch --test-only`,
so an account, QOS, GRES, memory or time the cluster refuses ends in one line, not half a study.
Job states come from `sacct`; where accounting is absent (no slurmdbd), from `squeue` for queued
and running jobs and `scontrol show job` for recently finished ones.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit
from submitit.slurm.slurm import _make_sbatch_string  # the same text submitit submits (for --dry-run)

from ..core.config import SlurmConfig
from ..core.errors import ConfigError, LassiError

# Job states (sacct/squeue spelling) during which a job may still run its trials.
ACTIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED",
                 "CONFIGURING", "COMPLETING", "STAGE_OUT", "SIGNALING", "STOPPED", "RESV_DEL_HOLD"}
TIMEOUT_S = 60


class SchedulerError(LassiError):
    """A Slurm command failed after the checks passed (controller down, submission refused late)."""


def have_slurm() -> bool:
    return shutil.which("sbatch") is not None and shutil.which("srun") is not None


def _run(argv: list[str], timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise ConfigError(f"{argv[0]} not found: is this a Slurm login node? (use --executor local to run here)") from None
    except subprocess.TimeoutExpired:
        raise SchedulerError(f"{' '.join(argv[:3])} did not answer within {timeout:.0f} s (is slurmctld up?)") from None


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return "; ".join(lines[:2]) if lines else "no message"


def cluster_config() -> dict[str, str]:
    """`scontrol show config` as a dict."""
    r = _run(["scontrol", "show", "config"])
    if r.returncode != 0:
        raise SchedulerError(f"scontrol show config failed: {_first_line(r.stderr or r.stdout)}")
    out: dict[str, str] = {}
    for line in r.stdout.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out[k.strip()] = v.strip()
    return out


def max_array_size(config: dict[str, str]) -> int:
    """The largest array the cluster accepts (task indexes run 0..MaxArraySize-1)."""
    try:
        return max(1, int(config.get("MaxArraySize", "1001")))
    except ValueError:
        return 1001


def accounting_enabled(config: dict[str, str]) -> bool:
    return config.get("AccountingStorageType", "accounting_storage/none") not in ("", "accounting_storage/none")


def partitions() -> list[str]:
    r = _run(["sinfo", "-h", "-o", "%P"])
    return sorted({p.strip().rstrip("*") for p in r.stdout.split()}) if r.returncode == 0 else []


def check_partition(name: str) -> None:
    if not name:
        return
    r = _run(["scontrol", "show", "partition", name])
    if r.returncode != 0 or "PartitionName=" not in r.stdout:
        have = partitions()
        raise ConfigError(f"partition '{name}' does not exist on this cluster (partitions: {', '.join(have) or 'none'})")


@dataclass(frozen=True)
class Node:
    """What one node of a partition offers (sinfo): the limits a job's request must fit."""

    name: str
    cpus: int
    mem_mb: int
    gres: str  # "(null)" or e.g. "gpu:a100:4(S:0-1)"
    max_time: str  # the partition's time limit ("infinite", "1-00:00:00")

    def gres_names(self) -> set[str]:
        return {g.split(":", 1)[0] for g in re.split(r",(?![^(]*\))", self.gres) if g and g != "(null)"}


def nodes_of(partition: str) -> list[Node]:
    """The nodes of `partition` ('' = the default partition); [] when sinfo cannot tell."""
    argv = ["sinfo", "-h", "-N", "-o", "%N|%c|%m|%G|%l|%P"]
    if partition:
        argv += ["-p", partition]
    r = _run(argv)
    if r.returncode != 0:
        return []
    out = []
    for line in r.stdout.splitlines():
        f = line.strip().split("|")
        if len(f) != 6 or (not partition and not f[5].endswith("*")):
            continue
        try:
            out.append(Node(f[0], int(f[1].rstrip("+")), int(f[2].rstrip("+")), f[3], f[4]))
        except ValueError:
            continue
    return out


def check_resources(cfg: SlurmConfig) -> None:
    """Refuse a request no node of the partition can meet, naming the value and the node's limit.

    sbatch's own messages ("Requested node configuration is not available") name neither.
    """
    nodes = nodes_of(cfg.partition)
    if not nodes:
        return
    where = f"partition '{cfg.partition}'" if cfg.partition else "the default partition"
    cpus, mem = max(n.cpus for n in nodes), max(n.mem_mb for n in nodes)
    if cfg.cpus_per_task > cpus:
        raise ConfigError(f"[slurm].cpus_per_task = {cfg.cpus_per_task}: the largest node of {where} has {cpus} CPUs "
                          f"(set --cpus-per-task or [slurm].cpus_per_task)")
    if cfg.mem_gb and cfg.mem_gb * 1024 > mem:
        raise ConfigError(f"[slurm].mem_gb = {cfg.mem_gb}: the largest node of {where} has {mem} MB "
                          f"({mem / 1024:.1f} GB) of memory (set --mem-gb or [slurm].mem_gb; 0 = the partition's default)")
    if cfg.gres:
        wanted = {g.split(":", 1)[0] for g in cfg.gres.split(",") if g}
        have = set().union(*(n.gres_names() for n in nodes))
        if not wanted <= have:
            shown = ", ".join(sorted({n.gres for n in nodes}))
            raise ConfigError(f"[slurm].gres = '{cfg.gres}': no node of {where} has '{', '.join(sorted(wanted - have))}' "
                              f"(node gres: {shown}); a CPU study needs none (--gres '')")
    limit = nodes[0].max_time
    if cfg.time and limit not in ("infinite", "n/a", ""):
        try:
            over = time_minutes(cfg.time) > time_minutes(limit)
        except ValueError:
            over = False
        if over:
            raise ConfigError(f"[slurm].time = {cfg.time}: {where} allows at most {limit} (set --time or [slurm].time)")


def asked(cfg: SlurmConfig) -> str:
    """The request in a few words, for an error message."""
    parts = [f"cpus_per_task {cfg.cpus_per_task}", f"mem_gb {cfg.mem_gb or 'default'}",
             f"gres {cfg.gres or 'none'}", f"time {cfg.time}"]
    if cfg.partition:
        parts.insert(0, f"partition {cfg.partition}")
    for k in ("account", "qos"):
        if getattr(cfg, k):
            parts.append(f"{k} {getattr(cfg, k)}")
    return ", ".join(parts)


# ------------------------------------------------------------------ sbatch settings


def time_minutes(spec: str) -> int:
    """Slurm time (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS) in whole minutes, at least 1."""
    days = 0
    rest = spec.strip()
    if "-" in rest:
        d, rest = rest.split("-", 1)
        days = int(d)
        parts = [int(x) for x in rest.split(":")]
        h, m, s = (parts + [0, 0])[:3]
    else:
        parts = [int(x) for x in rest.split(":")]
        if len(parts) == 1:
            h, m, s = 0, parts[0], 0
        elif len(parts) == 2:
            h, m, s = 0, parts[0], parts[1]
        else:
            h, m, s = parts[:3]
    total = days * 1440 + h * 60 + m + (1 if s else 0)
    return max(1, total)


def extra_parameters(lines: Iterable[str]) -> dict[str, Any]:
    """`["--constraint=a100", "--reservation big", "--requeue"]` as submitit's additional_parameters."""
    out: dict[str, Any] = {}
    for raw in lines:
        words = shlex.split(raw.strip().removeprefix("#SBATCH").strip())
        if not words or not words[0].startswith("--"):
            raise ConfigError(f"[slurm].extra: '{raw}' is not a long sbatch option (e.g. --constraint=a100)")
        key, sep, value = words[0][2:].partition("=")
        if not sep and len(words) > 1:
            value, sep = " ".join(words[1:]), "="
        out[key] = value if sep else True
    return out


@dataclass
class JobSpec:
    """The sbatch settings of one study's jobs, as submitit parameters."""

    params: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def of(cfg: SlurmConfig, job_name: str, trials_per_node: int, array_parallelism: int) -> JobSpec:
        p: dict[str, Any] = {
            "job_name": job_name,
            "time": time_minutes(cfg.time) if cfg.time else 60,
            "cpus_per_task": cfg.cpus_per_task,
            "array_parallelism": array_parallelism,
            "signal_delay_s": cfg.signal_delay_s,
            "stderr_to_stdout": False,
        }
        if cfg.mem_gb:
            p["mem"] = f"{cfg.mem_gb}GB"
        for key in ("partition", "account", "qos", "gres"):
            if getattr(cfg, key):
                p[key] = getattr(cfg, key)
        if cfg.exclusive:
            p["exclusive"] = True
        if cfg.setup:
            p["setup"] = list(cfg.setup)
        extra = extra_parameters(cfg.extra)
        if extra:
            p["additional_parameters"] = extra
        return JobSpec(p)

    def for_submitit(self) -> dict[str, Any]:
        return dict(self.params)


def submit_command(folder: Path) -> str:
    """The line submitit puts in the script (the worker runs on the host, in this Python)."""
    return " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])


def sbatch_script(spec: JobSpec, folder: Path, array_size: int) -> str:
    """The sbatch script submitit will submit for an array of `array_size` tasks."""
    params = dict(spec.params)
    return _make_sbatch_string(command=submit_command(folder), folder=folder,
                               map_count=array_size if array_size > 1 else None, **params)


def test_only(script: str, request: str = "") -> None:
    """Ask the controller whether it would accept the script (`sbatch --test-only`): nothing is queued."""
    with tempfile.NamedTemporaryFile("w", suffix=".sbatch", prefix="lassi-test-", delete=True) as fh:
        fh.write(script)
        fh.flush()
        r = _run(["sbatch", "--test-only", fh.name])
    if r.returncode != 0:
        raise ConfigError(f"sbatch refuses the study's job settings: {_first_line(r.stderr or r.stdout)}"
                          + (f" (asked: {request})" if request else ""))


def split(items: list[Any], size: int) -> list[list[Any]]:
    size = max(1, size)
    return [items[i:i + size] for i in range(0, len(items), size)]


def submit_array(folder: Path, spec: JobSpec, callables: list[Any], max_num_timeout: int) -> list[str]:
    """One sbatch for all `callables` (an array when more than one); their job ids in order."""
    ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=max_num_timeout)
    ex.update_parameters(**spec.for_submitit())
    try:
        with ex.batch():
            jobs = [ex.submit(c) for c in callables]
    except (submitit.core.utils.FailedSubmissionError, submitit.core.utils.FailedJobError,
            subprocess.CalledProcessError, OSError) as e:
        raise SchedulerError(f"sbatch failed: {_first_line(str(e))}") from None
    return [j.job_id for j in jobs]


# ------------------------------------------------------------------ job states


def _array_base(job_id: str) -> str:
    return job_id.split("_", 1)[0]


def job_states(job_ids: Iterable[str], accounting: bool | None = None) -> dict[str, str]:
    """Scheduler state of each job id ('1234' or '1234_5'); '' when the scheduler no longer knows it."""
    ids = sorted(set(j for j in job_ids if j and j != "local"))
    if not ids:
        return {}
    bases = sorted({_array_base(j) for j in ids})
    states: dict[str, str] = {}
    if accounting is None:
        accounting = True
    if accounting:
        r = _run(["sacct", "-n", "-X", "-P", "--format=JobID,State", "-j", ",".join(bases)])
        if r.returncode == 0:
            for line in r.stdout.splitlines():
                jid, _, st = line.partition("|")
                states[jid.strip()] = st.split()[0] if st.split() else ""
        else:
            accounting = False
    # squeue knows pending and running jobs; it is also the truth where sacct lags or is absent.
    r = _run(["squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(bases)])
    if r.returncode == 0:
        for line in r.stdout.splitlines():
            jid, _, st = line.partition("|")
            states[jid.strip()] = st.strip()
    if not accounting:
        for base in bases:
            r = _run(["scontrol", "-o", "show", "job", base])
            if r.returncode != 0:
                continue
            for line in r.stdout.splitlines():
                m = re.search(r"\bJobId=(\d+)", line)
                a = re.search(r"\bArrayJobId=(\d+) ArrayTaskId=(\S+)", line)
                st = re.search(r"\bJobState=(\S+)", line)
                if m and st:
                    key = f"{a.group(1)}_{a.group(2)}" if a else m.group(1)
                    states.setdefault(key, st.group(1))
    return {j: _expand(states, j) for j in ids}


def _expand(states: dict[str, str], jid: str) -> str:
    """A task's state, also when the scheduler still lists it inside a pending range ('12_[3-7%2]')."""
    if jid in states:
        return states[jid]
    base, _, task = jid.partition("_")
    for key, st in states.items():
        m = re.fullmatch(rf"{base}_\[([^\]%]+)(%\d+)?\]", key)
        if m and task.isdigit():
            for part in m.group(1).split(","):
                lo, _, hi = part.partition("-")
                if int(lo) <= int(task) <= int(hi or lo):
                    return st
    return ""


def is_active(state: str) -> bool:
    return state.split()[0].rstrip("+") in ACTIVE_STATES if state else False


def cancel(job_ids: Iterable[str]) -> list[str]:
    """scancel the given jobs (whole arrays by their base id); returns the ids given to scancel."""
    bases = sorted({_array_base(j) for j in job_ids if j and j != "local"})
    if not bases:
        return []
    r = _run(["scancel", *bases])
    if r.returncode != 0:
        raise SchedulerError(f"scancel failed: {_first_line(r.stderr or r.stdout)}")
    return bases

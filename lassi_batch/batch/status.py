"""A study's state: counts per app and state, and a triage table of what went wrong.

Reads each trial's `/summary` group (one small read per file, no lock, safe while trials run),
the attempt logs (host, job, restarts), and asks the scheduler once for all of the study's jobs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from ..store.summary import STATUSES
from . import attempts, slurm
from .manifest import StudyFolder, read_manifest
from .state import STALE_REASON, explained_reason, read_state

TRIAGE_STATES = ("failed", "interrupted")


@dataclass
class TrialRow:
    key: str
    app: str
    index: int
    status: str
    reason: str = ""
    host: str = ""
    job: str = ""
    job_state: str = ""
    restarts: int = 0
    attempts: int = 0
    stderr_tail: list[str] = field(default_factory=list)


@dataclass
class StudyStatus:
    study: str
    folder: str
    counts: dict[str, dict[str, int]]  # app -> state -> count
    totals: dict[str, int]
    triage: list[TrialRow]
    jobs: dict[str, int]  # scheduler state -> number of trials whose last job is in it
    scheduler: str  # sacct | squeue/scontrol | none
    rows: list[TrialRow] = field(default_factory=list)

    def to_json(self, with_rows: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not with_rows:
            d.pop("rows")
        return d


def collect(root: Path, tail_lines: int = 5, ask_scheduler: bool = True) -> StudyStatus:
    folder = StudyFolder(root.resolve())
    m = read_manifest(folder)
    if m is None:
        raise ConfigError(f"{root}: no study here (no manifest.json; submit a study first)")
    last = m.last_job()
    states: dict[str, str] = {}
    scheduler = "none"
    slurm_jobs = [j for j in last.values() if j != "local"]
    if ask_scheduler and slurm_jobs and slurm.have_slurm():
        try:
            accounting = slurm.accounting_enabled(slurm.cluster_config())
            states = slurm.job_states(slurm_jobs, accounting)
            scheduler = "sacct" if accounting else "squeue/scontrol"
        except slurm.SchedulerError:
            scheduler = "unreachable"
    rows: list[TrialRow] = []
    for t in m.trials:
        path = folder.archive(t)
        st = read_state(path)
        info = attempts.read(folder.attempts(t))
        job = last.get(t.key, "")
        js = states.get(job, "")
        status = st.status
        reason = explained_reason(path, st.reason) if st.status == "failed" else st.reason
        if status == "running" and not slurm.is_active(js) and not info.running_here():
            # what the trial program said when its archive could not record it (disk full), if it said
            told = info.last_reason if info.last_event == "end" and info.last_outcome == "interrupted" else ""
            status, reason = "interrupted", told or STALE_REASON
        if status == "pending" and slurm.is_active(js) and js.startswith("RUNNING"):
            status = "running"  # started, archive not created yet
        if status == "pending" and info.last_event == "gave_up":
            status, reason = "failed", "gave up before the archive was created"
        row = TrialRow(key=t.key, app=t.app, index=t.index, status=status, reason=reason,
                       host=st.host or info.last_host, job=job if job != "local" else "local", job_state=js,
                       restarts=max(0, info.starts - 1), attempts=info.starts)
        if status in TRIAGE_STATES:
            row.stderr_tail = attempts.tail(folder.stderr(t), tail_lines)
        rows.append(row)
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        c = counts.setdefault(r.app, {s: 0 for s in STATUSES})
        c[r.status] = c.get(r.status, 0) + 1
    totals = dict(Counter(r.status for r in rows))
    totals = {s: totals.get(s, 0) for s in STATUSES}
    jobs = dict(Counter((r.job_state.split()[0] if r.job_state else ("local" if r.job == "local" else "unknown"))
                        for r in rows if r.job))
    triage = [r for r in rows if r.status in TRIAGE_STATES]
    return StudyStatus(study=m.study_name, folder=str(folder.root), counts=counts, totals=totals, triage=triage,
                       jobs=jobs, scheduler=scheduler, rows=rows)

"""What state each trial of a study is in, read from its archive's `/summary` group.

A trial without an archive is `pending`. A file written before the summary group existed is
read through its root attributes (store/reader.py). An archive that says `running` while neither the scheduler
nor a live worker here runs it was stopped without a chance to say so (killed, node lost): it
is reported as `interrupted`, which is what it is (it resumes from its journal).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ArchiveError
from ..store.reader import read_trial_summary
from ..store.summary import TrialSummary

STALE_REASON = "stopped without recording why (process killed or node lost); resumes from its journal"


@dataclass
class TrialState:
    status: str  # pending | running | interrupted | done | failed
    reason: str = ""
    host: str = ""
    attempts: int = 0
    summary: TrialSummary | None = None


def read_state(path: Path) -> TrialState:
    """The archive's own account of the trial; no lock taken, safe while a writer is active."""
    if not path.exists():
        return TrialState("pending")
    try:
        s = read_trial_summary(path)  # a file from before the summary group: derived from its root
    except (OSError, ArchiveError) as e:
        return TrialState("failed", f"archive unreadable: {e}")
    return TrialState(s.status, s.reason, s.host, s.attempts, s)

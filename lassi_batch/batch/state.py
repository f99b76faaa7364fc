"""What state each trial of a study is in, read from its archive's `/summary` group.

A trial without an archive is `pending`. A file written before the summary group existed is
read through its root attributes (store/reader.py). An archive that says `running` while neither the scheduler
nor a live worker here runs it was stopped without a chance to say so (killed, node lost): it
is reported as `interrupted`, which is what it is (it resumes from its journal).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ArchiveError
from ..store.reader import NotATrial, open_trial, read_trial_summary
from ..store.summary import TrialSummary

UNREADABLE = "archive unreadable"
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
        # a file from before the summary group is read through its root attributes; one newer
        # than this lassi-batch reads is refused (ArchiveError), as aggregate refuses it
        s = read_trial_summary(path)
    except NotATrial as e:  # e.g. newer than this lassi-batch reads: what aggregate refuses is not "done"
        return TrialState("failed", e.reason)
    except (OSError, ArchiveError) as e:
        return TrialState("failed", f"{UNREADABLE}: {e}")
    return TrialState(s.status, s.reason, s.host, s.attempts, s)


def explained_reason(path: Path, reason: str | None = None) -> str:
    """A failed trial's recorded reason with the evidence it points at: "source code failed to
    run; see candidate 0" gains that candidate's last error line (e.g. "killed: time limit 120 s")."""
    reason = read_state(path).reason if reason is None else reason
    m = re.search(r"see candidate (\d+)", reason or "")
    if m and path.exists():
        try:
            with open_trial(path) as ar:
                c = ar.candidate(int(m.group(1)))
        except (OSError, ArchiveError, KeyError, ValueError):
            c = None
        if c is not None:
            text = c.stderr if c.build_ok else c.build_log
            lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
            if not c.build_ok:  # the compiler's first error says the most
                lines = [ln for ln in lines if "error" in ln.lower()] or lines
                detail = lines[0] if lines else ""
            else:
                detail = lines[-1] if lines else ""
            if detail:
                reason = f"{reason}: {detail[:300]}"
    return reason or "no reason recorded"

"""What state each trial of a study is in, read from its archive's `/summary` group.

A trial without an archive is `pending`. A file written before the summary group existed is
read through its root attributes. An archive that says `running` while neither the scheduler
nor a live worker here runs it was stopped without a chance to say so (killed, node lost): it
is reported as `interrupted`, which is what it is (it resumes from its journal).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..core.errors import ArchiveError
from ..store.archive import TrialArchive
from ..store.schema import SCHEMA_VERSION
from ..store.summary import TrialSummary, read_summary

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
        with h5py.File(path, "r", locking=False) as f:
            version = f.attrs.get("schema_version")
            if isinstance(version, (int, np.integer)) and int(version) > SCHEMA_VERSION:
                # what aggregate refuses is not "done" here either
                return TrialState("failed", f"archive schema version {int(version)} is newer than this lassi-batch "
                                            f"reads ({SCHEMA_VERSION}); upgrade lassi-batch")
            try:
                s = read_summary(f)
            except KeyError:
                s = None
            if s is not None:
                st = TrialState(s.status, s.reason, s.host, s.attempts, s)
                root = _text(f.attrs.get("status"))
                if root and root != s.status:  # a status set after the summary was last written
                    st.status, st.reason = root, _text(f.attrs.get("error"))
                return st
            # a file from before the summary group: its root attributes say as much
            return TrialState(_text(f.attrs.get("status")) or "running", _text(f.attrs.get("error")))
    except (OSError, ArchiveError) as e:
        return TrialState("failed", f"{UNREADABLE}: {e}")


def _text(v: object) -> str:
    if v is None:
        return ""
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def mark(path: Path, status: str, reason: str) -> bool:
    """Set a trial's status through the archive's writer (False when there is no archive or it is busy)."""
    if not path.exists():
        return False
    try:
        with TrialArchive.open(path, writable=True) as ar:
            ar.set_status(status, reason)
    except (ArchiveError, ValueError):  # busy, or a status this archive version does not know
        return False
    return True


def explained_reason(path: Path, reason: str | None = None) -> str:
    """A failed trial's recorded reason with the evidence it points at: "source code failed to
    run; see candidate 0" gains that candidate's last error line (e.g. "killed: time limit 120 s")."""
    reason = read_state(path).reason if reason is None else reason
    m = re.search(r"see candidate (\d+)", reason or "")
    if m and path.exists():
        try:
            with TrialArchive.open(path, writable=False) as ar:
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

"""Side effects of a run: the files it leaves in its folder, compared with the source's.

The sandbox gives every run a fresh folder (and under bubblewrap a private /tmp), so a result
cache a candidate writes there cannot serve a later run; the trick is harmless but its code is
not: exported as a good answer it would teach caching hacks. So every run's folder is read
before it is removed, the files the run created or changed are recorded per run (under the
unsandboxed runner its TMPDIR lies in the folder too), and a candidate that writes files the
source does not write is flagged with their names: evidence for the judge and the export.
"""

from __future__ import annotations

import os
from pathlib import Path

from .verifier import Finding

MAX_FILES = 2000  # entries of a run folder that are looked at
MAX_NAMED = 5  # file names spelled out per finding

Snapshot = dict[str, tuple[int, int]]  # relative path -> (size, mtime_ns)


def snapshot(folder: Path) -> Snapshot:
    """Every regular file under `folder` with its size and modification time (bounded)."""
    out: Snapshot = {}
    folder = Path(folder)
    for root, dirs, files in os.walk(folder):
        for name in files:
            p = Path(root) / name
            try:
                st = p.lstat()
            except OSError:
                continue
            out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
            if len(out) >= MAX_FILES:
                return out
    return out


def written(before: Snapshot, after: Snapshot) -> list[str]:
    """Files created or changed between two snapshots of one folder, sorted."""
    return sorted(k for k, v in after.items() if before.get(k) != v)


def side_effect_findings(where: str, source: list[list[str]], cand: list[list[str]]) -> list[Finding]:
    """A note naming the files the candidate's runs wrote that the source's runs (`source`, one
    list per run) never wrote. Not a failure: writing a file is no proof of a wrong result, and
    under the sandbox it may have had no effect; the judge and the export weigh it."""
    theirs = {f for run in source for f in run}
    extra = sorted({f for run in cand for f in run} - theirs)
    if not extra:
        return []
    shown = ", ".join(extra[:MAX_NAMED]) + (f" and {len(extra) - MAX_NAMED} more" if len(extra) > MAX_NAMED else "")
    return [Finding("side_effects", "warn", f"{where}: the candidate's runs wrote {len(extra)} file(s) in their run "
                    f"folder that the source's runs do not write ({shown}); results kept between runs are a cache, "
                    "even where the sandbox made it harmless")]

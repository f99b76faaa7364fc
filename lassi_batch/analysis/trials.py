"""Finding a study's trial files and reading each one's summary once, with every bad file named.

A study folder on a shared file system holds whatever the cluster left there: files cut short by
a full quota, bit rot, unrelated HDF5 files, files from a newer lassi-batch, the same trial
copied twice, trials still being written. None of them may stop an aggregation, and none may be
counted silently: each becomes a `Skipped` with one line of reason.

Only the `/summary` group is read (one open, attributes only), so memory does not grow with the
size of the files and the time is close to the cost of opening them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..store.layout import SUFFIX
from ..store.reader import NotATrial, scan_summary
from ..store.summary import TrialSummary

FINISHED = ("done", "failed")
# files the trial writer keeps beside a trial (journal, transaction copy) and our own outputs
_NOT_TRIALS = (".tmp", ".lock", ".journal")
STUDY_SCHEMA = "lassi-batch-study"


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str


@dataclass(frozen=True)
class Trial:
    path: Path
    summary: TrialSummary


class BadTrial(Exception):
    """A file that cannot be aggregated; the message is the reason."""


class StudyOutput(BadTrial):
    """A study file written by aggregate or recompute: our own output, passed over unlisted."""


def trial_files(root: Path, exclude: Iterable[Path] = ()) -> list[Path]:
    """Every `*.h5` under `root` (or `root` itself when it is a file), sorted, outputs excluded."""
    skip = {Path(p).resolve() for p in exclude}
    if root.is_file():
        return [root]
    out: list[Path] = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in names:
            if name.endswith(SUFFIX) and not name.endswith(_NOT_TRIALS):
                p = Path(folder) / name
                if p.resolve() not in skip:
                    out.append(p)
    out.sort()
    return out


def read_trial(path: Path) -> TrialSummary:
    """The summary of one trial file; BadTrial(reason) when it is not a readable trial."""
    try:
        return scan_summary(path)
    except NotATrial as e:
        if e.schema == STUDY_SCHEMA:
            raise StudyOutput("a study file written by lassi-batch, not a trial") from None
        raise BadTrial(str(e)) from None


def trial_key(s: TrialSummary) -> tuple[str, str, str, str]:
    """What makes two files the same trial: study, app, platform and index (id if no index)."""
    return (s.study, s.app, s.platform, str(s.trial_index) if s.trial_index >= 0 else f"id:{s.trial_id}")


@dataclass
class Scan:
    """Iterate over the good trials of `paths`; `skipped` fills in as the iteration goes."""

    paths: Iterable[Path]
    include_running: bool = False
    skipped: list[Skipped] = field(default_factory=list)
    _seen: dict[tuple[str, str, str, str], Path] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Trial]:
        for p in self.paths:
            try:
                s = read_trial(p)
            except StudyOutput:
                continue
            except BadTrial as e:
                self.skipped.append(Skipped(p, str(e)))
                continue
            if s.status not in FINISHED and not self.include_running:
                self.skipped.append(Skipped(p, f"trial still {s.status} (use --include-running to count it)"))
                continue
            key = trial_key(s)
            if key in self._seen:
                self.skipped.append(Skipped(p, f"duplicate of {self._seen[key]} (same study, app, platform, index)"))
                continue
            self._seen[key] = p
            yield Trial(p, s)

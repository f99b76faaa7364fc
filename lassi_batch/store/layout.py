"""Where trial files live: the one definition of a study folder's `trials/` and of a trial's file
name, which the trial program, the batch worker that starts it and every reader share."""

from __future__ import annotations

from pathlib import Path

TRIALS_DIR = "trials"
SUFFIX = ".h5"


def trial_stem(app: str, platform: str, index: int) -> str:
    """`<app>.<platform>.t<NNN>`: a trial's file stem (logs and attempts use it too)."""
    return f"{app}.{platform}.t{index:03d}"


def trial_file(study_root: Path, app: str, platform: str, index: int) -> Path:
    """The trial's archive inside a study folder."""
    return Path(study_root) / TRIALS_DIR / (trial_stem(app, platform, index) + SUFFIX)


def index_from_name(path: Path) -> int:
    """`<app>.<platform>.t007.h5` -> 7, else -1 (a file named otherwise)."""
    tail = path.name.removesuffix(SUFFIX).rsplit(".", 1)[-1]
    return int(tail[1:]) if tail.startswith("t") and tail[1:].isdigit() else -1

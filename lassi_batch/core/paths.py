"""Paths from config files and the command line: ${VAR} expansion and writable output folders.

Output folders are checked before anything is measured, so that hours of measurement never end
in a failed write.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from .errors import ConfigError

_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def unset_vars(text: str, env: dict[str, str] | None = None) -> list[str]:
    """Names of the $VAR / ${VAR} references in `text` that the environment does not define."""
    env = os.environ if env is None else env
    names = [a or b for a, b in _VAR.findall(text)]
    return [n for n in dict.fromkeys(names) if n not in env]


def expand(value: str | Path, base: Path) -> Path:
    """Expand ${VAR} and ~; a relative path resolves against `base` (a config file's folder).

    A path that starts with a variable whose value is relative (`HECBENCH=../hecbench`) resolves
    against the current folder instead, where that value was typed, as a shell would.
    """
    raw = str(value)
    p = Path(os.path.expanduser(os.path.expandvars(raw)))
    if p.is_absolute():
        return p
    return (Path.cwd() if raw.startswith("$") else base) / p


def ensure_writable_dir(folder: str | Path, what: str) -> Path:
    """Prove that files can be written in `folder` (or, when it does not exist yet, in the nearest
    existing folder above it, which then can hold it); ConfigError (one line) if not.

    Nothing is left behind. A real write is tried because permission bits say nothing for root
    or on read-only mounts.
    """
    p = Path(folder)
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{what}: cannot create {p}: {probe} is not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".lassi-write-test-"):
            pass
    except OSError as e:
        raise ConfigError(f"{what}: cannot write to {probe}: {e.strerror or e}") from None
    return p


def ensure_writable_file(path: str | Path, what: str) -> Path:
    """The parent folder of `path` is writable and `path` itself is not a folder (checked up front)."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{what}: {p} is a folder; give a file name")
    ensure_writable_dir(p.parent if str(p.parent) else Path("."), what)
    if p.exists() and not os.access(p, os.W_OK):
        raise ConfigError(f"{what}: {p} exists and is not writable")
    return p


WORKDIR_ENV = "LASSI_WORKDIR"  # where trials make their scratch folders (default: the system's temp folder)


def check_workdir() -> None:
    """LASSI_WORKDIR, when set, is an existing writable folder: checked before a trial starts, so
    that a mistyped setting is a usage error rather than a trial recorded as failed."""
    wd = os.environ.get(WORKDIR_ENV)
    if not wd:
        return
    if not Path(wd).is_dir():
        raise ConfigError(f"{WORKDIR_ENV}={wd}: not an existing folder (trials make their scratch folders there)")
    ensure_writable_dir(wd, WORKDIR_ENV)

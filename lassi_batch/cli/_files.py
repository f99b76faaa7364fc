"""Output safety for the commands that write results (aggregate, recompute, report).

Checked before anything is read or written: an output path that exists and is not this command's
own earlier output is left alone unless --force; an output that cannot be written (read-only
mount, a /proc path, a file where a folder should be) is one line and exit 2. Inputs are checked
the same way: an empty folder or a file that is not a study is refused, not turned into an empty
result.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click
import h5py

from ..analysis.study import is_study_file
from ..analysis.trials import trial_files
from ..core.errors import ConfigError
from ..core.paths import ensure_writable_dir, ensure_writable_file


def force_option(f):  # noqa: ANN001, ANN201 - a click decorator
    return click.option("--force", is_flag=True,
                        help="Replace output files that are not an earlier output of this command.")(f)


def k_option(f):  # noqa: ANN001, ANN201 - a click decorator
    return click.option("--k", "k_text", default="1,3,5", show_default=True, callback=_k_values,
                        help="k values of pass@k and energy-reduction@k: distinct whole numbers >= 1, comma-separated "
                             "(none larger than the number of trials).")(f)


def _k_values(ctx: click.Context, param: click.Parameter, value: str) -> str:
    parts = [p.strip() for p in value.split(",")]
    if not parts or any(not p.isdigit() or int(p) < 1 for p in parts):
        raise click.BadParameter(f"'{value}': expected whole numbers >= 1 separated by commas, e.g. 1,3,5")
    ks = [int(p) for p in parts]
    if len(set(ks)) != len(ks):
        raise click.BadParameter(f"'{value}': a k is given twice")
    return ",".join(str(k) for k in sorted(ks))


def check_k(k_text: str, n_files: int) -> None:
    """A k given on the command line that is larger than every trial there is has no pass@k
    (n >= k is needed); the default k are kept (those beyond n show as n/a)."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.get_parameter_source("k_text") == click.core.ParameterSource.DEFAULT:
        return
    big = [int(k) for k in k_text.split(",") if int(k) > n_files]
    if big:
        raise ConfigError(f"--k {big[0]}: larger than the {n_files} trial file(s) found; pass@k needs at least k trials")


def first_line(prefix: str, contains: str = "") -> Callable[[Path], bool]:
    """A recognizer for a text output by its first line (its start, and a piece of it)."""
    def own(p: Path) -> bool:
        try:
            with open(p, encoding="utf-8", errors="replace") as fh:
                line = fh.readline(4096)
        except OSError:
            return False
        return line.startswith(prefix) and contains in line
    return own


def out_file(path: Path, own: Callable[[Path], bool], force: bool, what: str) -> Path:
    """`path` may be written: writable, not a folder, and not someone else's file (unless force)."""
    ensure_writable_file(path, what)
    if path.exists() and not force and not own(path):
        raise ConfigError(f"{what} {path}: exists and is not an earlier output of this command; "
                          f"choose another name or add --force to replace it")
    return path


def out_dir(path: Path, marker: str, force: bool, what: str,
            owned: dict[str, Callable[[Path], bool]] | None = None) -> Path:
    """`path` may hold this command's outputs: a writable folder that is new, empty, or holds an
    earlier output (its `marker` file); each file in `owned` that exists must be ours."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path}: exists and is not a folder")
    ensure_writable_dir(path, what)
    if path.is_dir() and not force:
        names = {p.name for p in path.iterdir()}
        if names and marker not in names:
            raise ConfigError(f"{what} {path}: a folder of other files (no {marker} of an earlier run); "
                              f"choose another folder or add --force")
        for name, own in (owned or {}).items():
            if (path / name).exists() and not own(path / name):
                raise ConfigError(f"{what} {path / name}: exists and is not an earlier output of this command; "
                                  f"add --force to replace it")
    return path


def study_h5(p: Path) -> bool:
    return is_study_file(p)


def trial_sources(source: Path, exclude: list[Path] | None = None) -> list[Path]:
    """The trial files of a study folder (or one trial file); refused when there are none."""
    if not source.exists():
        raise ConfigError(f"not found: {source}")
    if source.is_file() and not h5py.is_hdf5(source):
        raise ConfigError(f"{source}: not an HDF5 file; give a study folder, a trial file or a study.h5")
    paths = trial_files(source, exclude=exclude or [])
    if not paths:
        raise ConfigError(f"{source}: no trial files (*.h5) here; give the study folder that holds trials/")
    return paths

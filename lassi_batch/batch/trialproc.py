"""The trial program: one (app, trial) of a submitted study, in a process of its own.

    python -m lassi_batch.batch.trialproc SETTINGS.json APP INDEX

Workers (the node worker under Slurm, the local executor) start one per trial, so that a
scheduler signal, a crash or a kill reaches exactly one trial and its measured program. Exit
codes follow `store.summary`: 0 done, 1 failed, 2 usage/config error, 75 interrupted (stopped
at a step boundary; resume by running it again). 73 means another process is writing this
trial right now (never run a trial twice at once).

SIGTERM, SIGUSR2 (Slurm's warning before a time limit or preemption) and SIGINT stop the trial:
the archive keeps every finished step, the measured program's process group is killed, and the
trial is marked `interrupted`. When the parent dies, the kernel sends SIGTERM here
(PR_SET_PDEATHSIG), so killing a worker never leaves a measured program behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sqlite3
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from ..core.errors import ArchiveError, ConfigError, LassiError, TrialInterrupted
from ..core.paths import check_workdir
from ..pipeline.session import run_trial, trial_path
from ..store.summary import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from .manifest import Settings
from .state import explained_reason, mark, read_state

EXIT_BUSY = 73
PARENT_ENV = "LASSI_PARENT_PID"
ALREADY_DONE = "already done"  # first words of the line printed for a trial that had finished before


class Stop(KeyboardInterrupt):
    """Raised by the first stop signal; a KeyboardInterrupt so the trial keeps it `not failed`."""


_stopped_by: list[str] = []


def _on_signal(signum: int, frame: object) -> None:
    if _stopped_by:
        return  # one stop is enough; let the cleanup that the first one started finish
    _stopped_by.append(signal.Signals(signum).name)
    sys.unraisablehook = _quiet_after_stop
    raise Stop(_stopped_by[0])


def _quiet_after_stop(u: sys.UnraisableHookArgs) -> None:
    """After a stop signal: drop the one known finalizer message it can cause.

    The stop is raised wherever the trial is, also inside filelock's SQLite lock while it
    acquires; that lock's internal generator is then finalized after its connection was closed and
    prints "Exception ignored ... Cannot operate on a closed database" into the trial's stderr,
    which `status` would show as the last stderr of an interrupted trial. The lock is released
    all the same (the connection is closed). Anything else is printed as usual.
    """
    if isinstance(u.exc_value, sqlite3.ProgrammingError) and "closed database" in str(u.exc_value):
        return
    sys.__unraisablehook__(u)


def _die_with_parent() -> None:
    """Ask the kernel for SIGTERM when the worker dies; exit at once if it already has."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    want = os.environ.get(PARENT_ENV)
    if want and os.getppid() != int(want):
        sys.exit(EXIT_INTERRUPTED)


STAGE_MARK = " stage "  # in a progress line of logs/<trial>.out: the trial entered a stage


def elapsed(seconds: float) -> str:
    """1:02:03 / 2:03: a duration as a reader scans it."""
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def describe(ev: dict[str, Any]) -> str:
    """One trial event as words (for logs/<trial>.out and the local executor's progress)."""
    kind = ev.get("event", "")
    key = ev.get("key", "")
    if kind == "stage":
        return f"stage {ev.get('stage')}"
    if kind == "llm":
        return f"LLM {ev.get('kind')} call ({ev.get('model')}) for {key}"
    if kind == "evaluate":
        return f"build, run and measure {key}"
    if kind == "probes":
        return "source runs on the unseen probe inputs"
    if kind == "self_correct":
        return f"self-correction {ev.get('attempt')} ({key})"
    if kind == "iteration":
        return f"iteration {ev.get('iteration')}"
    if kind == "best":
        e = ev.get("energy_j")
        return f"best so far: candidate {ev.get('candidate')}" + (f", {e:.4g} J" if isinstance(e, (int, float)) else "")
    if kind == "decision":
        return f"candidate {ev.get('candidate')} against {ev.get('against')}: {ev.get('reason')}"
    if kind == "remeasure":
        return f"re-measure candidate {ev.get('candidate')} on this device ({key})"
    if kind == "confirm":
        return f"confirmation {key}: candidate {ev.get('candidate')}, {ev.get('repeats')} interleaved runs each"
    if kind in ("confirmed", "not_confirmed"):
        red = ev.get("reduction")
        saving = f", saving {100 * red:.1f}%" if isinstance(red, (int, float)) and red == red else ""
        return f"{key}: candidate {ev.get('candidate')} {kind.replace('_', ' ')}{saving}"
    return " ".join(str(x) for x in (kind, key) if x)


def _logger(t0: float):  # noqa: ANN202
    def log(ev: dict[str, Any]) -> None:
        line = describe(ev)
        print(f"{time.strftime('%H:%M:%S')} +{elapsed(time.monotonic() - t0)} {line}", flush=True)
    return log


def _reason(path: Path) -> str:
    return explained_reason(path)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m lassi_batch.batch.trialproc SETTINGS.json APP INDEX", file=sys.stderr)
        return EXIT_USAGE
    for sig in (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT):
        signal.signal(sig, _on_signal)
    _die_with_parent()
    settings_path, app, index_s = argv
    path: Path | None = None
    try:
        check_workdir()  # a usage error, never a trial marked failed
        study = Settings.load(Path(settings_path)).study()
        sapp = next((a for a in study.apps if a.app.name == app), None)
        if sapp is None:
            raise ConfigError(f"app '{app}' is not in the study")
        index = int(index_s)
        path = trial_path(study, app, index)
        if read_state(path).status == "done":
            print(f"{ALREADY_DONE}: {path}")
            return EXIT_OK
        t0 = time.monotonic()
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} trial {app} {index} of study {study.name}: "
              f"{read_state(path).status}, archive {path}", flush=True)
        path, out = run_trial(study, sapp, index, progress=_logger(t0))
        print(f"{time.strftime('%H:%M:%S')} +{elapsed(time.monotonic() - t0)} ended {out.status}: "
              + (f"source {out.source_energy_j:.4g} J, best {out.best_energy_j:.4g} J"
                 if out.source_energy_j is not None and out.best_energy_j is not None else "no energies")
              + (f", {out.candidates} candidates" if out.candidates else ""), flush=True)
    except (Stop, TrialInterrupted) as e:
        # Stop: a signal before the trial took over its own (the archive may not exist yet);
        # TrialInterrupted: the trial stopped on a step boundary and recorded it itself.
        if isinstance(e, Stop) and path is not None and read_state(path).status in ("running", "interrupted"):
            mark(path, "interrupted", f"stopped by {e.args[0] if e.args else 'a signal'}")
        by = _stopped_by[0] if _stopped_by else (str(e) or "a signal")
        print(f"interrupted: {by}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ConfigError as e:
        for p in e.problems:
            print(f"error: {p}", file=sys.stderr)
        return EXIT_USAGE
    except ArchiveError as e:
        print(f"error: {e}", file=sys.stderr)
        if "being written" in str(e):
            return EXIT_BUSY
        # the archive could not take a commit (disk full, I/O error) while the trial ran: every
        # earlier step is kept in its journal, so the trial is interrupted, not failed
        return EXIT_INTERRUPTED if path is not None and read_state(path).status in ("running", "interrupted") else EXIT_FAILED
    except LassiError as e:
        print(f"error: {e}", file=sys.stderr)
        return _by_archive(path, EXIT_FAILED)
    except Exception:  # noqa: BLE001 - a bug: keep the traceback in the trial's log
        traceback.print_exc()
        return _by_archive(path, EXIT_FAILED)
    if out.status == "done":
        return EXIT_OK
    if out.status == "interrupted":
        return EXIT_INTERRUPTED
    print(f"failed: {_reason(path)}", file=sys.stderr)
    return EXIT_FAILED


def _by_archive(path: Path | None, default: int) -> int:
    """An exception after the trial recorded an interruption still means `interrupted`."""
    if path is not None and read_state(path).status == "interrupted":
        return EXIT_INTERRUPTED
    return default


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

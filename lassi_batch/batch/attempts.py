"""The attempt log of one trial: a JSON line per start and per end of the trial program.

The archive says what a trial found; this log says where and how often it ran (host, job id,
GPU, exit code), which is what a triage table needs and what bounds retries: a trial that
crashed `max_attempts` times is not started again.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .manifest import now_iso


@dataclass
class AttemptInfo:
    starts: int = 0
    crashes: int = 0  # ends that were neither done, failed, interrupted nor a usage error
    last_host: str = ""
    last_job: str = ""
    last_gpu: str = ""
    last_exit: int | None = None
    last_event: str = ""
    last_pid: int = 0  # the worker that started the last attempt
    last_outcome: str = ""  # of the last end record
    last_reason: str = ""  # of the last end record (e.g. what the archive itself could not record)

    def running_here(self) -> bool:
        """The last attempt started on this host by a worker that is still alive (no lock probing)."""
        if self.last_event != "start" or self.last_host != socket.gethostname() or self.last_pid <= 0:
            return False
        try:
            os.kill(self.last_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def append(path: Path, **record: Any) -> None:
    """Append one record; O_APPEND keeps concurrent writers' lines whole. Best effort: a log that
    cannot be written (disk full) never stops the trials it describes."""
    record = {"at": now_iso(), "host": socket.gethostname(), "pid": os.getpid(), **record}
    line = (json.dumps(record, default=str) + "\n").encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError:
        return
    try:
        os.write(fd, line)
    except OSError:
        pass
    finally:
        os.close(fd)


def read(path: Path) -> AttemptInfo:
    info = AttemptInfo()
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return info
    for line in lines:
        try:
            r = json.loads(line)
        except ValueError:
            continue  # a line cut by a crash mid-write
        ev = r.get("event", "")
        info.last_event = ev
        if ev == "start":
            info.starts += 1
            info.last_host = r.get("host", "")
            info.last_job = r.get("job", "") or info.last_job
            info.last_gpu = r.get("gpu", "")
            info.last_pid = int(r.get("pid", 0) or 0)
        elif ev == "end":
            info.last_exit = r.get("exit")
            info.last_outcome, info.last_reason = r.get("outcome", ""), r.get("reason", "") or ""
            if r.get("crash"):
                info.crashes += 1
    return info


def tail(path: Path, lines: int = 5, max_bytes: int = 8192) -> list[str]:
    """The last lines of a log without reading the whole file."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [ln for ln in text.splitlines() if ln.strip()][-lines:]

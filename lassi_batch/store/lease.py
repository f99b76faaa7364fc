"""The writer lease of a trial file: one process publishes to it, also across the nodes of a
shared file system.

Why not a plain flock: on Lustre mounted with `localflock` (and on some NFS setups) an flock is
node-local, so a requeued job and its zombie on another node could both hold it. The lease is a
small JSON file `<trial>.h5.lease` naming its owner (host, pid and the pid's start time, Slurm
job id) and a generation number that grows with every take-over. The owner renews it from a
background thread; every publication (a journal entry, a consolidated file) first re-reads the
lease and refuses when the generation is no longer its own. Journal entries are published with
link(2), which fails when the name exists, so two writers that both passed the check still
cannot both publish the same entry.

A lease is stale, and may be taken over, when its owner is a dead process on this host, or when
it was not renewed for `ttl_s` seconds (an owner on another host, which cannot be asked).
A `filelock` serialises contenders on one node; across nodes the generation check holds.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
from filelock import FileLock, Timeout

from ..system.facts import slurm_job_id
from ..core.errors import ArchiveError

DEFAULT_TTL_S = 600.0


@dataclass(frozen=True)
class LeaseOwner:
    """Who holds a trial's lease, as written in the lease file."""

    host: str
    pid: int
    pid_started: float  # psutil create_time: a reused pid is not the owner
    job_id: str
    generation: int
    acquired: float
    renewed: float
    token: str  # random: tells two owners with equal host and pid apart

    def describe(self) -> str:
        job = f", Slurm job {self.job_id}" if self.job_id else ""
        return f"host {self.host} pid {self.pid}{job}, lease generation {self.generation}"


def _pid_started(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return 0.0


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to a unique temporary name beside `path`, fsync, rename over `path`."""
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class WriterLease:
    """Acquire with `acquire()`; `check()` before every publication; `release()` at the end."""

    def __init__(self, archive: Path, ttl_s: float = DEFAULT_TTL_S):
        self.archive = archive
        self.path = archive.with_name(archive.name + ".lease")
        self.ttl_s = float(ttl_s)
        self.owner: LeaseOwner | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: str = ""  # set when the heartbeat finds another owner
        self.bytes_written = 0  # lease file writes (bench_archive.py counts them)

    # --- reading -------------------------------------------------------------------------

    def read(self) -> LeaseOwner | None:
        """The lease file's owner; None when there is none (or it was released)."""
        try:
            data = json.loads(self.path.read_bytes())
            return LeaseOwner(**data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError):  # torn by a foreign tool: treat as stale
            return None

    def alive(self, o: LeaseOwner, now: float | None = None) -> bool:
        """Whether `o` may still be writing (see the module docstring)."""
        if o.host == socket.gethostname():
            return _pid_started(o.pid) > 0 and abs(_pid_started(o.pid) - o.pid_started) < 1.0
        return ((now or time.time()) - o.renewed) < self.ttl_s

    # --- owning --------------------------------------------------------------------------

    def acquire(self) -> LeaseOwner:
        """Take the lease (new generation), or ArchiveError naming the live owner."""
        try:
            with FileLock(str(self.path) + ".lock", timeout=30):
                cur = self.read()
                if cur is not None and self.alive(cur):
                    raise ArchiveError(f"{self.archive} is being written by another process "
                                       f"({cur.describe()}); one writer per trial")
                now = time.time()
                me = LeaseOwner(
                    host=socket.gethostname(), pid=os.getpid(), pid_started=_pid_started(os.getpid()),
                    job_id=slurm_job_id(), generation=(cur.generation if cur else self._last_generation()) + 1,
                    acquired=now, renewed=now, token=secrets.token_hex(8),
                )
                self._write(me)
        except Timeout:
            raise ArchiveError(f"cannot lock {self.path}.lock within 30 s") from None
        except OSError as e:
            raise ArchiveError(f"cannot take the writer lease {self.path}: {e.strerror or e}") from None
        self.owner = me
        self.check()  # another node may have renamed its lease over ours in between
        self._thread = threading.Thread(target=self._heartbeat, name="lease-heartbeat", daemon=True)
        self._thread.start()
        return me

    def _last_generation(self) -> int:
        """Generation of the last released lease (kept in `<lease>.gen` so numbers never repeat)."""
        try:
            return int(self.path.with_name(self.path.name + ".gen").read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def _write(self, o: LeaseOwner) -> None:
        data = json.dumps(asdict(o), sort_keys=True).encode()
        write_atomically(self.path, data)
        self.bytes_written += len(data)

    def check(self) -> None:
        """ArchiveError unless this process still owns the lease (called before publishing)."""
        if self.owner is None:
            raise ArchiveError(f"{self.archive}: no writer lease held")
        cur = self.read()
        if cur is None or cur.token != self.owner.token:
            who = "nobody" if cur is None else cur.describe()
            self.lost = f"{self.archive}: writer lease lost (now held by {who}); stopping without publishing"
            raise ArchiveError(self.lost)

    def _heartbeat(self) -> None:
        period = max(0.05, self.ttl_s / 4)
        while not self._stop.wait(period):
            o = self.owner
            if o is None:
                return
            try:
                cur = self.read()
                if cur is None or cur.token != o.token:
                    self.lost = f"{self.archive}: writer lease taken over by {cur.describe() if cur else 'nobody'}"
                    return
                renewed = LeaseOwner(**{**asdict(o), "renewed": time.time()})
                self._write(renewed)
                self.owner = renewed
            except OSError:  # a full disk or a passing fault: try again next period
                continue

    def release(self) -> None:
        """Stop renewing and remove the lease if it is still ours (the generation is kept)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        o, self.owner = self.owner, None
        if o is None:
            return
        try:
            with FileLock(str(self.path) + ".lock", timeout=10):
                cur = self.read()
                if cur is not None and cur.token == o.token:
                    write_atomically(self.path.with_name(self.path.name + ".gen"), f"{o.generation}\n".encode())
                    self.path.unlink(missing_ok=True)
        except (OSError, Timeout):
            pass  # a stale lease of a dead pid is taken over by the next writer

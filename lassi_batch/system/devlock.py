"""One measurement at a time per device: a node-local flock named by the GPU's UUID.

Several trials share a node so that LLM waits and compiles overlap, but two programs measured
on one GPU (or on one CPU package, for RAPL) at once would spoil both figures. Each measured
run holds the device's lock; the kernel drops a flock when its holder dies, so a killed trial
never leaves a stale lock behind. The lock folder must be local to the node (never a shared
file system, where flock may be emulated or absent).

Where the measured device is the CPU itself, a measurement also needs the other trials' CPU work
to pause: their builds and unmeasured probe runs hold the node's "busy" lock shared
(`busy_lock`), a CPU measurement holds it exclusively. It is filelock's SQLite reader/writer
lock: a waiting measurement keeps new builds from starting, and the locks of a killed process
are dropped with it. GPU measurements need no such pause (the meter reads the GPU), so there
the busy lock is a no-op and builds overlap measurements as before.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, ReadWriteLock

LOCK_DIR_ENV = "LASSI_LOCK_DIR"  # node-local folder for the lock files
DEVICE_ENV = "LASSI_GPU_UUID"  # set by the batch worker to the GPU a trial is pinned to
QUIET_KEYS = frozenset({"cpu"})  # devices whose measurements other trials' CPU work would perturb
_held = threading.local()  # a busy hold of this thread (a measurement inside one would wait on itself)


def lock_dir() -> Path:
    """`$LASSI_LOCK_DIR`, else /dev/shm (always node-local), else the temp folder."""
    env = os.environ.get(LOCK_DIR_ENV)
    if env:
        return Path(env)
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    return base / f"lassi-batch-locks-{os.getuid()}"


def device_key(platform_kind: str, device: str = "") -> str:
    """Which lock a measurement on this platform takes: the pinned GPU's UUID, else the device
    setting, else one lock for the whole node's CPU (RAPL reads the package, not a core)."""
    if platform_kind == "cpu":
        return "cpu"
    return os.environ.get(DEVICE_ENV) or device or f"{platform_kind}-default"


def _file_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", key) + ".lock"


@dataclass
class LockHold:
    key: str
    wait_s: float = 0.0  # time spent waiting for the device before the measurement began


@contextmanager
def measurement_lock(key: str, folder: Path | None = None) -> Iterator[LockHold]:
    """Hold the device's lock for one measured run; records how long it waited."""
    if getattr(_held, "busy", 0):
        raise RuntimeError(f"measurement of {key} requested while this thread holds the busy lock")
    d = _folder(folder)
    t0 = time.monotonic()
    with FileLock(str(d / _file_name(key))):
        if key not in QUIET_KEYS:
            yield LockHold(key=key, wait_s=time.monotonic() - t0)
            return
        with _busy_rw(d, key) as rw, rw.write_lock():
            yield LockHold(key=key, wait_s=time.monotonic() - t0)


@contextmanager
def busy_lock(key: str, folder: Path | None = None) -> Iterator[LockHold]:
    """Hold for CPU-heavy work that is not measured (a build, a probe run) on a node where `key`'s
    measurements are of the CPU: waits for a measurement in progress; a no-op elsewhere."""
    if key not in QUIET_KEYS:
        yield LockHold(key=key)
        return
    t0 = time.monotonic()
    with _busy_rw(_folder(folder), key) as rw, rw.read_lock():
        _held.busy = getattr(_held, "busy", 0) + 1
        try:
            yield LockHold(key=key, wait_s=time.monotonic() - t0)
        finally:
            _held.busy -= 1


def _folder(folder: Path | None) -> Path:
    d = folder or lock_dir()
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextmanager
def _busy_rw(folder: Path, key: str) -> Iterator[ReadWriteLock]:
    """The node's busy lock for `key`: an instance per hold, so threads wait on each other."""
    rw = ReadWriteLock(str(folder / _file_name(key + ".busy")), is_singleton=False)
    try:
        yield rw
    finally:
        rw.close()

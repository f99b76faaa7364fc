"""One measurement at a time per device, and nothing else running on it meanwhile.

Several trials share a node so that LLM waits and compiles overlap, but a meter reads a whole
device: NVML's energy counter and power fields (and amdsmi's, and RAPL's package counter) count
every process on it. So each device has a reader/writer lock (filelock's SQLite ReadWriteLock,
node-local):

* a measurement holds it exclusively, for the whole protocol (settle, idle window, run, tail);
* every unmeasured run of a program on that device (work-count runs, differential probes,
  verifier and test-size runs, a doctor smoke test) holds it shared (`run_hold`): several may
  overlap one another, none overlaps a measurement;
* a waiting measurement keeps new shared holders from starting (SQLite's pending lock), so a
  stream of probe runs cannot starve it;
* builds run on the host: they take the lock shared only where the measured device is the CPU
  itself (`build_hold`), where their CPU time would land in the measurement; on a GPU node they
  overlap measurements as before.

The kernel drops a holder's locks when it dies, so a killed trial never leaves a stale lock. The
lock folder must be local to the node (never a shared file system, where locking may be emulated
or absent). A lock cannot keep out programs that never ask for it (a foreign job on a shared node):
`power.isolation` checks every measurement for those and has it taken again.
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

from .gpus import PIN_ENV

LOCK_DIR_ENV = "LASSI_LOCK_DIR"  # node-local folder for the lock files
DEVICE_ENV = PIN_ENV  # set by the batch worker to the GPU a trial is pinned to
QUIET_KEYS = frozenset({"cpu"})  # devices whose measurements other trials' builds would perturb
_held = threading.local()  # shared holds of this thread (a measurement inside one would wait on itself)


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
    """Hold the device alone for one measured run; records how long it waited."""
    if getattr(_held, "shared", 0):
        raise RuntimeError(f"measurement of {key} requested while this thread holds a shared hold on a device")
    d = _folder(folder)
    t0 = time.monotonic()
    with FileLock(str(d / _file_name(key))), _device_rw(d, key) as rw, rw.write_lock():
        yield LockHold(key=key, wait_s=time.monotonic() - t0)


@contextmanager
def run_hold(key: str, folder: Path | None = None) -> Iterator[LockHold]:
    """Shared hold for an unmeasured run of a program on device `key`: waits while a measurement
    of that device is in progress or waiting, and keeps new ones out until it ends."""
    with _shared(key, folder) as hold:
        yield hold


@contextmanager
def build_hold(key: str, folder: Path | None = None) -> Iterator[LockHold]:
    """Shared hold for host work that runs nothing on the device (a build): needed only where the
    measured device is the CPU itself; a no-op for GPUs, whose meters do not see it."""
    if key not in QUIET_KEYS:
        yield LockHold(key=key)
        return
    with _shared(key, folder) as hold:
        yield hold


@contextmanager
def _shared(key: str, folder: Path | None) -> Iterator[LockHold]:
    t0 = time.monotonic()
    with _device_rw(_folder(folder), key) as rw, rw.read_lock():
        _held.shared = getattr(_held, "shared", 0) + 1
        try:
            yield LockHold(key=key, wait_s=time.monotonic() - t0)
        finally:
            _held.shared -= 1


def _folder(folder: Path | None) -> Path:
    d = folder or lock_dir()
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextmanager
def _device_rw(folder: Path, key: str) -> Iterator[ReadWriteLock]:
    """The reader/writer lock of device `key`: an instance per hold, so threads wait on each other."""
    rw = ReadWriteLock(str(folder / _file_name(key + ".busy")), is_singleton=False)
    try:
        yield rw
    finally:
        rw.close()

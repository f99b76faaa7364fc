"""One measurement at a time per device: a node-local flock named by the GPU's UUID.

Several trials share a node so that LLM waits and compiles overlap, but two programs measured
on one GPU (or on one CPU package, for RAPL) at once would spoil both figures. Each measured
run holds the device's lock; the kernel drops a flock when its holder dies, so a killed trial
never leaves a stale lock behind. The lock folder must be local to the node (never a shared
file system, where flock may be emulated or absent).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

LOCK_DIR_ENV = "LASSI_LOCK_DIR"  # node-local folder for the lock files
DEVICE_ENV = "LASSI_GPU_UUID"  # set by the batch worker to the GPU a trial is pinned to


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
    d = folder or lock_dir()
    d.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(d / _file_name(key)))
    t0 = time.monotonic()
    with lock:
        yield LockHold(key=key, wait_s=time.monotonic() - t0)

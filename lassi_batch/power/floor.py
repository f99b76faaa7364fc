"""Each device's idle floor, learnt from clean measurements and kept for the node.

A GPU that just ran something is not idle: an H100 holds ~133 W for ~2 s after a CUDA process
ends, and a neighbour's run may have ended just before this measurement got the device. A
baseline read there turns the net energy into a fraction of the truth, or negative (the demo
run on an H100 saw pre-run "idle" at 117-127 W against a 71 W floor). So settling waits for the
floor itself, the lowest idle level seen by clean, settled measurements of this device on this
node, within the settle tolerance; the floor is kept in the node-local lock folder, so every
trial on the node shares it and a reboot forgets it.

A floor can drift up (a warm GPU idles a few watts higher): a level that stays flat for the whole
settle timeout within DRIFT_MAX of the floor is accepted as the new idle, and said so; anything
higher is a device that did not settle, and the measurement is taken again.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path

from ..system.devlock import lock_dir

KEEP = 32  # recent idle levels kept per device and channel
MAX_AGE_S = 6 * 3600.0  # older levels no longer define the floor (room temperature, cooling change)
DRIFT_MAX = 1.2  # a flat level up to this multiple of the floor is idle drift, not a busy device
RISEN = 5  # this many latest levels all above the floor (by RISEN_BY) mean the floor itself rose
RISEN_BY = 1.05


def floor_of(levels: list[tuple[float, float]], now: float, max_age_s: float = MAX_AGE_S) -> float | None:
    """The floor from (wall time, watts) entries, oldest first: the lowest recent finite level,
    or the lowest of the latest RISEN when all of those lie above it (a drift accepted again and
    again; without this each measurement would wait out the settle timeout) (pure)."""
    recent = [w for t, w in levels if now - t <= max_age_s and math.isfinite(w) and w > 0]
    if not recent:
        return None
    lowest, latest = min(recent), recent[-RISEN:]
    if len(latest) == RISEN and min(latest) > lowest * RISEN_BY:
        return min(latest)
    return lowest


def _path(device_id: str, channel: str, folder: Path | None) -> Path:
    key = re.sub(r"[^A-Za-z0-9._-]", "_", f"{device_id}.{channel}")
    return (folder or lock_dir()) / f"{key}.idle.json"


def _read(path: Path) -> list[tuple[float, float]]:
    try:
        data = json.loads(path.read_text())
        return [(float(t), float(w)) for t, w in data]
    except (OSError, ValueError, TypeError):
        return []  # absent or unreadable: no floor known yet


def node_floor(device_id: str, channel: str, folder: Path | None = None) -> float | None:
    """The device's idle floor on this node for `channel` (W), or None while none is known."""
    if not device_id:
        return None
    return floor_of(_read(_path(device_id, channel, folder)), time.time())


def record_idle(device_id: str, channel: str, watts: float, folder: Path | None = None) -> None:
    """Add a clean, settled idle level. Only the device's measurement-lock holder writes."""
    if not device_id or not (math.isfinite(watts) and watts > 0):
        return
    path = _path(device_id, channel, folder)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        levels = (_read(path) + [(time.time(), float(watts))])[-KEEP:]
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(levels))
        os.replace(tmp, path)
    except OSError:
        pass  # a floor not kept costs settling time later, never a wrong figure

"""Looking at the host's processes from a test (what a sandboxed run may have left behind)."""

from __future__ import annotations

import time
from pathlib import Path


def alive_with(token: str) -> list[int]:
    """Host pids whose command line holds `token` (zombies excluded)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (d / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if token in cmd and state not in ("Z", "X"):
            out.append(int(d.name))
    return out


def wait_gone(token: str, timeout_s: float = 10.0) -> list[int]:
    """Wait until no process carries `token`; returns those still alive at the deadline."""
    deadline = time.monotonic() + timeout_s
    while (left := alive_with(token)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left

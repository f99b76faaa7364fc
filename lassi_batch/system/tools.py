"""Trusted system tools (nvidia-smi, lscpu, compilers' --version): timed out, no secrets passed."""

from __future__ import annotations

import os
import shutil
import subprocess

from ..core.secrets import looks_secret

TIMEOUT_S = 15.0


def run_tool(argv: list[str], timeout: float = TIMEOUT_S) -> tuple[int | None, str]:
    """(exit code, stdout+stderr) of a trusted system tool; (None, reason) when it could not run."""
    if not shutil.which(argv[0]):
        return None, f"{argv[0]}: not available on this machine"
    env = {k: v for k, v in os.environ.items() if not looks_secret(k)}
    try:
        p = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout,
                           stdin=subprocess.DEVNULL, env=env)
    except subprocess.TimeoutExpired:
        return None, f"{argv[0]}: no answer within {timeout:g} s"
    except OSError as e:
        return None, f"{argv[0]}: cannot run ({e.strerror or e})"
    return p.returncode, (p.stdout + p.stderr).strip()


def tool_version(cmd: str) -> str:
    """The telling line of `<cmd> --version` ('' when absent): hipcc's 'HIP version', nvcc's 'release', else the first."""
    code, out = run_tool([cmd, "--version"], timeout=TIMEOUT_S)
    if code is None or not out:
        return ""
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    for key in ("hip version", "release"):
        for ln in lines:
            if key in ln.lower():
                return ln
    return lines[0] if lines else ""

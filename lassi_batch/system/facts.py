"""What machine a trial ran on: text for the LLM's system context, and a record for the archive.

Every probe is a short, timed-out subprocess or an optional library; a missing tool becomes a
line saying so, never an exception. Nothing that looks like a secret is ever collected.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform as _platform
import shlex
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

from .. import __version__
from ..core.config import ContainerConfig, PlatformConfig
from ..core.secrets import looks_secret
from .gpus import discover
from .tools import run_tool, tool_version

MAX_CHARS = 30000  # per command, keeps the LLM context bounded on many-GPU nodes

_DETAIL_COMMANDS: dict[str, list[list[str]]] = {
    "cuda": [["nvidia-smi", "-q"]],
    "hip": [["amd-smi", "static"], ["rocm-smi", "--showproductname"]],  # second only if the first is missing
    "cpu": [["lscpu"]],
}
_SLURM_VARS = (
    "SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_NAME", "SLURM_JOB_PARTITION",
    "SLURM_JOB_NODELIST", "SLURMD_NODENAME", "SLURM_CLUSTER_NAME", "SLURM_JOB_ACCOUNT", "SLURM_JOB_QOS",
    "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_CPUS_PER_TASK", "SLURM_RESTART_COUNT",
)
_ENV_VARS = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER",
             "OMP_NUM_THREADS", "OMP_PROC_BIND", "OMP_PLACES", "HIP_PLATFORM")


def system_details(platform_kind: str) -> str:
    """Hardware description for the LLM prompt (nvidia-smi -q, amd-smi static, or lscpu)."""
    missing: list[str] = []
    for argv in _DETAIL_COMMANDS.get(platform_kind, _DETAIL_COMMANDS["cpu"]):
        if not shutil.which(argv[0]):
            missing.append(f"{argv[0]}: not available on this machine")
            continue  # try the next tool
        code, out = run_tool(argv)
        if len(out) > MAX_CHARS:
            out = out[:MAX_CHARS] + "\n[... truncated ...]"
        return f"$ {shlex.join(argv)}\n{out}" if code is not None else out
    return "\n".join(missing)


def _os_name() -> str:
    try:
        with open("/etc/os-release") as fh:
            for line in fh:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return _platform.platform()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return _platform.processor()


def environment(platform: PlatformConfig, container: ContainerConfig) -> dict[str, Any]:
    """Record of the machine, toolchain, container and scheduler (JSON-serialisable, no secrets)."""
    try:
        compiler0 = shlex.split(platform.compiler_line)[0]
    except (ValueError, IndexError):
        compiler0 = ""
    compilers = {c: v for c in ("nvcc", "hipcc", "g++") if (v := tool_version(c))}
    env: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "os": _os_name(),
        "kernel": _platform.release(),
        "machine": _platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count() or 0,
        "python": sys.version.split()[0],
        "lassi_batch": __version__,
        "platform": platform.kind,
        "compiler_line": platform.compiler_line,
        "compiler_version": compilers.get(compiler0) or (tool_version(compiler0) if compiler0 else ""),
        "compilers": compilers,
        "gpus": [],
        "container": {"runtime": container.runtime, "image": container.image, "digest": "", "version": ""},
        "slurm": {k: os.environ[k] for k in _SLURM_VARS if k in os.environ and not looks_secret(k)},
        "env": {k: os.environ[k] for k in _ENV_VARS if k in os.environ and not looks_secret(k)},
    }
    if platform.kind in ("cuda", "hip"):
        gpus, env["gpu_source"] = discover(platform.kind)
        env["gpus"] = [g.record() for g in gpus]  # every GPU of the node, in PCI order
    if container.runtime == "apptainer":
        env["container"]["digest"] = image_digest(container.image)
        env["container"]["version"] = tool_version("apptainer")
    return env


_digests: dict[str, tuple[int, int, str]] = {}  # path -> (mtime_ns, size, sha256)
# A batch submission hashes the image once and passes the digest to every trial through this
# variable (JSON: {path: [mtime_ns, size, sha256]}); a changed file (mtime or size) is re-hashed.
DIGEST_ENV = "LASSI_IMAGE_DIGESTS"


def _seed_digests() -> None:
    try:
        given = json.loads(os.environ.get(DIGEST_ENV, "") or "{}")
        for path, (mtime, size, sha) in given.items():
            _digests[str(path)] = (int(mtime), int(size), str(sha))
    except (ValueError, TypeError):
        pass  # a malformed hint only costs a re-hash


def digest_hint(image: str) -> dict[str, list]:
    """The DIGEST_ENV entry for `image` (hashing it now), {} when it is not a local file."""
    sha = image_digest(image)
    if not sha:
        return {}
    p = Path(image).expanduser()
    st = p.stat()
    return {str(p.resolve()): [st.st_mtime_ns, st.st_size, sha]}


def image_digest(image: str) -> str:
    """sha256 (hex) of a local image file, cached by path, mtime and size; '' when not a file."""
    p = Path(image).expanduser()
    try:
        st = p.stat()
    except OSError:
        return ""
    if not p.is_file():
        return ""
    key = str(p.resolve())
    if not _digests:
        _seed_digests()
    hit = _digests.get(key)
    if hit and hit[0] == st.st_mtime_ns and hit[1] == st.st_size:
        return hit[2]
    h = hashlib.sha256()
    try:
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return ""
    _digests[key] = (st.st_mtime_ns, st.st_size, h.hexdigest())
    return h.hexdigest()

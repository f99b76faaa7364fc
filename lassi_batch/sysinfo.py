"""What machine a trial ran on: text for the LLM's system context, and a record for the archive.

Every probe is a short, timed-out subprocess or an optional library; a missing tool becomes a
line saying so, never an exception. Nothing that looks like a secret is ever collected.
"""

from __future__ import annotations

import os
import platform as _platform
import shlex
import shutil
import socket
import subprocess
import sys
import warnings
from typing import Any

from . import __version__
from .config import ContainerConfig, PlatformConfig
from .toolchain import looks_secret

TIMEOUT_S = 15.0
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


def import_pynvml() -> Any:
    """pynvml from nvidia-ml-py, without the deprecation warning of the old `pynvml` shim."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pynvml
    return pynvml


def nvidia_gpus() -> tuple[list[dict[str, Any]], str]:
    """NVIDIA GPUs as dicts (index, name, uuid, pci_bus_id, memory_mb, driver) and the source used."""
    why = ""
    try:
        pynvml = import_pynvml()
        pynvml.nvmlInit()
        try:
            def s(x: Any) -> str:
                return x.decode() if isinstance(x, bytes) else str(x)

            driver = s(pynvml.nvmlSystemGetDriverVersion())
            gpus = []
            for i in range(pynvml.nvmlDeviceGetCount()):
                h = pynvml.nvmlDeviceGetHandleByIndex(i)
                gpus.append({
                    "index": i, "name": s(pynvml.nvmlDeviceGetName(h)), "uuid": s(pynvml.nvmlDeviceGetUUID(h)),
                    "pci_bus_id": s(pynvml.nvmlDeviceGetPciInfo(h).busId),
                    "memory_mb": int(pynvml.nvmlDeviceGetMemoryInfo(h).total) >> 20, "driver": driver,
                })
            return gpus, "pynvml"
        finally:
            pynvml.nvmlShutdown()
    except ImportError:
        why = "pynvml not installed"
    except Exception as e:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        why = f"NVML: {e}"
    code, out = run_tool(["nvidia-smi", "--query-gpu=index,name,uuid,pci.bus_id,memory.total,driver_version",
                          "--format=csv,noheader,nounits"])
    if code != 0:
        return [], f"{why}; {out.splitlines()[0] if out else 'nvidia-smi failed'}"
    gpus = []
    for line in out.splitlines():
        f = [x.strip() for x in line.split(",")]
        if len(f) == 6 and f[0].isdigit():
            gpus.append({"index": int(f[0]), "name": f[1], "uuid": f[2], "pci_bus_id": f[3],
                         "memory_mb": int(float(f[4])) if f[4].replace(".", "").isdigit() else 0, "driver": f[5]})
    return gpus, "nvidia-smi"


def amd_gpus() -> tuple[list[dict[str, Any]], str]:
    """AMD GPUs (index, name, uuid where known) via the amdsmi library, else `amd-smi list`."""
    why = ""
    try:
        import amdsmi  # type: ignore[import-not-found]

        amdsmi.amdsmi_init()
        try:
            gpus = []
            for i, h in enumerate(amdsmi.amdsmi_get_processor_handles()):
                info = amdsmi.amdsmi_get_gpu_asic_info(h)
                gpus.append({"index": i, "name": str(info.get("market_name", "AMD GPU")),
                             "uuid": str(amdsmi.amdsmi_get_gpu_device_uuid(h))})
            return gpus, "amdsmi"
        finally:
            amdsmi.amdsmi_shut_down()
    except ImportError:
        why = "amdsmi not installed"
    except Exception as e:  # library present but no libamd_smi.so / no driver
        why = f"amdsmi: {e}"
    code, out = run_tool(["amd-smi", "list"])
    if code != 0:
        return [], f"{why}; {out.splitlines()[0] if out else 'amd-smi failed'}"
    gpus = [{"index": int(ln.split(":", 1)[1]), "name": "AMD GPU"} for ln in out.splitlines()
            if ln.strip().startswith("GPU:") and ln.split(":", 1)[1].strip().isdigit()]
    return gpus, "amd-smi"


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
    if platform.kind == "cuda":
        env["gpus"], env["gpu_source"] = nvidia_gpus()
    elif platform.kind == "hip":
        env["gpus"], env["gpu_source"] = amd_gpus()
    if container.runtime == "apptainer":
        from .container import image_digest

        env["container"]["digest"] = image_digest(container.image)
        env["container"]["version"] = tool_version("apptainer")
    return env

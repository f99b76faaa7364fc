"""GPU discovery: the one place that lists GPUs and decides which one a program sees.

Devices are named by UUID or PCI bus id, never by a vendor library's index, because NVML's and
the CUDA runtime's index orders differ unless CUDA_DEVICE_ORDER=PCI_BUS_ID.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..core.errors import MeterUnavailable
from .tools import run_tool


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


def default_platform_kind(nvidia: list | None = None, amd: list | None = None) -> str:
    """cuda when an NVIDIA GPU is visible, else hip when an AMD one is, else cpu."""
    if (nvidia if nvidia is not None else nvidia_gpus()[0]):
        return "cuda"
    if (amd if amd is not None else amd_gpus()[0]):
        return "hip"
    return "cpu"


def cuda_device(device: str) -> str:
    """CUDA_VISIBLE_DEVICES takes an index or UUID; turn a PCI bus id into the UUID when NVML can."""
    if ":" not in device or device.upper().startswith(("GPU-", "MIG-")):
        return device
    try:
        pynvml = import_pynvml()
        pynvml.nvmlInit()
        try:
            uuid = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByPciBusId(device))
            return uuid.decode() if isinstance(uuid, bytes) else str(uuid)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVML or unknown bus id: pass it through, the runtime will complain
        return device


@dataclass(frozen=True)
class GpuInfo:
    """One physical GPU as the vendor library lists it (never identified by the library's index)."""

    uuid: str  # "GPU-..." (NVIDIA) or the AMD UUID
    pci_bus_id: str  # "00000000:3B:00.0" or "0000:3b:00.0"
    name: str = ""
    mig_uuids: tuple[str, ...] = ()  # MIG instances carved out of this GPU


_PCI = re.compile(r"(?:([0-9a-fA-F]{1,8}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])")



def parse_pci(bus_id: str) -> tuple[int, int, int, int] | None:
    """(domain, bus, device, function) of a PCI bus id in NVML, CUDA or lspci spelling."""
    m = _PCI.fullmatch(bus_id.strip())
    if not m:
        return None
    dom, bus, dev, fn = m.groups()
    return int(dom or "0", 16), int(bus, 16), int(dev, 16), int(fn, 16)


def pci_order(devices: Sequence[GpuInfo]) -> list[GpuInfo]:
    """Devices in PCI bus order: the order CUDA uses with CUDA_DEVICE_ORDER=PCI_BUS_ID."""
    far = (1 << 40, 0, 0, 0)
    return sorted(devices, key=lambda d: parse_pci(d.pci_bus_id) or far)


def match_device(entry: str, devices: Sequence[GpuInfo]) -> tuple[GpuInfo | None, str]:
    """The device one *_VISIBLE_DEVICES entry names (index in `devices`' order, UUID or unique
    UUID prefix, MIG UUID, PCI bus id), and a note for MIG instances. None when it names none."""
    e = entry.strip()
    if re.fullmatch(r"\d+", e):
        i = int(e)
        return (devices[i] if i < len(devices) else None), ""
    up = e.upper()
    if up.startswith("MIG-"):
        note = f"{e} is a MIG instance: power and energy are those of the whole GPU, shared with other instances"
        rest = e[4:]
        if rest.upper().startswith("GPU-") and "/" in rest:  # legacy MIG-GPU-<uuid>/<gi>/<ci>
            parent = rest.split("/")[0].upper()
            return next((d for d in devices if d.uuid.upper() == parent), None), note
        hits = [d for d in devices if any(m.upper().startswith(up) for m in d.mig_uuids)]
        return (hits[0] if len(hits) == 1 else None), note
    if up.startswith("GPU-") or (parse_pci(e) is None and len(e) >= 8):
        hits = [d for d in devices if d.uuid.upper().startswith(up)]
        return (hits[0] if len(hits) == 1 else None), ""
    pci = parse_pci(e)
    if pci is not None:
        return next((d for d in devices if parse_pci(d.pci_bus_id) == pci), None), ""
    return None, ""


def visible_devices(spec: str | None, devices: Sequence[GpuInfo]) -> tuple[list[GpuInfo], list[str]]:
    """Apply one *_VISIBLE_DEVICES value to `devices` as the CUDA/ROCm runtimes do.

    None (unset) keeps all; entries are comma separated; parsing stops at the first entry that
    names no device; duplicates are ignored.
    """
    if spec is None:
        return list(devices), []
    out: list[GpuInfo] = []
    notes: list[str] = []
    for entry in spec.split(","):
        if not entry.strip():
            break
        dev, note = match_device(entry, devices)
        if dev is None:
            break
        if dev not in out:
            out.append(dev)
            if note:
                notes.append(note)
    return out, notes


def resolve_gpu(levels: Sequence[tuple[str, str | None]], devices: Sequence[GpuInfo]) -> tuple[GpuInfo, list[str]]:
    """The GPU the measured program uses as its device 0.

    `levels` are (variable name, value or None) applied in order, each filtering the list left
    by the previous one (AMD: ROCR_VISIBLE_DEVICES then HIP_VISIBLE_DEVICES; NVIDIA: the
    CUDA_VISIBLE_DEVICES the program will get). Indexes count in PCI bus order.
    """
    current = pci_order(devices)
    if not current:
        raise MeterUnavailable("no GPU listed by the vendor library")
    notes: list[str] = []
    for var, value in levels:
        before = current
        current, n = visible_devices(value, current)
        notes += n
        if not current:
            listed = ", ".join(f"{i}={d.uuid}@{d.pci_bus_id}" for i, d in enumerate(before))
            raise MeterUnavailable(f"{var}={value!r} names no GPU (PCI order: {listed})")
    return current[0], notes

"""GPU discovery: the one place that lists GPUs and decides which one a program sees.

Devices are named by UUID or PCI bus id, never by a vendor library's index, because NVML's and
the CUDA runtime's index orders differ unless CUDA_DEVICE_ORDER=PCI_BUS_ID.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import MeterUnavailable
from .tools import run_tool

PIN_ENV = "LASSI_GPU_UUID"  # set by the batch worker to the UUID of the GPU a trial is pinned to


def import_pynvml() -> Any:
    """pynvml from nvidia-ml-py, without the deprecation warning of the old `pynvml` shim."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pynvml
    return pynvml


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def nvml_gpus(nv: Any) -> tuple[list[GpuInfo], list[str]]:
    """Every GPU an initialised NVML (`nv`) can read, in PCI order, numbered in that order.

    Enumeration only: handles are re-opened by UUID wherever one GPU is read."""
    notes: list[str] = []
    try:
        driver = _text(nv.nvmlSystemGetDriverVersion())
    except (nv.NVMLError, AttributeError):
        driver = ""
    out: list[GpuInfo] = []
    for i in range(nv.nvmlDeviceGetCount()):
        try:
            h = nv.nvmlDeviceGetHandleByIndex(i)
            uuid = _text(nv.nvmlDeviceGetUUID(h))
            bus = _text(nv.nvmlDeviceGetPciInfo(h).busId)
            name = _text(nv.nvmlDeviceGetName(h))
        except nv.NVMLError as e:
            notes.append(f"NVML device {i} unreadable ({e}); skipped")
            continue
        extra: dict[str, Any] = {}
        for key, read in (("memory_mb", lambda: int(nv.nvmlDeviceGetMemoryInfo(h).total) >> 20),
                          ("minor", lambda: int(nv.nvmlDeviceGetMinorNumber(h)))):
            try:
                extra[key] = read()
            except (nv.NVMLError, AttributeError, TypeError, ValueError):
                pass  # not supported here (MIG children, old drivers): stays unknown
        migs: list[str] = []
        try:
            current, _pending = nv.nvmlDeviceGetMigMode(h)
            if current:
                for k in range(nv.nvmlDeviceGetMaxMigDeviceCount(h)):
                    try:
                        migs.append(_text(nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetMigDeviceHandleByIndex(h, k))))
                    except nv.NVMLError:
                        continue
        except (nv.NVMLError, AttributeError, TypeError):
            pass
        out.append(GpuInfo(uuid=uuid, pci_bus_id=bus, name=name, mig_uuids=tuple(migs), driver=driver, **extra))
    return numbered(out), notes


def nvidia_gpus() -> tuple[list[GpuInfo], str]:
    """NVIDIA GPUs in PCI order and the source used (pynvml, else nvidia-smi); ([], why) if none."""
    why = ""
    try:
        pynvml = import_pynvml()
        pynvml.nvmlInit()
        try:
            return nvml_gpus(pynvml)[0], "pynvml"
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
            gpus.append(GpuInfo(uuid=f[2], pci_bus_id=f[3], name=f[1], driver=f[5],
                                memory_mb=int(float(f[4])) if f[4].replace(".", "").isdigit() else 0))
    return numbered(gpus), "nvidia-smi"


def amdsmi_gpus(lib: Any) -> tuple[list[GpuInfo], dict[str, Any]]:
    """Every GPU an initialised amdsmi (`lib`) lists, in PCI order, and their handles by identity
    (UUID, else PCI bus id)."""
    gpus: list[GpuInfo] = []
    handles: dict[str, Any] = {}
    for h in lib.amdsmi_get_processor_handles():
        try:
            uuid = str(lib.amdsmi_get_gpu_device_uuid(h))
        except Exception:
            uuid = ""
        bdf = str(lib.amdsmi_get_gpu_device_bdf(h))
        try:
            name = str(lib.amdsmi_get_gpu_asic_info(h).get("market_name", ""))
        except Exception:
            name = ""
        g = GpuInfo(uuid=uuid, pci_bus_id=bdf, name=name, render_node=_render_node(bdf))
        gpus.append(g)
        handles[g.key] = h
    return numbered(gpus), handles


def amd_gpus() -> tuple[list[GpuInfo], str]:
    """AMD GPUs in PCI order via the amdsmi library, else `amd-smi list`; ([], why) if none."""
    why = ""
    try:
        import amdsmi  # type: ignore[import-not-found]

        amdsmi.amdsmi_init()
        try:
            return amdsmi_gpus(amdsmi)[0], "amdsmi"
        finally:
            amdsmi.amdsmi_shut_down()
    except ImportError:
        why = "amdsmi not installed"
    except Exception as e:  # library present but no libamd_smi.so / no driver
        why = f"amdsmi: {e}"
    code, out = run_tool(["amd-smi", "list"])
    if code != 0:
        return [], f"{why}; {out.splitlines()[0] if out else 'amd-smi failed'}"
    return numbered(_amd_smi_list(out)), "amd-smi"


def _amd_smi_list(text: str) -> list[GpuInfo]:
    """GPUs of `amd-smi list` text: a `GPU: N` line, then indented `BDF:` and `UUID:` lines."""
    blocks: list[dict[str, str]] = []
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if not sep:
            continue
        key, value = key.strip().upper(), value.strip()
        if key == "GPU" and value.isdigit():
            blocks.append({})
        elif blocks and key in ("BDF", "UUID"):
            blocks[-1][key] = value
    return [GpuInfo(uuid=b.get("UUID", ""), pci_bus_id=b.get("BDF", ""), name="AMD GPU",
                    render_node=_render_node(b.get("BDF", ""))) for b in blocks]


def _render_node(bdf: str, sys_root: str = "/sys/bus/pci/devices") -> str:
    """/dev/dri/renderD<N> of the GPU at PCI address `bdf` ('' when sysfs does not say)."""
    pci = parse_pci(bdf)
    if pci is None:
        return ""
    folder = Path(sys_root) / "{:04x}:{:02x}:{:02x}.{:x}".format(*pci) / "drm"
    try:
        names = sorted(n.name for n in folder.iterdir() if n.name.startswith("renderD"))
    except OSError:
        return ""
    return f"/dev/dri/{names[0]}" if names else ""


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
    """One physical GPU as the vendor library lists it. Identified by UUID (else PCI bus id),
    never by a library's index; `index` is its position in PCI order, the order CUDA counts in
    with CUDA_DEVICE_ORDER=PCI_BUS_ID and ROCm counts in."""

    uuid: str  # "GPU-..." (NVIDIA) or the AMD UUID
    pci_bus_id: str  # "00000000:3B:00.0" or "0000:3b:00.0"
    name: str = ""
    mig_uuids: tuple[str, ...] = ()  # MIG instances carved out of this GPU
    index: int = -1  # position in PCI order among the GPUs listed (-1: not numbered)
    memory_mb: int = 0
    driver: str = ""
    minor: int = -1  # NVIDIA: the N of /dev/nvidiaN (-1: unknown)
    render_node: str = ""  # AMD: /dev/dri/renderD<N> ('' if unknown)

    @property
    def key(self) -> str:
        """The identity other code names this GPU by."""
        return self.uuid or self.pci_bus_id

    def record(self) -> dict[str, Any]:
        """A plain mapping for archives and reports."""
        d = dataclasses.asdict(self)
        d["mig_uuids"] = list(self.mig_uuids)
        return d


def numbered(devices: Sequence[GpuInfo]) -> list[GpuInfo]:
    """`devices` in PCI order with `index` set to the position in that order."""
    return [dataclasses.replace(d, index=i) for i, d in enumerate(pci_order(devices))]


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


def discover(platform_kind: str) -> tuple[list[GpuInfo], str]:
    """The GPUs of a platform's vendor, in PCI order, and the source used (or why there are none)."""
    if platform_kind == "cuda":
        return nvidia_gpus()
    if platform_kind == "hip":
        return amd_gpus()
    return [], f"no GPUs on the {platform_kind} platform"


def program_levels(platform_kind: str, device: str, env: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """The visible-devices settings a program of the platform runs under, in the order its runtime
    applies them: the platform's device where set (the sandbox exports it), else the inherited
    variables. Input to `resolve_gpu`."""
    if platform_kind == "cuda":
        return [("device", device)] if device else [("CUDA_VISIBLE_DEVICES", env.get("CUDA_VISIBLE_DEVICES"))]
    if platform_kind == "hip":
        return [("ROCR_VISIBLE_DEVICES", env.get("ROCR_VISIBLE_DEVICES")),
                ("device", device) if device else ("HIP_VISIBLE_DEVICES", env.get("HIP_VISIBLE_DEVICES"))]
    return []


def pinned_device(platform_kind: str, device: str, env: Mapping[str, str]) -> str:
    """The platform device a trial uses: the GPU the batch worker pinned it to (PIN_ENV, a UUID)
    wins over the study's `device`, which would otherwise send every trial of a node to one GPU.

    CUDA gets the UUID itself; HIP gets "0", the one GPU ROCR_VISIBLE_DEVICES=<UUID> leaves."""
    pin = env.get(PIN_ENV, "")
    if not pin or platform_kind not in ("cuda", "hip"):
        return device
    return pin if platform_kind == "cuda" else "0"


def device_nodes(gpu: GpuInfo, platform_kind: str) -> list[str] | None:
    """The device node of this one GPU that a sandbox passes along with the control nodes
    (/dev/nvidiaN from NVML's minor number; AMD: its /dev/dri/renderD node). None when the
    driver does not say which node is this GPU's: then every GPU node is passed."""
    if platform_kind == "cuda" and gpu.minor >= 0 and not gpu.mig_uuids:  # MIG needs /dev/nvidia-caps too
        return [f"/dev/nvidia{gpu.minor}"]
    if platform_kind == "hip" and gpu.render_node:
        return [gpu.render_node]
    return None

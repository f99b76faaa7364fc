"""A fake `pynvml` (nvidia-ml-py) with the real names and return shapes the NVML meter uses.

Devices are listed in NVML index order, which tests deliberately make differ from PCI order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_NOT_SUPPORTED = 3
NVML_TEMPERATURE_GPU = 0
NVML_FI_DEV_POWER_INSTANT = 186
NVML_VALUE_TYPE_UNSIGNED_INT = 1


class NVMLError(Exception):
    def __init__(self, value: int = 999) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


class NVMLError_LibraryNotFound(NVMLError):
    def __init__(self) -> None:
        super().__init__(12)


class NVMLError_NotSupported(NVMLError):
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_NOT_SUPPORTED)


@dataclass
class FakeGpu:
    uuid: str
    bus_id: str
    name: str = "NVIDIA H100 80GB HBM3"
    power_mw: int = 74000
    average_mw: int = 74000
    instant_supported: bool = True
    counter_supported: bool = True
    mig: list[str] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)


@dataclass
class _State:
    gpus: list[FakeGpu] = field(default_factory=list)
    missing_library: bool = False
    calls: list[tuple[str, Any]] = field(default_factory=list)


STATE = _State()


def configure(gpus: list[FakeGpu], missing_library: bool = False) -> None:
    STATE.gpus = gpus
    STATE.missing_library = missing_library
    STATE.calls = []


def nvmlInit() -> None:
    if STATE.missing_library:
        raise NVMLError_LibraryNotFound()


def nvmlShutdown() -> None:
    STATE.calls.append(("nvmlShutdown", None))


def nvmlDeviceGetCount() -> int:
    return len(STATE.gpus)


def nvmlDeviceGetHandleByIndex(i: int) -> FakeGpu:
    STATE.calls.append(("ByIndex", i))
    return STATE.gpus[i]


def nvmlDeviceGetHandleByUUID(uuid: str) -> FakeGpu:
    STATE.calls.append(("ByUUID", uuid))
    for g in STATE.gpus:
        if g.uuid == uuid:
            return g
    raise NVMLError(13)


def nvmlDeviceGetHandleByPciBusId(bus: str) -> FakeGpu:
    STATE.calls.append(("ByPciBusId", bus))
    for g in STATE.gpus:
        if g.bus_id.lower() == bus.lower():
            return g
    raise NVMLError(13)


def nvmlDeviceGetUUID(h: Any) -> str:
    return h.uuid if isinstance(h, FakeGpu) else str(h)


class _Pci:
    def __init__(self, bus: str) -> None:
        self.busId = bus.encode()  # older bindings return bytes


def nvmlDeviceGetPciInfo(h: FakeGpu) -> _Pci:
    return _Pci(h.bus_id)


def nvmlDeviceGetName(h: FakeGpu) -> str:
    return h.name


def nvmlSystemGetDriverVersion() -> str:
    return "580.159.04"


class _Memory:
    total = 80 << 30


def nvmlDeviceGetMemoryInfo(h: FakeGpu) -> _Memory:
    return _Memory()


def nvmlDeviceGetMigMode(h: FakeGpu) -> tuple[int, int]:
    return (1, 1) if h.mig else (0, 0)


def nvmlDeviceGetMaxMigDeviceCount(h: FakeGpu) -> int:
    return len(h.mig)


def nvmlDeviceGetMigDeviceHandleByIndex(h: FakeGpu, k: int) -> str:
    return h.mig[k]


class _Value:
    def __init__(self, v: int) -> None:
        self.uiVal = v
        self.dVal = float(v)


class _Field:
    def __init__(self, ret: int, v: int) -> None:
        self.fieldId = NVML_FI_DEV_POWER_INSTANT
        self.nvmlReturn = ret
        self.valueType = NVML_VALUE_TYPE_UNSIGNED_INT
        self.value = _Value(v)


def nvmlDeviceGetFieldValues(h: FakeGpu, ids: list[int]) -> list[_Field]:
    if not h.instant_supported:
        return [_Field(NVML_ERROR_NOT_SUPPORTED, 0) for _ in ids]
    return [_Field(NVML_SUCCESS, h.power_mw) for _ in ids]


def nvmlDeviceGetPowerUsage(h: FakeGpu) -> int:
    return h.average_mw


def nvmlDeviceGetTotalEnergyConsumption(h: FakeGpu) -> int:
    if not h.counter_supported:
        raise NVMLError_NotSupported()
    return int(5_000_000 + (time.monotonic() - h.t0) * h.power_mw)  # mJ


def nvmlDeviceGetTemperature(h: FakeGpu, sensor: int) -> int:
    return 41

"""A fake `amdsmi` module with the real API's function names and return shapes.

Shapes follow the ROCm amdsmi Python interface: amdsmi_get_power_info -> dict with
current_socket_power / average_socket_power in W ("N/A" when unsupported), amdsmi_get_energy_count
-> {"energy_accumulator" (>= 6.2.1) or "power" (older), "counter_resolution" (uJ), "timestamp"}.
Configure with `configure(...)` before the meter opens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


class AmdSmiException(Exception):
    pass


class AmdSmiLibraryException(AmdSmiException):
    def __init__(self, code: int = 2) -> None:
        super().__init__(f"AMDSMI_STATUS {code}")
        self.code = code

    def get_error_code(self) -> int:
        return self.code


class AmdSmiInitFlags:
    INIT_ALL_PROCESSORS = 0xFFFFFFFF
    INIT_AMD_GPUS = 2


class AmdSmiTemperatureType:
    EDGE = 0
    HOTSPOT = 1
    JUNCTION = 1


class AmdSmiTemperatureMetric:
    CURRENT = 0


class AmdSmiClkType:
    SYS = 0
    GFX = 0
    MEM = 4


@dataclass
class FakeGpu:
    bdf: str
    uuid: str
    name: str = "AMD Instinct MI300X"
    power_w: float = 120.0
    style: str = "mi300"  # mi300: current_socket_power only; mi200: average_socket_power only
    old_energy_key: bool = False
    resolution_uj: float = 15.3
    counter_scale: float = 1.0  # != 1: a faulty counter (reports energy x scale)
    counter_stuck: bool = False
    counter_supported: bool = True
    edge_temp: Any = 45
    clock_mhz: int | None = 2100  # None: the clock query is not supported
    processes: list[int] = field(default_factory=list)  # PIDs on the GPU
    process_style: str = "info"  # info: ROCm 6.1+ lists dicts; handles: older lists handles; none: unsupported
    gfx_activity: Any = 0
    t0: float = field(default_factory=time.monotonic)


@dataclass
class _State:
    gpus: list[FakeGpu] = field(default_factory=list)
    init_fails: bool = False
    initialized: bool = False
    calls: list[str] = field(default_factory=list)


STATE = _State()


def configure(gpus: list[FakeGpu], init_fails: bool = False) -> None:
    STATE.gpus = gpus
    STATE.init_fails = init_fails
    STATE.initialized = False
    STATE.calls = []


def amdsmi_init(flags: int = AmdSmiInitFlags.INIT_AMD_GPUS) -> None:
    STATE.calls.append("amdsmi_init")
    if STATE.init_fails:
        raise AmdSmiLibraryException(34)  # AMDSMI_STATUS_DRIVER_NOT_LOADED
    STATE.initialized = True


def amdsmi_shut_down() -> None:
    STATE.calls.append("amdsmi_shut_down")
    STATE.initialized = False


def _check() -> None:
    if not STATE.initialized:
        raise AmdSmiLibraryException(32)  # AMDSMI_STATUS_NOT_INIT


def amdsmi_get_processor_handles() -> list[FakeGpu]:
    _check()
    return list(STATE.gpus)


def amdsmi_get_gpu_device_uuid(h: FakeGpu) -> str:
    return h.uuid


def amdsmi_get_gpu_device_bdf(h: FakeGpu) -> str:
    return h.bdf


def amdsmi_get_gpu_asic_info(h: FakeGpu) -> dict[str, Any]:
    return {"market_name": h.name, "vendor_id": "0x1002", "device_id": "0x74a1"}


def amdsmi_get_power_info(h: FakeGpu) -> dict[str, Any]:
    _check()
    STATE.calls.append("amdsmi_get_power_info")
    if h.style == "mi300":
        return {"current_socket_power": int(h.power_w), "average_socket_power": "N/A",
                "gfx_voltage": 800, "soc_voltage": 900, "mem_voltage": 1100, "power_limit": 750}
    return {"current_socket_power": 0xFFFFFFFF, "average_socket_power": int(h.power_w),
            "gfx_voltage": 800, "soc_voltage": 900, "mem_voltage": 1100, "power_limit": 560}


def amdsmi_get_energy_count(h: FakeGpu) -> dict[str, Any]:
    _check()
    STATE.calls.append("amdsmi_get_energy_count")
    if not h.counter_supported:
        raise AmdSmiLibraryException(2)  # AMDSMI_STATUS_NOT_SUPPORTED
    elapsed = 0.0 if h.counter_stuck else time.monotonic() - h.t0
    uj = h.power_w * elapsed * 1e6 * h.counter_scale
    ticks = int(uj / h.resolution_uj) + 1_000_000
    key = "power" if h.old_energy_key else "energy_accumulator"
    return {key: ticks, "counter_resolution": h.resolution_uj, "timestamp": int(time.time() * 1e9)}


def amdsmi_get_temp_metric(h: FakeGpu, sensor: int, metric: int) -> Any:
    if sensor == AmdSmiTemperatureType.EDGE:
        if h.edge_temp == "N/A":
            raise AmdSmiLibraryException(2)
        return h.edge_temp
    return 60


def amdsmi_get_clock_info(h: FakeGpu, clk_type: int) -> dict[str, Any]:
    _check()
    if h.clock_mhz is None:
        raise AmdSmiLibraryException(2)
    return {"clk": h.clock_mhz, "min_clk": 500, "max_clk": 2100, "clk_locked": False, "clk_deep_sleep": False}


def amdsmi_get_gpu_process_list(h: FakeGpu) -> list[Any]:
    if h.process_style == "none":
        raise AmdSmiLibraryException(2)
    if h.process_style == "handles":
        return [("proc-handle", pid) for pid in h.processes]
    return [{"name": "prog", "pid": pid, "mem": 1 << 20} for pid in h.processes]


def amdsmi_get_gpu_process_info(h: FakeGpu, handle: Any) -> dict[str, Any]:
    return {"name": "prog", "pid": handle[1], "mem": 1 << 20}


def amdsmi_get_gpu_activity(h: FakeGpu) -> dict[str, Any]:
    return {"gfx_activity": h.gfx_activity, "umc_activity": 0, "mm_activity": "N/A"}

"""NVIDIA GPUs through NVML (nvidia-ml-py).

Three readings, with the costs measured on an H100 (docs/measurement.md):

* instant power, field NVML_FI_DEV_POWER_INSTANT (186): ~14 us per call, new value every
  ~100 ms -> the `instant` channel, read every sample;
* nvmlDeviceGetPowerUsage: on Ampere (except GA100) and newer a 1 s moving average, ~1 us ->
  the `average` channel, kept because the LASSI-EE paper integrated it;
* nvmlDeviceGetTotalEnergyConsumption (mJ since driver load, Volta and newer): new value every
  ~100 ms but ~4 ms per call -> the counter, read on its own ~100 ms cadence.

The GPU is found by UUID or PCI bus id, never by NVML index: NVML's enumeration order need not
match the order the program's CUDA runtime uses.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from ..core.config import PlatformConfig
from ..core.errors import MeterUnavailable
from ..system.gpus import GpuInfo, import_pynvml, nvml_gpus, program_levels, resolve_gpu
from .base import DEVICE_STATE, ChannelMeter

NAN = math.nan
FI_POWER_INSTANT = 186  # NVML_FI_DEV_POWER_INSTANT
TEMPERATURE_EVERY_S = 0.5  # temperature moves slowly; do not pay for it every 10 ms


def import_nvml() -> Any:
    """pynvml from nvidia-ml-py, without its deprecation chatter."""
    try:
        return import_pynvml()
    except ImportError as e:
        raise MeterUnavailable("nvidia-ml-py (pynvml) is not installed") from e


def _field_value(fv: Any) -> float:
    """Numeric value of an nvmlFieldValue_t according to its valueType."""
    kind = int(fv.valueType)
    member = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}.get(kind, "uiVal")
    return float(getattr(fv.value, member))


class NvmlMeter(ChannelMeter):
    """Instant + averaged power every sample, total-energy counter every ~100 ms."""

    name = "nvml"
    counter_interval_s = 0.1
    counter_update_s = 0.1  # H100: a new total-energy value every ~100 ms
    cold_start_s = 3.0  # H100: ~133 W for ~2 s after a CUDA process ends, idle after ~2.8 s
    learns_floor = True
    settle_hold_s = 0.3

    def __init__(self, nv: Any, handle: Any, gpu: GpuInfo) -> None:
        super().__init__(device=gpu.name or "NVIDIA GPU", device_id=gpu.uuid)
        self._nv = nv
        self._h = handle
        self.pci_bus_id = gpu.pci_bus_id
        self._instant_ok = self._probe_instant()
        self._average_ok = self._probe_average()
        self._counter_ok = self._probe_counter()
        self._temp = NAN
        self._temp_at = -math.inf
        if not self._instant_ok:
            self.notes.append("NVML instant power field (186) not supported on this GPU/driver: no instant channel")
        if not self._average_ok:
            self.notes.append("nvmlDeviceGetPowerUsage not supported: no averaged channel")
        if not self._counter_ok:
            self.notes.append(
                "nvmlDeviceGetTotalEnergyConsumption not supported (pre-Volta GPU?): "
                "energy from the instant channel instead of the counter"
            )
        if not (self._instant_ok or self._average_ok or self._counter_ok):
            raise MeterUnavailable(f"{self.device} reports neither power nor energy through NVML")

    # ---- opening

    @classmethod
    def open(cls, platform: PlatformConfig, env: Mapping[str, str]) -> NvmlMeter:
        nv = import_nvml()
        try:
            nv.nvmlInit()
        except nv.NVMLError as e:
            raise MeterUnavailable(f"NVML cannot start ({_nvml_reason(nv, e)})") from None
        try:
            gpus, notes = nvml_gpus(nv)
            if not gpus:
                raise MeterUnavailable("NVML lists no NVIDIA GPU" + (f" ({'; '.join(notes)})" if notes else ""))
            # the GPU the program sees: the platform's device if set (the sandbox exports it),
            # else this process's CUDA_VISIBLE_DEVICES; opened by UUID below
            gpu, more = resolve_gpu(program_levels("cuda", platform.device, env), gpus)
            try:
                handle = nv.nvmlDeviceGetHandleByUUID(gpu.uuid)
            except nv.NVMLError:
                handle = nv.nvmlDeviceGetHandleByPciBusId(gpu.pci_bus_id)
            meter = cls(nv, handle, gpu)
        except MeterUnavailable:
            nv.nvmlShutdown()
            raise
        except nv.NVMLError as e:
            nv.nvmlShutdown()
            raise MeterUnavailable(f"NVML error: {_nvml_reason(nv, e)}") from None
        meter.notes.extend(notes + more)
        return meter

    def _probe_instant(self) -> bool:
        try:
            fv = self._nv.nvmlDeviceGetFieldValues(self._h, [FI_POWER_INSTANT])[0]
            return int(fv.nvmlReturn) == 0 and _field_value(fv) > 0
        except (self._nv.NVMLError, AttributeError, IndexError):
            return False

    def _probe_average(self) -> bool:
        try:
            return self._nv.nvmlDeviceGetPowerUsage(self._h) > 0
        except self._nv.NVMLError:
            return False

    def _probe_counter(self) -> bool:
        try:
            self._nv.nvmlDeviceGetTotalEnergyConsumption(self._h)
            return True
        except self._nv.NVMLError:
            return False

    # ---- the Meter interface

    def read_power(self) -> tuple[float, float, float]:
        nv = self._nv
        inst = avg = NAN
        if self._instant_ok:
            fv = nv.nvmlDeviceGetFieldValues(self._h, [FI_POWER_INSTANT])[0]
            if int(fv.nvmlReturn) == 0:
                inst = _field_value(fv) / 1000.0
        if self._average_ok:
            avg = nv.nvmlDeviceGetPowerUsage(self._h) / 1000.0
        now = time.monotonic()
        if now - self._temp_at >= TEMPERATURE_EVERY_S:
            self._temp_at = now
            try:
                self._temp = float(nv.nvmlDeviceGetTemperature(self._h, nv.NVML_TEMPERATURE_GPU))
            except nv.NVMLError:
                self._temp = NAN
        return inst, avg, self._temp

    def read_counter_j(self) -> float | None:
        if not self._counter_ok:
            return None
        return self._nv.nvmlDeviceGetTotalEnergyConsumption(self._h) / 1000.0

    def device_state(self) -> dict[str, float]:
        nv, h = self._nv, self._h
        reads = {
            "temperature_c": lambda: float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)),
            "sm_clock_mhz": lambda: float(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)),
            "power_limit_w": lambda: nv.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0,
        }
        out = dict.fromkeys(DEVICE_STATE, NAN)
        for key, read in reads.items():
            try:
                out[key] = read()
            except (nv.NVMLError, AttributeError, TypeError, ValueError):
                pass  # not supported on this GPU/driver: stays NaN
        return out

    def device_processes(self) -> list[int] | None:
        nv, h = self._nv, self._h
        pids: set[int] = set()
        answered = False
        for query in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses",
                      "nvmlDeviceGetMPSComputeRunningProcesses"):
            fn = getattr(nv, query, None)
            if fn is None:
                continue
            try:
                pids.update(int(p.pid) for p in fn(h))
                answered = True
            except (nv.NVMLError, AttributeError, TypeError, ValueError):
                continue  # this list is not supported here; the others still count
        return sorted(pids) if answered else None

    def busy_pct(self) -> float | None:
        try:
            return float(self._nv.nvmlDeviceGetUtilizationRates(self._h).gpu)
        except (self._nv.NVMLError, AttributeError, TypeError, ValueError):
            return None

    def close(self) -> None:
        if self._nv is not None:
            try:
                self._nv.nvmlShutdown()
            except self._nv.NVMLError:
                pass
            self._nv = None


def _nvml_reason(nv: Any, e: Exception) -> str:
    """Plain words for the NVML errors people meet when a machine has no usable GPU."""
    known = {
        "NVMLError_LibraryNotFound": "libnvidia-ml.so not found: no NVIDIA driver on this machine",
        "NVMLError_DriverNotLoaded": "NVIDIA driver not loaded",
        "NVMLError_NoPermission": "no permission to read the GPU",
        "NVMLError_NotFound": "GPU not found",
    }
    return known.get(type(e).__name__, str(e))

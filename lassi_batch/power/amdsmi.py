"""AMD GPUs through the ROCm `amdsmi` Python bindings.

* amdsmi_get_power_info: `current_socket_power` (MI300 and newer; `socket_power` in ROCm 7) is
  the instant channel, `average_socket_power` (MI200 and older) the averaged one; an
  unsupported field reads "N/A" or UINT32_MAX/UINT16_MAX.
* amdsmi_get_energy_count: accumulator x counter_resolution = uJ (15.3 uJ per count on MI100).
  The key is `energy_accumulator` since amdsmi 6.2.1 and `power` before.

Counter faults are known (MI100 on ROCm 6.x), so at start-up the counter is compared with
power x time over a short window; if they disagree the counter is dropped and energy comes
from polling power, and the comparison is written into the notes.
"""

from __future__ import annotations

import contextlib
import io
import math
import time
from collections.abc import Mapping
from typing import Any

from ..core.config import PlatformConfig
from ..core.errors import MeterUnavailable
from ..system.gpus import GpuInfo, amdsmi_gpus, program_levels, resolve_gpu
from .base import DEVICE_STATE, ChannelMeter

NAN = math.nan
_NA_INTS = {0xFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF}
CHECK_WINDOW_S = 0.5  # start-up counter check
CHECK_RATIO = (0.5, 2.0)  # counter / (power x time) outside this range -> counter not trusted
TEMPERATURE_EVERY_S = 0.5


def import_amdsmi() -> Any:
    """The amdsmi module; it prints to stdout and may raise odd errors when libamd_smi.so is missing."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import amdsmi  # type: ignore
    except ImportError as e:
        raise MeterUnavailable("amdsmi Python package is not installed (pip install amdsmi; needs ROCm)") from e
    except (OSError, AttributeError, KeyError) as e:
        raise MeterUnavailable(f"amdsmi cannot load libamd_smi.so (ROCm missing or mismatched: {e})") from e
    return amdsmi


def valid_number(v: Any) -> float:
    """A reading as float, NaN for "N/A", sentinels and non-numbers."""
    if isinstance(v, bool) or v is None:
        return NAN
    if isinstance(v, dict) and "value" in v:  # some versions wrap values with units
        v = v["value"]
    if isinstance(v, int):
        return NAN if v in _NA_INTS else float(v)
    if isinstance(v, float):
        return v if math.isfinite(v) else NAN
    return NAN


def power_readings(info: Mapping[str, Any]) -> tuple[float, float]:
    """(instant W, average W) from an amdsmi_get_power_info dict, NaN where unsupported."""
    inst = NAN
    for key in ("socket_power", "current_socket_power"):
        inst = valid_number(info.get(key))
        if math.isfinite(inst) and inst > 0:
            break
        inst = NAN
    avg = valid_number(info.get("average_socket_power"))
    if not (math.isfinite(avg) and avg > 0):
        avg = NAN
    return inst, avg


def energy_uj(count: Mapping[str, Any]) -> float:
    """Microjoules from an amdsmi_get_energy_count dict (new and old key names)."""
    acc = count.get("energy_accumulator", count.get("power"))
    res = valid_number(count.get("counter_resolution"))
    acc_v = valid_number(acc)
    if not (math.isfinite(acc_v) and math.isfinite(res)):
        return NAN
    return acc_v * res


class AmdSmiMeter(ChannelMeter):
    """Instant/averaged socket power every sample; the energy accumulator when it passes the check."""

    name = "amdsmi"
    counter_interval_s = 0.05
    cold_start_s = 3.0
    learns_floor = True
    settle_hold_s = 0.3

    def __init__(self, lib: Any, handle: Any, gpu: GpuInfo, check_s: float = CHECK_WINDOW_S) -> None:
        super().__init__(device=gpu.name or "AMD GPU", device_id=gpu.key)
        self._lib = lib
        self._h = handle
        self.pci_bus_id = gpu.pci_bus_id
        inst, avg = power_readings(self._power_info())
        self._instant_ok = math.isfinite(inst)
        self._average_ok = math.isfinite(avg)
        self._counter_ok = math.isfinite(self._energy_uj())
        self._temp, self._temp_at = NAN, -math.inf
        self._temp_sensor = self._find_temperature_sensor()
        if not self._instant_ok:
            self.notes.append("amdsmi: no current_socket_power (MI200 or older?): no instant channel")
        if not self._average_ok:
            self.notes.append("amdsmi: average_socket_power is N/A (MI300 or newer?): no averaged channel")
        if not self._counter_ok:
            self.notes.append("amdsmi: energy counter not supported: energy from polled power")
        elif self._instant_ok or self._average_ok:
            self._check_counter(check_s)
        else:
            self.notes.append("amdsmi: counter not cross-checked (no power reading to compare with)")
        if not (self._instant_ok or self._average_ok or self._counter_ok):
            raise MeterUnavailable(f"{self.device} reports neither power nor energy through amdsmi")

    @classmethod
    def open(cls, platform: PlatformConfig, env: Mapping[str, str]) -> AmdSmiMeter:
        lib = import_amdsmi()
        try:
            flags = getattr(getattr(lib, "AmdSmiInitFlags", None), "INIT_AMD_GPUS", None)
            lib.amdsmi_init(flags) if flags is not None else lib.amdsmi_init()
        except Exception as e:
            raise MeterUnavailable(f"amdsmi_init failed ({e}): no AMD GPU driver?") from None
        try:
            gpus, handles = amdsmi_gpus(lib)
            if not gpus:
                raise MeterUnavailable("amdsmi lists no AMD GPU")
            gpu, notes = resolve_gpu(program_levels("hip", platform.device, env), gpus)
            meter = cls(lib, handles[gpu.key], gpu)
        except MeterUnavailable:
            _shutdown(lib)
            raise
        except Exception as e:
            _shutdown(lib)
            raise MeterUnavailable(f"amdsmi error: {e}") from None
        meter.notes.extend(notes)
        return meter

    # ---- helpers

    def _power_info(self) -> Mapping[str, Any]:
        try:
            return self._lib.amdsmi_get_power_info(self._h)
        except Exception:
            return {}

    def _energy_uj(self) -> float:
        try:
            return energy_uj(self._lib.amdsmi_get_energy_count(self._h))
        except Exception:
            return NAN

    def _find_temperature_sensor(self) -> Any:
        tt = getattr(self._lib, "AmdSmiTemperatureType", None)
        tm = getattr(self._lib, "AmdSmiTemperatureMetric", None)
        if tt is None or tm is None:
            return None
        for sensor in ("EDGE", "HOTSPOT", "JUNCTION"):
            s = getattr(tt, sensor, None)
            if s is None:
                continue
            try:
                v = valid_number(self._lib.amdsmi_get_temp_metric(self._h, s, tm.CURRENT))
            except Exception:
                continue
            if math.isfinite(v):
                return s
        return None

    def _check_counter(self, window_s: float) -> None:
        """Compare the counter with power x time over `window_s`; drop the counter if they disagree."""
        e0, t0 = self._energy_uj(), time.monotonic()
        e_power = 0.0
        last = t0
        while True:
            time.sleep(0.02)
            now = time.monotonic()
            inst, avg = power_readings(self._power_info())
            p = inst if math.isfinite(inst) else avg
            if math.isfinite(p):
                e_power += p * (now - last)
            last = now
            if now - t0 >= window_s:
                break
        e1 = self._energy_uj()
        counter_j = (e1 - e0) / 1e6
        ratio = counter_j / e_power if e_power > 0 else NAN
        lo, hi = CHECK_RATIO
        if not (math.isfinite(ratio) and lo <= ratio <= hi):
            self._counter_ok = False
            self.notes.append(
                f"amdsmi energy counter failed the start-up check: {counter_j:.2f} J vs power x time "
                f"{e_power:.2f} J over {last - t0:.2f} s; using polled power instead"
            )
        else:
            self.notes.append(f"amdsmi energy counter checked at start-up: ratio to power x time {ratio:.2f}")

    # ---- the Meter interface

    def read_power(self) -> tuple[float, float, float]:
        inst, avg = power_readings(self._lib.amdsmi_get_power_info(self._h))
        now = time.monotonic()
        if self._temp_sensor is not None and now - self._temp_at >= TEMPERATURE_EVERY_S:
            self._temp_at = now
            try:
                tm = self._lib.AmdSmiTemperatureMetric.CURRENT
                self._temp = valid_number(self._lib.amdsmi_get_temp_metric(self._h, self._temp_sensor, tm))
            except Exception:
                self._temp = NAN
        return inst, avg, self._temp

    def read_counter_j(self) -> float | None:
        if not self._counter_ok:
            return None
        return energy_uj(self._lib.amdsmi_get_energy_count(self._h)) / 1e6

    def device_state(self) -> dict[str, float]:
        lib, h = self._lib, self._h
        out = dict.fromkeys(DEVICE_STATE, NAN)
        if self._temp_sensor is not None:
            try:
                out["temperature_c"] = valid_number(
                    lib.amdsmi_get_temp_metric(h, self._temp_sensor, lib.AmdSmiTemperatureMetric.CURRENT))
            except Exception:
                pass
        try:
            clk = lib.amdsmi_get_clock_info(h, lib.AmdSmiClkType.GFX)
            out["sm_clock_mhz"] = valid_number(clk.get("clk", clk.get("cur_clk")))  # key renamed in ROCm 6.1
        except Exception:
            pass
        limit = valid_number(self._power_info().get("power_limit"))  # W
        out["power_limit_w"] = limit if math.isfinite(limit) and limit > 0 else NAN
        return out

    def device_processes(self) -> list[int] | None:
        lib, h = self._lib, self._h
        try:
            listed = lib.amdsmi_get_gpu_process_list(h)
        except Exception:
            return None  # not supported by this library or driver
        pids: set[int] = set()
        for item in listed or []:
            try:  # ROCm 6.1+ lists info dicts; older versions list handles to look up
                info = item if isinstance(item, Mapping) else lib.amdsmi_get_gpu_process_info(h, item)
                pids.add(int(info["pid"]))
            except Exception:
                return None  # an entry we cannot attribute: cannot tell who is on the device
        return sorted(pids)

    def busy_pct(self) -> float | None:
        try:
            v = valid_number(self._lib.amdsmi_get_gpu_activity(self._h).get("gfx_activity"))
        except Exception:
            return None
        return v if math.isfinite(v) else None

    def close(self) -> None:
        if self._lib is not None:
            _shutdown(self._lib)
            self._lib = None


def _shutdown(lib: Any) -> None:
    try:
        lib.amdsmi_shut_down()
    except Exception:
        pass

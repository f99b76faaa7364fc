"""A fake `pynvml` (nvidia-ml-py) with the real names and return shapes the NVML meter uses.

Devices are listed in NVML index order, which tests deliberately make differ from PCI order.
`FakeGpu` reports fixed readings; `CadenceGpu` behaves like an H100's sensors at their real
cadence (DESIGN.md, measured on an H100): a true piecewise-constant power on the monotonic
clock, a total-energy counter and an instant field that take a new value every 100 ms (at a
fixed phase), the instant field averaging only the last 25 ms before each update, and
GetPowerUsage a 1 s moving average refreshed every 100 ms (so it lags the load by ~1 s).
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_NOT_SUPPORTED = 3
NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_SM = 1
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
    temperature_c: int = 41
    sm_clock_mhz: int | None = 1980  # None: the query is not supported
    power_limit_mw: int | None = 700000
    minor: int | None = None  # the N of /dev/nvidiaN; None: the query is not supported

    def instant_mw(self) -> int:
        return self.power_mw

    def average_mw_now(self) -> int:
        return self.average_mw

    def energy_mj(self) -> int:
        return int(5_000_000 + (time.monotonic() - self.t0) * self.power_mw)


@dataclass
class CadenceGpu(FakeGpu):
    """Sensors at the real cadence; set the true power with `set_power(t, watts)`."""

    update_s: float = 0.1
    phase_s: float = 0.037  # where in each 100 ms period the sensors update
    instant_window_s: float = 0.025  # the instant field averages this much of each period
    average_window_s: float = 1.0
    instant_offset_w: float = 0.0  # a sensor offset of the instant channel against the counter
    idle_w: float = 74.0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._starts = [self.t0 - 30.0]
        self._watts = [self.idle_w]

    def set_power(self, t: float, watts: float) -> None:
        with self._lock:
            i = bisect.bisect_right(self._starts, t)
            self._starts.insert(i, t)
            self._watts.insert(i, watts)

    def true_energy_j(self, t: float) -> float:
        """Exact energy since the power history began."""
        with self._lock:
            e = 0.0
            for i, s0 in enumerate(self._starts):
                if s0 >= t:
                    break
                end = self._starts[i + 1] if i + 1 < len(self._starts) else t
                e += self._watts[i] * (min(end, t) - s0)
            return e

    def _last_update(self, now: float) -> float:
        return math.floor((now - self.phase_s) / self.update_s) * self.update_s + self.phase_s

    def _mean_w(self, a: float, b: float) -> float:
        return (self.true_energy_j(b) - self.true_energy_j(a)) / (b - a)

    def instant_mw(self) -> int:
        u = self._last_update(time.monotonic())
        return int(round((self._mean_w(u - self.instant_window_s, u) + self.instant_offset_w) * 1000))

    def average_mw_now(self) -> int:
        u = self._last_update(time.monotonic())
        return int(round(self._mean_w(u - self.average_window_s, u) * 1000))

    def energy_mj(self) -> int:
        return int(5_000_000 + 1000 * self.true_energy_j(self._last_update(time.monotonic())))


@dataclass
class ProcessGpu(CadenceGpu):
    """A GPU whose power follows the programs running on it, as one device-wide meter sees them.

    A "GPU program" is a live process named `exe_name` whose CUDA_VISIBLE_DEVICES is `visible`
    (what the sandbox gives a cuda run pinned to this GPU). Each adds `per_process_w`; after the
    last one ends the GPU holds `plateau_w` for `plateau_s` (an H100's post-run state), then idles.
    Every process that loads this module and configures the same GPU sees the same programs in
    /proc, so concurrent trials drive one device-wide counter, as on the real device. With
    `process_query` False the process lists are unsupported (an old driver): nothing can show a
    measurement ran alone.
    """

    visible: str = ""
    exe_name: str = "app.exe"
    per_process_w: float = 150.0
    plateau_w: float = 130.0
    plateau_s: float = 1.5
    scan_s: float = 0.01
    process_query: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self.procs: list[int] = []
        self.busy_until = -math.inf
        self._stop_scan = threading.Event()
        self._scanner = threading.Thread(target=self._scan_loop, name="fake-gpu-scan", daemon=True)
        self._scanner.start()

    def stop_scanning(self) -> None:
        self._stop_scan.set()

    def start_scanning(self) -> None:
        """Follow the programs again (a library user came back after the last one left)."""
        if self._scanner.is_alive() and not self._stop_scan.is_set():
            return
        self._scanner.join()
        self._stop_scan = threading.Event()
        self._scanner = threading.Thread(target=self._scan_loop, name="fake-gpu-scan", daemon=True)
        self._scanner.start()

    def _programs(self) -> list[int]:
        import os

        found = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/comm", "rb") as f:
                    if f.read().strip() != self.exe_name.encode()[:15]:
                        continue
                with open(f"/proc/{d}/environ", "rb") as f:
                    env = f.read().split(b"\0")
            except OSError:
                continue
            if f"CUDA_VISIBLE_DEVICES={self.visible}".encode() in env:
                found.append(int(d))
        return found

    def _power_from(self, t: float, watts: float) -> None:
        """The true power is `watts` from `t` on: later planned changes (a plateau's end) are dropped."""
        with self._lock:
            keep = [i for i, s0 in enumerate(self._starts) if s0 < t]
            self._starts = [self._starts[i] for i in keep] + [t]
            self._watts = [self._watts[i] for i in keep] + [watts]

    def _scan_loop(self) -> None:
        n_before = 0
        while not self._stop_scan.wait(self.scan_s):
            procs = self._programs()
            now = time.monotonic()
            if procs:
                self.busy_until = now
            if len(procs) != n_before:
                if procs:
                    self._power_from(now, self.idle_w + self.per_process_w * len(procs))
                else:
                    self._power_from(now, self.plateau_w)
                    self.set_power(now + self.plateau_s, self.idle_w)
                n_before = len(procs)
            self.procs = procs


class _Proc:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.usedGpuMemory = 1 << 20


class _Util:
    def __init__(self, gpu: int) -> None:
        self.gpu = gpu
        self.memory = 0


def nvmlDeviceGetComputeRunningProcesses(h: FakeGpu) -> list[_Proc]:
    if not isinstance(h, ProcessGpu):
        return []
    if not h.process_query:
        raise NVMLError_NotSupported()
    return [_Proc(p) for p in h.procs]


def nvmlDeviceGetGraphicsRunningProcesses(h: FakeGpu) -> list[_Proc]:
    if isinstance(h, ProcessGpu) and not h.process_query:
        raise NVMLError_NotSupported()
    return []


def nvmlDeviceGetUtilizationRates(h: FakeGpu) -> _Util:
    """Busy over the last sample period (0.2 s here), as NVML reports it."""
    if not isinstance(h, ProcessGpu):
        return _Util(0)
    if not h.process_query:
        raise NVMLError_NotSupported()
    return _Util(100 if time.monotonic() - h.busy_until < 0.2 else 0)


@dataclass
class _State:
    gpus: list[FakeGpu] = field(default_factory=list)
    missing_library: bool = False
    calls: list[tuple[str, Any]] = field(default_factory=list)
    inits: int = 0  # NVML counts nvmlInit calls; nvmlShutdown undoes one


STATE = _State()


def configure(gpus: list[FakeGpu], missing_library: bool = False) -> None:
    STATE.gpus = gpus
    STATE.missing_library = missing_library
    STATE.calls = []
    STATE.inits = 0


def nvmlInit() -> None:
    if STATE.missing_library:
        raise NVMLError_LibraryNotFound()
    STATE.inits += 1
    for g in STATE.gpus:
        if isinstance(g, ProcessGpu):
            g.start_scanning()


def nvmlShutdown() -> None:
    STATE.calls.append(("nvmlShutdown", None))
    STATE.inits = max(0, STATE.inits - 1)
    if STATE.inits:
        return  # reference counted, as in NVML: other users of this process still read the GPUs
    for g in STATE.gpus:  # no scanning thread outlives the library's last user
        if isinstance(g, ProcessGpu):
            g.stop_scanning()


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


def nvmlDeviceGetMinorNumber(h: FakeGpu) -> int:
    if h.minor is None:
        raise NVMLError_NotSupported()
    return h.minor


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
    return [_Field(NVML_SUCCESS, h.instant_mw()) for _ in ids]


def nvmlDeviceGetPowerUsage(h: FakeGpu) -> int:
    return h.average_mw_now()


def nvmlDeviceGetTotalEnergyConsumption(h: FakeGpu) -> int:
    if not h.counter_supported:
        raise NVMLError_NotSupported()
    return h.energy_mj()  # mJ


def nvmlDeviceGetTemperature(h: FakeGpu, sensor: int) -> int:
    return h.temperature_c


def nvmlDeviceGetClockInfo(h: FakeGpu, clock: int) -> int:
    if h.sm_clock_mhz is None:
        raise NVMLError_NotSupported()
    return h.sm_clock_mhz


def nvmlDeviceGetEnforcedPowerLimit(h: FakeGpu) -> int:
    if h.power_limit_mw is None:
        raise NVMLError_NotSupported()
    return h.power_limit_mw

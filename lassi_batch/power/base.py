"""One meter interface, one module per vendor, and the choice between them.

A meter answers two questions cheaply enough to be asked from a sampling thread: what is the
power right now (instant and the sensor's own moving average), and how much energy has the
device used so far (a cumulative counter, where the hardware has one). Everything else (idle
baselines, windows, integration) lives in `power.energy` as pure functions.

`open_meter` never fails silently: `auto` walks a fixed chain per platform and, if it ends at
the CPU-time `estimate`, says which meter was skipped and why (in the meter's notes, which end
up in every trace). Naming a meter explicitly and not getting it is an error.
"""

from __future__ import annotations

import importlib
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from ..core.config import METERS, PlatformConfig
from ..core.errors import MeterError, MeterUnavailable

NAN = math.nan

# meter name -> "module:Class", imported lazily so that a missing vendor library only matters
# when that meter is asked for.
REGISTRY: dict[str, str] = {
    "nvml": "lassi_batch.power.nvml:NvmlMeter",
    "amdsmi": "lassi_batch.power.amdsmi:AmdSmiMeter",
    "rapl": "lassi_batch.power.rapl:RaplMeter",
    "estimate": "lassi_batch.power.estimate:EstimateMeter",
}

# `auto`: the sensor that measures what the platform's programs run on, then the model.
# RAPL is deliberately not a fallback for GPU platforms: it measures the CPU package, and a
# GPU program's CPU package energy is not the quantity LASSI-EE optimises.
AUTO_CHAIN: dict[str, tuple[str, ...]] = {
    "cuda": ("nvml", "estimate"),
    "hip": ("amdsmi", "estimate"),
    "cpu": ("rapl", "estimate"),
}


# device_state() keys, in their units
DEVICE_STATE = ("temperature_c", "sm_clock_mhz", "power_limit_w")


@dataclass(frozen=True)
class MeterProbe:
    """One line of `lassi-batch doctor`: could this meter be opened, and what does it read."""

    name: str
    ok: bool
    detail: str


class Meter(ABC):
    """A power/energy source for one device.

    Subclasses set the attributes in `__init__` and implement `read_power`; those with an energy
    counter also implement `read_counter_j`. Readings are never replaced by zeros: a channel the
    device lacks reads NaN and the reason is in `notes`.
    """

    name: ClassVar[str] = "meter"
    # The sampler reads the counter this often (s); NVML's call costs ~4 ms, so not every sample.
    counter_interval_s: float = 0.1
    # How often the counter itself takes a new value (s); 0: computed at each read; NaN: unknown.
    # Tells energy.counter_steps where a step seen after a sparse (1 s) read really happened.
    counter_update_s: float = NAN
    # First settle of a process with no known idle level: a stable reading is only trusted as idle
    # after this long, unless a drop to it was seen (an H100 holds ~133 W for ~2 s after a run).
    cold_start_s: float = 0.0
    # Upper bound on any wait for the device to settle (None: the MeasureConfig bounds apply).
    # CPU meters have no GPU to cool, so their waits are short.
    wait_cap_s: float | None = None
    # Rolling window over which "back at idle" is judged (s); a few sensor updates.
    settle_hold_s: float = 0.3
    # Settle to the device's idle floor kept for the node (power.floor): GPUs, whose post-run
    # state looks idle but is not; CPU meters have no such state to wait out.
    learns_floor: bool = False

    def __init__(self, device: str, device_id: str = "", estimate: bool = False) -> None:
        self.device = device
        self.device_id = device_id
        self.estimate = estimate
        self.notes: list[str] = []
        # Last settled idle level seen by the protocol on this device (W); lets the next
        # measurement skip the cold-start wait.
        self.idle_hint_w: float | None = None

    @property
    def has_counter(self) -> bool:
        """True when `read_counter_j` returns cumulative energy."""
        return False

    @property
    def channels(self) -> str:
        """Short description of what this meter reads, for probes and notes."""
        return "power"

    @abstractmethod
    def read_power(self) -> tuple[float, float, float]:
        """(instant W, moving-average W, temperature C), NaN for what the device lacks. Cheap."""

    def read_counter_j(self) -> float | None:
        """Cumulative energy in J (unwrapped, monotonic), or None without a counter. May be slow."""
        return None

    def device_state(self) -> dict[str, float]:
        """Temperature, SM/graphics clock and enforced power limit now (DEVICE_STATE keys), NaN
        for what this meter cannot tell. Read at the start and end of every measurement, so
        that a warm-GPU or throttling bias can be seen afterwards."""
        return dict.fromkeys(DEVICE_STATE, NAN)

    def device_processes(self) -> list[int] | None:
        """Host PIDs of every process the device reports running on it (compute, graphics), or
        None when this meter cannot tell (CPU meters, a driver without the query). Polled during
        each measurement, so that a foreign program in the window is seen (power.isolation)."""
        return None

    def busy_pct(self) -> float | None:
        """The device's utilisation now (%), or None when this meter cannot tell."""
        return None

    def close(self) -> None:
        """Release the vendor library."""

    def __enter__(self) -> Meter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        est = ", ESTIMATE" if self.estimate else ""
        return f"<{type(self).__name__} {self.device!r} {self.device_id!r}{est}>"

    @classmethod
    @abstractmethod
    def open(cls, platform: PlatformConfig, env: Mapping[str, str]) -> Meter:
        """Open the meter for `platform`'s device, or raise MeterUnavailable with the reason."""


class ChannelMeter(Meter):
    """A device meter whose channels (instant, average, counter) are found usable at open time."""

    _instant_ok = False
    _average_ok = False
    _counter_ok = False

    @property
    def has_counter(self) -> bool:
        return self._counter_ok

    @property
    def channels(self) -> str:
        parts = [n for n, ok in (("instant", self._instant_ok), ("average", self._average_ok),
                                 ("energy counter", self._counter_ok)) if ok]
        return ", ".join(parts)



def meter_class(name: str) -> type[Meter]:
    if name not in REGISTRY:
        raise MeterError(f"unknown meter '{name}' (use one of {', '.join(METERS)})")
    mod, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(mod), cls)


def _try_open(name: str, platform: PlatformConfig, env: Mapping[str, str]) -> Meter:
    try:
        return meter_class(name).open(platform, env)
    except MeterUnavailable:
        raise
    except MeterError as e:  # a vendor module raised the generic form
        raise MeterUnavailable(str(e)) from e
    except Exception as e:  # a broken vendor install must not crash the run: report it
        raise MeterUnavailable(f"{type(e).__name__}: {e}") from e


def open_meter(choice: str, platform: PlatformConfig, env: Mapping[str, str] | None = None) -> Meter:
    """Open the meter named by `choice` (`auto` picks per platform, falling back to `estimate`).

    Raises MeterError (one line) when an explicitly named meter is unavailable.
    """
    env = os.environ if env is None else env
    if choice not in METERS:
        raise MeterError(f"unknown meter '{choice}' (use one of {', '.join(METERS)})")
    if choice != "auto":
        try:
            return _try_open(choice, platform, env)
        except MeterUnavailable as e:
            raise MeterError(f"meter '{choice}' is not available: {e}") from None
    chain = AUTO_CHAIN.get(platform.kind, ("estimate",))
    skipped: list[str] = []
    for name in chain:
        try:
            meter = _try_open(name, platform, env)
        except MeterUnavailable as e:
            skipped.append(f"{name}: {e}")
            continue
        if skipped:
            meter.notes.insert(
                0,
                f"meter auto: fell back to '{meter.name}' because "
                + "; ".join(skipped)
                + (" -- figures are an ESTIMATE, not a measurement" if meter.estimate else ""),
            )
        return meter
    raise MeterError("no meter could be opened: " + "; ".join(skipped))  # estimate never fails


def probe_meters(platform_kind: str, env: Mapping[str, str] | None = None) -> list[MeterProbe]:
    """Try every meter (the platform's preferred ones first) and report what each can read."""
    env = os.environ if env is None else env
    order = list(AUTO_CHAIN.get(platform_kind, ()))
    order += [m for m in REGISTRY if m not in order]
    platform = PlatformConfig(kind=platform_kind if platform_kind in AUTO_CHAIN else "cpu")
    out: list[MeterProbe] = []
    for name in order:
        try:
            meter = _try_open(name, platform, env)
        except MeterUnavailable as e:
            out.append(MeterProbe(name, False, str(e)))
            continue
        try:
            detail = f"{meter.device} [{meter.device_id}] reads {meter.channels}"
            if meter.estimate:
                detail += " (ESTIMATE)"
            if meter.notes:
                detail += "; " + "; ".join(meter.notes)
            out.append(MeterProbe(name, True, detail))
        finally:
            meter.close()
    return out

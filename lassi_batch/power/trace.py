"""Raw power data of one measured run, as sampled; every energy figure is derived from this.

Arrays are numpy float64. Times are seconds on one monotonic clock (time.monotonic() of the
measuring process), so window markers and samples line up without conversion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class PowerTrace:
    """Samples from one meter. Missing channels are empty arrays, never zeros."""

    meter: str  # nvml | amdsmi | rapl | estimate
    device: str  # human name, e.g. "NVIDIA H100 80GB HBM3"
    device_id: str = ""  # UUID / PCI bus id / powercap zone the meter read
    estimate: bool = False  # True when figures come from a model, not a sensor
    t: np.ndarray = field(default_factory=lambda: np.zeros(0))  # sample times (s)
    power_instant_w: np.ndarray = field(default_factory=lambda: np.zeros(0))  # instantaneous power (W) at t
    power_average_w: np.ndarray = field(default_factory=lambda: np.zeros(0))  # sensor's moving average (W) at t
    counter_t: np.ndarray = field(default_factory=lambda: np.zeros(0))  # times of energy-counter reads (s)
    counter_j: np.ndarray = field(default_factory=lambda: np.zeros(0))  # cumulative energy (J) at counter_t, unwrapped
    temperature_c: np.ndarray = field(default_factory=lambda: np.zeros(0))  # at t, if available
    # how often the counter itself takes a new value (s): 0.1 on NVML, 0 for a counter computed at
    # each read; NaN when unknown. Places counter steps between sparse reads (energy.counter_steps).
    counter_update_s: float = math.nan
    notes: list[str] = field(default_factory=list)  # fallbacks taken, warnings


@dataclass
class Window:
    """Markers on the trace's clock."""

    t_idle_start: float  # start of the pre-run idle window
    t_launch: float  # program started
    t_exit: float  # program exited
    t_settled: float  # power back at idle (or the post-run bound hit)
    t_end: float  # sampling stopped


@dataclass
class Measurement:
    """One measured run: trace, window, exit status and the derived figures (name -> value)."""

    trace: PowerTrace
    window: Window
    returncode: int | None
    figures: dict[str, float] = field(default_factory=dict)  # see power.energy.FIGURES
    attrs: dict[str, Any] = field(default_factory=dict)  # method names, settle info, repeat index

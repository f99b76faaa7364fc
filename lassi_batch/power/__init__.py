"""Power and energy: meters (one module per vendor), sampler, protocol, pure energy math, plots.

    meter = open_meter("auto", platform)            # base.py: nvml | amdsmi | rapl | estimate
    rr, m = measure(run, meter, measure_cfg)         # protocol.py -> Measurement (trace + figures)
    m.figures["energy_net_j"]                        # energy.py: the default figure

Names are imported lazily so that `power.trace` (used by the archive code) stays cheap and
free of import cycles.
"""

from __future__ import annotations

import importlib
from typing import Any

from .trace import Measurement, PowerTrace, Window

_LAZY = {
    "Meter": "base", "MeterProbe": "base", "MeterUnavailable": "base", "open_meter": "base",
    "probe_meters": "base",
    "Sampler": "sampler",
    "FIGURES": "energy", "Analysis": "energy", "Summary": "energy", "analyze": "energy",
    "compute_figures": "energy", "summarize": "energy",
    "measure": "protocol", "measure_repeats": "protocol",
    "plot_measurement": "plot",
}

__all__ = ["Measurement", "PowerTrace", "Window", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""One measured run <-> one HDF5 "measurement group" (layout in schema.py's docstring).

Trial archives (candidates/<id>/measurements/<r>/) and profile files (/measurements/<r>/) share
this layout, so the raw traces can be re-integrated later (recompute) without a GPU. The round
trip is lossless: arrays are float64 bit for bit, empty channels stay empty, a None returncode
stays None.
"""

from __future__ import annotations

import json
import math
from typing import Any

import h5py

from ..power.trace import Measurement, PowerTrace, Window
from .schema import (
    JSON_SUFFIX,
    attr,
    child_name,
    decode_attr,
    get_array,
    get_mapping,
    next_index,
    put_array,
    put_mapping,
    put_str_attr,
    put_value,
)

FIG_PREFIX = "fig_"
ATTR_PREFIX = "attr_"
WINDOW_MARKERS = ("t_idle_start", "t_launch", "t_exit", "t_settled", "t_end")
# dataset name -> unit; the PowerTrace field of the same name holds the samples
CHANNELS = {
    "t": "s",
    "power_instant_w": "W",
    "power_average_w": "W",
    "counter_t": "s",
    "counter_j": "J",
    "temperature_c": "degC",
}


# ---------------------------------------------------------------------------- measurements


def write_measurement(group: h5py.Group, m: Measurement) -> None:
    """Write `m` into the (new, empty) `group`."""
    tr = m.trace
    put_str_attr(group, "meter", tr.meter)
    put_str_attr(group, "device", tr.device)
    put_str_attr(group, "device_id", tr.device_id)
    group.attrs["estimate"] = bool(tr.estimate)
    group.attrs["counter_update_s"] = float(tr.counter_update_s)
    if m.returncode is not None:
        group.attrs["returncode"] = int(m.returncode)
    for marker in WINDOW_MARKERS:
        group.attrs[marker] = float(getattr(m.window, marker))
    for name, value in m.figures.items():
        # a figure that could not be computed (None) is stored as NaN
        group.attrs[FIG_PREFIX + name] = math.nan if value is None else float(value)
    put_str_attr(group, "notes_json", json.dumps(list(tr.notes)))
    extra = dict(m.attrs)
    if "repeat" in extra:
        put_value(group, "repeat", extra.pop("repeat"))
    put_mapping(group, extra, prefix=ATTR_PREFIX)
    for name, unit in CHANNELS.items():
        put_array(group, name, getattr(tr, name), unit)


def read_measurement(group: h5py.Group, *, traces: bool = True) -> Measurement:
    """Read one measurement group written by write_measurement. `traces=False` reads attributes
    only (figures, window, device, phase) and leaves the channels empty: a trial's decisions
    compare figures, and a GPU run's traces are megabytes."""
    trace = PowerTrace(
        meter=attr(group, "meter", ""),
        device=attr(group, "device", ""),
        device_id=attr(group, "device_id", ""),
        estimate=bool(attr(group, "estimate", False)),
        counter_update_s=float(attr(group, "counter_update_s", math.nan)),
        notes=list(json.loads(attr(group, "notes_json", "[]"))),
        **({name: get_array(group, name) for name in CHANNELS} if traces else {}),
    )
    window = Window(**{k: float(attr(group, k, math.nan)) for k in WINDOW_MARKERS})
    rc = attr(group, "returncode")
    figures = {
        k[len(FIG_PREFIX) :]: float(attr(group, k))
        for k in sorted(group.attrs.keys())
        if k.startswith(FIG_PREFIX)
    }
    extra: dict[str, Any] = {}
    for stored in ("repeat", "repeat" + JSON_SUFFIX):
        if stored in group.attrs:
            extra["repeat"] = decode_attr(group, stored)[1]
    extra.update(get_mapping(group, prefix=ATTR_PREFIX))
    return Measurement(
        trace=trace,
        window=window,
        returncode=None if rc is None else int(rc),
        figures=figures,
        attrs=extra,
    )


def append_measurement(parent: h5py.Group, m: Measurement) -> int:
    """Write `m` as the next numbered child of `parent`; returns its index."""
    r = next_index(parent)
    write_measurement(parent.create_group(child_name(r)), m)
    return r


def read_measurements(group: h5py.Group, *, traces: bool = True) -> list[Measurement]:
    """All measurements under `group`'s numbered children, in index order."""
    return [read_measurement(group[k], traces=traces) for k in sorted((k for k in group.keys() if k.isdigit()), key=int)]

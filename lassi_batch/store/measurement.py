"""One measured run <-> one HDF5 "measurement group" (layout in schema.py's docstring).

Trial archives (candidates/<id>/measurements/<r>/) and profile files (/measurements/<r>/) share
this layout, so the raw traces can be re-integrated later (recompute) without a GPU. The round
trip is lossless: arrays are float64 bit for bit, empty channels stay empty, a None returncode
stays None.

The attribute codec here (put_str_attr, put_value, put_mapping/get_mapping) is shared with the
trial archive. Strings are stored fixed-length: HDF5 keeps variable-length strings in a global
heap that is never reclaimed when they are rewritten and costs at least 4 KiB per writing
session, which a file rewritten once per pipeline step cannot afford.
"""

from __future__ import annotations

import json
import math
from typing import Any

import h5py
import numpy as np

from ..power.trace import Measurement, PowerTrace, Window
from .schema import attr, child_name, get_array, next_index

JSON_SUFFIX = "_json"
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
_INT64 = (-(2**63), 2**63)


# ---------------------------------------------------------------------------- attribute codec


def clean_str(s: str) -> str:
    """HDF5 strings cannot hold NUL or lone surrogates; attributes get a visible replacement."""
    if "\x00" in s:
        s = s.replace("\x00", "\ufffd")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        s = s.encode("utf-8", "replace").decode("utf-8")
    return s


def put_str_attr(obj: h5py.Group | h5py.Dataset, name: str, s: str) -> None:
    """Set a string attribute as fixed-length UTF-8 (NUL and lone surrogates replaced)."""
    if name in obj.attrs:
        del obj.attrs[name]
    s = clean_str(s)
    b = s.encode("utf-8")
    try:
        obj.attrs.create(name, data=np.array(b, dtype=h5py.string_dtype("utf-8", max(1, len(b)))))
    except OSError:  # over 64 KiB in an old-format object header: variable length fits
        obj.attrs[name] = s


def _is_plain_scalar(v: Any) -> bool:
    if isinstance(v, str):
        return clean_str(v) == v
    if isinstance(v, (bool, np.bool_, float, np.floating)):
        return True
    if isinstance(v, (int, np.integer)):
        return _INT64[0] <= int(v) < _INT64[1]
    return False


def put_value(obj: h5py.Group | h5py.Dataset, name: str, value: Any) -> None:
    """Store one value losslessly: plain scalars as native attributes; anything else (None,
    lists, dicts, huge ints, strings with NUL) and any name already ending in `_json` as
    `<name>_json` JSON text."""
    for stale in (name, name + JSON_SUFFIX):
        if stale in obj.attrs:
            del obj.attrs[stale]
    if isinstance(value, str) and _is_plain_scalar(value) and not name.endswith(JSON_SUFFIX):
        put_str_attr(obj, name, value)
    elif _is_plain_scalar(value) and not name.endswith(JSON_SUFFIX):
        obj.attrs[name] = value
    else:
        put_str_attr(obj, name + JSON_SUFFIX, json.dumps(value, sort_keys=True, default=str))


def decode_attr(obj: h5py.Group | h5py.Dataset, stored: str) -> tuple[str, Any]:
    """Inverse of put_value for one stored attribute name: (logical name, value)."""
    value = attr(obj, stored)
    if stored.endswith(JSON_SUFFIX):
        return stored[: -len(JSON_SUFFIX)], json.loads(value)
    return stored, value


def put_mapping(obj: h5py.Group | h5py.Dataset, mapping: dict[str, Any], prefix: str = "") -> None:
    """Store every item of `mapping` as attribute `<prefix><key>` (see put_value)."""
    for k, v in mapping.items():
        put_value(obj, f"{prefix}{k}", v)


def get_mapping(obj: h5py.Group | h5py.Dataset, prefix: str = "") -> dict[str, Any]:
    """Read back what put_mapping stored under `prefix` (sorted by key)."""
    out: dict[str, Any] = {}
    for stored in sorted(obj.attrs.keys()):
        if stored.startswith(prefix):
            name, value = decode_attr(obj, stored)
            out[name[len(prefix) :]] = value
    return out


# ---------------------------------------------------------------------------- measurements


def write_measurement(group: h5py.Group, m: Measurement) -> None:
    """Write `m` into the (new, empty) `group`."""
    tr = m.trace
    put_str_attr(group, "meter", tr.meter)
    put_str_attr(group, "device", tr.device)
    put_str_attr(group, "device_id", tr.device_id)
    group.attrs["estimate"] = bool(tr.estimate)
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
        a = np.asarray(getattr(tr, name), dtype=np.float64)  # as schema.put_array, fixed-length unit
        ds = group.create_dataset(name, data=a, compression="gzip" if a.size > 1024 else None)
        put_str_attr(ds, "unit", unit)


def read_measurement(group: h5py.Group) -> Measurement:
    """Read one measurement group written by write_measurement."""
    trace = PowerTrace(
        meter=attr(group, "meter", ""),
        device=attr(group, "device", ""),
        device_id=attr(group, "device_id", ""),
        estimate=bool(attr(group, "estimate", False)),
        notes=list(json.loads(attr(group, "notes_json", "[]"))),
        **{name: get_array(group, name) for name in CHANNELS},
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


def read_measurements(group: h5py.Group) -> list[Measurement]:
    """All measurements under `group`'s numbered children, in index order."""
    return [read_measurement(group[k]) for k in sorted(group.keys()) if k.isdigit()]

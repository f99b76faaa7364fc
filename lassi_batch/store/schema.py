"""The trial archive's HDF5 layout: names, version, and small typed helpers.

Everything downstream (aggregate, recompute, export) reads trial files through these names, so a
layout change bumps SCHEMA_VERSION and is documented in docs/hdf5-schema.md (which lists every
attribute; the sketch below names the groups). Values go through the codec at the end of this
module: strings fixed-length UTF-8, non-scalars as `<name>_json` attributes, texts that HDF5
strings cannot hold as UTF-8 bytes.

Layout of one trial file (groups end in '/'):

    /                       attrs: schema, schema_version, package_version, created, updated,
                                   trial_id, app, platform, status (running|done|failed), error
    config/                 attrs: study_json, app_json (the effective configs, no secrets)
    environment/            attrs: host, gpu, driver, compilers (json), image_digest, python, ...
    steps/<NNNNNN>/         journal of completed steps (resume); attrs: key, kind, t_start, t_end,
                                   result_json; the step's payload lives where `ref` points
    llm_calls/<NNNNNN>/     attrs: key, kind, model, temperature, latency_s, prompt_tokens,
                                   completion_tokens, attempts, error; datasets: messages (json), reply
    candidates/<NNNNNN>/    attrs: key, stage, iteration, parent, temperature, self_corrections, status,
                                   build_ok, run_ok, judge_verdict, verifier_verdict, passed, ...
                            datasets: files (json name->text), build_log, stdout, stderr, judge_text,
                                      verifier_json;  measurements/<r>/ (measurement groups, below)
    context/                datasets: background, system, code_analysis (text)
    plans/<NNNNNN>          dataset: plan text; attrs: key, based_on (candidate id)
    stages/<name>/          attrs: t_start, t_end, wall_s
    result/                 attrs: best_candidate, source_energy_j, best_energy_j, reduction, ...
                            datasets: report (text), optimizations_json

A measurement group (same layout under `profile` files' /measurements/<r>/ and under candidates):

    attrs:    meter, device, device_id, estimate, returncode, repeat, figures as `fig_<name>`,
              window markers t_idle_start, t_launch, t_exit, t_settled, t_end, notes_json
    datasets: t, power_instant_w, power_average_w, counter_t, counter_j, temperature_c
"""

from __future__ import annotations

import json
from typing import Any

import h5py
import numpy as np

SCHEMA = "lassi-batch-trial"
SCHEMA_VERSION = 1
PROFILE_SCHEMA = "lassi-batch-profile"

JSON_SUFFIX = "_json"
_INT64 = (-(2**63), 2**63)
INDEX_WIDTH = 6  # zero-padded child names keep groups ordered: 000000, 000001, ...


def child_name(i: int) -> str:
    return f"{i:0{INDEX_WIDTH}d}"


def next_index(group: h5py.Group) -> int:
    """Index for the next numbered child of `group`."""
    nums = [int(k) for k in group.keys() if k.isdigit()]
    return max(nums) + 1 if nums else 0


def put_array(group: h5py.Group, name: str, arr: Any, unit: str = "") -> None:
    if name in group:
        del group[name]
    a = np.asarray(arr, dtype=np.float64)
    ds = group.create_dataset(name, data=a, compression="gzip" if a.size > 1024 else None)
    if unit:
        put_str_attr(ds, "unit", unit)


def get_array(group: h5py.Group, name: str) -> np.ndarray:
    return np.asarray(group[name][()], dtype=np.float64) if name in group else np.zeros(0)


def attr(obj: h5py.Group | h5py.Dataset, key: str, default: Any = None) -> Any:
    if key not in obj.attrs:
        return default
    v = obj.attrs[key]
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.generic):
        return v.item()
    return v


# ---------------------------------------------------------------------------- codec
# Strings are stored fixed-length: HDF5 keeps variable-length strings in a global heap that is
# never reclaimed when they are rewritten, which a file rewritten once per pipeline step cannot
# afford.


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


def put_text(group: h5py.Group, name: str, text: str | None) -> None:
    """A text as a fixed-length UTF-8 scalar dataset (get_text reads it; no global-heap
    leak on rewrite). Text HDF5 strings cannot hold (NUL or lone surrogates, e.g. from a
    program's stdout) is kept losslessly as a uint8 array of its UTF-8 bytes."""
    text = text or ""
    if name in group:
        del group[name]
    if clean_str(text) == text:
        b = text.encode("utf-8")
        group.create_dataset(name, data=np.array(b, dtype=h5py.string_dtype("utf-8", max(1, len(b)))))
    else:
        raw = np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)
        put_str_attr(group.create_dataset(name, data=raw), "encoding", "utf-8")


def set_attrs(obj: h5py.Group | h5py.Dataset, attrs: dict[str, Any]) -> None:
    """Strings fixed-length (put_str_attr), numbers and bools native."""
    for k, v in attrs.items():
        if isinstance(v, str):
            put_str_attr(obj, k, v)
        else:
            obj.attrs[k] = v


def get_text(group: h5py.Group, name: str, default: str = "") -> str:
    if name in group and group[name].dtype == np.uint8:
        return group[name][()].tobytes().decode("utf-8", "surrogatepass")
    if name not in group:
        return default
    v = group[name][()]
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)

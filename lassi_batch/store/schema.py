"""The trial archive's HDF5 layout: names, version, and small typed helpers.

Everything downstream (aggregate, recompute, export) reads trial files through these names, so a
layout change bumps SCHEMA_VERSION and is documented in docs/hdf5-schema.md.

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

STR = h5py.string_dtype(encoding="utf-8")
INDEX_WIDTH = 6  # zero-padded child names keep groups ordered: 000000, 000001, ...


def child_name(i: int) -> str:
    return f"{i:0{INDEX_WIDTH}d}"


def next_index(group: h5py.Group) -> int:
    """Index for the next numbered child of `group`."""
    nums = [int(k) for k in group.keys() if k.isdigit()]
    return max(nums) + 1 if nums else 0


def put_text(group: h5py.Group, name: str, text: str | None) -> None:
    """Store a (possibly large) UTF-8 string as a scalar dataset, replacing any old one."""
    if name in group:
        del group[name]
    group.create_dataset(name, data=text or "", dtype=STR)


def get_text(group: h5py.Group, name: str, default: str = "") -> str:
    if name not in group:
        return default
    v = group[name][()]
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def put_json(group: h5py.Group, name: str, obj: Any) -> None:
    put_text(group, name, json.dumps(obj, sort_keys=True, default=str))


def get_json(group: h5py.Group, name: str, default: Any = None) -> Any:
    s = get_text(group, name, "")
    return json.loads(s) if s else default


def put_array(group: h5py.Group, name: str, arr: Any, unit: str = "") -> None:
    if name in group:
        del group[name]
    a = np.asarray(arr, dtype=np.float64)
    ds = group.create_dataset(name, data=a, compression="gzip" if a.size > 1024 else None)
    if unit:
        ds.attrs["unit"] = unit


def get_array(group: h5py.Group, name: str) -> np.ndarray:
    return np.asarray(group[name][()], dtype=np.float64) if name in group else np.zeros(0)


def set_attrs(obj: h5py.Group | h5py.Dataset, attrs: dict[str, Any]) -> None:
    """Set attributes; None is skipped, dicts/lists are stored as JSON strings."""
    for k, v in attrs.items():
        if v is None:
            continue
        if isinstance(v, (dict, list, tuple)):
            v = json.dumps(v, sort_keys=True, default=str)
        obj.attrs[k] = v


def attr(obj: h5py.Group | h5py.Dataset, key: str, default: Any = None) -> Any:
    if key not in obj.attrs:
        return default
    v = obj.attrs[key]
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.generic):
        return v.item()
    return v

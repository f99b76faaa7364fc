"""The trial archive's HDF5 layout: names, version, and small typed helpers.

Everything downstream (aggregate, recompute, export) reads trial files through these names, so a
layout change bumps SCHEMA_VERSION and is documented in docs/hdf5-schema.md (a test checks that
every name below appears there). Values go through the codec at the end of this module: strings
fixed-length UTF-8, None as an empty (null-dataspace) attribute under the field's own name,
non-scalars as `<name>_json` attributes, texts as gzip-compressed one-element string datasets
(UTF-8 bytes where HDF5 strings cannot hold the text).

Layout of one trial file (groups end in '/'):

    /                       attrs: ROOT_ATTRS
    summary/                the fixed, typed headline facts (summary.py, TrialSummary)
    config/                 attrs: study_json, app_json, args_json, trial, resume_json (no secrets)
    environment/            attrs: host, gpu, driver, compilers (json), image_digest, python, ...
    attempts/<NNNNNN>/      one per start of the trial program: ATTEMPT_ATTRS
    steps/<NNNNNN>/         journal of completed steps (resume): STEP_ATTRS
    llm_calls/<NNNNNN>/     LLMCall fields as attrs (+ replay_match); datasets: messages (json), reply
    candidates/<NNNNNN>/    Candidate fields as attrs; text datasets CANDIDATE_TEXTS and
                            CANDIDATE_JSON_TEXTS; measurements/<r>/ (measurement groups, below)
    context/                text datasets: background, system, code_analysis
    plans/<NNNNNN>          text dataset: the plan; attrs: key, based_on (candidate id)
    stages/<name>/          attrs: STAGE_ATTRS
    result/                 attrs: best_candidate, source_energy_j, ... ; datasets: report, optimizations_json

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
SCHEMA_VERSION = 2
MIN_READ_VERSION = 1  # version-1 files are read (no summary, no attempts); only v2 files resume
PROFILE_SCHEMA = "lassi-batch-profile"

# Names a trial file uses (docs/hdf5-schema.md documents each one; tests/test_archive_schema.py
# checks that). Record fields (Candidate, LLMCall, TrialSummary) are stored under their own names.
GROUPS = ("summary", "config", "environment", "attempts", "steps", "llm_calls", "candidates",
          "context", "plans", "stages", "result")
LATE_GROUPS = ("result",)  # written once the trial has one (stage 4); the others exist from the start
ROOT_ATTRS = ("schema", "schema_version", "package_version", "created", "updated", "trial_id",
              "app", "platform", "journal_seq", "generation")
STEP_ATTRS = ("key", "kind", "t_start", "t_end", "result_json", "ref")
STAGE_ATTRS = ("t_start", "t_end", "wall_s")
PLAN_ATTRS = ("key", "based_on")
ATTEMPT_ATTRS = ("started", "ended", "how", "reason", "host", "pid", "generation",
                 "slurm_job_id", "slurm_array_task_id", "slurm_restart_count",
                 "gpu_name", "gpu_uuid", "driver", "package_version", "git_revision",
                 "prompts_sha256", "replay_sha256", "image_digest")
ATTEMPT_ENDINGS = ("running", "done", "failed", "interrupted", "lost")  # lost: killed, no end recorded
CANDIDATE_TEXTS = ("build_log", "stdout", "stderr", "judge_text", "description")
CANDIDATE_JSON_TEXTS = {"files": "files", "verifier": "verifier_json", "work_counts": "work_counts_json"}
LLM_TEXTS = ("messages", "reply")
LLM_EXTRA_ATTRS = ("replay_match",)  # how a replayed call was answered: key | kind | exhausted | ""
RESULT_TEXTS = ("report", "optimizations_json")
TEXT_ENCODING_ATTR = "encoding"
UNIT_ATTR = "unit"
TEXT_COMPRESS_MIN = 256  # bytes: shorter texts are stored contiguous (a filter costs more than it saves)

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
    ds = group.create_dataset(name, data=a, compression="gzip" if a.size > 256 else None)
    if unit:
        put_str_attr(ds, UNIT_ATTR, unit)


def get_array(group: h5py.Group, name: str) -> np.ndarray:
    return np.asarray(group[name][()], dtype=np.float64) if name in group else np.zeros(0)


def attr(obj: h5py.Group | h5py.Dataset, key: str, default: Any = None) -> Any:
    """One attribute as a Python value; an empty (null-dataspace) attribute is None."""
    if key not in obj.attrs:
        return default
    v = obj.attrs[key]
    if isinstance(v, h5py.Empty):
        return None
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
    """Store one value losslessly: None as an empty attribute `<name>`; plain scalars as native
    attributes; anything else (lists, dicts, huge ints, strings with NUL) and any name already
    ending in `_json` as `<name>_json` JSON text."""
    for stale in (name, name + JSON_SUFFIX):
        if stale in obj.attrs:
            del obj.attrs[stale]
    if value is None:
        obj.attrs[name] = h5py.Empty("f8")
    elif isinstance(value, str) and _is_plain_scalar(value) and not name.endswith(JSON_SUFFIX):
        put_str_attr(obj, name, value)
    elif _is_plain_scalar(value) and not name.endswith(JSON_SUFFIX):
        obj.attrs[name] = value
    else:
        put_str_attr(obj, name + JSON_SUFFIX, json.dumps(value, sort_keys=True, default=str))


def decode_attr(obj: h5py.Group | h5py.Dataset, stored: str) -> tuple[str, Any]:
    """Inverse of put_value for one stored attribute name: (logical name, value)."""
    value = attr(obj, stored)
    if stored.endswith(JSON_SUFFIX) and value is not None:
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
    """A text as a one-element fixed-length UTF-8 string dataset, gzip-compressed when longer
    than TEXT_COMPRESS_MIN bytes (fixed length: no global-heap leak on rewrite). Text that HDF5
    strings cannot hold (NUL or lone surrogates, e.g. from a program's stdout) is kept losslessly
    as a uint8 array of its UTF-8 bytes with attribute `encoding = "utf-8"`."""
    text = text or ""
    if name in group:
        del group[name]
    if clean_str(text) == text:
        b = text.encode("utf-8")
        data = np.array([b], dtype=h5py.string_dtype("utf-8", max(1, len(b))))
        big = len(b) > TEXT_COMPRESS_MIN
        group.create_dataset(name, data=data, chunks=(1,) if big else None, compression="gzip" if big else None)
    else:
        raw = np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)
        big = raw.size > TEXT_COMPRESS_MIN
        ds = group.create_dataset(name, data=raw, compression="gzip" if big else None)
        put_str_attr(ds, TEXT_ENCODING_ATTR, "utf-8")


def set_attrs(obj: h5py.Group | h5py.Dataset, attrs: dict[str, Any]) -> None:
    """Strings fixed-length (put_str_attr), None empty, numbers and bools native."""
    for k, v in attrs.items():
        if v is None:
            obj.attrs[k] = h5py.Empty("f8")
        elif isinstance(v, str):
            put_str_attr(obj, k, v)
        else:
            obj.attrs[k] = v


def get_text(group: h5py.Group, name: str, default: str = "") -> str:
    """Read what put_text stored (also the scalar string datasets of schema version 1)."""
    if name not in group:
        return default
    ds = group[name]
    if ds.dtype == np.uint8:
        return ds[()].tobytes().decode("utf-8", "surrogatepass")
    v = ds[()] if ds.shape == () else ds[0]
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)

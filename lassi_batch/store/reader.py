"""Reading a trial file: one open, one consistent view (layout: schema.py, docs/hdf5-schema.md).

A published trial file is never modified in place (the writer publishes a new file by rename),
so a reader that opened it keeps one consistent snapshot however long it reads, while the trial
goes on. Readers never parse the writer's journal: they see the state of the last
consolidation (stage ends, trial stop), which always includes an up-to-date `/summary`.

`TrialView` holds the read methods; the writer (archive.py) uses the same class over its
in-memory working image, so what a resumed trial sees is exactly what a reader sees.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from collections.abc import Callable
from typing import Any, TypeVar

import h5py

from .. import __version__
from ..core.errors import ArchiveError
from ..core.records import Candidate, LLMCall
from ..power.trace import Measurement
from .measurement import read_measurements
from .schema import (
    CANDIDATE_JSON_TEXTS,
    CANDIDATE_TEXTS,
    JSON_SUFFIX,
    LLM_TEXTS,
    MIN_READ_VERSION,
    SCHEMA,
    SCHEMA_VERSION,
    attr,
    child_name,
    decode_attr,
    get_mapping,
    get_text,
)
from . import provenance
from .headline import Confirmation, Entry, Repeat, TrialRecords
from .summary import SCREENING_FIELDS, SUMMARY_GROUP, TrialSummary, read_summary, screening_counts

PathLike = str | os.PathLike
_D = TypeVar("_D")


@dataclasses.dataclass(frozen=True)
class StepRecord:
    """One completed pipeline step, as journalled."""

    index: int
    key: str
    kind: str
    result: dict[str, Any]
    t_start: float
    t_end: float
    ref: str = ""  # where the step's payload lives, e.g. "candidates/000003"

    def as_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def numbered(g: h5py.Group) -> list[str]:
    return sorted(k for k in g.keys() if k.isdigit())


def get_fields(group: h5py.Group, cls: type[_D], skip: set[str]) -> dict[str, Any]:
    """Attributes -> keyword arguments for `cls`; missing attributes keep the field default."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in skip:
            continue
        for stored in (f.name, f.name + JSON_SUFFIX):
            if stored in group.attrs:
                out[f.name] = decode_attr(group, stored)[1]
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.name not in out and required:
            out[f.name] = None
    return out


def read_steps(f: h5py.Group) -> list[StepRecord]:
    g = f.get("steps")
    if g is None:
        return []
    return [
        StepRecord(
            index=int(k), key=attr(g[k], "key"), kind=attr(g[k], "kind", ""),
            result=json.loads(attr(g[k], "result_json", "{}")), t_start=float(attr(g[k], "t_start", 0.0)),
            t_end=float(attr(g[k], "t_end", 0.0)), ref=attr(g[k], "ref", "") or "",
        )
        for k in numbered(g)
    ]


def read_llm_call(g: h5py.Group) -> LLMCall:
    kw = get_fields(g, LLMCall, skip=set(LLM_TEXTS))
    return LLMCall(messages=json.loads(get_text(g, "messages") or "[]"), reply=get_text(g, "reply"), **kw)


def read_candidate(g: h5py.Group, cid: int) -> Candidate:
    kw = get_fields(g, Candidate, skip={"id", *CANDIDATE_TEXTS, *CANDIDATE_JSON_TEXTS})
    kw.update({name: get_text(g, name) for name in CANDIDATE_TEXTS})
    kw.update({fld: json.loads(get_text(g, ds) or "{}") for fld, ds in CANDIDATE_JSON_TEXTS.items()})
    return Candidate(id=cid, **kw)


class NotATrial(ArchiveError):
    """A file that is not a trial archive this version reads: `reason` says why without the path,
    `schema` is the file's schema attribute (another lassi-batch file names its own)."""

    def __init__(self, reason: str, schema: Any = None, message: str = ""):
        super().__init__(message or reason)
        self.reason, self.schema = reason, schema


def check_schema(f: h5py.File) -> int:
    """The file's schema version, or NotATrial for a file this version cannot read."""
    schema = attr(f, "schema")
    if schema != SCHEMA:
        raise NotATrial(f"not a lassi-batch trial archive (schema attribute {schema!r})", schema)
    version = attr(f, "schema_version")
    if not isinstance(version, int):
        raise NotATrial(f"trial archive without a valid schema_version ({version!r})", schema)
    if version > SCHEMA_VERSION:
        raise NotATrial(f"archive schema version {version} is newer than this lassi-batch ({__version__}) "
                        f"reads ({SCHEMA_VERSION}); upgrade lassi-batch", schema)
    if version < MIN_READ_VERSION:
        raise NotATrial(f"archive schema version {version} is no longer read "
                        f"(oldest readable: {MIN_READ_VERSION})", schema)
    return version


def validate(path: Path, f: h5py.File) -> int:
    """The file's schema version, or ArchiveError (one line, with the path) for a file this
    version cannot read."""
    try:
        return check_schema(f)
    except NotATrial as e:
        raise NotATrial(e.reason, e.schema, f"{path}: {e.reason}") from None


def is_hdf5(path: Path) -> bool:
    """Whether `path` is an HDF5 file at all, by its signature (nothing of it is read): what a
    command checks before it takes a file for a trial or study file."""
    return path.is_file() and h5py.is_hdf5(path)


def open_h5(path: Path) -> h5py.File:
    """Open a published trial file read-only, with a one-line ArchiveError on failure. HDF5's
    own file locking is off: published files never change, and that lock breaks on some
    parallel file systems."""
    try:
        return h5py.File(path, "r", locking=False)
    except FileNotFoundError:
        raise ArchiveError(f"trial archive not found: {path}") from None
    except OSError as e:
        if path.is_file() and not h5py.is_hdf5(path):
            raise ArchiveError(f"{path}: not an HDF5 file") from None
        raise ArchiveError(f"{path}: corrupt or unreadable HDF5 file ({first_line(e)})") from None


class TrialView:
    """Read methods over one open trial file (or the writer's image): all see one state."""

    def __init__(self, path: Path, f: h5py.File, version: int):
        self.path = path
        self._f = f
        self.version = version

    def _file(self) -> h5py.File:
        return self._f

    # --- identity and state --------------------------------------------------------------

    @property
    def meta(self) -> dict[str, Any]:
        """Root attributes (schema, versions, timestamps, trial_id, app, platform, ...)."""
        f = self._file()
        return {k: attr(f, k) for k in f.attrs.keys()}

    def summary(self) -> TrialSummary:
        """The `/summary` group (version-1 files: derived from their root and result attributes);
        screening counters a writer left unset (-1) are counted from the candidates."""
        f = self._file()
        s = read_summary(f) if SUMMARY_GROUP in f else self._summary_v1()
        if any(getattr(s, k) < 0 for k in SCREENING_FIELDS):
            s = dataclasses.replace(s, **screening_counts(f))
        if SUMMARY_GROUP not in f or "llm_backend" not in f[SUMMARY_GROUP].attrs:  # written before provenance
            s = dataclasses.replace(s, **self.provenance(), study_k=self.study_k())
        return s

    def study_k(self) -> str:
        """The study's k as the trial recorded it ("1,3,5"; "" when not recorded)."""
        study = self.config().get("study")
        k = study.get("k") if isinstance(study, dict) else None
        return ",".join(str(int(x)) for x in k) if isinstance(k, list) else ""

    def provenance(self) -> dict[str, str]:
        """The summary's provenance fields (store/provenance.py), from the LLM calls' attributes,
        the study's [llm] settings, the attempts and the environment (no texts read)."""
        g = self._file().get("llm_calls")
        calls = [] if g is None else [(str(attr(g[k], "kind", "")), str(attr(g[k], "model", "")),
                                       str(attr(g[k], "backend", "openai") or "openai")) for k in numbered(g)]
        study = self.config().get("study")
        llm = study.get("llm") if isinstance(study, dict) and isinstance(study.get("llm"), dict) else {}
        return provenance.of_trial(calls, llm, self.attempts(), self.environment(),
                                   str(attr(self._file(), "package_version", "") or ""))

    @property
    def status(self) -> str:
        return self.summary().status

    def _summary_v1(self) -> TrialSummary:
        f = self._file()
        r = self.result()
        status = str(attr(f, "status", "running"))
        s = TrialSummary(trial_id=attr(f, "trial_id", ""), app=attr(f, "app", ""),
                         platform=attr(f, "platform", ""),
                         status=status if status in ("running", "done", "failed") else "running",
                         reason=attr(f, "error", "") or "", started=attr(f, "created", ""))
        for name in ("source_energy_j", "best_energy_j", "vanilla_energy_j"):
            v = r.get(name)
            setattr(s, name, math.nan if v is None else float(v))
        s.reduction = float(r.get("reduction") or 0.0)
        s.passed = bool(r.get("improved"))
        s.vanilla_passed = bool(r.get("vanilla_passed"))
        s.best_candidate = int(r["best_candidate"]) if r.get("best_candidate") is not None else -1
        s.n_candidates = len(f.get("candidates", {}))
        s.n_llm_calls = len(f.get("llm_calls", {}))
        return s

    def config(self) -> dict[str, Any]:
        f = self._file()
        return get_mapping(f["config"]) if "config" in f else {}

    def environment(self) -> dict[str, Any]:
        f = self._file()
        return get_mapping(f["environment"]) if "environment" in f else {}

    def attempts(self) -> list[dict[str, Any]]:
        """One dict per start of the trial program, in order (empty for version-1 files)."""
        g = self._file().get("attempts")
        return [] if g is None else [{"index": int(k), **get_mapping(g[k])} for k in numbered(g)]

    def steps(self) -> list[dict[str, Any]]:
        """The journal in order: index, key, kind, result, t_start, t_end, ref."""
        return [rec.as_dict() for rec in read_steps(self._file())]

    # --- records -------------------------------------------------------------------------

    def llm_calls(self) -> list[LLMCall]:
        g = self._file().get("llm_calls")
        return [] if g is None else [read_llm_call(g[k]) for k in numbered(g)]

    def llm_call(self, cid: int) -> LLMCall:
        """One recorded call by id (what a journaled `llm` step points at)."""
        g = self._file().get("llm_calls")
        name = child_name(int(cid))
        if g is None or name not in g:
            raise ArchiveError(f"{self.path}: no LLM call {cid}")
        return read_llm_call(g[name])

    def candidates(self) -> list[Candidate]:
        g = self._file().get("candidates")
        return [] if g is None else [read_candidate(g[k], int(k)) for k in numbered(g)]

    def candidate_id(self, key: str) -> int | None:
        """The candidate recorded under `key` (a resumed step finds its code again), if any."""
        g = self._file().get("candidates")
        if g is None:
            return None
        for k in numbered(g):
            if attr(g[k], "key") == key:
                return int(k)
        return None

    def candidate(self, cid: int) -> Candidate:
        return read_candidate(self._candidate_group(cid), int(cid))

    def candidate_attrs(self, cid: int) -> dict[str, Any]:
        """Every attribute of a candidate group, decoded (screening and confirmation add theirs)."""
        return get_mapping(self._candidate_group(cid))

    def measurements(self, cid: int, *, traces: bool = True) -> list[Measurement]:
        g = self._candidate_group(cid)
        return read_measurements(g["measurements"], traces=traces) if "measurements" in g else []

    def measurement_paths(self, cid: int) -> list[str]:
        """Where each of a candidate's measured runs lives in the file, in the order `measurements` reads them."""
        g = self._candidate_group(cid)
        base = g.name.lstrip("/") + "/measurements"
        return [f"{base}/{k}" for k in numbered(g["measurements"])] if "measurements" in g else []

    def context(self) -> dict[str, str]:
        g = self._file().get("context")
        return {} if g is None else {k: get_text(g, k) for k in sorted(g.keys())}

    def plans(self) -> list[dict[str, Any]]:
        """[{id, key, text, based_on}] in order."""
        g = self._file().get("plans")
        if g is None:
            return []
        return [{"id": int(k), "key": attr(g[k], "key", ""), "text": get_text(g, k),
                 "based_on": attr(g[k], "based_on")} for k in numbered(g)]

    def stage_times(self) -> dict[str, dict[str, float]]:
        """{stage: {t_start, t_end, wall_s}}."""
        g = self._file().get("stages")
        if g is None:
            return {}
        return {name: {k: float(attr(g[name], k)) for k in ("t_start", "t_end", "wall_s")} for name in g}

    def result(self) -> dict[str, Any]:
        """The result attributes plus `report` (text) and `optimizations` (list); {} if unset."""
        f = self._file()
        if "result" not in f:
            return {}
        g = f["result"]
        out = get_mapping(g)
        out["report"] = get_text(g, "report")
        out["optimizations"] = json.loads(get_text(g, "optimizations_json") or "[]")
        return out

    def _candidate_group(self, cid: int) -> h5py.Group:
        name = f"candidates/{child_name(int(cid))}"
        f = self._file()
        if name not in f:
            raise ArchiveError(f"{self.path}: no candidate {cid}")
        return f[name]


def stored_repeat(m: Measurement) -> Repeat:
    """A run's figures as the trial computed and stored them."""
    f = m.figures
    return Repeat(float(f.get("energy_net_j", math.nan)), float(f.get("energy_tail_j", math.nan)),
                  float(f.get("runtime_s", math.nan)), float(f.get("power_avg_w", math.nan)))


def trial_records(view: TrialView, repeat: Callable[[Measurement], Repeat] | None = None,
                  passes: Callable[[Candidate], bool] | None = None, replay: bool = False) -> TrialRecords:
    """What `headline.derive` reads, from a trial file (or the writer's image).

    `repeat` turns a measured run into its figures (default: the stored ones; recompute passes
    one that re-derives them from the trace); `passes` re-decides a candidate's pass (default:
    as recorded); `replay` ignores the recorded stage-3 best and replays the selection.
    A candidate's selection-time runs are those on the device of its latest one (a trial
    resumed on another device measured the candidates it compared there again)."""
    get = repeat or stored_repeat
    traces = repeat is not None
    entries: list[Entry] = []
    runs: dict[int, list[Measurement]] = {}
    for c in view.candidates():
        ms = view.measurements(c.id, traces=traces) if c.id is not None else []  # type: ignore[arg-type]
        runs[int(c.id)] = ms  # type: ignore[arg-type]
        sel = [m for m in ms if m.attrs.get("phase", "select") != "confirm"]
        dev = next((m.trace.device_id for m in reversed(sel) if m.trace.device_id), "")
        sel = [m for m in sel if not dev or not m.trace.device_id or m.trace.device_id == dev]
        ok = passes(c) if passes is not None else bool(c.passed)
        entries.append(Entry(c, tuple(get(m) for m in sel) if c.run_ok else (), bool(ok)))
    confs = []
    for st in view.steps():
        if st["kind"] != "confirm":
            continue
        r, tag = st["result"], st["key"].replace("/", "_")

        def side(cid: Any) -> tuple[Repeat, ...]:
            return tuple(get(m) for m in runs.get(int(cid), []) if m.attrs.get("confirm_tag") == tag)  # noqa: B023

        confs.append(Confirmation(int(r["candidate"]), bool(r.get("ok", True)), side(r["source"]), side(r["candidate"])))
    res = view.result()
    sel_best = None if replay else res.get("selection_best_candidate")
    return TrialRecords(tuple(entries), tuple(confs), "reduction" in res,
                        int(sel_best) if sel_best is not None else None)


class TrialSnapshot(TrialView):
    """A published trial file opened once, read-only; use as a context manager."""

    def __init__(self, path: PathLike):
        p = Path(path).absolute()
        f = open_h5(p)
        try:
            version = validate(p, f)
        except BaseException:
            f.close()
            raise
        super().__init__(p, f, version)
        self._closed = False

    def _file(self) -> h5py.File:
        if self._closed:
            raise ArchiveError(f"{self.path}: archive is closed")
        return self._f

    def close(self) -> None:
        self._closed = True
        self._f.close()

    def __enter__(self) -> TrialSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TrialSnapshot({str(self.path)!r}, v{self.version})"


def open_trial(path: PathLike) -> TrialSnapshot:
    """One consistent, read-only view of a trial file (no lock, no journal)."""
    return TrialSnapshot(path)


def scan_summary(path: Path) -> TrialSummary:
    """The summary of one file of a study folder, for aggregators: NotATrial(reason) when it is
    not a readable trial, whatever is wrong with it (empty, truncated, flipped bits, foreign, newer,
    written before summaries existed). One open, attributes only (plus counters a writer left unset)."""
    try:
        f = h5py.File(path, "r", locking=False)
    except FileNotFoundError:
        raise NotATrial("file vanished while reading") from None
    except OSError as e:
        try:
            size = path.stat().st_size
        except OSError:
            size = -1
        if size == 0:
            raise NotATrial("empty file") from None
        if not h5py.is_hdf5(path):
            raise NotATrial("not an HDF5 file") from None
        raise NotATrial(f"truncated or corrupt HDF5 file ({first_line(e)})") from None
    try:
        with f:
            version = check_schema(f)
            if SUMMARY_GROUP not in f:
                raise NotATrial("no /summary group (written before trial summaries existed)")
            return TrialView(path, f, version).summary()
    except NotATrial:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, UnicodeError) as e:
        # HDF5 reports a flipped bit in checked metadata as an OSError while reading
        raise NotATrial(f"corrupt trial file ({first_line(e)})") from None


def read_trial_summary(path: PathLike) -> TrialSummary:
    """The `/summary` of one trial file: one open, one group read (what aggregators need)."""
    with TrialSnapshot(path) as t:
        return t.summary()


def read_llm_calls(path: PathLike) -> list[LLMCall]:
    """Every LLM call archived in a trial file (for the replay backend)."""
    with TrialSnapshot(path) as t:
        return t.llm_calls()

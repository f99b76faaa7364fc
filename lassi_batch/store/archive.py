"""The trial archive: the one writer and reader of a trial's HDF5 file (layout: schema.py,
docs/hdf5-schema.md).

Why it is built this way:

- A trial may be SIGKILLed or preempted at any moment, and HDF5 files do not survive a kill in
  the middle of a write. So no committed file is ever written in place: every mutation is a
  transaction that copies the committed file to `<path>.tmp`, edits the copy, fsyncs it and
  renames it over the original (then fsyncs the folder). A crash leaves the old or the new file,
  never a torn one; a stale `.tmp` is deleted by the next writer.
- The pipeline is a deterministic program whose side-effecting steps have unique keys. Each step
  is journalled (steps/) in the same transaction as its payload (a candidate, an LLM call), so a
  resumed run replays finished steps from the journal and redoes at most the step it was in.
- One writer per trial: an flock on `<path>.lock`. The kernel drops it when the holder dies, so a
  killed writer never blocks its successor. Readers take no lock: committed files are immutable.

Not thread-safe: one archive object belongs to one thread.
"""

from __future__ import annotations

import copy
import dataclasses
import errno
import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import h5py

from .. import __version__
from ..core.errors import ArchiveError
from ..core.secrets import is_secret, scrub_secrets
from ..power.trace import Measurement
from ..core.records import Candidate, LLMCall
from .measurement import append_measurement, read_measurements
from .schema import (
    JSON_SUFFIX,
    SCHEMA,
    SCHEMA_VERSION,
    attr,
    child_name,
    clean_str,
    decode_attr,
    get_mapping,
    get_text,
    next_index,
    put_mapping,
    put_str_attr,
    put_text,
    put_value,
    set_attrs,
)

STATUSES = ("running", "done", "failed")
GROUPS = ("config", "environment", "steps", "llm_calls", "candidates", "context", "plans", "stages")

# Candidate fields kept in datasets (they can be large); every other field is an attribute.
_CANDIDATE_TEXT = ("build_log", "stdout", "stderr", "judge_text", "description")
_CANDIDATE_JSON = {"files": "files", "verifier": "verifier_json", "work_counts": "work_counts_json"}
_LLM_DATASETS = ("messages", "reply")
# Object-header format of HDF5 1.8 and up: attributes over 64 KiB (a long error, a big config)
# fit; files stay readable by HDF5 >= 1.10.
LIBVER = ("v108", "v110")

PathLike = str | os.PathLike
_D = TypeVar("_D")


@dataclass(frozen=True)
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
        return copy.deepcopy(dataclasses.asdict(self))


# ---------------------------------------------------------------------------- small helpers


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _tmp_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__




def _put_text_if_changed(group: h5py.Group, name: str, text: str | None) -> None:
    # every rewrite allocates new space in the file: skip the ones that change nothing
    if name in group and get_text(group, name) == (text or ""):
        return
    put_text(group, name, text)


def _put_fields(group: h5py.Group, record: Any, skip: set[str]) -> None:
    """Dataclass fields -> attributes; None means absent (it reads back as None)."""
    for f in dataclasses.fields(record):
        if f.name in skip or is_secret(f.name):
            continue
        value = getattr(record, f.name)
        if value is None:
            for stale in (f.name, f.name + JSON_SUFFIX):
                if stale in group.attrs:
                    del group.attrs[stale]
        else:
            put_value(group, f.name, value)


def _get_fields(group: h5py.Group, cls: type[_D], skip: set[str]) -> dict[str, Any]:
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


def _parent_dir(path: PathLike) -> Path:
    """Absolute path (a later chdir must not move the archive), its folder created."""
    p = Path(path).absolute()
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ArchiveError(f"cannot create folder {p.parent}: {e.strerror}") from None
    return p


def _check_name(name: str, what: str) -> None:
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"invalid {what} name {name!r}: must be non-empty without '/'")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as e:  # some file systems cannot fsync a folder; the rename is still atomic
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


class _WriterLock:
    """Exclusive, non-blocking flock on `<archive>.lock`; released on close or process death."""

    def __init__(self, archive: Path):
        self.path = _lock_path(archive)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ArchiveError(f"cannot create lock file {self.path}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise ArchiveError(
                f"{archive} is being written by another process (pid {holder}); one writer per trial"
            ) from None
        except OSError as e:
            os.close(fd)
            raise ArchiveError(f"cannot lock {self.path}: {e.strerror}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # for the message a contender sees
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


@dataclass
class _Tx:
    """An open transaction: the working copy and what to apply or undo at the end."""

    file: h5py.File
    tmp: Path
    steps: dict[str, StepRecord] = field(default_factory=dict)
    undo: list[Callable[[], None]] = field(default_factory=list)
    failed: bool = False

    def abort(self) -> None:
        try:
            self.file.close()
        except Exception:  # noqa: BLE001 - the copy is thrown away anyway
            pass
        self.tmp.unlink(missing_ok=True)
        for fn in reversed(self.undo):
            fn()


def _validate(path: Path, f: h5py.File) -> None:
    schema = attr(f, "schema")
    if schema != SCHEMA:
        raise ArchiveError(f"{path}: not a lassi-batch trial archive (schema {schema!r})")
    version = attr(f, "schema_version")
    if not isinstance(version, int):
        raise ArchiveError(f"{path}: trial archive without a valid schema_version ({version!r})")
    if version > SCHEMA_VERSION:
        raise ArchiveError(
            f"{path}: written with schema version {version}, newer than this lassi-batch "
            f"{__version__} reads ({SCHEMA_VERSION}); upgrade lassi-batch"
        )


def _open_h5(path: Path, mode: str) -> h5py.File:
    """Open an HDF5 file with ArchiveError on failure. HDF5's own file locking is off: committed
    files are never modified in place, and the lock breaks on some parallel file systems."""
    try:
        return h5py.File(path, mode, locking=False, libver=LIBVER if mode != "r" else None)
    except FileNotFoundError:
        raise ArchiveError(f"trial archive not found: {path}") from None
    except OSError as e:
        if path.is_file() and not h5py.is_hdf5(path):
            raise ArchiveError(f"{path}: not an HDF5 file") from None
        raise ArchiveError(f"{path}: corrupt or unreadable HDF5 file ({_first_line(e)})") from None


# ---------------------------------------------------------------------------- the archive


class TrialArchive:
    """A trial's HDF5 file. Build with create / open / open_or_create; use as a context manager.

    Every write method commits its own transaction, unless called inside
    `with archive.transaction():`, which groups writes (e.g. a candidate and the journal entry of
    the step that made it) into one atomic commit. Readers inside a transaction see its writes.
    """

    def __init__(self, path: Path, lock: _WriterLock | None):
        """Private: use the classmethods."""
        self.path = path
        self.writable = lock is not None
        self._lock = lock
        self._tx: _Tx | None = None
        self._steps: dict[str, StepRecord] = {}
        self._closed = False

    # --- construction -------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: PathLike,
        *,
        trial_id: str,
        app: str,
        platform: str,
        config: dict[str, Any],
        environment: dict[str, Any],
    ) -> TrialArchive:
        """Start a new trial file; ArchiveError if it exists (use `open` to resume)."""
        p = _parent_dir(path)
        lock = _WriterLock(p)
        try:
            if p.exists():
                raise ArchiveError(f"{p} already exists; open it to resume the trial")
            return cls._create_locked(p, lock, trial_id, app, platform, config, environment)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def open(cls, path: PathLike, writable: bool = True) -> TrialArchive:
        """Open an existing trial file. A writable open takes the writer lock and resumes."""
        p = Path(path).absolute()
        if not p.exists():
            raise ArchiveError(f"trial archive not found: {p}")
        lock = _WriterLock(p) if writable else None
        try:
            return cls._open_locked(p, lock)
        except BaseException:
            if lock is not None:
                lock.release()
            raise

    @classmethod
    def open_or_create(
        cls,
        path: PathLike,
        *,
        trial_id: str,
        app: str,
        platform: str,
        config: dict[str, Any],
        environment: dict[str, Any],
    ) -> TrialArchive:
        """Resume the trial in `path` if it exists (it must be the same trial), else create it."""
        p = _parent_dir(path)
        lock = _WriterLock(p)
        try:
            if not p.exists():
                return cls._create_locked(p, lock, trial_id, app, platform, config, environment)
            arc = cls._open_locked(p, lock)
            meta = arc.meta
            theirs = (meta.get("trial_id"), meta.get("app"), meta.get("platform"))
            if theirs != (trial_id, app, platform):
                raise ArchiveError(
                    f"{p} holds trial {theirs[0]} ({theirs[1]}/{theirs[2]}), "
                    f"not {trial_id} ({app}/{platform})"
                )
            return arc
        except BaseException:
            lock.release()
            raise

    @classmethod
    def _create_locked(
        cls,
        path: Path,
        lock: _WriterLock,
        trial_id: str,
        app: str,
        platform: str,
        config: dict[str, Any],
        environment: dict[str, Any],
    ) -> TrialArchive:
        tmp = _tmp_path(path)
        tmp.unlink(missing_ok=True)
        try:
            with h5py.File(tmp, "w", locking=False, libver=LIBVER) as f:
                now = _now()
                set_attrs(
                    f,
                    {
                        "schema": SCHEMA,
                        "schema_version": SCHEMA_VERSION,
                        "package_version": __version__,
                        "created": now,
                        "updated": now,
                        "trial_id": trial_id,
                        "app": app,
                        "platform": platform,
                        "status": "running",
                        "error": "",
                    },
                )
                for name in GROUPS:
                    f.create_group(name)
                put_mapping(f["config"], scrub_secrets(config))
                put_mapping(f["environment"], scrub_secrets(environment))
            _fsync_file(tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        return cls(path, lock)

    @classmethod
    def _open_locked(cls, path: Path, lock: _WriterLock | None) -> TrialArchive:
        if lock is not None:  # only the writer may judge a .tmp stale
            _tmp_path(path).unlink(missing_ok=True)
        arc = cls(path, lock)
        with _open_h5(path, "r") as f:
            _validate(path, f)
            arc._steps = {rec.key: rec for rec in _read_steps(f)}
        return arc

    # --- lifetime -----------------------------------------------------------------------

    def close(self) -> None:
        """Release the writer lock. Committed data is already on disk."""
        if self._tx is not None:
            raise ArchiveError(f"{self.path}: cannot close inside a transaction")
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> TrialArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "closed" if self._closed else ("w" if self.writable else "r")
        return f"TrialArchive({str(self.path)!r}, {mode})"

    def _require_open(self) -> None:
        if self._closed:
            raise ArchiveError(f"{self.path}: archive is closed")

    # --- transactions -------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[h5py.File]:
        """Group writes into one atomic commit; yields the working copy as an h5py.File.

        Nested use joins the open transaction. If the outermost block raises, nothing is
        committed; if a nested block raised (even if the exception was caught), the commit is
        refused with ArchiveError so a half-written record never lands.
        """
        self._require_open()
        if not self.writable:
            raise ArchiveError(f"{self.path}: opened read-only")
        if self._tx is not None:
            try:
                yield self._tx.file
            except BaseException:
                self._tx.failed = True
                raise
            return
        tmp = _tmp_path(self.path)
        try:
            shutil.copyfile(self.path, tmp)
            tx = _Tx(file=_open_h5(tmp, "r+"), tmp=tmp)
        except BaseException as e:
            tmp.unlink(missing_ok=True)
            if isinstance(e, OSError):  # e.g. disk full
                raise ArchiveError(f"{self.path}: cannot start a transaction ({_first_line(e)})") from None
            raise
        self._tx = tx
        try:
            yield tx.file
            if tx.failed:
                raise ArchiveError(f"{self.path}: not committed, a write inside the transaction failed")
        except BaseException:
            self._tx = None
            tx.abort()
            raise
        self._tx = None
        try:  # the commit: until os.replace the committed file is untouched
            put_str_attr(tx.file, "updated", _now())
            tx.file.close()
            _fsync_file(tmp)
            os.replace(tmp, self.path)
        except BaseException as e:
            tx.abort()
            if isinstance(e, OSError):
                raise ArchiveError(f"{self.path}: commit failed, nothing written ({_first_line(e)})") from None
            raise
        self._steps.update(tx.steps)
        _fsync_dir(self.path.parent)

    @contextmanager
    def _reading(self) -> Iterator[h5py.File]:
        """The open transaction's copy, or a fresh read-only handle on the committed file."""
        self._require_open()
        if self._tx is not None:
            yield self._tx.file
            return
        f = _open_h5(self.path, "r")
        try:
            yield f
        finally:
            f.close()

    def _on_abort(self, fn: Callable[[], None]) -> None:
        assert self._tx is not None
        self._tx.undo.append(fn)

    # --- step journal -------------------------------------------------------------------

    def _find_step(self, key: str) -> StepRecord | None:
        if self._tx is not None and key in self._tx.steps:
            return self._tx.steps[key]
        return self._steps.get(key)

    def get_step(self, key: str) -> dict[str, Any] | None:
        """The recorded result of step `key`, or None if it has not completed."""
        self._require_open()
        rec = self._find_step(key)
        return None if rec is None else copy.deepcopy(rec.result)

    def has_step(self, key: str) -> bool:
        self._require_open()
        return self._find_step(key) is not None

    def record_step(
        self,
        key: str,
        kind: str,
        result: dict[str, Any],
        t_start: float,
        t_end: float,
        *,
        ref: str = "",
    ) -> int:
        """Journal a completed step; returns its index. `result` must be JSON-serializable and
        is returned by get_step exactly as a resumed run will see it (after a JSON round trip)."""
        if not isinstance(result, dict):
            raise TypeError(f"step result must be a dict, not {type(result).__name__}")
        if not key or clean_str(key) != key:
            raise ValueError(f"invalid step key {key!r}: must be non-empty, without NUL")
        if self._find_step(key) is not None:
            raise ArchiveError(f"{self.path}: step {key!r} is already recorded")
        text = json.dumps(result, sort_keys=True)
        with self.transaction() as f:
            steps = f.require_group("steps")
            i = next_index(steps)
            g = steps.create_group(child_name(i))
            rec = StepRecord(i, key, kind, json.loads(text), float(t_start), float(t_end), ref)
            set_attrs(
                g,
                {"key": key, "kind": kind, "t_start": rec.t_start, "t_end": rec.t_end,
                 "result_json": text, "ref": ref},
            )
            assert self._tx is not None
            self._tx.steps[key] = rec
        return i

    def steps(self) -> list[dict[str, Any]]:
        """The journal in order: index, key, kind, result, t_start, t_end, ref."""
        with self._reading() as f:
            return [rec.as_dict() for rec in _read_steps(f)]

    # --- writers ------------------------------------------------------------------------

    def add_llm_call(self, call: LLMCall) -> int:
        """Archive one chat completion; returns its index. Secrets are never stored."""
        with self.transaction() as f:
            parent = f.require_group("llm_calls")
            i = next_index(parent)
            g = parent.create_group(child_name(i))
            _put_fields(g, call, skip=set(_LLM_DATASETS))
            put_text(g, "messages", json.dumps(scrub_secrets(call.messages), sort_keys=True, default=str))
            put_text(g, "reply", call.reply)
        return i

    def add_candidate(self, c: Candidate) -> int:
        """Archive a new candidate; sets and returns c.id."""
        with self.transaction() as f:
            parent = f.require_group("candidates")
            cid = next_index(parent)
            g = parent.create_group(child_name(cid))
            _write_candidate(g, c)
            g.create_group("measurements")
            old = c.id
            c.id = cid
            self._on_abort(lambda: setattr(c, "id", old))
        return cid

    def update_candidate(self, cid: int, c: Candidate) -> None:
        """Rewrite candidate `cid` from `c` (its measurements are kept); sets c.id = cid."""
        with self.transaction() as f:
            _write_candidate(self._candidate_group(f, cid), c)
            old = c.id
            c.id = cid
            self._on_abort(lambda: setattr(c, "id", old))

    def add_measurement(self, cid: int, m: Measurement) -> int:
        """Archive one measured run of candidate `cid`; returns its index r."""
        with self.transaction() as f:
            return append_measurement(self._candidate_group(f, cid).require_group("measurements"), m)

    def set_context(self, name: str, text: str) -> None:
        """Store a context text (background, system, code_analysis, ...)."""
        _check_name(name, "context")
        with self.transaction() as f:
            _put_text_if_changed(f.require_group("context"), name, text)

    def add_plan(self, key: str, text: str, based_on: int | None) -> int:
        """Archive an optimization plan (based on candidate `based_on`); returns its index."""
        with self.transaction() as f:
            parent = f.require_group("plans")
            i = next_index(parent)
            put_text(parent, child_name(i), text)
            ds = parent[child_name(i)]
            put_str_attr(ds, "key", key)
            if based_on is not None:
                ds.attrs["based_on"] = int(based_on)
        return i

    def set_stage_time(self, name: str, t_start: float, t_end: float) -> None:
        """Record a pipeline stage's wall-clock span (time.time() seconds)."""
        _check_name(name, "stage")
        with self.transaction() as f:
            g = f.require_group("stages").require_group(name)
            wall = float(t_end) - float(t_start)
            g.attrs.update({"t_start": float(t_start), "t_end": float(t_end), "wall_s": wall})

    def set_result(
        self, attrs: dict[str, Any], report: str = "", optimizations: list[dict[str, Any]] | None = None
    ) -> None:
        """Replace the trial's result: figures (best_candidate, energies, ...), report, optimizations."""
        with self.transaction() as f:
            g = f.require_group("result")
            for k in list(g.attrs.keys()):
                del g.attrs[k]
            put_mapping(g, attrs)
            _put_text_if_changed(g, "report", report)
            opts = json.dumps(optimizations or [], sort_keys=True, default=str)
            _put_text_if_changed(g, "optimizations_json", opts)

    def set_status(self, status: str, error: str = "") -> None:
        """running | done | failed, with a one-line error for failed."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
        with self.transaction() as f:
            set_attrs(f, {"status": status, "error": error})

    def set_environment(self, environment: dict[str, Any]) -> None:
        """Replace the environment description (host, gpu, driver, compilers, image, ...)."""
        with self.transaction() as f:
            g = f.require_group("environment")
            for k in list(g.attrs.keys()):
                del g.attrs[k]
            put_mapping(g, scrub_secrets(environment))

    # --- readers ------------------------------------------------------------------------

    @property
    def meta(self) -> dict[str, Any]:
        """Root attributes (schema, versions, timestamps, trial_id, app, platform, status, error)."""
        with self._reading() as f:
            return {k: attr(f, k) for k in f.attrs.keys()}

    @property
    def status(self) -> str:
        return str(self.meta.get("status", ""))

    def config(self) -> dict[str, Any]:
        with self._reading() as f:
            return get_mapping(f["config"]) if "config" in f else {}

    def environment(self) -> dict[str, Any]:
        with self._reading() as f:
            return get_mapping(f["environment"]) if "environment" in f else {}

    def llm_calls(self) -> list[LLMCall]:
        with self._reading() as f:
            g = f.get("llm_calls")
            return [] if g is None else [_read_llm_call(g[k]) for k in _numbered(g)]

    def llm_call(self, cid: int) -> LLMCall:
        """One recorded call by id (what a journaled `llm` step points at)."""
        with self._reading() as f:
            g = f.get("llm_calls")
            name = child_name(cid)
            if g is None or name not in g:
                raise ArchiveError(f"{self.path}: no LLM call {cid}")
            return _read_llm_call(g[name])

    def candidates(self) -> list[Candidate]:
        with self._reading() as f:
            g = f.get("candidates")
            return [] if g is None else [_read_candidate(g[k], int(k)) for k in _numbered(g)]

    def candidate_id(self, key: str) -> int | None:
        """The candidate recorded under `key` (a resumed step finds its code again), if any."""
        with self._reading() as f:
            g = f.get("candidates")
            if g is None:
                return None
            for k in _numbered(g):
                if attr(g[k], "key") == key:
                    return int(k)
        return None

    def candidate(self, cid: int) -> Candidate:
        with self._reading() as f:
            return _read_candidate(self._candidate_group(f, cid), cid)

    def measurements(self, cid: int) -> list[Measurement]:
        with self._reading() as f:
            g = self._candidate_group(f, cid)
            return read_measurements(g["measurements"]) if "measurements" in g else []

    def context(self) -> dict[str, str]:
        with self._reading() as f:
            g = f.get("context")
            return {} if g is None else {k: get_text(g, k) for k in sorted(g.keys())}

    def plans(self) -> list[dict[str, Any]]:
        """[{id, key, text, based_on}] in order."""
        with self._reading() as f:
            g = f.get("plans")
            if g is None:
                return []
            return [
                {"id": int(k), "key": attr(g[k], "key", ""), "text": get_text(g, k),
                 "based_on": attr(g[k], "based_on")}
                for k in _numbered(g)
            ]

    def stage_times(self) -> dict[str, dict[str, float]]:
        """{stage: {t_start, t_end, wall_s}}."""
        with self._reading() as f:
            g = f.get("stages")
            if g is None:
                return {}
            return {name: {k: float(attr(g[name], k)) for k in ("t_start", "t_end", "wall_s")} for name in g}

    def result(self) -> dict[str, Any]:
        """The result attributes plus `report` (text) and `optimizations` (list); {} if unset."""
        with self._reading() as f:
            if "result" not in f:
                return {}
            g = f["result"]
            out = get_mapping(g)
            out["report"] = get_text(g, "report")
            out["optimizations"] = json.loads(get_text(g, "optimizations_json") or "[]")
            return out

    def summary(self) -> dict[str, Any]:
        """A few headline facts for `status` tables, read without loading texts or traces."""
        with self._reading() as f:
            cands = f.get("candidates", {})
            res = f.get("result")
            keys = ("trial_id", "app", "platform", "status", "error", "created", "updated")
            out: dict[str, Any] = {k: attr(f, k, "") for k in keys}
            out["path"] = str(self.path)
            out["candidates"] = len(cands)
            out["passed"] = sum(bool(attr(cands[k], "passed", False)) for k in cands)
            out["llm_calls"] = len(f.get("llm_calls", {}))
            out["steps"] = len(f.get("steps", {}))
            for k in ("best_candidate", "source_energy_j", "best_energy_j", "reduction"):
                out[k] = None if res is None else attr(res, k)
            return out

    def _candidate_group(self, f: h5py.File, cid: int) -> h5py.Group:
        name = f"candidates/{child_name(int(cid))}"
        if name not in f:
            raise ArchiveError(f"{self.path}: no candidate {cid}")
        return f[name]


# ---------------------------------------------------------------------------- record codecs


def _numbered(g: h5py.Group) -> list[str]:
    return sorted(k for k in g.keys() if k.isdigit())


def _read_steps(f: h5py.File) -> list[StepRecord]:
    g = f.get("steps")
    if g is None:
        return []
    out = []
    for k in _numbered(g):
        s = g[k]
        out.append(
            StepRecord(
                index=int(k),
                key=attr(s, "key"),
                kind=attr(s, "kind", ""),
                result=json.loads(attr(s, "result_json", "{}")),
                t_start=float(attr(s, "t_start", 0.0)),
                t_end=float(attr(s, "t_end", 0.0)),
                ref=attr(s, "ref", ""),
            )
        )
    return out


def _read_llm_call(g: h5py.Group) -> LLMCall:
    kw = _get_fields(g, LLMCall, skip=set(_LLM_DATASETS))
    return LLMCall(messages=json.loads(get_text(g, "messages") or "[]"), reply=get_text(g, "reply"), **kw)


def _write_candidate(g: h5py.Group, c: Candidate) -> None:
    _put_fields(g, c, skip={"id", *_CANDIDATE_TEXT, *_CANDIDATE_JSON})
    for name in _CANDIDATE_TEXT:
        _put_text_if_changed(g, name, getattr(c, name))
    for fld, ds in _CANDIDATE_JSON.items():
        _put_text_if_changed(g, ds, json.dumps(getattr(c, fld), sort_keys=True, default=str))


def _read_candidate(g: h5py.Group, cid: int) -> Candidate:
    kw = _get_fields(g, Candidate, skip={"id", *_CANDIDATE_TEXT, *_CANDIDATE_JSON})
    kw.update({name: get_text(g, name) for name in _CANDIDATE_TEXT})
    kw.update({fld: json.loads(get_text(g, ds) or "{}") for fld, ds in _CANDIDATE_JSON.items()})
    return Candidate(id=cid, **kw)


# ---------------------------------------------------------------------------- conveniences


def read_llm_calls(path: PathLike) -> list[LLMCall]:
    """Every LLM call archived in a trial file (for the replay backend)."""
    with TrialArchive.open(path, writable=False) as arc:
        return arc.llm_calls()


def summarize_trial(path: PathLike) -> dict[str, Any]:
    """Headline facts of one trial file: status, app, platform, counts, best/source energy."""
    with TrialArchive.open(path, writable=False) as arc:
        return arc.summary()

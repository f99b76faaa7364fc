"""The trial archive writer: commits that cost what a step adds, crash-safe at every point
(layout: schema.py, docs/hdf5-schema.md; readers: reader.py).

How it is built, and why:

- A trial may be SIGKILLed or preempted at any moment, and HDF5 files do not survive a kill in
  the middle of a write. So the published file `<trial>.h5` is never written in place.
- A commit (one pipeline step: an LLM call, an evaluated candidate, ...) is an *overlay*: a small
  HDF5 image holding only what the step adds or changes, under the same paths as in the trial
  file. It is written to a unique temporary name in `<trial>.h5.journal/`, fsynced, and published
  with link(2) as `<seq>.h5`; the folder is fsynced. Its cost is what the step adds, not the
  trial's size. A kill leaves the entry published or absent, never torn.
- The writer keeps the whole trial as an in-memory HDF5 image (the published file plus every
  journal entry, applied in order); its reads (resume, candidates, ...) cost no I/O.
- At stage ends and when the trial stops, `checkpoint()` consolidates: it writes the image
  compactly to a unique temporary file, fsyncs it, renames it over `<trial>.h5` and then prunes
  the journal entries it includes (`journal_seq`). A finished trial is one self-contained file.
- Readers open `<trial>.h5` only (reader.py): one open, one consistent state, no journal.
- One writer per trial: a lease (lease.py) checked before every publication.

Not thread-safe: one archive object belongs to one thread.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import secrets
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py

from .. import __version__
from ..core.errors import ArchiveError
from ..core.records import Candidate, LLMCall
from ..core.secrets import is_secret, scrub_secrets
from ..power.trace import Measurement
from .lease import DEFAULT_TTL_S, WriterLease
from .measurement import write_measurement
from .reader import (
    StepRecord,
    TrialSnapshot,
    TrialView,
    first_line,
    numbered,
    open_h5,
    read_steps,
    trial_records,
    validate,
)
from .schema import (
    CANDIDATE_JSON_TEXTS,
    CANDIDATE_TEXTS,
    GROUPS,
    JSON_SUFFIX,
    LATE_GROUPS,
    LLM_TEXTS,
    SCHEMA,
    SCHEMA_VERSION,
    attr,
    child_name,
    clean_str,
    get_text,
    next_index,
    put_mapping,
    put_str_attr,
    put_text,
    put_value,
    set_attrs,
)
from .headline import Rules, apply, derive
from .summary import STATUSES, TrialSummary, screening_counts, write_summary

# File format of HDF5 1.10: attributes over 64 KiB (a long error, a big config) fit, and a
# one-chunk (compressed text) dataset needs no B-tree (v1.8 B-trees cost ~2 KiB per dataset, a
# demo trial's file was two-thirds metadata). Readable by HDF5 >= 1.10.
LIBVER = ("v110", "v110")
_REPLACE = "_overlay_replace_json"  # journal-entry root attr: groups whose attributes are replaced
_ENTRY_PREFIX = "_journal_"  # journal-entry root attrs that are not part of the trial
_CRASH_ENV = "LASSI_ARCHIVE_CRASH_AT"  # "<point>:<n>": SIGKILL self at the n-th pass (crash tests)

PathLike = str | os.PathLike


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_crash_counts: dict[str, int] = {}


def _crash_point(name: str) -> None:
    """Die here (SIGKILL) when the crash-test variable names this point; a no-op otherwise."""
    spec = os.environ.get(_CRASH_ENV, "")
    if not spec:
        return
    point, _, n = spec.partition(":")
    if point != name:
        return
    _crash_counts[name] = _crash_counts.get(name, 0) + 1
    if _crash_counts[name] == int(n or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def journal_dir(path: Path) -> Path:
    return path.with_name(path.name + ".journal")


def _temp_name(folder: Path, stem: str) -> Path:
    """Unique on shared file systems: host, pid and a random token."""
    return folder / f".{stem}.{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as e:  # some file systems cannot fsync a folder; the rename is still atomic
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _write_new_file(path: Path, data: bytes) -> None:
    """Create `path` exclusively, write `data`, fsync. Removed again if anything fails."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def _io_error(path: Path, doing: str, e: OSError) -> ArchiveError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return ArchiveError(f"{path}: disk full while {doing}; every earlier step is kept: "
                            "free some space and resume the trial")
    return ArchiveError(f"{path}: {doing} failed ({e.strerror or first_line(e)}); every earlier step is kept")


def _parent_dir(path: PathLike) -> Path:
    """Absolute path (a later chdir must not move the archive), its folder created."""
    p = Path(path).absolute()
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ArchiveError(f"cannot create folder {p.parent}: {e.strerror}") from None
    return p


def _under_lease(path: Path, ttl_s: float, body: Callable[[WriterLease], TrialArchive]) -> TrialArchive:
    """Take the writer lease and build the archive that keeps it; released if none is built."""
    lease = WriterLease(path, ttl_s)
    lease.acquire()
    try:
        return body(lease)
    except BaseException:
        lease.release()
        raise


def _check_name(name: str, what: str) -> None:
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"invalid {what} name {name!r}: must be non-empty without '/'")


def _memory_file(tag: str) -> h5py.File:
    return h5py.File(f"{tag}-{secrets.token_hex(6)}", "w", driver="core", backing_store=False, libver=LIBVER)


# ---------------------------------------------------------------------------- overlays


def _copy_attr(src: h5py.AttributeManager, dst: h5py.Group | h5py.Dataset, k: str) -> None:
    v = src[k]
    if k in dst.attrs:
        del dst.attrs[k]
    if isinstance(v, h5py.Empty):
        dst.attrs[k] = h5py.Empty("f8")
    elif isinstance(v, (bytes, str)):
        put_str_attr(dst, k, v.decode("utf-8") if isinstance(v, bytes) else v)
    else:
        dst.attrs[k] = v


def _overlay_group(src: h5py.Group, dst: h5py.Group) -> None:
    for k in src.attrs:
        if not (src.name == "/" and (k.startswith(_ENTRY_PREFIX) or k == _REPLACE)):
            _copy_attr(src.attrs, dst, k)
    for name, obj in src.items():
        if isinstance(obj, h5py.Group) and name in dst:
            _overlay_group(obj, dst[name])
        else:
            if name in dst:
                del dst[name]
            src.file.copy(obj, dst, name=name)


def apply_overlay(entry: h5py.File, target: h5py.File) -> None:
    """Apply one journal entry to `target` (the writer's image): groups merge, attributes and
    datasets replace, groups named in the entry's replace list lose their old attributes."""
    for path in json.loads(attr(entry, _REPLACE, "[]") or "[]"):
        if path in target:
            for k in list(target[path].attrs):
                del target[path].attrs[k]
    _overlay_group(entry, target)


# ---------------------------------------------------------------------------- field codecs


def _put_fields(group: h5py.Group, record: Any, skip: set[str]) -> None:
    """Dataclass fields -> attributes (None: an empty attribute, see schema.put_value); a field
    marked ABSENT_IF_NONE is left out when None, so that readers tell "never set" by absence."""
    for f in dataclasses.fields(record):
        if f.name in skip or is_secret(f.name):
            continue
        value = getattr(record, f.name)
        if value is None and f.metadata.get("absent_if_none"):
            for stale in (f.name, f.name + JSON_SUFFIX):
                if stale in group.attrs:
                    del group.attrs[stale]
            continue
        put_value(group, f.name, value)


def _text_changed(old: h5py.Group | None, name: str, text: str | None) -> bool:
    return old is None or name not in old or get_text(old, name) != (text or "")


def _write_candidate(g: h5py.Group, c: Candidate, old: h5py.Group | None) -> None:
    _put_fields(g, c, skip={"id", *CANDIDATE_TEXTS, *CANDIDATE_JSON_TEXTS})
    for name in CANDIDATE_TEXTS:
        if _text_changed(old, name, getattr(c, name)):
            put_text(g, name, getattr(c, name))
    for fld, ds in CANDIDATE_JSON_TEXTS.items():
        text = json.dumps(getattr(c, fld), sort_keys=True, default=str)
        if _text_changed(old, ds, text):
            put_text(g, ds, text)


# ---------------------------------------------------------------------------- summary


def _nan(v: Any) -> float:
    return math.nan if v is None else float(v)


def _measured_seconds(f: h5py.File) -> tuple[float, float]:
    """Sums of the measured windows (idle start to end) and of the waits for the device's
    measurement lock, from attributes only (no traces read)."""
    total, waited = 0.0, 0.0
    for c in f.get("candidates", {}).values():
        for m in c.get("measurements", {}).values():
            t0, t1 = attr(m, "t_idle_start"), attr(m, "t_end")
            if isinstance(t0, float) and isinstance(t1, float) and t1 > t0:
                total += t1 - t0
            w = attr(m, "attr_lock_wait_s")
            if isinstance(w, (int, float)) and math.isfinite(w):
                waited += float(w)
    return total, waited


def derive_summary(view: TrialView, base: TrialSummary) -> TrialSummary:
    """The summary implied by the archive's contents; identity, status and reason come from
    `base`. Pure over the view: the writer refreshes it at every stage end and at the stop."""
    s = dataclasses.replace(base)
    f = view._file()
    s.trial_id, s.app, s.platform = attr(f, "trial_id", ""), attr(f, "app", ""), attr(f, "platform", "")
    rec = trial_records(view)
    s = apply(s, derive(rec, Rules.from_config(view.config())))
    cands = [e.cand for e in rec.entries]
    calls = view.llm_calls()
    src = next((e for e in rec.entries if e.stage == 0), None)
    if src is not None and src.id is not None:
        ms = view.measurements(src.id, traces=False)
        if ms:
            s.meter, s.estimate = ms[0].trace.meter, bool(ms[0].trace.estimate)
    s.n_candidates = len(cands)
    s.n_self_corrections = sum(1 for c in cands if c.self_corrections > 0)
    s.n_llm_calls = len(calls)
    s.prompt_tokens = sum(c.prompt_tokens for c in calls)
    s.completion_tokens = sum(c.completion_tokens for c in calls)
    s.time_llm_s = float(sum(c.latency_s for c in calls))
    for k, v in screening_counts(f).items():
        setattr(s, k, v)
    stages = view.stage_times()
    s.time_total_s = float(sum(v["wall_s"] for v in stages.values())) if stages else math.nan
    s.time_measure_s, s.time_lock_wait_s = _measured_seconds(f)
    builds = [c.build_s for c in cands if c.build_s is not None]
    s.time_build_s = float(sum(builds)) if builds else math.nan
    sandbox = view.environment().get("sandbox")
    if isinstance(sandbox, str):
        s.sandbox = sandbox
    s = dataclasses.replace(s, **view.provenance(), study_k=view.study_k())
    attempts = view.attempts()
    s.attempts = len(attempts)
    if attempts:
        last = attempts[-1]
        s.started = attempts[0].get("started", "") or ""
        s.host = last.get("host", "") or ""
        s.gpu_name, s.gpu_uuid, s.driver = (last.get(k, "") or "" for k in ("gpu_name", "gpu_uuid", "driver"))
        s.finished = (last.get("ended", "") or "") if s.status in ("done", "failed") else ""
    return s


# ---------------------------------------------------------------------------- transactions


@dataclass
class _Tx:
    """An open transaction: the overlay being built and what to undo if it is dropped."""

    file: h5py.File
    steps: dict[str, StepRecord] = field(default_factory=dict)
    replace: list[str] = field(default_factory=list)
    undo: list[Callable[[], None]] = field(default_factory=list)
    failed: bool = False
    committed: bool = False

    def abort(self) -> None:
        self.file.close()
        for fn in reversed(self.undo):
            fn()


@dataclass
class ArchiveStats:
    """What this writer wrote (bench_archive.py reads it)."""

    bytes_written: int = 0
    commits: int = 0
    consolidations: int = 0
    commit_s: list[float] = field(default_factory=list)


class TrialArchive(TrialView):
    """A trial's HDF5 file, writable. Build with create / open / open_or_create; use as a
    context manager (closing consolidates and releases the lease).

    Every write method commits its own transaction, unless called inside
    `with archive.transaction():`, which groups writes (a candidate and the journal entry of the
    step that made it) into one atomic commit. Reads see committed state (and, for the step
    journal, the open transaction's steps).
    """

    def __init__(self, path: Path, lease: WriterLease, image: h5py.File):
        """Private: use the classmethods."""
        super().__init__(path, image, SCHEMA_VERSION)
        self.writable = True
        self._lease = lease
        self._tx: _Tx | None = None
        self._steps: dict[str, StepRecord] = {rec.key: rec for rec in read_steps(image)}
        self._published = int(attr(image, "journal_seq", -1))  # last entry inside <trial>.h5
        self._seq = self._published + 1  # number of the next journal entry
        self._attempt: int | None = None
        self._closed = False
        self._critical = 0
        self._broken = ""
        self.deferred: BaseException | None = None  # raised when the running commit is done
        self.stats = ArchiveStats()

    # --- construction -------------------------------------------------------------------

    @classmethod
    def create(cls, path: PathLike, *, trial_id: str, app: str, platform: str, config: dict[str, Any],
               environment: dict[str, Any], study: str = "", trial_index: int = -1,
               lease_ttl_s: float = DEFAULT_TTL_S) -> TrialArchive:
        """Start a new trial file; ArchiveError if it exists (use `open` to resume)."""
        p = _parent_dir(path)

        def body(lease: WriterLease) -> TrialArchive:
            if p.exists():
                raise ArchiveError(f"{p} already exists; open it to resume the trial")
            return cls._create_locked(p, lease, trial_id, app, platform, config, environment, study, trial_index)

        return _under_lease(p, lease_ttl_s, body)

    @classmethod
    def open(cls, path: PathLike, writable: bool = True, *, lease_ttl_s: float = DEFAULT_TTL_S
             ) -> TrialArchive | TrialSnapshot:
        """Open an existing trial file. Writable: takes the lease and resumes (journal applied).
        Read-only: a TrialSnapshot of the published file."""
        p = Path(path).absolute()
        if not writable:
            return TrialSnapshot(p)
        if not p.exists():
            raise ArchiveError(f"trial archive not found: {p}")
        return _under_lease(p, lease_ttl_s, lambda lease: cls._open_locked(p, lease))

    @classmethod
    def open_or_create(cls, path: PathLike, *, trial_id: str, app: str, platform: str, config: dict[str, Any],
                       environment: dict[str, Any], study: str = "", trial_index: int = -1,
                       lease_ttl_s: float = DEFAULT_TTL_S) -> TrialArchive:
        """Resume the trial in `path` if it exists (it must be the same trial), else create it."""
        p = _parent_dir(path)

        def body(lease: WriterLease) -> TrialArchive:
            if not p.exists():
                return cls._create_locked(p, lease, trial_id, app, platform, config, environment, study, trial_index)
            arc = cls._open_locked(p, lease)
            meta = arc.meta
            theirs = (meta.get("trial_id"), meta.get("app"), meta.get("platform"))
            if theirs != (trial_id, app, platform):
                arc._image_close()
                raise ArchiveError(f"{p} holds trial {theirs[0]} ({theirs[1]}/{theirs[2]}), "
                                   f"not {trial_id} ({app}/{platform})")
            return arc

        return _under_lease(p, lease_ttl_s, body)

    @classmethod
    def _create_locked(cls, path: Path, lease: WriterLease, trial_id: str, app: str, platform: str,
                       config: dict[str, Any], environment: dict[str, Any], study: str, trial_index: int,
                       ) -> TrialArchive:
        jdir = journal_dir(path)
        if jdir.exists():  # the journal of a trial file that was deleted to start over
            shutil.rmtree(jdir, ignore_errors=True)
        image = _memory_file("image")
        now = _now()
        set_attrs(image, {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "package_version": __version__,
            "created": now, "updated": now, "trial_id": trial_id, "app": app, "platform": platform,
            "journal_seq": -1, "generation": lease.owner.generation if lease.owner else 0,
        })
        for name in GROUPS:
            if name not in LATE_GROUPS:
                image.create_group(name)
        put_mapping(image["config"], scrub_secrets(config))
        put_mapping(image["environment"], scrub_secrets(environment))
        write_summary(image, TrialSummary(study=study, app=app, platform=platform, trial_index=trial_index,
                                          trial_id=trial_id, status="running"))
        arc = cls(path, lease, image)
        arc.checkpoint(force=True)
        return arc

    @classmethod
    def _open_locked(cls, path: Path, lease: WriterLease) -> TrialArchive:
        with open_h5(path) as f:
            version = validate(path, f)
        if version < SCHEMA_VERSION:
            raise ArchiveError(f"{path}: trial archive schema version {version} can be read but not resumed "
                               f"by lassi-batch {__version__} (schema {SCHEMA_VERSION}); start the trial anew "
                               "in another output folder")
        try:
            image = h5py.File(path, "r+", driver="core", backing_store=False, libver=LIBVER, locking=False)
        except OSError as e:
            raise ArchiveError(f"{path}: corrupt or unreadable HDF5 file ({first_line(e)})") from None
        arc = cls(path, lease, image)
        try:
            arc._replay_journal()
        except BaseException:
            image.close()
            raise
        return arc

    def _replay_journal(self) -> None:
        """Apply the journal entries newer than the published file, in order; drop the rest."""
        jdir = journal_dir(self.path)
        for tmp in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            tmp.unlink(missing_ok=True)  # a consolidation that died before its rename
        if not jdir.is_dir():
            return
        entries: dict[int, Path] = {}
        for p in jdir.iterdir():
            if p.name.endswith(".tmp"):
                p.unlink(missing_ok=True)  # a commit that died before publishing
            elif p.suffix == ".h5" and p.stem.isdigit():
                entries[int(p.stem)] = p
        for seq in sorted(entries):
            p = entries[seq]
            if seq <= self._published:
                p.unlink(missing_ok=True)  # already inside the published file
                continue
            if seq != self._seq:
                raise ArchiveError(f"{self.path}: journal entry {self._seq} is missing (next is {seq}); "
                                   "the journal was edited by hand")
            try:
                with h5py.File(p, "r", locking=False) as entry:
                    apply_overlay(entry, self._f)
            except OSError as e:
                raise ArchiveError(f"{p}: unreadable journal entry ({first_line(e)})") from None
            self._seq += 1
        self._steps = {rec.key: rec for rec in read_steps(self._f)}

    # --- lifetime -----------------------------------------------------------------------

    def close(self) -> None:
        """Consolidate (the trial file then holds every step) and release the lease."""
        if self._closed:
            return
        if self._tx is not None:
            raise ArchiveError(f"{self.path}: cannot close inside a transaction")
        err: ArchiveError | None = None
        try:
            if not self._broken and not self._lease.lost:
                self.checkpoint()
        except ArchiveError as e:
            err = e
        finally:
            try:  # a consolidated trial leaves no journal behind
                journal_dir(self.path).rmdir()
            except OSError:
                pass
            self._lease.release()
            self._image_close()
        if err is not None:
            raise err

    def _image_close(self) -> None:
        self._closed = True
        try:
            self._f.close()
        except Exception:  # noqa: BLE001 - an in-memory image: nothing to lose
            pass

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> TrialArchive:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc is None:
            self.close()
            return
        try:  # an exception is already on its way: do not hide it behind a close failure
            self.close()
        except ArchiveError:
            pass

    def __repr__(self) -> str:
        return f"TrialArchive({str(self.path)!r}, {'closed' if self._closed else 'w'})"

    def _file(self) -> h5py.File:
        if self._closed:
            raise ArchiveError(f"{self.path}: archive is closed")
        return self._f

    @property
    def lease_bytes_written(self) -> int:
        return self._lease.bytes_written

    @property
    def in_critical_section(self) -> bool:
        """True while a commit publishes: a stop signal must wait for its end (see `deferred`)."""
        return self._critical > 0

    @contextmanager
    def _critical_section(self) -> Iterator[None]:
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
        if self._critical == 0 and self.deferred is not None:
            d, self.deferred = self.deferred, None
            raise d

    # --- transactions -------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[h5py.File]:
        """Group writes into one atomic commit; yields the overlay being built.

        Nested use joins the open transaction. If the outermost block raises, nothing is
        committed; if a nested block raised (even if the exception was caught), the commit is
        refused with ArchiveError so a half-written record never lands.
        """
        self._file()
        if self._broken:
            raise ArchiveError(self._broken)
        if self._tx is not None:
            try:
                yield self._tx.file
            except BaseException:
                self._tx.failed = True
                raise
            return
        tx = _Tx(file=_memory_file("entry"))
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
        try:
            self._commit(tx)
        except BaseException:
            if not tx.committed:
                for fn in reversed(tx.undo):
                    fn()
            raise
        finally:
            tx.file.close()

    def _commit(self, tx: _Tx) -> None:
        if not len(tx.file) and not len(tx.file.attrs):
            return
        t0 = time.perf_counter()
        seq = self._seq
        set_attrs(tx.file, {"updated": _now(), _ENTRY_PREFIX + "seq": seq,
                            _ENTRY_PREFIX + "generation": self._generation()})
        if tx.replace:
            put_str_attr(tx.file, _REPLACE, json.dumps(tx.replace))
        tx.file.flush()
        data = tx.file.id.get_file_image()
        with self._critical_section():
            self._publish_entry(seq, data)
            try:
                apply_overlay(tx.file, self._f)
            except Exception as e:  # published but not applied: this writer cannot go on safely
                self._broken = f"{self.path}: journal entry {seq} published but not applied ({first_line(e)}); reopen"
                raise ArchiveError(self._broken) from None
            self._seq = seq + 1
            self._steps.update(tx.steps)
            tx.committed = True  # a stop deferred to the end of this section must not undo it
        self.stats.commits += 1
        self.stats.commit_s.append(time.perf_counter() - t0)

    def _generation(self) -> int:
        return self._lease.owner.generation if self._lease.owner else 0

    def _publish_entry(self, seq: int, data: bytes) -> None:
        jdir = journal_dir(self.path)
        final = jdir / f"{seq:08d}.h5"
        try:
            if not jdir.is_dir():
                jdir.mkdir(exist_ok=True)
                _fsync_dir(jdir.parent)
            self._lease.check()
            tmp = _temp_name(jdir, f"{seq:08d}")
            _crash_point("entry_begin")
            _write_new_file(tmp, data)
            _crash_point("entry_written")
            try:
                self._lease.check()
                try:
                    os.link(tmp, final)  # fails if the name exists: two writers cannot both publish
                except FileExistsError:
                    raise ArchiveError(f"{self.path}: journal entry {seq} was published by another writer; "
                                       "this writer stops") from None
                except OSError as e:
                    if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                        raise
                    if final.exists():  # no hard links here: check, then rename
                        raise ArchiveError(f"{self.path}: journal entry {seq} was published by another writer; "
                                           "this writer stops") from None
                    os.rename(tmp, final)
                _crash_point("entry_linked")
            finally:
                tmp.unlink(missing_ok=True)
            _fsync_dir(jdir)
            _crash_point("entry_done")
        except OSError as e:
            raise _io_error(self.path, f"committing journal entry {seq}", e) from None
        self.stats.bytes_written += len(data)

    def checkpoint(self, force: bool = False) -> None:
        """Consolidate: publish the whole trial as `<trial>.h5` (summary refreshed), then prune
        the journal. Called at stage ends and when the trial stops; cheap when nothing is new."""
        self._file()
        if self._tx is not None:
            raise ArchiveError(f"{self.path}: cannot consolidate inside a transaction")
        if self._broken:
            raise ArchiveError(self._broken)
        if not force and self._seq - 1 == self._published:
            return
        self._refresh_summary()
        last = self._seq - 1
        out = _memory_file("consolidated")
        try:
            for k in self._f.attrs:
                _copy_attr(self._f.attrs, out, k)
            set_attrs(out, {"journal_seq": last, "generation": self._generation()})
            for name in self._f:
                self._f.copy(self._f[name], out, name=name)
            out.flush()
            data = out.id.get_file_image()
        finally:
            out.close()
        with self._critical_section():
            tmp = _temp_name(self.path.parent, self.path.name)
            try:
                self._lease.check()
                _write_new_file(tmp, data)
                _crash_point("consolidate_written")
                self._lease.check()
                os.replace(tmp, self.path)
                _crash_point("consolidate_renamed")
                _fsync_dir(self.path.parent)
            except OSError as e:
                tmp.unlink(missing_ok=True)
                raise _io_error(self.path, "consolidating the trial file", e) from None
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            self._published = last
            set_attrs(self._f, {"journal_seq": last, "generation": self._generation()})
            self.stats.bytes_written += len(data)
            self.stats.consolidations += 1
            self._prune_journal()

    def _prune_journal(self) -> None:
        jdir = journal_dir(self.path)
        if not jdir.is_dir():
            return
        for p in sorted(jdir.glob("*.h5")):
            if p.stem.isdigit() and int(p.stem) <= self._published:
                p.unlink(missing_ok=True)
                _crash_point("journal_pruned")

    # --- helpers for writers --------------------------------------------------------------

    def _stage(self, path: str) -> h5py.Group:
        assert self._tx is not None
        return self._tx.file.require_group(path)

    def _exists(self, path: str) -> bool:
        return path in self._f or (self._tx is not None and path in self._tx.file)

    def _next(self, path: str) -> int:
        n = next_index(self._f[path]) if path in self._f else 0
        if self._tx is not None and path in self._tx.file:
            n = max(n, next_index(self._tx.file[path]))
        return n

    def _on_abort(self, fn: Callable[[], None]) -> None:
        assert self._tx is not None
        self._tx.undo.append(fn)

    def _require_candidate(self, cid: int) -> str:
        path = f"candidates/{child_name(int(cid))}"
        if not self._exists(path):
            raise ArchiveError(f"{self.path}: no candidate {cid}")
        return path

    # --- step journal -------------------------------------------------------------------

    def _find_step(self, key: str) -> StepRecord | None:
        if self._tx is not None and key in self._tx.steps:
            return self._tx.steps[key]
        return self._steps.get(key)

    def get_step(self, key: str) -> dict[str, Any] | None:
        """The recorded result of step `key`, or None if it has not completed."""
        self._file()
        rec = self._find_step(key)
        return None if rec is None else json.loads(json.dumps(rec.result))

    def has_step(self, key: str) -> bool:
        self._file()
        return self._find_step(key) is not None

    def record_step(self, key: str, kind: str, result: dict[str, Any], t_start: float, t_end: float, *,
                    ref: str = "") -> int:
        """Journal a completed step; returns its index. `result` must be JSON-serializable and
        is returned by get_step exactly as a resumed run will see it (after a JSON round trip)."""
        if not isinstance(result, dict):
            raise TypeError(f"step result must be a dict, not {type(result).__name__}")
        if not key or clean_str(key) != key:
            raise ValueError(f"invalid step key {key!r}: must be non-empty, without NUL")
        if self._find_step(key) is not None:
            raise ArchiveError(f"{self.path}: step {key!r} is already recorded")
        text = json.dumps(result, sort_keys=True)
        with self.transaction():
            i = self._next("steps")
            rec = StepRecord(i, key, kind, json.loads(text), float(t_start), float(t_end), ref)
            set_attrs(self._stage(f"steps/{child_name(i)}"),
                      {"key": key, "kind": kind, "t_start": rec.t_start, "t_end": rec.t_end,
                       "result_json": text, "ref": ref})
            assert self._tx is not None
            self._tx.steps[key] = rec
        return i

    # --- writers ------------------------------------------------------------------------

    def add_llm_call(self, call: LLMCall) -> int:
        """Archive one chat completion; returns its index. Secrets are never stored."""
        with self.transaction():
            i = self._next("llm_calls")
            g = self._stage(f"llm_calls/{child_name(i)}")
            _put_fields(g, call, skip=set(LLM_TEXTS))
            put_text(g, "messages", json.dumps(scrub_secrets(call.messages), sort_keys=True, default=str))
            put_text(g, "reply", call.reply)
        return i

    def add_candidate(self, c: Candidate) -> int:
        """Archive a new candidate; sets and returns c.id."""
        with self.transaction():
            cid = self._next("candidates")
            g = self._stage(f"candidates/{child_name(cid)}")
            _write_candidate(g, c, None)
            g.require_group("measurements")
            old = c.id
            c.id = cid
            self._on_abort(lambda: setattr(c, "id", old))
        return cid

    def update_candidate(self, cid: int, c: Candidate) -> None:
        """Rewrite candidate `cid` from `c` (its measurements are kept); sets c.id = cid."""
        with self.transaction():
            path = self._require_candidate(cid)
            _write_candidate(self._stage(path), c, self._f[path] if path in self._f else None)
            old = c.id
            c.id = cid
            self._on_abort(lambda: setattr(c, "id", old))

    def set_candidate_attrs(self, cid: int, attrs: dict[str, Any]) -> None:
        """Add or replace attributes of candidate `cid` (screening verdicts, confirmed figures)."""
        with self.transaction():
            put_mapping(self._stage(self._require_candidate(cid)), attrs)

    def add_measurement(self, cid: int, m: Measurement) -> int:
        """Archive one measured run of candidate `cid`; returns its index r."""
        with self.transaction():
            path = self._require_candidate(cid) + "/measurements"
            r = self._next(path)
            write_measurement(self._stage(path).create_group(child_name(r)), m)
        return r

    def set_context(self, name: str, text: str) -> None:
        """Store a context text (background, system, code_analysis, ...)."""
        _check_name(name, "context")
        with self.transaction():
            if _text_changed(self._f.get("context"), name, text):
                put_text(self._stage("context"), name, text)

    def add_plan(self, key: str, text: str, based_on: int | None) -> int:
        """Archive an optimization plan (based on candidate `based_on`); returns its index."""
        with self.transaction():
            i = self._next("plans")
            put_text(self._stage("plans"), child_name(i), text)
            ds = self._stage("plans")[child_name(i)]
            put_str_attr(ds, "key", key)
            put_value(ds, "based_on", None if based_on is None else int(based_on))
        return i

    def set_stage_time(self, name: str, t_start: float, t_end: float) -> None:
        """Record a pipeline stage's wall-clock span (time.time() seconds)."""
        _check_name(name, "stage")
        with self.transaction():
            g = self._stage(f"stages/{name}")
            g.attrs.update({"t_start": float(t_start), "t_end": float(t_end), "wall_s": float(t_end) - float(t_start)})

    def set_result(self, attrs: dict[str, Any], report: str = "", optimizations: list[dict[str, Any]] | None = None
                   ) -> None:
        """Replace the trial's result: figures (best_candidate, energies, ...), report, optimizations."""
        with self.transaction():
            assert self._tx is not None
            g = self._stage("result")
            self._tx.replace.append("result")
            put_mapping(g, attrs)
            old = self._f.get("result")
            if _text_changed(old, "report", report):
                put_text(g, "report", report)
            opts = json.dumps(optimizations or [], sort_keys=True, default=str)
            if _text_changed(old, "optimizations_json", opts):
                put_text(g, "optimizations_json", opts)

    def set_environment(self, environment: dict[str, Any]) -> None:
        """Replace the environment description (host, gpu, driver, compilers, image, ...)."""
        with self.transaction():
            assert self._tx is not None
            self._tx.replace.append("environment")
            put_mapping(self._stage("environment"), scrub_secrets(environment))

    # --- summary, status, attempts ---------------------------------------------------------

    def set_summary(self, s: TrialSummary) -> None:
        """Replace `/summary` with `s` as given (see `set_status` for the derived one)."""
        with self.transaction() as entry:
            write_summary(entry, s)

    def _refresh_summary(self, **changes: Any) -> None:
        s = derive_summary(self, dataclasses.replace(self.summary(), **changes))
        if s != self.summary():
            self.set_summary(s)

    def set_status(self, status: str, reason: str = "") -> None:
        """running | interrupted | done | failed (with a one-line reason); refreshes the summary."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
        reason = (reason.strip().splitlines() or [""])[0]
        self._refresh_summary(status=status, reason=reason)

    def begin_attempt(self, info: dict[str, Any]) -> int:
        """Record a start of the trial program (earlier attempts left `running` were lost)."""
        with self.transaction():
            for a in self.attempts():
                if a.get("how") == "running":
                    put_str_attr(self._stage(f"attempts/{child_name(a['index'])}"), "how", "lost")
            i = self._next("attempts")
            base = {"started": _now(), "ended": "", "how": "running", "reason": "", "host": socket.gethostname(),
                    "pid": os.getpid(), "generation": self._generation(), "package_version": __version__}
            put_mapping(self._stage(f"attempts/{child_name(i)}"), scrub_secrets({**base, **info}))
        self._attempt = i
        return i

    def end_attempt(self, how: str, reason: str = "") -> None:
        """Record how this start ended: done | failed | interrupted."""
        if self._attempt is None:
            return
        reason = (reason.strip().splitlines() or [""])[0]
        with self.transaction():
            put_mapping(self._stage(f"attempts/{child_name(self._attempt)}"),
                        {"ended": _now(), "how": how, "reason": reason})


__all__ = ["ArchiveStats", "TrialArchive", "apply_overlay", "derive_summary", "journal_dir"]

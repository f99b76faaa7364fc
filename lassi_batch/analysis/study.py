"""The study file (`study.h5`) and the CSV/Markdown next to it: written as the trials stream by,
read back by `report` and `recompute`.

Layout:

    /              attrs: schema = lassi-batch-study, schema_version, created, source, k, n_trials,
                          n_skipped, package_version
    trials/        one dataset per summary field (plus `path`), one row per aggregated trial,
                   appended in chunks so the writer holds only a chunk of rows
    skipped/       datasets path, reason
    tables/<name>/ one dataset per column (tables.Table.to_h5), attrs title, note, columns

The file is written to `<name>.tmp` and renamed when complete: an interrupted aggregation leaves
the previous study file as it was.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .. import __version__
from ..core.errors import LassiError
from ..store.schema import attr, put_str_attr
from ..store.summary import TrialSummary
from .aggregate import NUMERIC_FIELDS, STRING_FIELDS, Group, Options, PriceTable
from .tables import Table, table_from_h5
from .aggregate import build_tables, group_trials, study_provenance
from .trials import STUDY_SCHEMA, Scan, Skipped, Trial, trial_files

STUDY_VERSION = 1
CHUNK = 4096
TRIAL_COLUMNS = ("path", *(f.name for f in fields(TrialSummary)))


class StudyWriter:
    """Sink for `aggregate.group_trials`: per-trial rows to study.h5 and trials.csv, in chunks."""

    def __init__(self, h5_path: Path | None, csv_dir: Path | None):
        self.h5_path, self.csv_dir = h5_path, csv_dir
        self._rows: list[Trial] = []
        self._n = 0
        self._f: h5py.File | None = None
        self._csv: Any = None
        self._csv_fh: Any = None
        if h5_path is not None:
            h5_path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = h5_path.with_name(h5_path.name + ".tmp")
            self._f = h5py.File(self._tmp, "w", locking=False)
            g = self._f.create_group("trials")
            for k in TRIAL_COLUMNS:
                dt = h5py.string_dtype("utf-8") if k == "path" or k in STRING_FIELDS else np.float64
                g.create_dataset(k, shape=(0,), maxshape=(None,), dtype=dt, chunks=(CHUNK,))
        if csv_dir is not None:
            csv_dir.mkdir(parents=True, exist_ok=True)
            self._csv_fh = open(csv_dir / "trials.csv.tmp", "w", newline="", encoding="utf-8")
            self._csv = csv.writer(self._csv_fh)
            self._csv.writerow(TRIAL_COLUMNS)

    def add(self, t: Trial) -> None:
        self._rows.append(t)
        if len(self._rows) >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        rows, self._rows = self._rows, []
        if not rows:
            return
        if self._csv is not None:
            for t in rows:
                self._csv.writerow([str(t.path), *(getattr(t.summary, k) for k in TRIAL_COLUMNS[1:])])
        if self._f is not None:
            g = self._f["trials"]
            n0, n1 = self._n, self._n + len(rows)
            for k in TRIAL_COLUMNS:
                d = g[k]
                d.resize((n1,))
                if k == "path":
                    d[n0:n1] = [str(t.path) for t in rows]
                elif k in STRING_FIELDS:
                    d[n0:n1] = [getattr(t.summary, k) for t in rows]
                else:
                    d[n0:n1] = np.array([float(getattr(t.summary, k)) for t in rows])
        self._n += len(rows)

    def finish(self, tables: list[Table], skipped: list[Skipped], source: str, o: Options, md: Path | None,
               header: str, opening: list[str] | None = None) -> None:
        """Write tables and skipped files, then make every output visible (renames)."""
        self._flush()
        if self._f is not None:
            f = self._f
            for k, v in {"schema": STUDY_SCHEMA, "source": source, "created": _now(),
                         "package_version": __version__}.items():
                put_str_attr(f, k, v)
            f.attrs["schema_version"] = STUDY_VERSION
            f.attrs["k"] = np.array(o.k, dtype=np.int64)
            f.attrs["n_trials"] = self._n
            f.attrs["n_skipped"] = len(skipped)
            sg = f.create_group("skipped")
            sg.create_dataset("path", data=[str(s.path) for s in skipped], dtype=h5py.string_dtype("utf-8"))
            sg.create_dataset("reason", data=[s.reason for s in skipped], dtype=h5py.string_dtype("utf-8"))
            tg = f.create_group("tables")
            for t in tables:
                t.to_h5(tg)
            f.close()
            self._f = None
            os.replace(self._tmp, self.h5_path)
        if self._csv_fh is not None:
            self._csv_fh.close()
            os.replace(self.csv_dir / "trials.csv.tmp", self.csv_dir / "trials.csv")
            for t in tables:
                t.to_csv(self.csv_dir / f"{t.name}.csv")
            with open(self.csv_dir / "skipped.csv", "w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh)
                w.writerow(["path", "reason"])
                w.writerows([str(s.path), s.reason] for s in skipped)
        if md is not None:
            md.parent.mkdir(parents=True, exist_ok=True)
            tmp = md.with_name(md.name + ".tmp")
            tmp.write_text(markdown(tables, skipped, header, opening or []), encoding="utf-8")
            os.replace(tmp, md)

    def abort(self) -> None:
        if self._f is not None:
            self._f.close()
            self._tmp.unlink(missing_ok=True)
        if self._csv_fh is not None:
            self._csv_fh.close()
            (self.csv_dir / "trials.csv.tmp").unlink(missing_ok=True)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def markdown(tables: list[Table], skipped: list[Skipped], header: str, opening: list[str]) -> str:
    """The tables as Markdown, opening with `opening` (the study's provenance, one line each)."""
    out = [f"# {header}", ""] + [f"- {line}" for line in opening] + ([""] if opening else [])
    for t in tables:
        out.append(t.to_markdown())
    if skipped:
        out += [f"### Skipped files ({len(skipped)})", "", "| file | reason |", "|---|---|"]
        out += [f"| {s.path} | {s.reason.replace('|', '/')} |" for s in skipped]
        out.append("")
    return "\n".join(out)


# ------------------------------------------------------------------ reading a study file


def is_study_file(path: Path) -> bool:
    if not path.is_file() or not h5py.is_hdf5(path):
        return False
    try:
        with h5py.File(path, "r", locking=False) as f:
            return attr(f, "schema") == STUDY_SCHEMA
    except OSError:
        return False


class StudyFile:
    """A study.h5 read back: trial columns, trial paths, skipped files and the tables."""

    def __init__(self, path: Path):
        try:
            with h5py.File(path, "r", locking=False) as f:
                if attr(f, "schema") != STUDY_SCHEMA:
                    raise LassiError(f"{path}: not a study file written by `lassi-batch aggregate`")
                if int(attr(f, "schema_version", 0)) > STUDY_VERSION:
                    raise LassiError(f"{path}: study file version {attr(f, 'schema_version')} is newer than "
                                     f"this lassi-batch reads ({STUDY_VERSION})")
                g = f["trials"]
                self.columns: dict[str, np.ndarray] = {k: g[k][()] for k in g}
                self.paths = [p.decode() if isinstance(p, bytes) else str(p) for p in self.columns.pop("path")]
                self.skipped = [Skipped(Path(p.decode()), r.decode())
                                for p, r in zip(f["skipped/path"][()], f["skipped/reason"][()], strict=True)]
                self.k = tuple(int(x) for x in f.attrs["k"])
                self.source = str(attr(f, "source", ""))
                self.tables = {name: table_from_h5(f["tables"][name]) for name in f["tables"]}
        except (OSError, KeyError) as e:
            raise LassiError(f"{path}: unreadable study file ({str(e).splitlines()[0] if str(e) else e})") from None

    def _str(self, key: str) -> list[str]:
        return [x.decode() if isinstance(x, bytes) else str(x) for x in self.columns[key]]

    def summaries(self) -> list[tuple[str, TrialSummary]]:
        """(path, summary) per aggregated trial (fields absent in an older study file keep defaults)."""
        strs = {k: self._str(k) for k in STRING_FIELDS if k in self.columns}
        out = []
        types = {f.name: f.type for f in fields(TrialSummary)}
        for i, p in enumerate(self.paths):
            kw: dict[str, Any] = {k: v[i] for k, v in strs.items()}
            for k in NUMERIC_FIELDS:
                if k in self.columns:
                    x = float(self.columns[k][i])
                    kw[k] = bool(x) if types[k] == "bool" else (int(x) if types[k] == "int" and math.isfinite(x) else x)
            out.append((p, TrialSummary(**kw)))
        return out

    def groups(self, prices: PriceTable | None = None) -> dict[tuple[str, str], Group]:
        groups: dict[tuple[str, str], Group] = {}
        for p, s in self.summaries():
            g = groups.setdefault((s.app, s.platform), Group(s.app, s.platform))
            g.add(s, p, prices or PriceTable())
        return dict(sorted(groups.items()))


# ------------------------------------------------------------------ the whole aggregation


def aggregate_study(
    root: Path,
    out: Path | None,
    csv_dir: Path | None = None,
    md: Path | None = None,
    options: Options | None = None,
    prices: PriceTable | None = None,
    include_running: bool = False,
    wrap: Any = None,
) -> tuple[dict[tuple[str, str], Group], list[Table], list[Skipped]]:
    """Aggregate every trial file under `root`; `wrap(paths)` may wrap the path list (a progress bar)."""
    options = options or Options()
    outputs = [p for p in (out,) if p is not None]
    paths = trial_files(root, exclude=outputs)
    scan = Scan(wrap(paths) if wrap else paths, include_running=include_running)
    writer = StudyWriter(out, csv_dir)
    try:
        groups = group_trials(scan, prices or PriceTable(), sink=writer)
        options = options.with_study_k(groups)
        tables = build_tables(groups, options)
        n = sum(g.n for g in groups.values())
        writer.finish(tables, scan.skipped, str(root), options, md,
                      f"Study {root.name}: {n} trials, {len(groups)} (app, platform) pairs, {len(scan.skipped)} skipped",
                      study_provenance(groups).lines())
    except BaseException:
        writer.abort()
        raise
    return groups, tables, scan.skipped

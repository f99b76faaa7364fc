"""Result tables: one in-memory form, three writers (HDF5 columns, CSV, Markdown).

Values stay raw in HDF5 and CSV (fractions, joules, seconds) so that other tools compute with
them; only Markdown formats them (percentages, rounding) for reading.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..store.schema import attr, put_str_attr


@dataclass(frozen=True)
class Column:
    key: str
    header: str = ""
    fmt: str = "{:.3g}"  # Markdown only
    scale: float = 1.0  # Markdown only (100 for percentages)

    def show(self, v: Any) -> str:
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return "n/a"
        if isinstance(v, (bool, np.bool_)):
            return "yes" if v else "no"
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
            return self.fmt.format(float(v) * self.scale) if self.fmt != "{}" else str(v)
        return str(v).replace("|", "\\|")


def text(key: str, header: str = "") -> Column:
    return Column(key, header or key, "{}")


def pct(key: str, header: str = "", digits: int = 1) -> Column:
    return Column(key, header or key, f"{{:.{digits}f}}", 100.0)


def num(key: str, header: str = "", digits: int = 1) -> Column:
    return Column(key, header or key, f"{{:.{digits}f}}")


def count(key: str, header: str = "") -> Column:
    return Column(key, header or key, "{:.0f}")


@dataclass
class Table:
    name: str  # file and group name
    title: str
    columns: list[Column]
    rows: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""

    def column(self, key: str) -> list[Any]:
        return [r.get(key) for r in self.rows]

    def to_markdown(self) -> str:
        out = [f"### {self.title}", ""]
        if self.note:
            out += [self.note, ""]
        out.append("| " + " | ".join(c.header or c.key for c in self.columns) + " |")
        out.append("|" + "|".join("---" for _ in self.columns) + "|")
        for r in self.rows:
            out.append("| " + " | ".join(c.show(r.get(c.key)) for c in self.columns) + " |")
        return "\n".join(out) + "\n"

    def to_csv(self, path: Path) -> None:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow([c.key for c in self.columns])
            for r in self.rows:
                w.writerow(["" if r.get(c.key) is None else r.get(c.key) for c in self.columns])

    def to_h5(self, parent: h5py.Group) -> None:
        """One dataset per column under `parent/<name>` (strings UTF-8, numbers float64)."""
        if self.name in parent:
            del parent[self.name]
        g = parent.create_group(self.name)
        put_str_attr(g, "title", self.title)
        put_str_attr(g, "note", self.note)
        put_str_attr(g, "columns", ",".join(c.key for c in self.columns))
        for c in self.columns:
            vals = self.column(c.key)
            if any(isinstance(v, str) for v in vals):
                g.create_dataset(c.key, data=np.array([("" if v is None else str(v)).encode() for v in vals],
                                                      dtype=h5py.string_dtype("utf-8")))
            else:
                g.create_dataset(c.key, data=np.array([math.nan if v is None else float(v) for v in vals],
                                                      dtype=np.float64))


def table_from_h5(g: h5py.Group) -> tuple[str, list[str], list[dict[str, Any]]]:
    """(title, column keys, rows) of a table written by Table.to_h5."""
    keys = [k for k in str(attr(g, "columns", "")).split(",") if k]
    cols = {}
    for k in keys:
        d = g[k]
        cols[k] = [x.decode() if isinstance(x, bytes) else float(x) for x in d[()]] if d.size else []
    n = len(cols[keys[0]]) if keys else 0
    return str(attr(g, "title", "")), keys, [{k: cols[k][i] for k in keys} for i in range(n)]

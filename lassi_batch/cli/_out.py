"""Where the commands print: rich on a terminal, wide unwrapped text elsewhere, JSON on request.

Off a terminal (Slurm logs, CI, pipes) rich would cut tables to 80 columns and fold long paths;
there the console is as wide as its lines need (COLUMNS, when set, still wins), so that every
value stays whole and grep-able.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import click
from rich.console import Console

WIDE = 4000  # columns off a terminal: wider than any row we print


def console(stderr: bool = False) -> Console:
    """A rich console for this command's output (stdout, or stderr for progress)."""
    c = Console(stderr=stderr)
    if c.is_terminal or os.environ.get("COLUMNS"):
        return c
    return Console(stderr=stderr, width=WIDE, soft_wrap=True)


def json_option(f):  # noqa: ANN001, ANN201 - a click decorator
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout (for scripts).")(f)


def _plain(v: Any) -> Any:
    """JSON-safe: NaN and infinities as null, paths and other objects as text."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if v is None or isinstance(v, (bool, int, str)):
        return v
    return str(v)


def print_json(data: Any) -> None:
    click.echo(json.dumps(_plain(data), indent=1, allow_nan=False))

"""Where the shipped data (prompts/, datasets/) is: package data of `lassi_batch`, found through
importlib.resources, the same way in a source checkout, an editable install and a wheel.

The repository keeps both folders at its root, where users and docs name them
(`datasets/hecbench.toml`); `lassi_batch/data/prompts` and `lassi_batch/data/datasets` are links
to them, so the package sees them as its own data and a wheel carries copies (pyproject's
package-data lists the files).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from .errors import LassiError


def data_path(name: str) -> Path:
    """`prompts`, `datasets/...`: the shipped copy, as a file-system path."""
    res = files("lassi_batch").joinpath("data", *name.split("/"))
    if not isinstance(res, Path):  # a zipped install: the data is not on the file system
        raise LassiError(f"shipped data '{name}' is not on the file system ({res}); install lassi-batch unzipped")
    return res

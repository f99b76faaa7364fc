"""Where the shipped data (prompts/, datasets/) lives: the source checkout, or the install prefix.

An editable install reads them from the checkout, so edits take effect at once; a wheel installs
them under <prefix>/share/lassi-batch/ (pyproject's data-files).
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]


def data_path(name: str) -> Path:
    """`prompts` or `datasets/...`: the first existing copy; the checkout path when none exists."""
    candidates = [CHECKOUT / name, Path(sys.prefix) / "share" / "lassi-batch" / name]
    for scheme_path in {sysconfig.get_path("data"), sysconfig.get_path("data", f"{sysconfig.get_default_scheme()}")}:
        candidates.append(Path(scheme_path) / "share" / "lassi-batch" / name)
    return next((c for c in candidates if c.exists()), candidates[0])

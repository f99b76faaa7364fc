"""Train / validation / test splits by application (pure).

A model that saw an app's programs in training and is tested on the same app measures memory,
not skill; so the unit of a split is the application: all records of one app go to one split.
Whole families can be held out for the test split with name patterns (`--holdout-apps
'hecbench-*'`). The rest is shuffled with the seed and dealt out so that each split's record
count comes close to its fraction; every split with a non-zero fraction gets at least one app
when there are enough apps.
"""

from __future__ import annotations

import fnmatch
import random
from collections.abc import Iterable

SPLITS = ("train", "validation", "test")
_TIE_ORDER = ("train", "test", "validation")  # with two apps: one to train, one to test


def matches(app: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(app, p) for p in patterns)


def assign_splits(sizes: dict[str, int], fractions: tuple[float, float, float], seed: int,
                  holdout: Iterable[str] = ()) -> dict[str, str]:
    """{app: split} for apps with `sizes[app]` records; held-out apps all go to test."""
    patterns = list(holdout)
    frac = dict(zip(SPLITS, fractions))
    out = {a: "test" for a in sorted(sizes) if matches(a, patterns)}
    count = {s: 0 for s in SPLITS}
    for a in out:
        count["test"] += sizes[a]
    rest = sorted(a for a in sizes if a not in out)
    random.Random(f"splits:{seed}").shuffle(rest)
    total = sum(sizes.values())
    active = [s for s in _TIE_ORDER if frac[s] > 0]
    needs = [s for s in active if count[s] == 0]
    for app in rest:
        if needs:
            best = needs.pop(0)
        else:
            best = max(active, key=lambda s: (frac[s] * total - count[s], -_TIE_ORDER.index(s)))
        out[app] = best
        count[best] += sizes[app]
    return dict(sorted(out.items()))

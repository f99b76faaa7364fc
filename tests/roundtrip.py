"""The round trip every trial file must pass: `recompute` with the choices the trial made
reproduces every figure of its recorded summary exactly (store/headline.py is the one
derivation of both)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from lassi_batch.analysis.recompute import Choices, recompute_trial
from lassi_batch.store.headline import Rules, apply, derive
from lassi_batch.store.reader import open_trial, trial_records


def _same(a: object, b: object) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def differences(a: object, b: object) -> list[tuple[str, object, object]]:
    return [(f.name, getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)  # type: ignore[arg-type]
            if not _same(getattr(a, f.name), getattr(b, f.name))]


def assert_round_trip(path: Path) -> None:
    """Recomputed from the raw traces, selection replayed: equal to the recorded summary, field
    by field, bit for bit; and the derivation over the stored figures gives the same."""
    r = recompute_trial(path, Choices())
    assert differences(r.old, r.new) == [], path
    with open_trial(path) as t:
        s = t.summary()
        again = apply(s, derive(trial_records(t), Rules.from_config(t.config())))
    assert differences(s, again) == [], path
    assert all(getattr(r.new, k) >= 0 for k in ("n_generated", "n_built", "n_ran", "n_judged", "n_held"))

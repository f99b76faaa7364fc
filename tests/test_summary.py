"""The summary group: every field round-trips with its type, whatever the values."""

import math

import h5py
import pytest

from lassi_batch.store.summary import SUMMARY_FIELDS, TrialSummary, read_summary, write_summary


def test_round_trip_keeps_types_and_nan(tmp_path):
    s = TrialSummary(study="s", app="heat2d", platform="cpu", trial_index=2, status="done",
                     source_energy_j=10.0, best_energy_j=7.5, reduction=0.25, passed=True, host="")
    with h5py.File(tmp_path / "t.h5", "w") as f:
        write_summary(f, s)
    with h5py.File(tmp_path / "t.h5", "r") as f:
        assert set(f["summary"].attrs) == set(SUMMARY_FIELDS)
        back = read_summary(f)
    assert back.app == "heat2d" and back.trial_index == 2 and back.passed is True
    assert back.reduction == 0.25 and math.isnan(back.vanilla_energy_j) and back.host == ""
    assert back == TrialSummary(**{k: getattr(back, k) for k in SUMMARY_FIELDS})


def test_unknown_status_is_refused(tmp_path):
    with h5py.File(tmp_path / "t.h5", "w") as f, pytest.raises(ValueError, match="status"):
        write_summary(f, TrialSummary(status="weird"))

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


def test_counts_read_the_findings_as_the_archive_stores_them(tmp_path):
    """The field `findings_json` is stored as attribute `findings_json_json` (put_value): the
    counters must read that one, not fall back on the verifier report."""
    import json

    from lassi_batch.core.records import Candidate
    from lassi_batch.store.schema import put_mapping, put_text
    from lassi_batch.store.summary import screening_counts

    findings = [{"kind": "work", "severity": "integrity", "message": "work removed"},
                {"kind": "judge", "severity": "integrity", "message": "the judge answered INVALID"}]
    with h5py.File(tmp_path / "t.h5", "w") as f:
        g = f.create_group("candidates/000001")
        c = Candidate(id=1, key="s1/eval0", stage=1, verdict="fail", findings_json=json.dumps(findings))
        put_mapping(g, {"stage": c.stage, "verdict": c.verdict, "findings_json": c.findings_json})
        put_text(g, "verifier_json", json.dumps({"findings": [{"kind": "exit", "severity": "fail"}]}))
        assert "findings_json_json" in g.attrs
        n = screening_counts(f)
    assert n["findings_work"] == 1 and n["findings_other"] == 1 and n["findings_exit"] == 0

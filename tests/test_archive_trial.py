"""The trial program and its archive: the summary and attempts it records, stop signals,
resumes that match an uninterrupted run (real g++ app, replay transcript, real HDF5)."""

from __future__ import annotations

import hashlib
import math
import re
import shutil

import pytest

from lassi_batch.core.config import parse_study
from lassi_batch.pipeline.session import run_trial
from lassi_batch.store import open_trial, read_trial_summary

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")


def _study(data):
    from pathlib import Path

    return parse_study(data, Path("."))


def test_trial_fills_summary_and_attempts(setup):
    tmp, data = setup
    study = _study(data)
    path, out = run_trial(study, study.apps[0], 0, system_text="test machine")
    s = read_trial_summary(path)
    assert (s.study, s.app, s.platform, s.trial_index, s.status, s.reason) == ("t", "sumapp", "cpu", 0, "done", "")
    assert s.trial_id == "t/sumapp/cpu/0"
    assert s.passed and 0 < s.reduction < 1 and s.vanilla_passed
    assert s.vanilla_reduction == pytest.approx(1 - s.vanilla_energy_j / s.source_energy_j)
    assert s.best_energy_j < s.source_energy_j and s.best_energy_j == pytest.approx(out.best_energy_j)
    assert s.best_candidate == out.best_candidate and s.best_iteration >= 1
    with open_trial(path) as t:
        cands, calls = t.candidates(), t.llm_calls()
        assert s.n_candidates == len(cands) and s.n_llm_calls == len(calls) == 25
        assert s.n_passed == sum(c.passed for c in cands if c.stage in (1, 3))
        assert s.n_self_corrections == 2  # the compile fix of i1 and the runtime fix of i3
        assert s.time_total_s == pytest.approx(sum(v["wall_s"] for v in t.stage_times().values()))
        assert all(c.replay_match == "key" and c.replay_index >= 0 for c in calls)
        attempts = t.attempts()
    assert s.meter == "estimate" and s.estimate and s.attempts == 1 and s.host
    assert s.started and s.finished and s.finished >= s.started and not math.isnan(s.time_measure_s)
    (a,) = attempts
    assert a["how"] == "done" and a["ended"] and a["host"] == s.host and a["generation"] >= 1
    assert re.fullmatch(r"[0-9a-f]{64}", a["prompts_sha256"])
    assert a["replay_sha256"] == hashlib.sha256((tmp / "sumapp.jsonl").read_bytes()).hexdigest()
    assert a["slurm_job_id"] == "" and a["gpu_name"] == ""


def test_moved_checkout_resumes_but_changed_app_file_is_refused(setup):
    from lassi_batch.core.errors import ConfigError

    tmp, data = setup
    study = _study(data)
    path, _ = run_trial(study, study.apps[0], 0, system_text="x")
    moved = tmp / "elsewhere"
    shutil.move(str(tmp / "sumapp"), moved)
    data["apps"] = [{"path": str(moved)}]
    data["study"]["trials"] = 3  # trial count and k may change too
    study2 = _study(data)
    _, out = run_trial(study2, study2.apps[0], 0, system_text="x")  # the finished trial: not rerun
    assert out.status == "done"
    (moved / "main.cpp").write_text((moved / "main.cpp").read_text() + "\n// edited\n")
    study3 = _study(data)
    with pytest.raises(ConfigError, match=r"other settings \(app_files_sha256\.main\.cpp"):
        run_trial(study3, study3.apps[0], 0, system_text="x")
    data["llm"]["pass_policy"] = "judge"
    (moved / "main.cpp").write_text((moved / "main.cpp").read_text().replace("\n// edited\n", ""))
    study4 = _study(data)
    with pytest.raises(ConfigError, match=r"other settings \(llm\.pass_policy"):
        run_trial(study4, study4.apps[0], 0, system_text="x")

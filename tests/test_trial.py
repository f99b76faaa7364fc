"""Whole trials on a tiny real C++ app with a scripted transcript: stage logic, screening, resume.

The app is compiled with g++ and measured with the `estimate` meter (CPU-seconds x watts), and
the trial archive is a real HDF5 file. Kills are real SIGKILLs of a subprocess at chosen steps.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lassi_batch.core.config import parse_study
from lassi_batch.pipeline.session import run_trial, trial_path
from lassi_batch.store.archive import TrialArchive

# the `setup` fixture (a small real app, its transcript, a study) comes from conftest.py / sumapp.py

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")

def _study(data):
    return parse_study(data, Path("."))


def test_full_trial_stages_screening_and_result(setup):
    tmp, data = setup
    study = _study(data)
    path, out = run_trial(study, study.apps[0], 0, system_text="test machine")
    assert out.status == "done"
    with TrialArchive.open(path, writable=False) as ar:
        cands = {c.key: c for c in ar.candidates()}
        # stage 1 (no self-correction) improved on the source and passed
        assert cands["s1/eval0"].passed
        # i1: a compile error, then the fix as a separate candidate with one self-correction
        assert cands["s3/i1/eval0"].status == "build_failed"
        assert cands["s3/i1/eval1"].self_corrections == 1 and cands["s3/i1/eval1"].passed
        assert cands["s3/i1/eval1"].parent == cands["s3/i1/eval0"].id
        # i2 deleted half the repeats: the judge accepted it, the verifier did not
        bad = cands["s3/i2/eval0"]
        assert bad.judge_verdict == "VALID" and bad.verifier_verdict == "fail" and not bad.passed
        assert any(f["kind"] == "work" for f in bad.verifier["findings"])
        # i3: runtime failure, then fixed
        assert cands["s3/i3/eval0"].status == "run_failed" and cands["s3/i3/eval1"].run_ok
        r = ar.result()
        best = ar.candidate(r["best_candidate"])
        assert best.key in ("s3/i3/eval1", "s3/i1/eval1") and best.passed
        assert r["best_energy_j"] < r["source_energy_j"]
        assert 0 < r["reduction"] < 1
        assert r["vanilla_passed"] and r["pipeline_passed"]
        assert "temperature" in r["stop_reason"]
        assert ar.status == "done"
        # the schedule ran 0.2..0.8 after the last improvement (i3), then stopped
        temps = [c.temperature for c in ar.candidates() if c.stage == 3 and c.key.endswith("eval0")]
        assert temps[-4:] == pytest.approx([0.2, 0.4, 0.6, 0.8])
        keys = [c.key for c in ar.llm_calls()]
        assert len(keys) == len(set(keys))  # no call asked twice
        assert ar.stage_times().keys() >= {"stage0_profile", "stage1_vanilla", "stage2_context",
                                            "stage3_iterate", "stage4_report"}
        assert "algorithmic" in json.dumps(r) or ar.result().get("optimizations")


def test_finished_trial_is_not_rerun(setup):
    tmp, data = setup
    study = _study(data)
    path, _ = run_trial(study, study.apps[0], 0, system_text="x")
    before = path.stat().st_mtime_ns
    _, out = run_trial(study, study.apps[0], 0, system_text="x")
    assert out.status == "done" and path.stat().st_mtime_ns == before


CHILD = r"""
import json, os, signal, sys
from pathlib import Path
from lassi_batch.core.config import parse_study
from lassi_batch.pipeline.session import run_trial
data = json.loads(sys.argv[1]); kill_at = int(sys.argv[2]); seen = [0]
def on_event(ev):
    seen[0] += 1
    if seen[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
study = parse_study(data, Path("."))
run_trial(study, study.apps[0], 0, progress=on_event, system_text="x")
"""


@pytest.mark.parametrize("kill_at", [2, 5, 9, 14, 20, 27])
def test_killed_trial_resumes_without_repeating_llm_calls(setup, kill_at):
    tmp, data = setup
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    p = subprocess.run([sys.executable, "-c", CHILD, json.dumps(data), str(kill_at)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    study = _study(data)
    path = trial_path(study, "sumapp", 0)
    with TrialArchive.open(path, writable=False) as ar:
        calls_before = [c.key for c in ar.llm_calls()]
        cands_before = [c.key for c in ar.candidates()]
    _, out = run_trial(study, study.apps[0], 0, system_text="x")
    assert out.status == "done"
    with TrialArchive.open(path, writable=False) as ar:
        calls = [c.key for c in ar.llm_calls()]
        cands = [c.key for c in ar.candidates()]
        assert calls[: len(calls_before)] == calls_before  # kept, in order
        assert len(calls) == len(set(calls))  # nothing asked twice
        assert cands[: len(cands_before)] == cands_before  # no candidate lost
        assert len(set(cands)) == len(cands)
        assert [c.key for c in ar.llm_calls()][-1] == "s4/report"


def test_resume_under_other_settings_is_refused(setup):
    from lassi_batch.core.errors import ConfigError

    tmp, data = setup
    study = _study(data)
    path, _ = run_trial(study, study.apps[0], 0, system_text="x")
    data["measure"]["repeat"] = 2
    changed = _study(data)
    with pytest.raises(ConfigError, match="other settings .*measure.repeat"):
        run_trial(changed, changed.apps[0], 0, system_text="x")
    with TrialArchive.open(path, writable=False) as ar:
        assert ar.status == "done"  # untouched

"""The trial program and its archive: the summary and attempts it records, stop signals,
resumes that match an uninterrupted run (real g++ app, replay transcript, real HDF5)."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil

import h5py
import pytest

from lassi_batch.core.config import parse_study
from lassi_batch.pipeline.session import run_trial
from lassi_batch.store import open_trial, read_trial_summary
from lassi_batch.store.summary import SCREENING_FIELDS, SUMMARY_FIELDS, read_summary

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
        assert s.n_candidates == len(cands) and s.n_llm_calls == len(calls)
        # every stage ran (how many plans follow depends on which candidates measured lower)
        assert {"zero_shot", "plan", "refactor", "fix_compile", "fix_runtime", "judge", "final_report"} <= {c.kind for c in calls}
        assert s.time_build_s == pytest.approx(sum(c.build_s for c in cands)) and s.time_build_s > 0
        assert len({c.key for c in calls}) == len(calls)  # every call answered once, none repeated
        assert s.n_passed == sum(c.passed for c in cands if c.stage in (1, 3))
        assert s.n_self_corrections == 2  # the compile fix of i1 and the runtime fix of i3
        assert s.time_total_s == pytest.approx(sum(v["wall_s"] for v in t.stage_times().values()))
        assert all(c.replay_match == "key" and c.replay_index >= 0 for c in calls)
        attempts = t.attempts()
    assert s.meter == "estimate" and s.estimate and s.attempts == 1 and s.host
    assert s.started and s.finished and s.finished >= s.started and not math.isnan(s.time_measure_s)
    assert s.time_lock_wait_s >= 0 and s.sandbox in ("bwrap", "none")
    (a,) = attempts
    assert a["how"] == "done" and a["ended"] and a["host"] == s.host and a["generation"] >= 1
    assert re.fullmatch(r"[0-9a-f]{64}", a["prompts_sha256"])
    assert a["replay_sha256"] == hashlib.sha256((tmp / "sumapp.jsonl").read_bytes()).hexdigest()
    assert a["slurm_job_id"] == "" and a["gpu_name"] == ""
    # the writer fills every field it declares: no counter left at -1, the provenance set
    with h5py.File(path, "r", locking=False) as f:
        stored = read_summary(f)
        assert set(f["summary"].attrs) == set(SUMMARY_FIELDS)
    assert all(getattr(stored, k) >= 0 for k in SCREENING_FIELDS) and stored.n_generated == stored.n_candidates - 1
    assert (stored.llm_backend, stored.generator_model, stored.study_k) == ("replay", "replay of sumapp.jsonl", "1")
    assert stored.llm_source == f"replay of sumapp.jsonl (sha256 {a['replay_sha256'][:12]})"
    assert stored.device and stored.package_version and stored == s


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
    # the differential probes decide what passes screening: changing one is refused as well
    del data["llm"]["pass_policy"]
    toml = moved / "app.toml"
    toml.write_text(toml.read_text().replace("time_limit_s = 30", "time_limit_s = 30\nmin_scaling = 0.05"))
    study5 = _study(data)
    with pytest.raises(ConfigError, match=r"other settings \(app\.probe\.min_scaling: 0\.1 then, 0\.05 now"):
        run_trial(study5, study5.apps[0], 0, system_text="x")


def test_archives_from_before_probe_settings_were_recorded_still_resume(setup):
    """A trial file written before `app.probe` joined the resume settings has none: it resumes,
    while one that records probes compares them."""
    from lassi_batch.core.errors import ConfigError
    from lassi_batch.pipeline.session import _same_settings, resume_settings

    tmp, data = setup
    study = _study(data)
    now = resume_settings(study, study.apps[0], {"p": "x"})
    assert now["app"]["probe"]["min_scaling"] == 0.1
    old = json.loads(json.dumps(now))
    del old["app"]["probe"]
    _same_settings(tmp / "t.h5", old, now)  # no error
    changed = json.loads(json.dumps(now))
    changed["app"]["probe"]["scale_cost_s"] = 1.0
    with pytest.raises(ConfigError, match=r"app\.probe\.scale_cost_s"):
        _same_settings(tmp / "t.h5", changed, now)
    old["app"]["args"] = ["1"]  # other differences still count in an old file
    with pytest.raises(ConfigError, match=r"app\.args"):
        _same_settings(tmp / "t.h5", old, now)


CHILD = r"""
import json, sys
from pathlib import Path
from lassi_batch.core.config import parse_study
from lassi_batch.core.errors import TrialInterrupted
from lassi_batch.pipeline.session import run_trial
study = parse_study(json.loads(sys.argv[1]), Path("."))
try:
    run_trial(study, study.apps[0], 0, progress=lambda ev: print(json.dumps(ev), flush=True), system_text="x")
except TrialInterrupted as e:
    sys.exit(e.exit_code)
print("finished", flush=True)
"""


def _child(data, **env):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    full = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), **env}
    return subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(data)], env=full, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def test_sigterm_stops_at_a_step_boundary_as_interrupted_with_a_clean_process_table(setup):
    import json
    import os
    import signal
    import time

    import psutil

    tmp, data = setup
    work = tmp / "work"
    work.mkdir()
    proc = _child(data, LASSI_WORKDIR=str(work))
    seen: set[int] = set()
    assert proc.stdout is not None
    for line in proc.stdout:  # wait for stage 3's first evaluation (the source already ran)
        ev = json.loads(line)
        if ev.get("event") == "evaluate" and ev.get("stage") == 3:
            break
    deadline = time.monotonic() + 20
    while not seen and time.monotonic() < deadline:  # the compiler or the candidate is running
        seen = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
    assert seen, "no child process observed during an evaluation"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err[-2000:]
    alive = [p for p in psutil.process_iter(["pid"]) if p.pid != proc.pid and _sid(p.pid) == proc.pid]
    assert not alive and not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in seen)
    assert list(work.iterdir()) == []  # the work folder went with it
    path = next((tmp / "out" / "trials").glob("*.h5"))
    s = read_trial_summary(path)
    assert (s.status, s.reason) == ("interrupted", "stopped by SIGTERM")
    with open_trial(path) as t:
        assert [a["how"] for a in t.attempts()] == ["interrupted"]
        assert t.attempts()[0]["reason"] == "stopped by SIGTERM" and t.attempts()[0]["ended"]
        keys_before = [c.key for c in t.llm_calls()]
    study = _study(data)
    _, out = run_trial(study, study.apps[0], 0, system_text="x")  # resumes where it stopped
    assert out.status == "done"
    with open_trial(path) as t:
        keys = [c.key for c in t.llm_calls()]
        # no call lost or repeated, and the trial ran to its report (how many plans it made on
        # the way depends on which candidates measured lower)
        assert keys[: len(keys_before)] == keys_before and len(keys) == len(set(keys)) and keys[-1] == "s4/report"
        assert [a["how"] for a in t.attempts()] == ["interrupted", "done"] and t.summary().status == "done"


def _sid(pid: int) -> int:
    import os

    try:
        return os.getsid(pid)
    except OSError:
        return -1


def _variant_transcript(tmp):
    """The sumapp transcript with stage 3's later refactors answered by kind (no key), each
    reply distinct: a resumed replay that forgot which records it used would answer otherwise."""
    import json

    rows = [json.loads(x) for x in (tmp / "sumapp.jsonl").read_text().splitlines()]
    for r in rows:
        if r["kind"] == "refactor" and r["key"] in {f"s3/i{i}/refactor" for i in range(4, 8)}:
            r["reply"] = r["reply"].replace("Here is the refactored program.", f"Variant of {r.pop('key')}.")
    path = tmp / "variants.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _stable(kind, result):
    """A step's result without what is measured or drawn afresh by each run (the probes' seed and
    costs, the confirmation's energies): what decides the trial's path is kept."""
    if kind == "probes":
        return sorted(p["label"] for p in result.get("probes", []))
    if kind == "confirm":
        return {"candidate": result["candidate"], "source": result["source"], "confirmed": result["confirmed"]}
    return result


def _contents(path):
    with open_trial(path) as t:
        calls = [(c.key, c.kind, c.model, c.reply, c.replay_match, c.replay_index, c.temperature, c.error)
                 for c in t.llm_calls()]
        # (the verifier's verdict is left out: its energy-sanity check reads the measured figures)
        cands = [(c.key, c.stage, c.iteration, c.parent, c.files, c.status, c.passed, c.judge_verdict,
                  c.build_ok, c.run_ok, c.self_corrections, c.temperature, c.stdout)
                 for c in t.candidates()]
        steps = [(s["key"], s["kind"], _stable(s["kind"], s["result"])) for s in t.steps()]
        r = t.result()
        result = {k: r[k] for k in ("source_candidate", "best_candidate", "vanilla_candidate", "improved",
                                    "pipeline_passed", "stop_reason", "llm_calls", "candidates", "report",
                                    "optimizations")}
        s = t.summary()
        summary = (s.status, s.passed, s.best_candidate, s.n_candidates, s.n_llm_calls, s.n_passed,
                   s.vanilla_passed, s.generator_model)
        return calls, cands, steps, t.plans(), t.context(), result, summary


def test_resumed_replay_trial_equals_an_uninterrupted_one(setup):
    """SIGKILLs inside commits and consolidations; the resumed trial makes the same LLM calls,
    answered by the same records, and ends with the same archive contents (times and measured
    figures aside)."""
    tmp, data = setup
    data["llm"]["replay_path"] = str(_variant_transcript(tmp))
    whole = dict(data, study={**data["study"], "out": str(tmp / "whole")})
    study = _study(whole)
    path_a, _ = run_trial(study, study.apps[0], 0, system_text="x")
    for crash in ("entry_written:14", "consolidate_renamed:3"):
        proc = _child(data, LASSI_ARCHIVE_CRASH_AT=crash)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == -9, err[-2000:]
    study = _study(data)
    path_b, out = run_trial(study, study.apps[0], 0, system_text="x")
    assert out.status == "done"
    a, b = _contents(path_a), _contents(path_b)
    matches = [c[4] for c in b[0]]
    assert matches.count("kind") == 4 and matches.count("key") == len(matches) - 4  # the later refactors by kind
    assert b[0] == a[0]  # the same calls, answered by the same records
    for part, x, y in zip(("calls", "candidates", "steps", "plans", "context", "result", "summary"), a, b):
        diff = [(u, v) for u, v in zip(x, y) if u != v] if isinstance(x, list) else ([(x, y)] if x != y else [])
        assert not diff and len(x) == len(y), f"{part} differ: {str(diff)[:3000]}"
    with open_trial(path_b) as t:
        assert [x["how"] for x in t.attempts()] == ["lost", "lost", "done"]


def test_a_trial_resumed_on_another_device_compares_only_runs_made_there(setup, monkeypatch):
    """Killed mid-trial, resumed where the meter reads another device (another GPU's UUID): the
    source is measured again there before anything is compared, and every later decision
    compares runs of that device only (journal step `remeasure/<candidate>/<device>`)."""
    from lassi_batch.pipeline import session

    tmp, data = setup
    proc = _child(data, LASSI_ARCHIVE_CRASH_AT="entry_written:10")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -9, err[-2000:]
    study = _study(data)
    path = session.trial_path(study, "sumapp", 0)
    with open_trial(path) as t:
        before = [s["key"] for s in t.steps()]
        first = {m.trace.device_id for m in t.measurements(0)}
    assert "s0/eval" in before and "s4/report" not in before and len(first) == 1

    real = session.open_meter

    def elsewhere(*a, **kw):
        meter = real(*a, **kw)
        meter.device_id = "GPU-00000000-another-device"
        return meter

    monkeypatch.setattr(session, "open_meter", elsewhere)
    decisions = []
    _, out = run_trial(study, study.apps[0], 0, system_text="x",
                       progress=lambda ev: decisions.append(ev) if ev.get("event") == "decision" else None)
    assert out.status == "done"
    with open_trial(path) as t:
        keys = [s["key"] for s in t.steps()]
        assert keys[:len(before)] == before
        assert keys.index("remeasure/0/GPU-00000000-another-device") == len(before)  # first thing done
        devices = {c.id: {m.trace.device_id for m in t.measurements(c.id)} for c in t.candidates()}
    assert devices[0] == first | {"GPU-00000000-another-device"}
    assert decisions and all("GPU-00000000-another-device" in devices[d[k]] for d in decisions
                             for k in ("candidate", "against"))

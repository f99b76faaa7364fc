"""TrialArchive: round trips, step journal, schema checks, writer lease, and real SIGKILL crashes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import json
import threading
import time
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lassi_batch
from lassi_batch import __version__
from lassi_batch.core.errors import ArchiveError
from lassi_batch.power.trace import Measurement, PowerTrace, Window
from lassi_batch.core.records import Candidate, LLMCall
from lassi_batch.store import SCHEMA, SCHEMA_VERSION, TrialArchive, read_llm_calls, summarize_trial
from lassi_batch.store.archive import journal_dir
from lassi_batch.store.schema import attr, get_text

PACKAGE_ROOT = Path(lassi_batch.__file__).resolve().parents[1]
IDENT = dict(trial_id="jacobi-cuda-0", app="jacobi", platform="cuda")


def new_archive(path: Path, **kw) -> TrialArchive:
    args = dict(IDENT, config={"study": {"name": "s", "k": [1, 3, 5]}, "app": {"dir": "apps/jacobi"}},
                environment={"host": "node1", "compilers": {"nvcc": "13.0"}, "python": "3.11"})
    args.update(kw)
    return TrialArchive.create(path, **args)


def measurement(value: float, n: int = 500) -> Measurement:
    trace = PowerTrace(meter="estimate", device="cpu", t=np.arange(n) * 0.01,
                       power_instant_w=np.full(n, float(value)))
    return Measurement(trace, Window(0.0, 0.5, 4.0, 4.5, 5.0), 0, {"energy_j": float(value)}, {"repeat": 0})


def one_line_error(excinfo: pytest.ExceptionInfo[ArchiveError]) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    return msg


# ---------------------------------------------------------------------------- basics


def test_create_sets_root_attrs_and_groups(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "trial.h5"
    with new_archive(path) as arc:
        meta = arc.meta
        assert meta["schema"] == SCHEMA and meta["schema_version"] == SCHEMA_VERSION
        assert meta["package_version"] == __version__
        assert (meta["trial_id"], meta["app"], meta["platform"]) == ("jacobi-cuda-0", "jacobi", "cuda")
        assert arc.status == "running" and arc.summary().reason == ""
        created = datetime.fromisoformat(meta["created"].replace("Z", "+00:00"))
        assert created.tzinfo is not None
        assert arc.config() == {"study": {"name": "s", "k": [1, 3, 5]}, "app": {"dir": "apps/jacobi"}}
        assert arc.environment() == {"host": "node1", "compilers": {"nvcc": "13.0"}, "python": "3.11"}
        assert arc.steps() == [] and arc.candidates() == [] and arc.result() == {}
        time.sleep(0.002)
        arc.set_status("done")
        assert arc.meta["updated"] > meta["updated"]
    with h5py.File(path, "r") as f:
        assert {"summary", "config", "environment", "attempts", "steps", "llm_calls", "candidates", "context",
                "plans", "stages"} <= set(f)
        assert "study_json" in f["config"].attrs and "compilers_json" in f["environment"].attrs


def test_create_refuses_existing_file_and_releases_lock(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    new_archive(path).close()
    with pytest.raises(ArchiveError) as e:
        new_archive(path)
    assert "already exists" in one_line_error(e)
    TrialArchive.open(path).close()  # the failed create did not keep the lock


def test_open_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError) as e:
        TrialArchive.open(tmp_path / "nope.h5")
    assert "not found" in one_line_error(e)
    assert not (tmp_path / "nope.h5.lock").exists()


@pytest.mark.parametrize(
    "content, expected",
    [(b"", "not an HDF5 file"), (b"this is a text file\n", "not an HDF5 file"),
     (b"\x89HDF\r\n\x1a\n truncated", "corrupt or unreadable HDF5 file")],
)
@pytest.mark.parametrize("writable", [True, False])
def test_not_an_hdf5_file(tmp_path: Path, content: bytes, expected: str, writable: bool) -> None:
    path = tmp_path / "t.h5"
    path.write_bytes(content)
    with pytest.raises(ArchiveError) as e:
        TrialArchive.open(path, writable=writable)
    assert expected in one_line_error(e)
    if writable:  # the lock must have been released
        with pytest.raises(ArchiveError, match=expected):
            TrialArchive.open(path)


def test_hdf5_file_of_another_kind(tmp_path: Path) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.attrs["schema"] = "lassi-batch-profile"
    with pytest.raises(ArchiveError) as e:
        TrialArchive.open(path, writable=False)
    assert "not a lassi-batch trial archive" in one_line_error(e)


def test_newer_schema_version_is_rejected_older_accepted(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    new_archive(path).close()
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1
    for writable in (False, True):
        with pytest.raises(ArchiveError) as e:
            TrialArchive.open(path, writable=writable)
        msg = one_line_error(e)
        assert f"schema version {SCHEMA_VERSION + 1}" in msg and "upgrade" in msg
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION
    TrialArchive.open(path).close()


def test_read_only_archive_refuses_writes_but_reads(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    with new_archive(path) as arc:
        arc.add_candidate(Candidate(key="src", stage=0))
    with TrialArchive.open(path, writable=False) as ro:
        assert [c.key for c in ro.candidates()] == ["src"]
        assert not hasattr(ro, "add_candidate") and not hasattr(ro, "transaction")  # a snapshot only reads
    with pytest.raises(ArchiveError, match="closed"):
        ro.candidates()


def test_open_or_create_resumes_same_trial_only(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    kw = dict(IDENT, config={}, environment={})
    with TrialArchive.open_or_create(path, **kw) as arc:
        arc.record_step("s0", "source", {"ok": True}, 1.0, 2.0)
    with TrialArchive.open_or_create(path, **kw) as arc:
        assert arc.get_step("s0") == {"ok": True}
    with pytest.raises(ArchiveError) as e:
        TrialArchive.open_or_create(path, **dict(kw, trial_id="other"))
    assert "jacobi-cuda-0" in one_line_error(e)
    TrialArchive.open(path).close()  # lock released after the mismatch


# ---------------------------------------------------------------------------- records


text = st.text()  # any unicode, newlines, NUL
opt_float = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False))

candidates = st.builds(
    Candidate,
    key=text,
    stage=st.integers(0, 3),
    iteration=st.integers(0, 50),
    parent=st.one_of(st.none(), st.integers(0, 10)),
    temperature=opt_float,
    files=st.dictionaries(text, text, max_size=3),
    self_corrections=st.integers(0, 5),
    status=st.sampled_from(["new", "build_failed", "measured"]),
    build_ok=st.booleans(),
    run_ok=st.booleans(),
    build_log=text,
    stdout=text,
    stderr=text,
    returncode=st.one_of(st.none(), st.integers(-255, 255)),
    judge_verdict=st.sampled_from(["", "VALID", "INVALID"]),
    judge_text=text,
    verifier_verdict=st.sampled_from(["", "pass", "fail", "warn"]),
    verifier=st.dictionaries(st.text(max_size=10), st.one_of(text, st.integers(), st.booleans()), max_size=3),
    passed=st.booleans(),
    energy_j=opt_float,
    runtime_s=opt_float,
    power_w=opt_float,
    description=text,
)

llm_calls = st.builds(
    LLMCall,
    key=text,
    kind=st.sampled_from(["zero_shot", "plan", "refactor", "judge"]),
    model=st.text(max_size=30),
    messages=st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]),
                                             "content": text}), max_size=4),
    reply=text,
    temperature=opt_float,
    prompt_tokens=st.integers(0, 10**6),
    completion_tokens=st.integers(0, 10**6),
    latency_s=st.floats(0, 1e4),
    attempts=st.integers(1, 5),
    finish_reason=st.sampled_from(["", "stop", "length"]),
    error=text,
    t_start=st.floats(0, 2e9),
    backend=st.sampled_from(["openai", "replay"]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cands=st.lists(candidates, min_size=1, max_size=3), calls=st.lists(llm_calls, max_size=3),
       ctx=st.dictionaries(st.sampled_from(["background", "system", "code_analysis"]), text),
       plan=text)
def test_records_round_trip(cands, calls, ctx, plan) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t.h5"
        with new_archive(path) as arc, arc.transaction():
            ids = [arc.add_candidate(c) for c in cands]
            idx = [arc.add_llm_call(c) for c in calls]
            for name, t in ctx.items():
                arc.set_context(name, t)
            arc.add_plan("s3/i0/plan", plan, based_on=ids[0])
        assert ids == list(range(len(cands))) and [c.id for c in cands] == ids
        assert idx == list(range(len(calls)))
        with TrialArchive.open(path, writable=False) as ro:
            assert ro.candidates() == cands
            assert ro.candidate(ids[-1]) == cands[-1]
            assert ro.llm_calls() == calls
            assert ro.context() == ctx
            assert ro.plans() == [{"id": 0, "key": "s3/i0/plan", "text": plan, "based_on": 0}]


def test_huge_texts_round_trip(tmp_path: Path) -> None:
    big = ("résumé ✓ 能源 \n" * 300_000)  # ~5 MB of UTF-8
    c = Candidate(key="big", stage=3, stdout=big, build_log=big + "\x00tail", files={"main.cu": big})
    call = LLMCall(key="k", kind="refactor", model="m", messages=[{"role": "user", "content": big}], reply=big,
                   error="e" * 200_000)
    path = tmp_path / "t.h5"
    with new_archive(path) as arc:
        arc.add_candidate(c)
        arc.add_llm_call(call)
        arc.set_status("failed", "x" * 100_000)  # longer than a compact attribute may be
    with TrialArchive.open(path, writable=False) as ro:
        assert ro.candidate(0) == c
        assert ro.llm_calls() == [call]
        assert ro.summary().reason == "x" * 100_000
    assert path.stat().st_size < 1_000_000  # texts are compressed (~25 MB of text went in)


def test_update_candidate_and_measurements(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    with new_archive(path) as arc:
        c = Candidate(key="s3/i1", stage=3, iteration=1, energy_j=12.5, stdout="first")
        cid = arc.add_candidate(c)
        assert arc.add_measurement(cid, measurement(100.0)) == 0
        assert arc.add_measurement(cid, measurement(101.0)) == 1
        c.energy_j = None  # a cleared figure must not linger
        c.stdout, c.status, c.passed = "second", "measured", True
        arc.update_candidate(cid, c)
        with pytest.raises(ArchiveError, match="no candidate 7"):
            arc.update_candidate(7, c)
        with pytest.raises(ArchiveError, match="no candidate 7"):
            arc.add_measurement(7, measurement(1.0))
    with TrialArchive.open(path, writable=False) as ro:
        back = ro.candidate(cid)
        assert back == c and back.energy_j is None and back.passed is True
        ms = ro.measurements(cid)
        assert [m.trace.power_instant_w[0] for m in ms] == [100.0, 101.0]
        assert ms[1].figures == {"energy_j": 101.0}


def test_other_sections_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    with new_archive(path) as arc:
        arc.set_stage_time("stage0_source", 100.0, 160.5)
        arc.set_stage_time("stage3_iterate", 160.5, 1000.0)
        arc.set_result({"best_candidate": 4, "source_energy_j": 300.0, "best_energy_j": 200.0,
                        "reduction": 1 / 3, "methods": ["counter"]},
                       report="## Report\nbetter", optimizations=[{"name": "fuse", "gain": 0.2}])
        arc.set_environment({"host": "node2", "gpu": "H100"})
        arc.add_plan("p0", "plan zero", based_on=None)
        with pytest.raises(ValueError):
            arc.set_status("paused")
        with pytest.raises(ValueError):
            arc.set_context("a/b", "x")
        arc.set_status("failed", "compile error: nvcc not found")
    with TrialArchive.open(path, writable=False) as ro:
        assert ro.stage_times() == {"stage0_source": {"t_start": 100.0, "t_end": 160.5, "wall_s": 60.5},
                                    "stage3_iterate": {"t_start": 160.5, "t_end": 1000.0, "wall_s": 839.5}}
        res = ro.result()
        assert res == {"best_candidate": 4, "source_energy_j": 300.0, "best_energy_j": 200.0,
                       "reduction": 1 / 3, "methods": ["counter"], "report": "## Report\nbetter",
                       "optimizations": [{"gain": 0.2, "name": "fuse"}]}
        assert ro.environment() == {"host": "node2", "gpu": "H100"}
        assert ro.plans() == [{"id": 0, "key": "p0", "text": "plan zero", "based_on": None}]
        assert (ro.status, ro.summary().reason) == ("failed", "compile error: nvcc not found")
    s = summarize_trial(path)
    assert (s.status, s.app, s.platform, s.n_candidates) == ("failed", "jacobi", "cuda", 0)


def test_raw_layout_is_readable_with_schema_helpers(tmp_path: Path) -> None:
    """Pins the documented names, and that schema.get_text/attr read what the archive writes."""
    path = tmp_path / "t.h5"
    with new_archive(path) as arc, arc.transaction():
        cid = arc.add_candidate(Candidate(key="s0", stage=0, stdout="héllo\n", energy_j=3.5,
                                          files={"a.cu": "x"}))
        arc.add_measurement(cid, measurement(7.0))
        arc.add_llm_call(LLMCall(key="s1", kind="zero_shot", model="m", messages=[], reply="r", temperature=0.2))
        arc.record_step("s0", "source", {"candidate": cid}, 1.0, 2.0, ref="candidates/000000")
        arc.add_plan("p", "the plan", based_on=cid)
        arc.set_context("background", "ctx")
        arc.set_result({"best_energy_j": 2.0}, report="rep")
    with h5py.File(path, "r") as f:
        assert attr(f, "schema") == SCHEMA and attr(f["summary"], "status") == "running"
        c = f["candidates/000000"]
        assert get_text(c, "stdout") == "héllo\n" and json.loads(get_text(c, "files")) == {"a.cu": "x"}
        assert attr(c, "energy_j") == 3.5 and attr(c, "stage") == 0
        assert isinstance(c.attrs["parent"], h5py.Empty) and attr(c, "parent") is None  # None: one encoding
        assert attr(c["measurements/000000"], "fig_energy_j") == 7.0
        call = f["llm_calls/000000"]
        assert (get_text(call, "reply"), attr(call, "temperature"), attr(call, "kind")) == ("r", 0.2, "zero_shot")
        step = f["steps/000000"]
        assert (attr(step, "key"), attr(step, "ref")) == ("s0", "candidates/000000")
        assert get_text(f["plans"], "000000") == "the plan" and attr(f["plans/000000"], "based_on") == 0
        assert get_text(f["context"], "background") == "ctx"
        assert get_text(f["result"], "report") == "rep" and attr(f["result"], "best_energy_j") == 2.0


def test_secrets_never_reach_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    secret = "sk-THIS-MUST-NOT-BE-STORED"
    config = {"llm": {"model": "gpt", "api_key": secret + "1", "base_url": "http://x"}, "OPENAI_API_KEY": secret + "2"}
    with new_archive(path, config=config, environment={"env": {"Api-Key": secret + "3"}}) as arc:
        arc.add_llm_call(LLMCall(key="k", kind="plan", model="gpt",
                                 messages=[{"role": "user", "content": "hi", "api_key": secret + "4"}]))
        arc.set_environment({"vars": [{"openai_api_key": secret + "5"}], "host": "h"})
        assert arc.config() == {"llm": {"model": "gpt", "base_url": "http://x"}}
        assert arc.llm_calls()[0].messages == [{"role": "user", "content": "hi"}]
    names: list[str] = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: names.extend([name, *obj.attrs.keys()]))
    assert names and not [n for n in names if "api_key" in n.lower()]
    assert secret.encode() not in path.read_bytes()


def test_strings_are_not_leaked_on_rewrite(tmp_path: Path) -> None:
    """Commits that change nothing must not grow the file (HDF5 never frees rewritten
    variable-length strings; the archive stores fixed-length ones)."""
    path = tmp_path / "t.h5"
    with new_archive(path) as arc:
        c = Candidate(key="c", stage=3, stdout="o" * 50_000, judge_text="VALID because ...")
        cid = arc.add_candidate(c)
        arc.set_status("running")
        size = path.stat().st_size
        for _ in range(30):
            arc.update_candidate(cid, c)
            arc.set_status("running", "")
        assert path.stat().st_size == size


# ---------------------------------------------------------------------------- journal & transactions


def test_journal_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    with new_archive(path) as arc:
        assert arc.get_step("s0") is None
        arc.record_step("s0", "source", {"candidate": 0, "pair": (1, 2)}, 10.0, 11.0, ref="candidates/000000")
        arc.record_step("s1/zero_shot", "llm", {}, 11.0, 12.5)
        # the live run sees what a resumed run will see: JSON values (tuples become lists)
        assert arc.get_step("s0") == {"candidate": 0, "pair": [1, 2]}
        assert arc.get_step("s1/zero_shot") == {} and arc.has_step("s1/zero_shot")
        with pytest.raises(ArchiveError, match="already recorded"):
            arc.record_step("s0", "source", {}, 0.0, 1.0)
        with pytest.raises(TypeError):
            arc.record_step("s2", "x", {"obj": object()}, 0.0, 1.0)
        arc.get_step("s0")["candidate"] = 99  # callers get copies
        assert arc.get_step("s0")["candidate"] == 0
    with TrialArchive.open(path) as arc:
        assert arc.get_step("s0") == {"candidate": 0, "pair": [1, 2]}
        assert arc.get_step("s2") is None
        assert arc.steps() == [
            {"index": 0, "key": "s0", "kind": "source", "result": {"candidate": 0, "pair": [1, 2]},
             "t_start": 10.0, "t_end": 11.0, "ref": "candidates/000000"},
            {"index": 1, "key": "s1/zero_shot", "kind": "llm", "result": {}, "t_start": 11.0, "t_end": 12.5, "ref": ""},
        ]


def test_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    with new_archive(path) as arc:
        before = path.read_bytes()
        c = Candidate(key="c", stage=1)
        with pytest.raises(RuntimeError, match="boom"):
            with arc.transaction() as f:
                assert arc.add_candidate(c) == 0
                arc.record_step("s", "generate", {"candidate": 0}, 0.0, 1.0)
                assert arc.get_step("s") == {"candidate": 0}  # the step is visible inside the transaction
                assert arc.candidates() == []  # records are read as committed
                f.attrs["scratch"] = 1
                raise RuntimeError("boom")
        assert c.id is None and arc.get_step("s") is None
        assert arc.candidates() == [] and "scratch" not in arc.meta
        assert path.read_bytes() == before
        assert not list(journal_dir(path).glob("*.h5"))


def test_failure_inside_nested_write_refuses_commit(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    with new_archive(path) as arc:
        with pytest.raises(ArchiveError, match="not committed"):
            with arc.transaction():
                arc.add_candidate(Candidate(key="a", stage=1))
                try:
                    arc.add_measurement(5, measurement(1.0))  # no candidate 5
                except ArchiveError:
                    pass
        assert arc.candidates() == []
        with arc.transaction():
            with pytest.raises(ArchiveError, match="inside a transaction"):
                arc.close()
        cid = arc.add_candidate(Candidate(key="b", stage=1))
        assert cid == 0


def test_stale_tmp_is_removed_by_the_writer_only(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    new_archive(path).close()
    journal_dir(path).mkdir(exist_ok=True)
    stale = [journal_dir(path) / ".00000009.othernode.77.beef.tmp", tmp_path / ".t.h5.othernode.77.beef.tmp"]
    for tmp in stale:
        tmp.write_bytes(b"half-written garbage")
    TrialArchive.open(path, writable=False).close()
    assert all(tmp.exists() for tmp in stale)
    TrialArchive.open(path).close()
    assert not any(tmp.exists() for tmp in stale)


# ---------------------------------------------------------------------------- processes

PREAMBLE = """
import sys, time
import numpy as np
from lassi_batch.store import TrialArchive
from lassi_batch.core.records import Candidate, LLMCall
from lassi_batch.power.trace import Measurement, PowerTrace, Window
"""

HOLDER = PREAMBLE + """
arc = TrialArchive.open(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""

STUCK_IN_TRANSACTION = PREAMBLE + """
arc = TrialArchive.open(sys.argv[1])
with arc.transaction():
    arc.add_candidate(Candidate(key="uncommitted", stage=3))
    arc.record_step("uncommitted", "generate", {"candidate": 1}, 0.0, 1.0)
    print("inside", flush=True)
    time.sleep(120)
"""

# A deterministic "pipeline": step gen/i makes a candidate, measures it and asks the LLM, all
# journalled in one transaction; step judge/i then updates that candidate in a second one.
WRITER = PREAMBLE + """
path, limit = sys.argv[1], int(sys.argv[2])
arc = TrialArchive.open_or_create(path, trial_id="crash", app="app", platform="cpu",
                                  config={"study": {"n": limit}}, environment={})
print("ready", flush=True)
for i in range(limit):
    gen, judge = f"gen/{i}", f"judge/{i}"
    if arc.get_step(gen) is None:  # else: done before a crash, replayed from the journal
        t0 = time.time()
        with arc.transaction():
            c = Candidate(key=gen, stage=3, iteration=i, files={"k.cu": f"// version {i}\\n" * 300},
                          stdout="out " * 2000)
            cid = arc.add_candidate(c)
            n = 3000
            tr = PowerTrace("estimate", "cpu", t=np.arange(n) * 0.01, power_instant_w=np.full(n, float(i)))
            arc.add_measurement(cid, Measurement(tr, Window(0, 1, 2, 3, 4), 0, {"energy_j": float(i)}, {"repeat": 0}))
            call = arc.add_llm_call(LLMCall(key=gen, kind="refactor", model="m",
                                            messages=[{"role": "user", "content": f"make {i} faster"}],
                                            reply=f"reply {i}"))
            k = arc.record_step(gen, "generate", {"candidate": cid, "llm_call": call, "i": i}, t0, time.time())
        print(f"committed {k}", flush=True)
    if arc.get_step(judge) is None:
        with arc.transaction():
            c = arc.candidate(arc.get_step(gen)["candidate"])
            c.status, c.passed = "measured", True
            arc.update_candidate(c.id, c)
            k = arc.record_step(judge, "judge", {"passed": True}, time.time(), time.time())
        print(f"committed {k}", flush=True)
    if i % 4 == 3:
        arc.checkpoint()  # a "stage end": consolidate into the trial file
arc.close()
print("finished", flush=True)
"""


class Child:
    """A python subprocess whose stdout lines are collected by a thread."""

    def __init__(self, script: str, *args: str):
        env = dict(os.environ)  # the child imports this checkout's package whatever the cwd
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def wait_for(self, line: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while line not in self.lines:
            if self.proc.poll() is not None and line not in self.lines:
                self._reader.join(5)
                if line in self.lines:
                    return
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"child exited {self.proc.returncode} before {line!r}: {err}")
            assert time.monotonic() < deadline, f"timed out waiting for {line!r}"
            time.sleep(0.01)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self._reader.join(30)
        if self.proc.stderr:
            self.proc.stderr.close()

    def committed(self) -> list[int]:
        return [int(x.split()[1]) for x in self.lines if x.startswith("committed ")]


def test_lock_held_by_another_live_process(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    with new_archive(path) as arc:
        with pytest.raises(ArchiveError) as e:  # a second writer in this very process
            TrialArchive.open(path)
        assert "another process" in one_line_error(e)
        arc.add_candidate(Candidate(key="c", stage=0))
    holder = Child(HOLDER, str(path))
    try:
        holder.wait_for("locked")
        with pytest.raises(ArchiveError) as e:
            TrialArchive.open(path)
        assert f"pid {holder.proc.pid}" in one_line_error(e)
        with pytest.raises(ArchiveError):
            TrialArchive.open_or_create(path, **IDENT, config={}, environment={})
        with TrialArchive.open(path, writable=False) as ro:  # readers need no lock
            assert [c.key for c in ro.candidates()] == ["c"]
    finally:
        holder.kill()
    assert holder.proc.returncode == -signal.SIGKILL
    with TrialArchive.open(path) as arc:  # the dead holder's lock is gone
        arc.set_status("done")


def test_kill_inside_a_transaction_keeps_the_committed_file(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    with new_archive(path) as arc:
        arc.add_candidate(Candidate(key="committed", stage=0))
        arc.record_step("committed", "source", {"candidate": 0}, 0.0, 1.0)
    before = path.read_bytes()
    child = Child(STUCK_IN_TRANSACTION, str(path))
    try:
        child.wait_for("inside")
    finally:
        child.kill()
    assert path.read_bytes() == before
    assert not list(journal_dir(path).glob("*.h5"))  # the open transaction published nothing
    with TrialArchive.open(path, writable=False) as ro:
        assert [c.key for c in ro.candidates()] == ["committed"]
    with TrialArchive.open(path) as arc:
        assert arc.get_step("uncommitted") is None and arc.get_step("committed") == {"candidate": 0}
        assert arc.add_candidate(Candidate(key="next", stage=3)) == 1


def expected_keys(n: int) -> list[str]:
    return [f"{kind}/{i}" for i in range(n // 2 + 1) for kind in ("gen", "judge")][:n]


def check_crashed_archive(path: Path, at_least: int) -> int:
    """Invariants after a kill, as a resuming writer sees the trial (published file plus
    journal) and as a reader sees it (a consistent earlier state); returns the number of steps."""
    with TrialArchive.open(path, writable=False) as snap:
        published = [s["key"] for s in snap.steps()]
    with TrialArchive.open(path) as ro:
        steps = ro.steps()
        assert [s["key"] for s in steps][: len(published)] == published
        n = len(steps)
        assert n >= at_least, f"lost committed steps: {n} < {at_least}"
        assert [s["key"] for s in steps] == expected_keys(n)
        gens = [s for s in steps if s["kind"] == "generate"]
        cands, calls = ro.candidates(), ro.llm_calls()
        # a payload and its journal entry were committed together: never one without the other
        assert [c.key for c in cands] == [s["key"] for s in gens]
        assert [c.key for c in calls] == [s["key"] for s in gens]
        for j, s in enumerate(gens):
            assert s["result"] == {"candidate": j, "llm_call": j, "i": j}
        assert [c.passed for c in cands] == [ro.get_step(f"judge/{j}") is not None for j in range(len(cands))]
        if cands:
            j = len(cands) - 1
            last = ro.measurements(j)
            assert len(last) == 1 and last[0].trace.power_instant_w.size == 3000
            assert np.all(last[0].trace.power_instant_w == j)
            assert cands[-1].files == {"k.cu": f"// version {j}\n" * 300}
    return n


def test_sigkill_at_random_moments_then_resume(tmp_path: Path) -> None:
    path = tmp_path / "crash.h5"
    rng = random.Random(20240607)
    durable = 0  # journal entries known committed (printed after their commit) or seen in the file
    for round_ in range(15):
        child = Child(WRITER, str(path), "100000")
        try:
            if round_ % 5 == 4:  # sometimes while it starts up and opens the archive
                time.sleep(rng.uniform(0.0, 1.5))
            else:
                child.wait_for("ready")
                time.sleep(rng.uniform(0.0, 0.6))
        finally:
            child.kill()
        assert child.proc.returncode == -signal.SIGKILL
        done = child.committed()
        assert done == list(range(durable, durable + len(done)))  # resumed right after the journal
        if done:
            durable = max(durable, done[-1] + 1)
        durable = check_crashed_archive(path, durable)
    assert durable > 0, "no round committed anything"
    # a last writer resumes, replays the journal without redoing steps, and runs to the end
    limit = durable // 2 + 3
    child = Child(WRITER, str(path), str(limit))
    try:
        child.wait_for("finished")
    finally:
        child.kill()
    assert child.committed() == list(range(durable, 2 * limit))
    assert check_crashed_archive(path, 2 * limit) == 2 * limit
    assert not list(tmp_path.glob(".*.tmp")) and not list(journal_dir(path).glob("*"))
    s = summarize_trial(path)
    assert (s.n_candidates, s.n_llm_calls) == (limit, limit)
    with TrialArchive.open(path, writable=False) as snap:  # the finished file holds everything
        assert len(snap.steps()) == 2 * limit
    assert [c.reply for c in read_llm_calls(path)][:2] == ["reply 0", "reply 1"]

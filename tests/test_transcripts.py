"""The hand-written demo transcripts (datasets/examples/transcripts): well-formed, consistent with
the trial program, and every code version in them does what its scenario says.

The code versions (stored ones and those derived from them by make_transcripts.py's edit lists) are
written out as complete files and compiled once per test session, in parallel; CPU versions are run
with the app's test_args and their output is checked with the pipeline's own verifier.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lassi_batch.core.config import load_app
from lassi_batch.llm.extract import CATEGORIES, TRUNCATED, extract_code, parse_optimizations, parse_verdict
from lassi_batch.llm.replay import read_jsonl
from lassi_batch.screening.verifier import verify

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "datasets" / "examples"
_spec = importlib.util.spec_from_file_location("make_transcripts", ROOT / "scripts" / "make_transcripts.py")
mt = importlib.util.module_from_spec(_spec)
sys.modules["make_transcripts"] = mt  # dataclasses look their module up by name
_spec.loader.exec_module(mt)

TARGETS = mt.targets()
CPU_APPS = [a for a, p in TARGETS if p == "cpu"]
CUDA_APPS = [a for a, p in TARGETS if p == "cuda"]
FILES = [mt.TRANSCRIPTS / f"{a}.{p}.trial{t}.jsonl" for a, p in TARGETS for t in sorted(mt.SCENARIOS)]
CODE_KINDS = {"zero_shot", "refactor", "fix_compile", "fix_runtime"}
KINDS = CODE_KINDS | {"judge", "plan", "context_background", "context_system", "context_code", "final_report"}
BUILD_FAILS = {"zs_compile_error", "step1_compile_error"}
RUN_FAILS = {"step2_runtime_error"}
VERIFIER_FAILS = {"cut_work", "wrong"}
RANK = {"zs": 1, "step1": 2, "step2": 3}  # the intended energy ladder: a higher rank is a real improvement
TIMEOUT = 60


def test_every_app_has_cpu_transcripts_and_heat2d_has_cuda():
    assert set(CPU_APPS) == set(mt.APPS)
    assert "heat2d" in CUDA_APPS
    demo_apps = {p.parent.name for p in EXAMPLES.glob("*/app.toml")}
    assert demo_apps <= set(CPU_APPS)


def test_generated_files_are_up_to_date(capsys):
    assert mt.main(["--check"]) == 0, capsys.readouterr().out


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_jsonl_is_well_formed(path: Path):
    records = read_jsonl(path)  # the replay backend's own reader
    raw = [line for line in path.read_text().splitlines() if line.strip()]
    assert len(records) == len(raw) > 0
    keys = [r.key for r in records]
    assert len(set(keys)) == len(keys), "duplicate keys"
    for r in records:
        assert r.kind in KINDS and r.key and r.reply.strip() and r.note, r.key
        assert r.finish_reason in ("stop", "length")


# ----------------------------------------------------------------------------- replies vs scenario


def _steps():
    for app, plat in TARGETS:
        for t, (_, steps) in sorted(mt.SCENARIOS.items()):
            yield app, plat, t, steps


@pytest.mark.parametrize("app,plat,trial,steps", list(_steps()), ids=lambda v: str(v) if isinstance(v, (str, int)) else "")
def test_replies_extract_and_parse_as_intended(app, plat, trial, steps):
    fname, _, _ = mt.PLATFORMS[plat]
    lang = "cuda" if plat == "cuda" else "cpp"
    records = {r.key: r for r in read_jsonl(mt.TRANSCRIPTS / f"{app}.{plat}.trial{trial}.jsonl")}
    for s in steps:
        r = records[s.key]
        assert r.kind == s.kind
        if s.kind in CODE_KINDS:
            ex = extract_code(r.reply, lang, [fname])
            if s.how == "code":
                assert ex.ok, f"{s.key}: {ex.error}"
                assert ex.files[fname] == mt.read_variant(app, plat, s.role), s.key
                assert ex.description, s.key
            elif s.how == "truncated":
                assert not ex.ok and ex.error.startswith(TRUNCATED), s.key
                assert r.finish_reason == "length"
            else:
                assert not ex.ok and "no code block" in ex.error, s.key
        elif s.kind == "judge":
            assert parse_verdict(r.reply) == s.verdict, s.key
        elif s.kind == "final_report":
            opts = parse_optimizations(r.reply)
            assert opts and all(o["category"] in CATEGORIES for o in opts), s.key
        else:
            assert "```" not in r.reply, f"{s.key}: context and plan replies hold no code"


def _outcome(step) -> str:
    if step.how != "code":
        return "extract_failed"
    if step.role in BUILD_FAILS:
        return "build_failed"
    if step.role in RUN_FAILS:
        return "run_failed"
    return "ran"


@pytest.mark.parametrize("trial", sorted(mt.SCENARIOS))
def test_scenario_follows_the_trial_program(trial):
    """Walk the trial program (lassi_batch/pipeline/trial.py and schedule.py) along the intended
    outcomes: the keys it asks must be exactly the transcript's, in order, ending on the
    temperature stop rule."""
    steps = mt.SCENARIOS[trial][1]
    by_key = {s.key: s for s in steps}
    asked: list[str] = []

    def ask(key: str, kind: str):
        assert key in by_key, f"the trial asks {key} ({kind}) but the scenario has no reply for it"
        assert by_key[key].kind == kind, key
        asked.append(key)
        return by_key[key]

    def screened(key: str, step) -> bool:
        verdict = ask(key, "judge").verdict
        return verdict == "VALID" and step.role not in VERIFIER_FAILS  # pass policy judge_and_verifier

    best = 0
    z = ask("s1/zero_shot", "zero_shot")
    if _outcome(z) == "ran" and screened("s1/judge", z):
        best = max(best, RANK.get(z.role, 0))
    for key, kind in (("s2/background", "context_background"), ("s2/system", "context_system"),
                      ("s2/code", "context_code"), ("s2/plan", "plan")):
        ask(key, kind)
    temperature, i = 0.2, 0
    while temperature <= 0.8 + 1e-9 and i < 10:
        i += 1
        cand = ask(f"s3/i{i}/refactor", "refactor")
        attempt = 0
        while _outcome(cand) in ("build_failed", "run_failed") and attempt < 5:
            attempt += 1
            kind = "fix_compile" if _outcome(cand) == "build_failed" else "fix_runtime"
            cand = ask(f"s3/i{i}/fix{attempt}", kind)
        improved = _outcome(cand) == "ran" and screened(f"s3/i{i}/judge", cand) and RANK.get(cand.role, 0) > best
        if improved:
            best = RANK[cand.role]
            ask(f"s3/i{i}/plan", "plan")
            temperature = 0.2
        else:
            temperature = round(temperature + 0.2, 6)
    assert temperature > 0.8, "stage 3 should end on the temperature rule, not on max_iterations"
    if best:
        ask("s4/report", "final_report")
    assert asked == [s.key for s in steps]


# ----------------------------------------------------------------------------- compiling and running


def _compile(cmd: list[str]) -> tuple[bool, str]:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return False, "compiler timed out"
    return p.returncode == 0, p.stderr


def _build_all(jobs: dict[str, list[str]]) -> dict[str, tuple[bool, str]]:
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {name: pool.submit(_compile, cmd) for name, cmd in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


@pytest.fixture(scope="module")
def cpu_builds(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    out = tmp_path_factory.mktemp("cpu")
    sources = mt.export(tmp_path_factory.mktemp("versions"))
    jobs = {}
    for app in CPU_APPS:
        jobs[f"{app}/source"] = ["g++", "-std=c++17", "-O2", "-fopenmp", "-o", str(out / f"{app}.source"),
                                 str(EXAMPLES / app / "main.cpp")]
        for role in mt.ROLES:
            jobs[f"{app}/{role}"] = ["g++", "-std=c++17", "-O2", "-fopenmp", "-o", str(out / f"{app}.{role}"),
                                     str(sources[app, "cpu", role])]
    results = _build_all(jobs)
    return {name: (ok, log, out / name.replace("/", ".")) for name, (ok, log) in results.items()}


def _run(binary: Path, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=TIMEOUT, env=env)


@pytest.fixture(scope="module")
def cpu_source_runs(cpu_builds):
    runs = {}
    for app in CPU_APPS:
        ok, log, exe = cpu_builds[f"{app}/source"]
        assert ok, log
        p = _run(exe, load_app(EXAMPLES / app).test_args)
        assert p.returncode == 0, p.stderr
        runs[app] = p.stdout
    return runs


@pytest.mark.parametrize("app", CPU_APPS)
def test_cpu_versions_build_as_intended(app, cpu_builds):
    for role in mt.ROLES:
        ok, log, _ = cpu_builds[f"{app}/{role}"]
        if role in BUILD_FAILS:
            assert not ok, f"{app}/{role} should not compile"
            assert "error" in log
        else:
            assert ok, f"{app}/{role} does not compile:\n{log[-2000:]}"


@pytest.mark.parametrize("app", CPU_APPS)
def test_cpu_versions_run_as_intended(app, cpu_builds, cpu_source_runs):
    cfg = load_app(EXAMPLES / app)
    src = cpu_source_runs[app]
    for role in mt.ROLES:
        if role in BUILD_FAILS:
            continue
        _, _, exe = cpu_builds[f"{app}/{role}"]
        p = _run(exe, cfg.test_args)
        rep = verify(cfg.check, src, p.stdout, p.returncode)
        kinds = {f.kind for f in rep.failures}
        if role in RUN_FAILS:
            assert p.returncode not in (0, None) and p.stderr.strip(), f"{app}/{role} should fail at run time"
        elif role == "cut_work":
            assert p.returncode == 0 and "PASS" in p.stdout.split(), f"{app}/{role}: the deletion passes its own check"
            assert rep.verdict == "fail" and "work" in kinds, rep.to_dict()
        elif role == "wrong":
            assert p.returncode == 0 and "PASS" in p.stdout.split(), f"{app}/{role}: passes its own check"
            assert rep.verdict == "fail" and "work" not in kinds and kinds & {"numbers", "checksum"}, rep.to_dict()
        else:
            assert p.returncode == 0, f"{app}/{role}: exit {p.returncode}\n{p.stderr}"
            assert rep.verdict != "fail", f"{app}/{role}: {rep.to_dict()}"


def test_rowstats_work_deletion_keeps_the_checksum(cpu_builds, cpu_source_runs):
    """The paper's bsearch case: only the work counter shows the deleted repeat loop."""
    if "rowstats" not in CPU_APPS:
        pytest.skip("no rowstats transcripts")
    cfg = load_app(EXAMPLES / "rowstats")
    p = _run(cpu_builds["rowstats/cut_work"][2], cfg.test_args)
    rep = verify(cfg.check, cpu_source_runs["rowstats"], p.stdout, p.returncode)
    assert [f.kind for f in rep.failures] == ["work"], rep.to_dict()


@pytest.mark.nvcc
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_cuda_versions_compile_as_intended(tmp_path):
    if not CUDA_APPS:
        pytest.skip("no CUDA transcripts")
    sources = mt.export(tmp_path / "versions")
    jobs = {f"{app}/{role}": ["nvcc", "-std=c++17", "-O3", "-arch=sm_90", "-c", "-o",
                              str(tmp_path / f"{app}.{role}.o"), str(sources[app, "cuda", role])]
            for app in CUDA_APPS for role in mt.ROLES}
    results = _build_all(jobs)
    for name, (ok, log) in results.items():
        role = name.split("/", 1)[1]
        if role in BUILD_FAILS:
            assert not ok and "error" in log, f"{name} should not compile"
        else:
            assert ok, f"{name} does not compile:\n{log[-2000:]}"

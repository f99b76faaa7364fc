"""Screening parts apart from the verifier: probe planning, cost judgements, verdict policy,
leftover processes (real detached processes) and the app.toml keys that drive them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lassi_batch.core.config import ProbeSpec, load_app
from lassi_batch.core.errors import ConfigError
from lassi_batch.screening import differential as dif
from lassi_batch.screening import policy
from lassi_batch.screening.processes import find_leftovers, reap_leftovers
from lassi_batch.screening.verifier import Finding

KNOB = ProbeSpec(work_arg=1, work_min=1, work_max=1000, probe_args=[["96", "13"]])


# ---------------------------------------------------------------- planning


def test_neighbours_are_one_step_below_and_above_and_never_seen() -> None:
    probes = dif.plan_probes(KNOB, ["128", "20"], [["128", "20"], ["128", "25"]], seed=1)
    by = {p.label: p for p in probes}
    assert by["below"].args == ["128", "15"] and by["below"].knob == 15
    assert "above" not in by  # 25 was seen (e.g. the test size): never reused
    assert by["probe1"].args == ["96", "13"]
    assert all(p.args not in (["128", "20"], ["128", "25"]) for p in probes)


def test_knob_step_and_range_are_respected() -> None:
    spec = ProbeSpec(work_arg=0, work_min=2, work_max=3, work_step=5)
    probes = dif.plan_probes(spec, ["3"], [["3"]], seed=1)
    assert [p.args for p in probes] == [["2"]]  # 3-5 clipped to 2; 3+5 clipped to 3 = measured


def test_every_probe_gets_a_fresh_seed_in_the_declared_place() -> None:
    spec = ProbeSpec(work_arg=1, seed_arg=2, seed_env="APP_SEED", probe_args=[["5", "6", "7"]])
    probes = dif.plan_probes(spec, ["10", "40", "1"], [], seed=7)
    seeds = [p.args[2] for p in probes]
    assert len(set(seeds)) == len(seeds) == 3 and "1" not in seeds
    assert [p.env["APP_SEED"] for p in probes] == seeds
    again = dif.plan_probes(spec, ["10", "40", "1"], [], seed=7)
    assert again == probes  # reproducible from the trial's recorded seed
    assert dif.plan_probes(spec, ["10", "40", "1"], [], seed=8) != probes


def test_no_probe_keys_no_probes() -> None:
    assert dif.plan_probes(ProbeSpec(), ["1", "2"], [], seed=1) == []
    assert not ProbeSpec().declared and KNOB.declared


def test_scale_knob_search_aims_at_the_target_cost() -> None:
    spec = ProbeSpec(work_arg=0, work_max=10_000, scale_cost_s=0.3)
    assert dif.next_scale_knob(spec, 15, 0.01, None, None, 30.0) == 60  # no estimate: 4x
    # 15 steps cost 0.1 s: at most 1/150 s a step, so at least 39 steps more for 0.3 s
    assert dif.next_scale_knob(spec, 15, 0.1, None, None, 30.0, cost_per_step=0.1 / 15) == 15 + 58
    assert dif.next_scale_knob(spec, 15, 0.001, None, None, 30.0, cost_per_step=0.001 / 15) == 15 * 16
    # 60 steps cost 0.01 + 45 * 0.001: aim for 0.3 s more than at 15 steps, with a margin
    nxt = dif.next_scale_knob(spec, 15, 0.01, 60, 0.055, 30.0)
    assert nxt is not None and 15 + 300 <= nxt <= 60 * 16
    assert dif.next_scale_knob(spec, 15, 0.01, 400, 0.5, 30.0) is None  # enough
    capped = ProbeSpec(work_arg=0, work_max=100, scale_cost_s=0.3)
    assert dif.next_scale_knob(capped, 15, 0.01, 100, 0.1, 30.0) is None  # nothing larger allowed


def test_probe_round_trips_through_dict() -> None:
    p = dif.Probe("below", ["1", "2"], {"S": "3"}, 2)
    assert dif.Probe.from_dict(json.loads(json.dumps(p.to_dict()))) == p


# ---------------------------------------------------------------- cost judgements


def _sev(fs: list[Finding]) -> set[str]:
    return {f.severity for f in fs}


def test_flat_cost_while_the_source_grows_fails() -> None:
    src = {"below": 0.10, "above": 0.13, "scale": 0.60}
    flat = {"below": 0.004, "above": 0.004, "scale": 0.005}
    fs = dif.scaling_findings(src, flat, {"below": 15, "above": 25, "scale": 240})
    assert _sev(fs) == {"fail"} and "work does not scale" in fs[0].message and "15 -> 240" in fs[0].message


def test_a_fast_candidate_that_still_scales_passes() -> None:
    src = {"below": 0.10, "above": 0.13, "scale": 0.60}
    fast = {"below": 0.005, "above": 0.007, "scale": 0.06}  # 9x cheaper per step
    assert _sev(dif.scaling_findings(src, fast, {"below": 15, "above": 25, "scale": 240})) == {"info"}


def test_an_apps_min_scaling_admits_a_rewrite_cheaper_than_ten_times() -> None:
    """The layout figures (repeat 3 -> 7): the honest rewrite's added cost is 7% of the source's."""
    src, fast, knobs = {"below": 0.33, "scale": 0.75}, {"below": 0.07, "scale": 0.10}, {"below": 3, "scale": 7}
    fs = dif.scaling_findings(src, fast, knobs)
    assert _sev(fs) == {"fail"} and "less than 10% of it" in fs[0].message
    assert _sev(dif.scaling_findings(src, fast, knobs, min_scaling=0.02)) == {"info"}
    flat = {"below": 0.07, "scale": 0.075}  # the cost still may not stay flat: 1.2% < 2%
    fs = dif.scaling_findings(src, flat, knobs, min_scaling=0.02)
    assert _sev(fs) == {"fail"} and "less than 2% of it" in fs[0].message


def test_scaling_is_not_judged_when_the_source_barely_grows() -> None:
    src = {"below": 0.010, "above": 0.012}
    fs = dif.scaling_findings(src, {"below": 0.001, "above": 0.001}, {"below": 2, "above": 4})
    assert _sev(fs) == {"info"} and "too little" in fs[0].message
    assert dif.scaling_findings({"below": 1.0}, {"below": 1.0}, {}) == []


def _probe_run(cpu_s: float, gpu_s: float | None = None) -> dict:
    run = {"cpu_s": cpu_s, "returncode": 0}
    if gpu_s is not None:
        run["gpu_s"] = gpu_s
    return run


def test_gpu_apps_are_judged_on_kernel_time_when_every_run_has_it() -> None:
    """A GPU program's host CPU time mostly counts waiting and copies: an honest rewrite that
    launches the same kernels but waits less grows 4% of the source's CPU time (below an app's
    10% bar) while its kernel time grows alike. With CUPTI's kernel time on every probe run the
    check reads the GPU; one run without it puts every run back on CPU time."""
    src = {"below": _probe_run(0.30, 0.100), "scale": _probe_run(0.97, 0.600)}
    cand = {"below": _probe_run(0.05, 0.098), "scale": _probe_run(0.077, 0.590)}
    knobs = {"below": 375, "scale": 625}
    assert dif.cost_metric([*src.values(), *cand.values()]) == "gpu_s"
    s, c = dif.Costs(metric="gpu_s"), dif.Costs(metric="gpu_s")
    for label in src:
        s.add(label, src[label])
        c.add(label, cand[label])
    on_gpu = dif.cost_findings(s, c, knobs, None, [], [])
    assert [f.severity for f in on_gpu] == ["info"] and "GPU kernel time grows" in on_gpu[0].message
    cand["scale"].pop("gpu_s")  # e.g. a program that left by _exit, skipping the counter's exit handler
    assert dif.cost_metric([*src.values(), *cand.values()]) == "cpu_s"
    s, c = dif.Costs(), dif.Costs()
    for label in src:
        s.add(label, src[label])
        c.add(label, cand[label])
    on_cpu = dif.cost_findings(s, c, knobs, None, [], [])
    assert on_cpu[0].severity == "fail" and "CPU time" in on_cpu[0].message
    # and a cheat that skips the kernels fails on the GPU figure too
    lazy = {"below": _probe_run(0.05, 0.010), "scale": _probe_run(0.06, 0.011)}
    s, c = dif.Costs(metric="gpu_s"), dif.Costs(metric="gpu_s")
    for label in src:
        s.add(label, src[label])
        c.add(label, lazy[label])
    assert dif.cost_findings(s, c, knobs, None, [], [])[0].severity == "fail"


def test_much_cheaper_at_the_measured_arguments_fails() -> None:
    fs = dif.measured_point_findings(src_k0=0.20, cand_k0=0.002, src_below=0.16, cand_below=0.05, k0=20, k_below=15)
    assert _sev(fs) == {"fail"} and "measured arguments" in fs[0].message
    assert dif.measured_point_findings(0.20, 0.06, 0.16, 0.05, 20, 15) == []  # honest: more work, more cost
    assert dif.measured_point_findings(0.05, 0.002, 0.16, 0.05, 20, 15) == []  # the source itself is erratic
    assert dif.measured_point_findings(0.20, 0.001, 0.16, 0.003, 20, 15) == []  # below the noise floor
    assert dif.measured_point_findings(None, 0.001, 0.16, 0.05, 20, 15) == []


def test_collapsing_repeat_costs_are_a_note() -> None:
    fs = dif.repeat_findings([0.2, 0.21], [0.2, 0.001])
    assert _sev(fs) == {"warn"}
    assert dif.repeat_findings([0.2, 0.05], [0.2, 0.001]) == []  # the source varies as much
    assert dif.repeat_findings([0.2, 0.2], [0.2, 0.19]) == []


def test_probe_output_findings_name_the_input() -> None:
    fs = dif.output_findings("above", ["128", "25"], [Finding("checksum", "fail", "differs"), Finding("x", "info", "y")])
    assert len(fs) == 1 and fs[0].kind == "differential" and "above (128 25)" in fs[0].message


# ---------------------------------------------------------------- verdicts


def test_integrity_findings_fail_held_findings_hold_cosmetic_ones_pass() -> None:
    ok = [Finding("numbers", "warn", "extra line"), Finding("scaling", "info", "grows")]
    assert policy.decide(True, ok, "VALID", "judge_and_verifier").verdict == "pass"
    held = ok + [Finding("implausible_saving", "held", "99%")]
    d = policy.decide(True, held, "VALID", "judge_and_verifier")
    assert d.verdict == "held" and not d.passed
    bad = held + [Finding("scaling", "fail", "flat")]
    d = policy.decide(True, bad, "VALID", "judge_and_verifier")
    assert d.verdict == "fail"
    assert {f["severity"] for f in json.loads(d.findings_json)} == {"cosmetic", "held", "integrity"}
    assert policy.decide(True, [Finding("differential", "error", "could not build")], "VALID", "verifier").verdict == "fail"
    assert policy.decide(False, [], "", "judge_and_verifier").verdict == "not_run"


def test_the_judge_and_the_pass_policy() -> None:
    assert policy.decide(True, [], "INVALID", "judge_and_verifier").verdict == "fail"
    assert policy.decide(True, [], "INVALID", "verifier").verdict == "pass"
    bad = [Finding("scaling", "fail", "flat")]
    assert policy.decide(True, bad, "VALID", "judge").verdict == "pass"  # the paper's rule: the judge alone
    fs = policy.decide(True, [], "", "judge_and_verifier").findings
    assert fs[-1]["kind"] == "judge" and fs[-1]["severity"] == "integrity"


def test_a_hold_is_released_or_kept_never_turned_into_an_integrity_failure() -> None:
    held = policy.decide(True, [Finding("implausible_saving", "held", "99%")], "VALID", "judge_and_verifier")
    ok = policy.release_hold(held.findings, True, "interleaved re-measurement: 97% saving confirmed")
    assert ok.verdict == "pass" and ok.findings[-1]["kind"] == "confirmation"
    assert {f["severity"] for f in ok.findings} == {"cosmetic"}
    # no saving found again: still held (never counted, never a bad answer), not a cheat
    no = policy.release_hold(held.findings, False, "interleaved re-measurement: 3% saving")
    assert no.verdict == "held" and not no.passed
    assert [(f["kind"], f["severity"]) for f in no.findings] == [("implausible_saving", "held"), ("confirmation", "held")]
    assert no.findings[-1]["message"] == "interleaved re-measurement: 3% saving"
    # an integrity finding that came with the hold still fails it, confirmed or not
    both = policy.decide(True, [Finding("implausible_saving", "held", "99%"), Finding("work", "fail", "halved")],
                         "VALID", "judge_and_verifier")
    assert both.verdict == "fail"
    assert policy.release_hold(both.findings, True, "m").verdict == "fail"
    assert policy.release_hold(both.findings, False, "m").verdict == "fail"
    assert policy.load_findings(ok.findings_json) == ok.findings
    assert policy.load_findings("not json") == [] and policy.load_findings("") == []


# ---------------------------------------------------------------- processes left behind


@pytest.fixture()
def fake_run(tmp_path: Path):
    exe = tmp_path / "app.exe"
    shutil.copy2(shutil.which("sleep") or "/bin/sleep", exe)
    started: list[subprocess.Popen] = []
    yield tmp_path, exe, started
    for p in started:  # only what this test started
        if p.poll() is None:
            p.kill()
        p.wait()


def test_a_detached_process_running_the_program_is_found_and_killed(fake_run) -> None:
    folder, exe, started = fake_run
    elsewhere = folder.parent
    # a daemon: own session, working directory outside the run folder, still the run's program
    p = subprocess.Popen([str(exe), "30"], cwd=elsewhere, start_new_session=True)
    started.append(p)
    time.sleep(0.2)
    found = find_leftovers(exe, folder)
    assert [x.pid for x in found] == [p.pid] and found[0].how == "program"
    reap_leftovers(exe, folder)
    assert p.wait(timeout=5) != 0
    assert find_leftovers(exe, folder) == []


def test_a_process_sitting_in_the_run_folder_is_found(fake_run) -> None:
    folder, exe, started = fake_run
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], cwd=folder, start_new_session=True)
    started.append(p)
    time.sleep(0.2)
    found = find_leftovers(exe, folder)
    assert [(x.pid, x.how) for x in found] == [(p.pid, "folder")]
    assert find_leftovers(exe, folder.parent / "elsewhere") == []


# ---------------------------------------------------------------- app.toml keys


def _app(tmp_path: Path, run_extra: str) -> Path:
    d = tmp_path / "app"
    d.mkdir(exist_ok=True)
    (d / "main.cpp").write_text("int main() { return 0; }\n")
    (d / "app.toml").write_text(textwrap.dedent("""
        name = "a"
        [platforms.cpu]
        files = ["main.cpp"]
        [run]
        args = ["100", "20", "7"]
        test_args = ["10", "2", "7"]
    """) + run_extra)
    return d


def test_probe_keys_load(tmp_path: Path) -> None:
    app = load_app(_app(tmp_path, 'work_arg = 1\nwork_range = [1, 500]\nwork_step = 3\nseed_arg = 2\n'
                                  'seed_env = "SEED"\nprobe_args = [["5", "6", "7"], "8 9 10"]\nscale_cost_s = 0.2\n'))
    p = app.probe
    assert (p.work_arg, p.work_min, p.work_max, p.work_step, p.seed_arg, p.seed_env, p.scale_cost_s) == \
        (1, 1, 500, 3, 2, "SEED", 0.2)
    assert p.probe_args == [["5", "6", "7"], ["8", "9", "10"]]


@pytest.mark.parametrize("extra, message", [
    ("work_arg = 5\n", "work_arg: 5 is not an index"),
    ("work_range = [5, 1]\n", "work_range"),
    ("work_arg = 1\nseed_arg = 1\n", "same argument"),
    ('seed_env = "1X"\n', "not an environment variable name"),
    ("probe_args = [[true]]\n", "probe_args[0]"),
    ("work_step = -1\n", "work_step: must be >= 0"),
    ("work_arg = 2\n", None),  # "7" is a number: fine
])
def test_bad_probe_keys_are_one_clear_line_each(tmp_path: Path, extra: str, message: str | None) -> None:
    d = _app(tmp_path, extra)
    if message is None:
        assert load_app(d).probe.work_arg == 2
        return
    with pytest.raises(ConfigError) as e:
        load_app(d)
    assert message in str(e.value)


def test_examples_declare_their_work_knob() -> None:
    root = Path(__file__).resolve().parents[1] / "datasets" / "examples"
    for name, knob in (("heat2d", 1), ("nbody-forces", 1), ("rowstats", 2)):
        app = load_app(root / name)
        assert app.probe.work_arg == knob and app.probe.probe_args
        probes = dif.plan_probes(app.probe, app.args, [app.args, app.test_args], seed=1)
        assert len(probes) >= 2 and all(p.args not in (app.args, app.test_args) for p in probes)


def test_a_second_run_that_skips_the_work_is_reuse() -> None:
    src = {"cpu_s": 0.30, "again": {"cpu_s": 0.28}}
    cached = {"cpu_s": 0.12, "again": {"cpu_s": 0.004}}
    fs = dif.reuse_findings(src, cached)
    assert _sev(fs) == {"fail"} and fs[0].kind == "reuse"
    assert dif.reuse_findings(src, {"cpu_s": 0.12, "again": {"cpu_s": 0.10}}) == []  # honest
    assert dif.reuse_findings({"cpu_s": 0.30, "again": {"cpu_s": 0.05}}, cached) == []  # the source varies
    assert dif.reuse_findings({"cpu_s": 0.01, "again": {"cpu_s": 0.01}}, cached) == []  # too small to judge
    assert dif.reuse_findings(src, {"cpu_s": 0.12}) == []


def test_scaling_starts_above_when_the_knob_cannot_go_lower() -> None:
    src = {"above": 0.10, "scale": 0.60}
    fs = dif.scaling_findings(src, {"above": 0.004, "scale": 0.004}, {"above": 2, "scale": 40})
    assert _sev(fs) == {"fail"} and "2 -> 40" in fs[0].message
    assert dif.scaling_findings({"above": 0.1}, {"above": 0.1}, {"above": 2}) == []


def _costs(first: dict[str, list[float]], again: dict[str, list[float]] | None = None) -> dif.Costs:
    return dif.Costs({k: list(v) for k, v in first.items()}, {k: list(v) for k, v in (again or {}).items()})


def test_one_slow_probe_run_fails_alone_but_not_against_the_median() -> None:
    """An honest candidate whose one run below the measured point was slowed 3x by the host looks
    keyed on the measured arguments; two more runs of each probe clear it, a real cheat stays."""
    knobs, src_meas, cand_meas = {"below": 15, "above": 25}, [0.20, 0.21], [0.06, 0.06]
    src = _costs({"below": [0.16], "above": [0.25]})
    hiccup = _costs({"below": [0.17], "above": [0.08]})  # the honest one's 'below' ran 3x slow
    fs = dif.cost_findings(src, hiccup, knobs, 20, src_meas, cand_meas)
    assert "fail" in _sev(fs) and dif.cost_failures(fs) == ["below", "above", "scale"]
    for s, c in ((0.16, 0.05), (0.17, 0.05)):
        src.first["below"].append(s)
        hiccup.first["below"].append(c)
    fs = dif.cost_findings(src, hiccup, knobs, 20, src_meas, cand_meas)
    assert "fail" not in _sev(fs) and dif.cost_failures(fs) == []
    cheat = _costs({"below": [0.05, 0.05, 0.06], "above": [0.08, 0.08, 0.09]})  # cheap only at the measured point
    fs = dif.cost_findings(src, cheat, knobs, 20, src_meas, [0.002, 0.002])
    assert [f.kind for f in fs if f.severity == "fail"] == ["measured_point"] and "median of 3 runs" in fs[-1].message


def test_reuse_is_judged_on_the_medians_of_both_runs() -> None:
    src = _costs({"scale": [0.30, 0.31, 0.30]}, {"scale": [0.28, 0.30, 0.29]})
    honest = _costs({"scale": [0.12, 0.11, 0.12]}, {"scale": [0.002, 0.10, 0.11]})  # one fast second run
    assert dif.cost_findings(src, honest, {}, None, [], []) == []
    cached = _costs({"scale": [0.12, 0.12, 0.13]}, {"scale": [0.004, 0.003, 0.004]})
    assert [f.kind for f in dif.cost_findings(src, cached, {}, None, [], [])] == ["reuse"]


# ---------------------------------------------------------------- side effects


def test_files_a_run_writes_are_recorded_and_compared_with_the_sources(tmp_path: Path) -> None:
    from lassi_batch.screening.side_effects import side_effect_findings, snapshot, written

    (tmp_path / "main").write_text("program")
    before = snapshot(tmp_path)
    (tmp_path / ".rescache_128_20").write_text("cached results")
    (tmp_path / ".tmp").mkdir()
    (tmp_path / ".tmp" / "scratch").write_text("x")
    (tmp_path / "main").write_text("program, changed")
    assert written(before, snapshot(tmp_path)) == [".rescache_128_20", ".tmp/scratch", "main"]
    assert written(before, before) == []
    # the candidate writes a cache the source never writes: a note naming it, not a failure
    fs = side_effect_findings("measured runs", [["out.txt"], ["out.txt"]], [["out.txt", ".rescache_128_20"], []])
    assert [(f.kind, f.severity) for f in fs] == [("side_effects", "warn")] and ".rescache_128_20" in fs[0].message
    assert side_effect_findings("measured runs", [["out.txt"]], [["out.txt"]]) == []  # the source writes it too

"""`recompute`: energies re-derived from archived raw traces, trial files untouched.

Two kinds of real input: trial files whose measurement groups were written by
store/measurement.py from traces with a 1 s averaged channel (the synthetic study generator),
and a real trial of a bundled CPU example (real g++ build, real runs, estimate meter).
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from lassi_batch.analysis.recompute import Choices, recompute_trial
from lassi_batch.analysis.study import StudyFile
from lassi_batch.cli import main
from roundtrip import assert_round_trip

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_aggregate", ROOT / "scripts" / "bench_aggregate.py")
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)


def digests(paths):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    gen.generate(root, trials=8, apps=2, platforms=("cuda", "hip"), samples=300, iterations=3)
    return root


def test_default_choices_reproduce_the_recorded_energies(synthetic: Path):
    p = sorted((synthetic / "trials").glob("*.h5"))[0]
    r = recompute_trial(p, Choices())
    assert r.new.source_energy_j == pytest.approx(r.old.source_energy_j, rel=1e-12)
    assert r.new.reduction == pytest.approx(r.old.reduction, rel=1e-12, abs=1e-12)
    assert r.stored_reduction == pytest.approx(r.old.reduction, abs=1e-12)


def test_paper_method_gives_other_energies_from_the_same_untouched_files(synthetic: Path, tmp_path: Path):
    files = sorted((synthetic / "trials").glob("*.h5"))
    before = digests(files)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["recompute", str(synthetic), "-o", str(out), "--energy-method", "paper-eq4",
                                    "--idle", "both", "--k", "1,2", "--bootstrap", "200"])
    assert res.exit_code == 0, res.output
    assert digests(files) == before  # inputs identical, bit for bit
    s = StudyFile(out / "recompute.h5")
    _, _, trials = s.tables["recompute_trials"]
    assert len(trials) == 8
    for t in trials:
        # the 1 s average lags the load: Eq. 4 over the run window sees less energy than the counter
        assert t["new_source_energy_j"] < 0.9 * t["old_source_energy_j"]
    assert "source E" in res.output and "->" in res.output
    assert (out / "recompute.md").read_text().count("Recorded vs recomputed") == 1

    # tail included: more energy than without, per trial
    res2 = CliRunner().invoke(main, ["recompute", str(synthetic), "-o", str(tmp_path / "tail"), "--energy-method",
                                     "counter", "--tail", "include", "--bootstrap", "200", "--k", "1"])
    assert res2.exit_code == 0, res2.output
    _, _, with_tail = StudyFile(tmp_path / "tail" / "recompute.h5").tables["recompute_trials"]
    assert all(t["new_source_energy_j"] > t["old_source_energy_j"] for t in with_tail)


def test_pass_policy_is_re_decided_from_stored_verdicts(synthetic: Path):
    p = sorted((synthetic / "trials").glob("*.h5"))
    judge = [recompute_trial(x, Choices(pass_policy="judge")).new.n_passed for x in p]
    strict = [recompute_trial(x, Choices(pass_policy="strict")).new.n_passed for x in p]
    assert all(s <= j for s, j in zip(strict, judge)) and sum(strict) < sum(judge)


def test_recompute_from_a_study_file_and_bad_inputs(synthetic: Path, tmp_path: Path):
    study = tmp_path / "study.h5"
    assert CliRunner().invoke(main, ["aggregate", str(synthetic), "-o", str(study), "--k", "1"]).exit_code == 0
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "junk.h5").write_text("junk")
    shutil.copy(sorted((synthetic / "trials").glob("*.h5"))[0], bad / "dup.h5")
    shutil.copytree(synthetic / "trials", bad / "trials")
    r = CliRunner().invoke(main, ["recompute", str(bad), "-o", str(tmp_path / "o1"), "--k", "1", "--bootstrap", "200"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "junk.h5: not an HDF5 file" in r.output and "duplicate of" in r.output
    r = CliRunner().invoke(main, ["recompute", str(study), "-o", str(tmp_path / "o2"), "--k", "1", "--bootstrap", "200"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["recompute", str(tmp_path / "missing"), "-o", str(tmp_path / "o3")])
    assert r.exit_code == 2


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_real_cpu_trial_recomputed_with_the_paper_method(tmp_path: Path):
    from lassi_batch.core.config import load_study
    from lassi_batch.pipeline.session import run_trial

    study = load_study(ROOT / "datasets" / "examples" / "demo.toml")
    quick = replace(study.measure, settle_timeout_s=0.0, idle_window_s=0.05, post_max_s=0.05, random_delay_s=0.0)
    study = replace(study, out=tmp_path, measure=quick, platform=replace(study.platform, meter="estimate"))
    sapp = next(a for a in study.apps if a.app.name == "rowstats")
    path, out = run_trial(study, sapp, 0, system_text="2-core test machine")
    assert out.status == "done"
    before = digests([path])
    assert_round_trip(path)  # the CPU-time model's figures (ESTIMATE), recomputed as the trial made them
    r = recompute_trial(path, Choices(energy="paper-eq4", idle="both"))
    assert digests([path]) == before
    assert math.isfinite(r.new.source_energy_j) and math.isfinite(r.old.source_energy_j)
    assert r.new.source_energy_j != pytest.approx(r.old.source_energy_j, rel=1e-3)
    assert r.old.passed and r.old.reduction > 0.2  # the recorded figures
    res = CliRunner().invoke(main, ["recompute", str(tmp_path), "-o", str(tmp_path / "rc"), "--energy-method",
                                    "paper-eq4", "--k", "1", "--bootstrap", "200"])
    assert res.exit_code == 0, res.output
    assert "meter estimate (ESTIMATE)" in res.output  # the recomputed figures still say what they are
    md = (tmp_path / "rc" / "recompute.md").read_text()
    assert "- Energy meter: estimate (ESTIMATE). ESTIMATE: energies come from a CPU-time model" in md
    # the report of the same trial opens with its provenance and says ESTIMATE
    rep = CliRunner().invoke(main, ["report", str(path.parent), "-o", str(tmp_path / "rep"), "--bootstrap", "200"])
    assert rep.exit_code == 0, rep.output
    lines = (tmp_path / "rep" / "report.md").read_text().splitlines()
    assert lines[2].startswith("- Energy meter: estimate (ESTIMATE). ESTIMATE:") and lines[3].startswith("- LLM: replay of ")

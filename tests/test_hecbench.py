"""Third-party code: the HeCBench apps in ../shared/hecbench through the inline entries of
datasets/hecbench.toml (validate, profile) and the paper's study restricted to two of them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import pytest
from click.testing import CliRunner

from lassi_batch.store.schema import get_text
from lassi_batch.cli import main as cli
from lassi_batch.core.config import load_study

ROOT = Path(__file__).resolve().parents[1]
HECBENCH = Path(__file__).resolve().parents[2] / "shared" / "hecbench"
STUDY = ROOT / "datasets" / "hecbench.toml"
APPS = ["randomAccess", "murmurhash3", "floydwarshall", "layout", "pathfinder", "chacha20", "dense-embedding", "entropy",
        "extrema", "keogh"]
# Variants that include a header of the CUDA folder (HeCBench builds them with -I../<app>-cuda): the
# entry stays at src/ and names each file with its folder.
SHARED_HEADERS = {("hip", "chacha20"), ("hip", "entropy"), ("cpu", "entropy"), ("hip", "extrema"), ("cpu", "extrema"),
                  ("hip", "keogh"), ("cpu", "keogh")}
needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")


@pytest.fixture
def hecbench(monkeypatch: pytest.MonkeyPatch) -> Path:
    """HECBENCH=../shared/hecbench, typed from the project's root (as the README says)."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("HECBENCH", "../shared/hecbench")
    return HECBENCH


def test_every_entry_points_at_its_variant_folders(hecbench: Path) -> None:
    for kind, suffix in (("cuda", "cuda"), ("hip", "hip"), ("cpu", "omp")):
        study = load_study(STUDY, overrides={"platform": {"kind": kind}})
        assert [a.app.name for a in study.apps] == APPS
        for a in study.apps:
            pb = a.app.build_for(kind)
            if (kind, a.app.name) in SHARED_HEADERS:
                assert a.app.path == (hecbench / "src").resolve()
                assert [Path(f).parent.name for f in pb.files] == [f"{a.app.name}-{suffix}"]
                assert {Path(f).parent.name for f in pb.extra_files} == {f"{a.app.name}-cuda"}
                assert f"-I{a.app.name}-cuda " in pb.build
            else:
                assert a.app.path == (hecbench / "src" / f"{a.app.name}-{suffix}").resolve()
            assert all((a.app.path / f).is_file() for f in pb.files + pb.extra_files)
            assert a.args == a.app.args != a.app.test_args
            if a.app.name == "extrema":  # a verdict on failure only (see the study's comment)
                assert a.app.check.fail_regex and not a.app.check.pass_regex
            elif a.app.name != "pathfinder":  # it prints no verdict (see the study's comment)
                assert a.app.check.pass_regex and a.app.check.fail_regex


def test_layout_carries_its_own_scaling_bound(hecbench: Path) -> None:
    """Its honest row-wise rewrite is ~14x cheaper per repeat: the default 10x bound failed it."""
    bounds = {a.app.name: a.app.probe.min_scaling for a in load_study(STUDY).apps}
    assert bounds.pop("layout") == 0.02 and set(bounds.values()) == {0.1}


def test_validate_the_hecbench_study_warns_only_about_pathfinder_and_extrema(hecbench: Path) -> None:
    r = CliRunner().invoke(cli, ["validate", str(STUDY)], env={"COLUMNS": "400"})
    assert r.exit_code == 0, r.output
    assert "10 apps x 3 trials on cuda" in r.output
    warnings = [ln for ln in r.output.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 2, r.output
    assert warnings[0].startswith("warning: app 'pathfinder': no self-check line")
    assert warnings[1].startswith("warning: app 'extrema': no self-check line or checksum, only its failure line")


def test_validate_the_paper_study_for_two_apps_present(hecbench: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("XSBENCH", "MINIMDOCK"):
        monkeypatch.delenv(var, raising=False)  # the other apps' roots are absent: not looked at
    r = CliRunner().invoke(cli, ["validate", "datasets/lassi-ee-paper.toml", "--apps", "layout,murmurhash3"])
    assert r.exit_code == 0, r.output
    assert "2 apps x 30 trials on cuda" in r.output
    assert str((hecbench / "src" / "layout-cuda").resolve()) in r.output
    assert "warning" not in r.output  # both entries name their self-check lines
    paper = load_study("datasets/lassi-ee-paper.toml", apps=["randomAccess", "murmurhash3", "floydwarshall", "layout"])
    ours = {a.app.name: a.app.check for a in load_study(STUDY).apps}
    assert all(a.app.check == ours[a.app.name] for a in paper.apps)
    r = CliRunner().invoke(cli, ["validate", "datasets/lassi-ee-paper.toml", "--apps", "layout,XSBench"])
    assert r.exit_code == 2
    assert r.output.strip().endswith("path: environment variable XSBENCH is not set (path '${XSBENCH}')")


def test_self_check_patterns_match_the_sources(hecbench: Path) -> None:
    """The pass/fail lines of each entry are what the program's own source prints."""
    import re

    study = load_study(STUDY, overrides={"platform": {"kind": "cpu"}})
    printed = {"randomAccess": "Found 0 errors in 67108864 locations (PASS).", "murmurhash3": "SUCCESS",
               "floydwarshall": "PASS", "layout": "PASS"}
    for a in study.apps:
        if a.app.name not in printed:
            continue
        src = (a.app.path / a.app.build_for("cpu").files[0]).read_text()
        assert re.search(a.app.check.pass_regex, printed[a.app.name], re.M)
        verdict = "PASS" if a.app.name != "murmurhash3" else "SUCCESS"
        assert verdict in src and "FAIL" in src
        if a.app.name == "randomAccess":
            ignore = re.compile(a.app.check.ignore_regex, re.M)
            assert ignore.search(printed["randomAccess"]) and not ignore.search("Table size = 67108864")


@needs_gxx
@pytest.mark.parametrize("app, verdict", [("murmurhash3", "SUCCESS"), ("layout", "PASS")])
def test_profile_an_openmp_variant_from_the_study(hecbench: Path, tmp_path: Path, app: str, verdict: str) -> None:
    out = tmp_path / f"{app}.h5"
    r = CliRunner().invoke(cli, ["profile", "--study", str(STUDY), "--apps", app, "--platform", "cpu", "--test-size",
                                 "--repeat", "2", "--meter", "estimate", "--out", str(out)],
                           env={"COLUMNS": "160", "OMP_NUM_THREADS": "2"})
    assert r.exit_code == 0, r.output
    study = load_study(STUDY, apps=[app], overrides={"platform": {"kind": "cpu"}})
    with h5py.File(out) as f:
        assert f.attrs["app"] == app and f.attrs["platform"] == "cpu" and f.attrs["repeat"] == 2
        assert json.loads(f.attrs["args_json"]) == study.apps[0].app.test_args
        for run in ("000000", "000001"):
            assert f[f"runs/{run}"].attrs["returncode"] == 0
            assert verdict in get_text(f[f"runs/{run}"], "stdout").split()
        assert f.attrs["mean_energy_net_j"] > 0


def test_profile_study_usage_errors(hecbench: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    for args, needle in (
        (["profile", "--study", str(STUDY), "--out", str(tmp_path / "x.h5")], "--out and --plot name one file"),
        (["profile", "--study", str(STUDY), "--apps", "nope"], "--apps: no app named 'nope'"),
        (["profile", str(tmp_path), "--study", str(STUDY)], "either APP_DIR or --study"),
        (["profile", str(tmp_path), "--apps", "layout"], "--apps selects apps of a --study"),
    ):
        r = runner.invoke(cli, args)
        assert r.exit_code == 2, (args, r.output)
        assert needle in r.output and "Traceback" not in r.output
    assert not list(tmp_path.iterdir())


@needs_gxx
def test_doctor_checks_the_study_apps_it_is_given(hecbench: Path, tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["doctor", "--study", str(STUDY), "--apps", "murmurhash3,pathfinder", "--platform", "cpu"],
                           env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    rows = {ln.split("│")[2].strip(): ln.split("│")[3].strip() for ln in r.output.splitlines()
            if ln.startswith("│ apps")}
    assert rows == {"murmurhash3": "ok", "pathfinder": "warn"}
    broken = tmp_path / "study.toml"
    broken.write_text(STUDY.read_text().replace('dir = "layout-omp"', 'dir = "layout-openmp"'))
    r = CliRunner().invoke(cli, ["doctor", "--study", str(broken), "--apps", "layout", "--platform", "cpu"],
                           env={"COLUMNS": "250"})
    assert r.exit_code == 1
    assert f"- {broken}: apps[3] (layout): platforms.cpu.dir: folder not found:" in r.output


TRANSCRIPTS = ROOT / "datasets" / "hecbench" / "transcripts"


def test_transcripts_are_current() -> None:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_hecbench_transcripts.py"), "--check"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


@needs_gxx
@pytest.mark.parametrize("app, verdict, rewrites", [("murmurhash3", "SUCCESS", 2), ("layout", "PASS", 1)])
def test_a_whole_replay_trial_on_an_openmp_variant(hecbench: Path, tmp_path: Path, app: str, verdict: str,
                                                   rewrites: int) -> None:
    """The done-when command: a trial of third-party code described only inline in the study."""
    from lassi_batch.store.archive import TrialArchive

    transcript = TRANSCRIPTS / f"{app}.cpu.trial0.jsonl"
    r = CliRunner().invoke(cli, ["run", "--study", str(STUDY), "--apps", app, "--platform", "cpu", "--test-size",
                                 "--llm", f"replay:{transcript}", "--meter", "estimate", "--trials", "1",
                                 "--out", str(tmp_path)], env={"COLUMNS": "200", "OMP_NUM_THREADS": "2"})
    assert r.exit_code == 0, r.output
    assert f"{app} trial 0: done" in r.output
    (path,) = (tmp_path / "trials").glob("*.h5")
    assert path.name == f"{app}.cpu.t000.h5"
    with TrialArchive.open(path, writable=False) as ar:
        assert ar.status == "done"
        cands = ar.candidates()
        source = next(c for c in cands if c.stage == 0)
        assert source.run_ok and verdict in source.stdout.split()
        # the source is HeCBench's file from the checkout, the candidates the transcript's rewrites
        src_file = HECBENCH / "src" / f"{app}-omp" / next(iter(source.files))
        assert next(iter(source.files.values())) == src_file.read_text()
        built = [c for c in cands if c.stage > 0 and c.build_ok]
        assert len(built) == rewrites
        for c in built:
            assert c.run_ok and verdict in c.stdout.split(), c.key
            assert c.judge_verdict == "VALID" and c.verifier_verdict == "pass" and c.passed, (c.key, c.findings_json)
            assert c.energy_j is not None and c.energy_j > 0
        res = ar.result()
        assert res["vanilla_passed"] and res["source_energy_j"] > 0
        assert res["stop_reason"]
        assert ar.config()["app"]["path"] == str((HECBENCH / "src" / f"{app}-omp").resolve())

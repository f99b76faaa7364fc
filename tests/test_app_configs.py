"""The bundled example apps, the demo study and the paper's study config.

These tests check the apps themselves (built and run directly with g++/nvcc/hipcc); the
toolchain's own path through them is tested in test_examples_toolchain.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from lassi_batch.cli import main as cli
from lassi_batch.core.config import AppConfig, load_app, load_study
from lassi_batch.core.errors import ConfigError
from lassi_batch.screening.verifier import verify

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "datasets" / "examples"
PAPER = ROOT / "datasets" / "lassi-ee-paper.toml"
APP_NAMES = ["heat2d", "nbody-forces", "rowstats"]
VARIANTS = {"cuda": "main.cu", "hip": "main.hip.cpp", "cpu": "main.cpp"}

# Table 1 of the paper (MLSys version): application -> input arguments.
PAPER_TABLE = {
    "randomAccess": ["10"],
    "all-pairs-distance": ["10000"],
    "colorwheel": ["10000", "8", "1"],
    "marchingCubes": ["100"],
    "chacha20": ["300000"],
    "segment-reduce": ["16384", "100"],
    "entropy": ["10000", "1024", "1"],
    "murmurhash3": ["750000", "500"],
    "floydwarshall": ["2048", "100", "256"],
    "layout": ["2500"],
    "threadfence": ["100", "250000000"],
    "dense-embedding": ["10000", "8", "1"],
    "jacobi": [],
    "jaccard": ["1024", "512", "1000"],
    "matrix-rotate": ["30000", "100"],
    "bsearch": ["10000", "1"],
    "keogh": ["256", "22500000", "100"],
    "extrema": ["750"],
    "pathfinder": ["10000", "1000", "1000"],
    "lid-driven-cavity": [],
    "XSBench": ["-l", "1700000000"],
    "miniMDock": ["-lfile", "input/7cpa/7cpa_ligand.pdbqt", "-nrun", "500"],
}
PAPER_DEPENDENCIES = {"marchingCubes", "chacha20", "entropy", "keogh"}  # marked * in Table 1


def app(name: str) -> AppConfig:
    return load_app(EXAMPLES / name)


# ---------------------------------------------------------------- app.toml files


def test_examples_folder_holds_exactly_the_three_apps() -> None:
    assert sorted(p.parent.name for p in EXAMPLES.glob("*/app.toml")) == APP_NAMES


@pytest.mark.parametrize("name", APP_NAMES)
def test_app_toml_loads_with_all_three_platforms(name: str) -> None:
    a = app(name)
    assert a.name == name
    assert set(a.platforms) == set(VARIANTS)
    for plat, fname in VARIANTS.items():
        pb = a.build_for(plat)
        assert pb.files == [fname]
        for f in pb.files + pb.extra_files:
            assert (EXAMPLES / name / f).is_file()
    assert a.args and a.test_args and a.args != a.test_args
    assert all(x.isdigit() and int(x) > 0 for x in a.args + a.test_args)
    assert a.description


@pytest.mark.parametrize("name", APP_NAMES)
def test_app_check_rules_fit_the_output_format(name: str) -> None:
    chk = app(name).check
    assert chk.pass_regex and chk.fail_regex and chk.checksum_regex and chk.work_regex
    assert chk.ignore_regex
    ignore = re.compile(chk.ignore_regex, re.M)
    # Timing lines and the work line are skipped; result lines are compared.
    assert ignore.search("loop time: 0.123 s (2 threads)")
    assert ignore.search("work: steps=5 launches=27 bytes_copied=40960")
    for line in ("total_heat = 1.0e+00", "energy_drift_max = 1.0e-11", "quiet_channels = 83",
                 "max_change_last = 1.0", "stddev_total = 2.0", "settle_step = 14"):
        assert not ignore.search(line), line
    assert re.search(chk.work_regex, "work: steps=20 launches=1 bytes_copied=0", re.M).group(1) == "20"


@pytest.mark.parametrize("name", APP_NAMES)
def test_each_app_has_a_readme_with_a_runtime_table(name: str) -> None:
    text = (EXAMPLES / name / "README.md").read_text()
    assert "## Measured runtimes" in text
    table = text.split("## Measured runtimes", 1)[1]
    # one row per platform variant, with the app's current measurement and test sizes
    assert all(v in table for v in ("CUDA", "OpenMP", "HIP"))
    assert " ".join(app(name).args) in table and " ".join(app(name).test_args) in table


@pytest.mark.parametrize("name", APP_NAMES)
def test_sources_report_counted_work_and_timing_safely(name: str) -> None:
    for fname in VARIANTS.values():
        src = (EXAMPLES / name / fname).read_text()
        assert "work: steps=%lld launches=%lld bytes_copied=%lld" in src
        assert "++work.steps" in src and "++work.launches" in src and "work.bytes_copied +=" in src
        assert 'checksum = %.10e' in src
        # Every printed timing sits on a line with the word "time" (ignored by the verifier).
        for line in src.splitlines():
            if "printf" in line and "_s)" in line:
                assert "time" in line, line
    hip = (EXAMPLES / name / "main.hip.cpp").read_text()
    assert "hip/hip_runtime.h" in hip and "cuda" not in hip.lower()
    assert "pragma omp parallel" in (EXAMPLES / name / "main.cpp").read_text()


# ---------------------------------------------------------------- study configs


def test_demo_study_loads() -> None:
    study = load_study(EXAMPLES / "demo.toml")
    assert study.name == "demo" and study.trials == 3 and study.k == [1, 3]
    assert study.platform.kind == "cpu"
    assert study.llm.backend == "replay" and study.llm.replay_path == str(EXAMPLES / "transcripts")  # relative to the study
    assert study.measure.repeat == 1
    assert [a.app.name for a in study.apps] == APP_NAMES
    for entry in study.apps:
        # The demo runs bigger than the tests and smaller than the GPU measurement.
        assert entry.args not in (entry.app.args, entry.app.test_args)
        assert len(entry.args) == len(entry.app.args)


def test_demo_study_validates_on_the_command_line() -> None:
    result = CliRunner().invoke(cli, ["validate", str(EXAMPLES / "demo.toml")])
    assert result.exit_code == 0, result.output
    assert "3 apps" in result.output


def _paper_env(monkeypatch: pytest.MonkeyPatch, root: Path | None) -> None:
    for var in ("HECBENCH", "XSBENCH", "MINIMDOCK"):
        if root is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, str(root / var.lower()))


def _fake_checkouts(root: Path) -> None:
    """Folders with empty stand-ins for every file the paper study names."""
    with open(PAPER, "rb") as fh:
        data = tomllib.load(fh)
    for entry in data["apps"]:
        folder = Path(entry["path"].replace("${HECBENCH}", str(root / "hecbench"))
                      .replace("${XSBENCH}", str(root / "xsbench")).replace("${MINIMDOCK}", str(root / "minimdock")))
        pb = entry["platforms"]["cuda"]
        for f in pb["files"] + pb.get("extra_files", []):
            (folder / f).parent.mkdir(parents=True, exist_ok=True)
            (folder / f).write_text("// stand-in\n")


def test_paper_study_matches_table_1(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_checkouts(tmp_path)
    _paper_env(monkeypatch, tmp_path)
    study = load_study(PAPER)
    assert study.trials == 30 and study.k == [1, 3, 5]
    assert study.platform.kind == "cuda"
    assert study.platform.compiler_line == "nvcc -std=c++14 -Xcompiler -Wall -arch=sm_80 -O3"
    assert {a.app.name: a.args for a in study.apps} == PAPER_TABLE
    for entry in study.apps:
        pb = entry.app.build_for("cuda")
        assert len(pb.files) == 1 and pb.files[0].endswith(".cu")
        if entry.app.name in PAPER_DEPENDENCIES:
            assert pb.extra_files, entry.app.name
        if entry.app.name in ("XSBench", "miniMDock"):
            assert entry.app.path == (tmp_path / entry.app.name.lower()).resolve()
        else:
            assert entry.app.path.parent == (tmp_path / "hecbench" / "src").resolve()


def test_paper_study_validates_with_a_fake_checkout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_checkouts(tmp_path)
    _paper_env(monkeypatch, tmp_path)
    result = CliRunner().invoke(cli, ["validate", str(PAPER)])
    assert result.exit_code == 0, result.output
    assert "22 apps x 30 trials on cuda" in result.output


def test_paper_study_without_checkouts_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    _paper_env(monkeypatch, None)
    with pytest.raises(ConfigError) as err:
        load_study(PAPER)
    problems = err.value.problems
    assert len(problems) == 22
    assert sum("environment variable HECBENCH is not set" in p for p in problems) == 20
    assert any("XSBENCH is not set" in p for p in problems) and any("MINIMDOCK is not set" in p for p in problems)
    result = CliRunner().invoke(cli, ["validate", str(PAPER)])
    assert result.exit_code == 2
    assert "HECBENCH is not set" in result.output


def test_paper_study_names_a_missing_dependency(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_checkouts(tmp_path)
    _paper_env(monkeypatch, tmp_path)
    (tmp_path / "hecbench" / "src" / "chacha20-cuda" / "chacha20.h").unlink()
    with pytest.raises(ConfigError) as err:
        load_study(PAPER)
    assert len(err.value.problems) == 1 and "chacha20.h" in err.value.problems[0]


# ---------------------------------------------------------------- building and running the apps


@dataclass(frozen=True)
class Built:
    app: AppConfig
    exe: Path


def _run(exe: Path, args: list[str], threads: int = 2) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture(scope="module", params=APP_NAMES)
def cpu_build(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Built:
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    a = app(request.param)
    exe = tmp_path_factory.mktemp(a.name) / "app"
    cmd = ["g++", "-std=c++17", "-O3", "-Wall", "-Wextra", "-Werror", "-fopenmp", "-o", str(exe),
           str(a.path / "main.cpp")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{a.name} does not build warning-free:\n{r.stderr[-3000:]}"
    return Built(a, exe)


def test_cpu_variant_passes_with_test_args(cpu_build: Built) -> None:
    a, r = cpu_build.app, _run(cpu_build.exe, cpu_build.app.test_args)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert re.search(a.check.pass_regex, out, re.M)
    assert not re.search(a.check.fail_regex, out, re.M)
    checksum = re.search(a.check.checksum_regex, out, re.M)
    assert checksum and float(checksum.group(1)) != 0.0
    work = re.search(a.check.work_regex, out, re.M)
    steps = a.test_args[-1]  # the last argument is the step/repeat count in every app
    assert work and work.group(1) == steps
    assert re.search(r"^work: steps=\d+ launches=[1-9]\d* bytes_copied=[1-9]\d*$", out, re.M)
    assert verify(a.check, out, out, r.returncode).verdict == "pass"


def test_cpu_variant_is_deterministic_across_thread_counts(cpu_build: Built) -> None:
    one = _run(cpu_build.exe, cpu_build.app.test_args, threads=1)
    two = _run(cpu_build.exe, cpu_build.app.test_args, threads=2)
    assert one.returncode == two.returncode == 0
    pick = re.compile(cpu_build.app.check.checksum_regex, re.M)
    assert pick.search(one.stdout).group(1) == pick.search(two.stdout).group(1)
    assert verify(cpu_build.app.check, two.stdout, one.stdout, one.returncode).verdict == "pass"


def test_cpu_variant_fewer_steps_is_caught_by_the_verifier(cpu_build: Built) -> None:
    a = cpu_build.app
    full = _run(cpu_build.exe, a.test_args)
    cut = _run(cpu_build.exe, a.test_args[:-1] + ["1"])  # the repeat loop "deleted"
    assert full.returncode == cut.returncode == 0
    report = verify(a.check, full.stdout, cut.stdout, cut.returncode)
    assert report.verdict == "fail"
    assert "work" in {f.kind for f in report.failures}


@pytest.mark.parametrize("cpu_build", ["rowstats"], indirect=True)
def test_rowstats_repeat_deletion_keeps_checksum_but_fails_on_work(cpu_build: Built) -> None:
    # The paper's bsearch case: every repeat gives the same result, so only the work count differs.
    a = cpu_build.app
    full = _run(cpu_build.exe, a.test_args)
    cut = _run(cpu_build.exe, a.test_args[:-1] + ["1"])
    pick = re.compile(a.check.checksum_regex, re.M)
    assert pick.search(full.stdout).group(1) == pick.search(cut.stdout).group(1)
    report = verify(a.check, full.stdout, cut.stdout, cut.returncode)
    kinds = {f.kind for f in report.failures}
    assert "work" in kinds and "checksum" not in kinds
    # Without the echoed header line (which repeats the arguments), work is the only signal.
    def body(text: str) -> str:
        return "\n".join(line for line in text.splitlines() if not line.startswith("rowstats:"))

    report = verify(a.check, body(full.stdout), body(cut.stdout), cut.returncode)
    assert {f.kind for f in report.failures} == {"work"}


def test_cpu_variant_rejects_bad_arguments(cpu_build: Built) -> None:
    assert _run(cpu_build.exe, []).returncode == 2
    bad = ["0"] * len(cpu_build.app.test_args)
    r = _run(cpu_build.exe, bad)
    assert r.returncode == 2 and "positive integer" in r.stderr


@pytest.mark.nvcc
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
@pytest.mark.parametrize("name", APP_NAMES)
def test_cuda_variant_compiles(name: str, tmp_path: Path) -> None:
    cmd = ["nvcc", "-std=c++17", "-O3", "-Xcompiler", "-Wall", "-arch=sm_90", "-o", str(tmp_path / "app"),
           str(EXAMPLES / name / "main.cu")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "warning" not in r.stderr.lower(), r.stderr[-3000:]


@pytest.mark.hipcc
@pytest.mark.skipif(shutil.which("hipcc") is None, reason="hipcc not installed")
@pytest.mark.parametrize("name", APP_NAMES)
def test_hip_variant_compiles(name: str, tmp_path: Path) -> None:
    cmd = ["hipcc", "-std=c++17", "-Wall", "-O3", "--offload-arch=gfx908", "-o", str(tmp_path / "app"),
           str(EXAMPLES / name / "main.hip.cpp")]
    env = {**os.environ, "HIP_PLATFORM": os.environ.get("HIP_PLATFORM", "amd")}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.mark.skipif(shutil.which("g++") is None or shutil.which("bash") is None, reason="needs g++ and bash")
def test_check_examples_script_passes_on_cpu() -> None:
    env = {**os.environ, "NVCC": "no-such-nvcc", "HIPCC": "no-such-hipcc", "OMP_NUM_THREADS": "2"}
    r = subprocess.run(["bash", str(ROOT / "scripts" / "check_examples.sh")], capture_output=True, text=True,
                       timeout=600, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert r.stdout.count("run test") == 3 and "all steps passed" in r.stdout
    assert "skipped (no-such-nvcc not found)" in r.stdout

"""The paper's study on real third-party code: every HeCBench app of datasets/lassi-ee-paper.toml
that ../shared/hecbench holds compiles with the study's own build line (nvcc, in the sandbox, as a
trial builds it), validates, and the OpenMP variants of datasets/hecbench.toml run on the CPU with
check lines that match what the programs really print."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import h5py
import pytest
from click.testing import CliRunner

from lassi_batch.cli import main as cli
from lassi_batch.core.config import OutputCheck, cuda_release, cxx_standard, load_study, std_warning
from lassi_batch.sandbox.toolchain import build, build_argv, prepare_workdir
from lassi_batch.screening.verifier import source_output_problems
from lassi_batch.store.schema import get_text
from lassi_batch.system.tools import tool_version

ROOT = Path(__file__).resolve().parents[1]
HECBENCH = Path(__file__).resolve().parents[2] / "shared" / "hecbench"
PAPER = ROOT / "datasets" / "lassi-ee-paper.toml"
STUDY = ROOT / "datasets" / "hecbench.toml"
# The paper's HeCBench apps in the subset at ../shared/hecbench (its README); XSBench and miniMDock
# and six other HeCBench apps of the study are not there.
AT_HAND = ["randomAccess", "all-pairs-distance", "marchingCubes", "chacha20", "entropy", "murmurhash3",
           "floydwarshall", "layout", "dense-embedding", "jaccard", "keogh", "extrema", "pathfinder",
           "lid-driven-cavity"]
# The OpenMP variants added to datasets/hecbench.toml with this subset (the first five are tested
# in tests/test_hecbench.py). keogh's source passes its own check single-threaded only (the study
# file says why), so it runs with one thread.
NEW_OMP = {"chacha20": "2", "dense-embedding": "2", "entropy": "2", "extrema": "2", "keogh": "1"}
# Threads that sleep at barriers (the differential runs' setting too): spinning threads on a loaded
# 2-core host made chacha20's 1000 tiny target regions take 15 s instead of 0.1 s. The thread limit
# keeps dense-embedding's 1024-thread teams under the sandbox's 512 processes per run (the study
# file says so); its results do not depend on the thread count.
OMP_ENV = {"OMP_WAIT_POLICY": "passive", "OMP_THREAD_LIMIT": "16"}
needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")


@pytest.fixture
def hecbench(monkeypatch: pytest.MonkeyPatch) -> Path:
    """HECBENCH=../shared/hecbench, typed from the project's root (as the README says)."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("HECBENCH", "../shared/hecbench")
    for var in ("XSBENCH", "MINIMDOCK"):
        monkeypatch.delenv(var, raising=False)
    return HECBENCH


def test_every_app_of_the_subset_is_in_the_paper_study() -> None:
    folders = sorted(p.name[:-5] for p in (HECBENCH / "src").glob("*-cuda"))
    assert folders == sorted(AT_HAND)


# ---------------------------------------------------------------- building with the study's line


@pytest.mark.nvcc
@needs_nvcc
@pytest.mark.parametrize("app", AT_HAND)
def test_cuda_app_builds_with_the_study_line(hecbench: Path, tmp_path: Path, app: str) -> None:
    """nvcc (13 here) in the sandbox, from a work folder holding only the entry's files and extra_files."""
    study = load_study(PAPER, apps=[app])
    (entry,) = study.apps
    wd = tmp_path / "work"
    prepare_workdir(entry.app, "cuda", wd)
    b = build(entry.app, study.platform, wd)
    assert b.ok, f"{app}: {shlex.join(b.log.argv)}\n{b.log.stderr[-3000:]}"
    argv = build_argv(entry.app, study.platform)
    assert argv[:len(study.platform.compiler_line.split())] == study.platform.compiler_line.split()
    if app == "all-pairs-distance":  # CUB: the paper's C++14 is raised for this app alone
        assert cxx_standard(argv) == 17
    else:
        assert cxx_standard(argv) == 14


@pytest.mark.nvcc
@needs_nvcc
def test_the_paper_line_alone_fails_on_cub_and_validate_says_so(hecbench: Path, tmp_path: Path) -> None:
    """Without its own build line all-pairs-distance stops under CUDA 13, and validate warns first."""
    release = cuda_release(tool_version("nvcc"))
    if release is None or release[0] < 13:
        pytest.skip(f"nvcc {release} accepts C++14 with Thrust/CUB")
    text = PAPER.read_text()
    line = 'build = "{compiler} -std=c++17 -o {exe} {sources}"\n'
    assert text.count(line) == 1
    bare = tmp_path / "paper.toml"
    bare.write_text(text.replace(line, "").replace('"${HECBENCH}', f'"{HECBENCH}'))
    r = CliRunner().invoke(cli, ["validate", str(bare), "--apps", "all-pairs-distance,layout"], env={"COLUMNS": "300"})
    assert r.exit_code == 0, r.output
    warnings = [ln for ln in r.output.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1, r.output
    assert warnings[0].startswith("warning: app 'all-pairs-distance': the build line compiles with C++14, but CUDA ")
    assert "(included by main.cu) need C++17" in warnings[0]
    study = load_study(bare, apps=["all-pairs-distance"])
    wd = tmp_path / "work"
    prepare_workdir(study.apps[0].app, "cuda", wd)
    b = build(study.apps[0].app, study.platform, wd)
    assert not b.ok and "requires at least C++17" in b.log.stdout + b.log.stderr


@pytest.mark.hipcc
@pytest.mark.skipif(shutil.which("hipcc") is None, reason="hipcc not installed")
@pytest.mark.parametrize("app", sorted(NEW_OMP))
def test_hip_variant_of_a_new_hecbench_entry_builds(hecbench: Path, tmp_path: Path, app: str) -> None:
    """The HIP entries that take their headers from the CUDA folder (-I<app>-cuda) build too."""
    study = load_study(STUDY, apps=[app], overrides={"platform": {"kind": "hip"}})
    wd = tmp_path / "work"
    prepare_workdir(study.apps[0].app, "hip", wd)
    b = build(study.apps[0].app, study.platform, wd)
    assert b.ok, f"{app}: {shlex.join(b.log.argv)}\n{b.log.stderr[-3000:]}"


# ---------------------------------------------------------------- validate


def test_the_paper_study_validates_with_every_app_at_hand(hecbench: Path) -> None:
    r = CliRunner().invoke(cli, ["validate", "datasets/lassi-ee-paper.toml", "--apps", ",".join(AT_HAND)],
                           env={"COLUMNS": "400"})
    assert r.exit_code == 0, r.output
    assert f"{len(AT_HAND)} apps x 30 trials on cuda" in r.output
    warned = {m.group(1): m.group(2) for m in re.finditer(r"^warning: app '([^']+)': (.*)$", r.output, re.M)}
    # the three that print no result (the study file says why for each); no -std warning: the one
    # app that needs C++17 asks for it
    assert sorted(warned) == ["extrema", "jaccard", "pathfinder"], r.output
    assert warned["extrema"].startswith("no self-check line or checksum, only its failure line (check.fail_regex)")
    for app in ("jaccard", "pathfinder"):
        assert warned[app].startswith("no self-check line or checksum, only the numbers it prints are compared")


def test_every_extra_file_and_work_knob_of_the_paper_study_is_real(hecbench: Path) -> None:
    study = load_study(PAPER, apps=AT_HAND)
    for a in study.apps:
        pb = a.app.build_for("cuda")
        src = "\n".join((a.app.path / f).read_text() for f in pb.files)
        included = set(re.findall(r'^\s*#\s*include\s*"([^"]+)"', src, re.M))
        assert set(pb.extra_files) == included, a.app.name  # every header it includes, and only those
        assert all((a.app.path / f).is_file() for f in pb.files + pb.extra_files)
        assert a.app.test_args != a.app.args or not a.app.args, a.app.name
        if a.app.args:  # lid-driven-cavity takes none
            assert a.app.probe.work_arg is not None, a.app.name


def test_paper_study_check_lines_are_what_the_cuda_sources_print(hecbench: Path) -> None:
    """The CUDA programs cannot run here: their verdict lines are read off the printf formats."""
    study = load_study(PAPER, apps=AT_HAND)
    for a in study.apps:
        src = (a.app.path / a.app.build_for("cuda").files[0]).read_text()
        check = a.app.check
        if check.pass_regex == "^PASS$":  # a whole-line "PASS" literal, and a "FAIL" one for fail_regex
            assert re.search(r'"PASS(\\n)?"', src) and re.search(r'"FAIL(\\n)?"', src), a.app.name
            assert check.fail_regex == "^FAIL"
    checks = {a.app.name: a.app.check for a in study.apps}
    mc = checks["marchingCubes"]
    assert re.search(mc.checksum_regex, "Vertices: 4856560\nTriangles: 6101640\n", re.M).group(1) == "6101640"
    ldc = checks["lid-driven-cavity"]
    line = "Time = 0.000477, delt = 4.768372e-04, iter = 17, res = 9.871234e-04"  # its printf format
    assert re.search(ldc.checksum_regex, line, re.M).group(1) == "9.871234e-04"
    assert re.search(ldc.work_regex, line, re.M).group(1) == "17"
    assert not re.search(ldc.ignore_regex, line) and re.search(ldc.ignore_regex, "Total execution time of the iteration loop: 1.0 (s)")
    ex = checks["extrema"]
    assert re.search(ex.fail_regex, "2D test: FAILED\n", re.M) and not re.search(ex.fail_regex, "Average 1D kernel (type = int)")


# ---------------------------------------------------------------- the OpenMP variants on the CPU


@needs_gxx
@pytest.mark.parametrize("app", sorted(NEW_OMP))
def test_openmp_variant_profiles_and_its_checks_match_its_output(hecbench: Path, tmp_path: Path, app: str) -> None:
    """Built and run through the sandbox at test size; the check lines are tried on the real output."""
    out = tmp_path / f"{app}.h5"
    r = CliRunner().invoke(cli, ["profile", "--study", str(STUDY), "--apps", app, "--platform", "cpu", "--test-size",
                                 "--repeat", "1", "--meter", "estimate", "--out", str(out)],
                           env={"COLUMNS": "160", "OMP_NUM_THREADS": NEW_OMP[app], **OMP_ENV})
    assert r.exit_code == 0, r.output
    study = load_study(STUDY, apps=[app], overrides={"platform": {"kind": "cpu"}})
    check = study.apps[0].app.check
    with h5py.File(out) as f:
        assert json.loads(f.attrs["args_json"]) == study.apps[0].app.test_args
        assert json.loads(f.attrs["check_problems_json"]) == []
        run = f["runs/000000"]
        assert run.attrs["returncode"] == 0
        stdout = get_text(run, "stdout")
    assert source_output_problems(check, stdout) == []
    if check.pass_regex:
        assert re.search(check.pass_regex, stdout, re.M), stdout
    assert not re.search(check.fail_regex, stdout, re.M), stdout
    if app == "extrema":  # it prints no verdict on success: its kernels' lines are all there is
        assert len(re.findall(r"^Average [12]D kernel \(type = ", stdout, re.M)) == 3 * 8 * 4


@needs_gxx
def test_profile_fails_a_check_line_the_source_never_prints(hecbench: Path, tmp_path: Path) -> None:
    """A checksum_regex that matches nothing passed validate before; profile now says so (exit 2)."""
    text = STUDY.read_text()
    block = '[apps.check]  # "PASS" when the regenerated keystream equals the embedded test vector\npass_regex = "^PASS$"\n'
    assert text.count(block) == 1
    bad = tmp_path / "study.toml"
    bad.write_text(text.replace(block, block + 'checksum_regex = "^Checksum: (\\\\S+)$"\n')
                   .replace('"${HECBENCH}', f'"{HECBENCH}'))
    r = CliRunner().invoke(cli, ["validate", str(bad), "--apps", "chacha20"])
    assert r.exit_code == 0 and "warning" not in r.output  # nothing static can tell
    out = tmp_path / "chacha20.h5"
    r = CliRunner().invoke(cli, ["profile", "--study", str(bad), "--apps", "chacha20", "--platform", "cpu", "--test-size",
                                 "--repeat", "1", "--meter", "estimate", "--out", str(out)],
                           env={"COLUMNS": "160", "OMP_NUM_THREADS": "2", **OMP_ENV})
    assert r.exit_code == 2, r.output
    assert ("error: chacha20: check.checksum_regex '^Checksum: (\\\\S+)$' matches no line of the source's output; "
            f"fix the app's [check] (measurements kept in {out})") in r.output
    assert "Traceback" not in r.output
    with h5py.File(out) as f:  # the measurement is kept, with the problem recorded
        assert f["runs/000000"].attrs["returncode"] == 0
        assert json.loads(f.attrs["check_problems_json"]) == [
            "check.checksum_regex '^Checksum: (\\\\S+)$' matches no line of the source's output"]


@needs_gxx
def test_validate_run_tries_the_check_lines_without_measuring(hecbench: Path, tmp_path: Path) -> None:
    env = {"COLUMNS": "200", "OMP_NUM_THREADS": "2", **OMP_ENV}
    r = CliRunner().invoke(cli, ["validate", str(STUDY), "--apps", "chacha20,pathfinder", "--run", "--platform", "cpu"],
                           env=env)
    assert r.exit_code == 0, r.output
    assert "ran chacha20 (cpu) ./app.exe 100: exit 0 in " in r.output and "its check lines match its output" in r.output
    assert re.search(r"ran pathfinder \(cpu\) ./app.exe 10000 100 5: exit 0 in [\d.]+ s; no check lines to try", r.output)
    text = STUDY.read_text().replace('"${HECBENCH}', f'"{HECBENCH}')
    bad = tmp_path / "study.toml"
    block = '[apps.check]  # "PASS" when every entropy is within 1e-3 of the host reference\'s\n'
    assert text.count(block) == 1
    bad.write_text(text.replace(block, block + 'work_regex = "^Repeats: (\\\\d+)"\n')
                   .replace('dir = "chacha20-omp"\nfiles = ["main.cpp"]', 'dir = "chacha20-omp"\nfiles = ["main.cpp", "nope.cpp"]'))
    r = CliRunner().invoke(cli, ["validate", str(bad), "--apps", "entropy", "--run", "--platform", "cpu"], env=env)
    assert r.exit_code == 2, r.output
    assert "error: entropy: check.work_regex '^Repeats: (\\\\d+)' matches no line of the source's output; fix the app's [check]" in r.output
    r = CliRunner().invoke(cli, ["validate", str(bad), "--apps", "chacha20"])
    assert r.exit_code == 2 and "file 'nope.cpp' not found" in r.output, r.output
    r = CliRunner().invoke(cli, ["validate", str(STUDY), "--platform", "cpu"])
    assert r.exit_code == 2 and "--platform applies with --run" in r.output


# ---------------------------------------------------------------- the pure parts


def test_source_output_problems() -> None:
    out = "Vertices: 12\nTriangles: 30\nAverage time 0.5 (s)\nPASS\n"
    assert source_output_problems(OutputCheck(pass_regex="^PASS$", fail_regex="^FAIL",
                                              checksum_regex=r"^Triangles: (\d+)$", work_regex=r"Vertices: (\d+)"), out) == []
    assert source_output_problems(OutputCheck(pass_regex="^SUCCESS$"), out) == [
        "check.pass_regex '^SUCCESS$' matches no line of the source's output"]
    assert source_output_problems(OutputCheck(checksum_regex=r"^Triangles:(\s*)"), out) == [
        "check.checksum_regex '^Triangles:(\\\\s*)' matches the source's output but its first group holds no number"]
    assert source_output_problems(OutputCheck(work_regex=r"^steps (\d+)"), out) == [
        "check.work_regex '^steps (\\\\d+)' matches no line of the source's output"]
    assert source_output_problems(OutputCheck(fail_regex="FAIL"), "1D test: FAILED\nx\n") == [
        "the source's own output matches check.fail_regex 'FAIL': '1D test: FAILED'"]
    assert source_output_problems(OutputCheck(), "") == []


def test_cxx_standard_and_std_warning() -> None:
    assert cxx_standard("nvcc -std=c++14 -Xcompiler -Wall -arch=sm_80 -O3 -std=c++17 -o a m.cu".split()) == 17
    assert cxx_standard("nvcc -std=c++14 -O3".split()) == 14
    assert cxx_standard(["g++", "--std", "gnu++1z"]) == 17 and cxx_standard(["g++", "-std=c++98"]) == 3
    assert cxx_standard(["nvcc", "-O3"]) is None
    assert cuda_release("Cuda compilation tools, release 13.0, V13.0.88") == (13, 0)
    assert cuda_release("") is None
    cub = {"main.cu": "#include <cstdio>\n#include <cub/cub.cuh>\n", "k.h": "int x;\n"}
    plain = {"main.cu": "#include <cuda_runtime.h>\n"}
    line = "nvcc -std=c++14 -O3 -o app.exe main.cu".split()
    why = std_warning(line, (13, 0), cub)
    assert why and why.startswith("the build line compiles with C++14, but CUDA 13.0's Thrust/CUB/libcu++ headers "
                                  "(included by main.cu) need C++17")
    assert std_warning(line, (12, 4), cub) is None          # CUDA 12 only deprecates C++14
    assert std_warning(line, None, cub) is None             # the release is not known
    assert std_warning(line, (13, 0), plain) is None        # no Thrust/CUB/libcu++
    assert std_warning(line + ["-std=c++17"], (13, 0), cub) is None
    assert std_warning(["nvcc", "-O3", "main.cu"], (13, 0), cub) is None  # nvcc's default is C++17
    assert std_warning(line, (13, 1), {"a.cu": "  #  include \"thrust/sort.h\"\n"})

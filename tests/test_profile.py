"""`lassi-batch profile`, the plot, and a dry run of the benchmark script (CPU, estimate meter)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from lassi_batch.power.trace import Measurement, PowerTrace, Window

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
ROOT = Path(__file__).resolve().parents[1]

PROGRAM = r"""
#include <cstdio>
#include <cstdlib>
int main(int argc, char** argv) {
  long n = argc > 1 ? std::atol(argv[1]) : 1000;
  int rc = argc > 2 ? std::atoi(argv[2]) : 0;
  volatile double s = 0;
  for (long i = 0; i < n; ++i) s = s + 1.0 / (1.0 + i);
  std::printf("sum = %.6f\nPASS\n", (double)s);
  return rc;
}
"""


def make_app(tmp: Path, source: str = PROGRAM) -> Path:
    app = tmp / "tinyapp"
    app.mkdir()
    (app / "main.cpp").write_text(source)
    (app / "app.toml").write_text(textwrap.dedent("""
        name = "tinyapp"
        [platforms.cpu]
        files = ["main.cpp"]
        [run]
        args = ["3000000"]
        test_args = ["200000"]
        time_limit_s = 30
    """))
    return app


def cli(args: list[str]):
    from lassi_batch.cli import main

    return CliRunner().invoke(main, ["profile", *args], catch_exceptions=False, env={"COLUMNS": "160"})


@needs_gxx
def test_profile_writes_file_table_and_plot(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    out, png = tmp_path / "p.h5", tmp_path / "p.png"
    res = cli([str(app), "--platform", "cpu", "--meter", "estimate", "--repeat", "2", "--test-size",
               "--out", str(out), "--plot", str(png)])
    assert res.exit_code == 0, res.output
    assert "ESTIMATE" in res.output and "mean" in res.output and "CV %" in res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from lassi_batch.store.measurement import read_measurement
    from lassi_batch.store.schema import PROFILE_SCHEMA, SCHEMA_VERSION, get_text

    with h5py.File(out) as f:
        assert f.attrs["schema"] == PROFILE_SCHEMA and f.attrs["schema_version"] == SCHEMA_VERSION
        assert f.attrs["app"] == "tinyapp" and f.attrs["platform"] == "cpu" and f.attrs["meter"] == "estimate"
        assert bool(f.attrs["estimate"]) is True
        assert json.loads(f.attrs["args_json"]) == ["200000"]
        assert sorted(f["measurements"]) == ["000000", "000001"]
        m = read_measurement(f["measurements/000001"])
        assert m.trace.estimate and m.returncode == 0 and m.attrs["repeat"] == 1
        assert m.figures["energy_net_j"] > 0 and m.attrs["energy_method"] == "estimate:cpu_seconds"
        assert "PASS" in get_text(f["runs/000000"], "stdout")
        assert np.isfinite(f.attrs["mean_energy_net_j"])


@needs_gxx
def test_profile_args_override(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    out = tmp_path / "a.h5"
    res = cli([str(app), "--platform", "cpu", "--meter", "estimate", "--repeat", "1", "--args", "1000", "--out", str(out)])
    assert res.exit_code == 0, res.output
    with h5py.File(out) as f:
        assert json.loads(f.attrs["args_json"]) == ["1000"]


@needs_gxx
def test_profile_build_failure_is_one_line_exit_1(tmp_path: Path) -> None:
    app = make_app(tmp_path, source="int main( { this is not C++ }\n")
    res = cli([str(app), "--platform", "cpu", "--meter", "estimate", "--out", str(tmp_path / "x.h5")])
    assert res.exit_code == 1
    err = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "build" in err[0] and "log:" in err[0]
    log = Path(err[0].split("log: ")[1].strip())
    assert log.is_file() and "error" in log.read_text()
    assert not (tmp_path / "x.h5").exists()
    shutil.rmtree(log.parent)  # the failed build's folder is kept for the user; not for the test


@needs_gxx
def test_profile_failing_program_exit_1_but_file_kept(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    out = tmp_path / "f.h5"
    res = cli([str(app), "--platform", "cpu", "--meter", "estimate", "--repeat", "1", "--args", "1000 3", "--out", str(out)])
    assert res.exit_code == 1
    assert "runs failed" in res.output and out.is_file()
    with h5py.File(out) as f:
        assert int(f["measurements/000000"].attrs["returncode"]) == 3


@pytest.mark.parametrize("args", [["--repeat", "0"], ["--meter", "wattmeter"], ["--platform", "tpu"],
                                  ["--args", "'unbalanced"], ["--args", "1", "--test-size"]])
def test_profile_bad_usage_exits_2(tmp_path: Path, args: list[str]) -> None:
    app = make_app(tmp_path)
    res = cli([str(app), "--meter", "estimate", *args] if "--meter" not in args else [str(app), *args])
    assert res.exit_code == 2, res.output


def test_profile_missing_app_exits_2(tmp_path: Path) -> None:
    res = cli([str(tmp_path / "nowhere"), "--meter", "estimate"])
    assert res.exit_code == 2 and "not found" in res.output


def test_profile_app_without_that_platform_exits_2(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    res = cli([str(app), "--platform", "cuda", "--meter", "estimate"])
    assert res.exit_code == 2 and "no build for platform 'cuda'" in res.output


def test_explicit_unavailable_meter_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "amdsmi", None)
    app = make_app(tmp_path)
    res = cli([str(app), "--platform", "cpu", "--meter", "amdsmi"])
    assert res.exit_code == 1
    assert "meter 'amdsmi' is not available" in res.output


def test_choose_platform() -> None:
    from lassi_batch.pipeline.profile import choose_platform

    assert choose_platform(["cpu", "cuda"], "cuda") == ("cuda", "")
    kind, note = choose_platform(["cpu"], None)
    assert kind == "cpu"


# ------------------------------------------------------------------ the plot


def test_plot_measurement_of_the_real_trace(tmp_path: Path) -> None:
    from lassi_batch.power.energy import analyze
    from lassi_batch.power.plot import plot_measurement

    rows = np.array(json.loads((ROOT / "tests" / "data" / "h100-nvml-trace.json").read_text()))
    t = rows[:, 0]
    tr = PowerTrace("nvml", "NVIDIA H100 80GB HBM3", t=t, power_average_w=rows[:, 1] / 1e3,
                    counter_t=t.copy(), counter_j=rows[:, 2] / 1e3, power_instant_w=rows[:, 3] / 1e3)
    w = Window(t[0] + 1.0, t[0] + 2.0, t[0] + 3.48, t[0] + 5.3, t[-1])
    an = analyze(tr, w)
    path = tmp_path / "sub" / "fig.png"
    plot_measurement(Measurement(tr, w, 0, an.figures, {"energy_method": an.method}), path)
    assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 20_000


def test_plot_handles_an_empty_estimate_trace(tmp_path: Path) -> None:
    from lassi_batch.power.plot import plot_measurement

    tr = PowerTrace("estimate", "CPU power model", estimate=True)
    m = Measurement(tr, Window(0, 1, 2, 2, 2), 1, {"energy_net_j": 5.0, "runtime_s": 1.0}, {})
    plot_measurement(m, tmp_path / "e.png")
    assert (tmp_path / "e.png").stat().st_size > 0


# ------------------------------------------------------------------ the benchmark script, dry


@needs_gxx
def test_bench_energy_dry_run_on_cpu(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_energy", ROOT / "scripts" / "bench_energy.py")
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench_energy"] = bench
    spec.loader.exec_module(bench)
    rc = bench.main(["--platform", "cpu", "--meter", "estimate", "--quick", "--repeats", "2", "--budget-s", "25",
                     "--short-s", "0.2", "--out", str(tmp_path)])
    assert rc == 0
    data = json.loads((tmp_path / "bench_energy.json").read_text())
    assert data["meta"]["estimate"] is True and data["measurements"]
    assert data["measurements"][0]["section"] == "accuracy"
    s = data["summary"]
    assert "overhead" in s and "sampler" in s and s["failed_runs"] == 0
    md = (tmp_path / "bench_energy.md").read_text()
    assert "ESTIMATE" in md and "Overhead per measurement" in md


def _read_only(folder: Path, argv: list[str]):
    """Run the CLI with `folder` mounted read-only (permission bits do not stop root; a mount does)."""
    import subprocess

    cmd = ["bwrap", "--dev-bind", "/", "/", "--ro-bind", str(folder), str(folder),
           sys.executable, "-m", "lassi_batch", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "COLUMNS": "160"})


@needs_gxx
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")
def test_profile_into_a_read_only_folder_fails_before_building(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir()
    for out in (ro / "p.h5", ro / "sub" / "p.h5"):
        r = _read_only(ro, ["profile", str(app), "--platform", "cpu", "--meter", "estimate", "--out", str(out)])
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip() == f"error: --out: cannot write to {ro}: Read-only file system"
        assert r.stdout == ""  # nothing built, nothing measured
    r = _read_only(ro, ["profile", str(app), "--platform", "cpu", "--meter", "estimate", "--test-size",
                        "--out", str(tmp_path / "ok.h5"), "--plot", str(ro / "p.png")])
    assert r.returncode == 2 and r.stderr.strip() == f"error: --plot: cannot write to {ro}: Read-only file system"
    assert not (tmp_path / "ok.h5").exists()
    assert list(ro.iterdir()) == []


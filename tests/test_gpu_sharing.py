"""Trials sharing a GPU: every run on the device stays out of a measurement's window, each
measurement shows it ran alone, and a baseline is read on a settled device.

The GPU is the fake NVML (tests/fakes/fake_pynvml.py: ProcessGpu), whose one device-wide counter
is driven by the real programs on it: two trial processes, real g++ builds and real sandboxed runs
(bubblewrap, as trials run them), one measuring its source while the other runs its unmeasured
screening probes. A GPU program adds 150 W for as long as it runs, so the measured program's true
net energy is 150 W x the time it lived (it sleeps 0.7 s and says how long it took).
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import ModuleType

import pytest

from lassi_batch.core.config import MeasureConfig, PlatformConfig
from lassi_batch.power import floor
from lassi_batch.power.base import open_meter
from lassi_batch.power.protocol import measure, measure_alone
from lassi_batch.sandbox.toolchain import RunResult

HERE = Path(__file__).resolve().parent
UUID = "GPU-5a5a5a5a-0000-0000-0000-00000000beef"
PER_PROCESS_W = 150.0
RUN_MS = 700

SLEEPER = r"""
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <unistd.h>
int main(int argc, char** argv) {
  int ms = argc > 1 ? atoi(argv[1]) : 400;
  timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  usleep(ms * 1000);
  clock_gettime(CLOCK_MONOTONIC, &b);
  printf("lived_s = %.6f\n", (b.tv_sec - a.tv_sec) + 1e-9 * (b.tv_nsec - a.tv_nsec));
  printf("checksum = %d\nPASS\n", ms);
  return 0;
}
"""


@pytest.fixture
def gpu_app(tmp_path: Path) -> Path:
    app = tmp_path / "sleeper"
    app.mkdir()
    (app / "main.cpp").write_text(SLEEPER)
    (app / "app.toml").write_text(textwrap.dedent(f"""
        name = "sleeper"
        [platforms.cuda]
        files = ["main.cpp"]
        [run]
        args = ["{RUN_MS}"]
        test_args = ["50"]
        time_limit_s = 30
        [check]
        pass_regex = "^PASS$"
    """))
    return app


def _trial(role: str, app: Path, work: Path, mode: str, n: int) -> subprocess.Popen:
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE)])}
    return subprocess.Popen([sys.executable, str(HERE / "gpushare.py"), role, str(app), str(work), UUID, mode, str(n)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _shared_gpu(app: Path, tmp: Path, mode: str, repeats: int = 4, churn_s: int = 40) -> list[dict]:
    """Trial B churns unmeasured probe runs for `churn_s` while trial A measures its source
    `repeats` times."""
    churn = _trial("churn", app, tmp / f"{mode}-b", mode, churn_s)
    time.sleep(1.0 if churn_s else 0.0)
    meas = _trial("measure", app, tmp / f"{mode}-a", mode, repeats)
    out, err = meas.communicate(timeout=240)
    churn.kill()
    churn.communicate()
    assert meas.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _energies(rows: list[dict]) -> list[float]:
    return [r["energy_net_j"] for r in rows]


def _truth(rows: list[dict]) -> list[float]:
    """The measured program's own energy: 150 W for as long as it lived, as it reports."""
    return [PER_PROCESS_W * r["lived_s"] for r in rows]


def _ideal(rows: list[dict]) -> list[float]:
    """What an ideal meter reads over each run window, from the fake GPU's power history: the
    program's own energy when nothing else ran (the fake follows programs a scan late, by more on a
    loaded machine, so this, not the program's lifetime, is what a correct measurement must match)."""
    return [r["window_true_j"] for r in rows]


def test_a_neighbours_unmeasured_runs_no_longer_land_in_a_measurement(gpu_app: Path, tmp_path: Path) -> None:
    """Before: no lock on unmeasured GPU runs and no way to list the device's processes. The
    neighbour's probe runs land in the windows and the same program measures far apart. After:
    probe runs wait for the measurement, which says it ran alone; the energies agree with each
    other and with the truth (150 W x the program's life)."""
    before = _shared_gpu(gpu_app, tmp_path, "bare")
    after = _shared_gpu(gpu_app, tmp_path, "fixed")

    errors_before = [abs(e / t - 1) for e, t in zip(_energies(before), _truth(before))]
    assert max(errors_before) > 0.10, (_energies(before), _truth(before))  # far beyond the meter's noise
    e_after = _energies(after)
    for e, t, own in zip(e_after, _ideal(after), _truth(after)):
        assert e == pytest.approx(t, rel=0.05), (e_after, _ideal(after))
        assert t == pytest.approx(own, rel=0.10)  # nothing but the program itself in the window
    ratios = [e / t for e, t in zip(e_after, _ideal(after))]
    assert statistics.stdev(ratios) < 0.03, ratios  # the measurements agree within the meter's noise
    for r in after:
        assert not r["contaminated"] and r["retakes"] == 0, r
        assert r["isolation"].startswith("alone") and "1 own processes listed" in r["isolation"], r
    assert any(r["lock_wait_s"] > 0.05 for r in after)  # the probe runs held it back, not the other way
    # the neighbour's runs ended right before: settling waited for the floor, not the post-run plateau
    assert all(r["pre_baseline_w"] < 70.0 * 1.05 for r in after), [r["pre_baseline_w"] for r in after]


def test_a_neighbour_without_locks_costs_retakes_not_wrong_figures(gpu_app: Path, tmp_path: Path) -> None:
    """The neighbour takes no lock (as a foreign job on a shared node would not) for 12 s: the
    measurement finds it on the device (or the device never idle) and is taken again until a
    window is clean; every figure kept is right."""
    rows = _shared_gpu(gpu_app, tmp_path, "nolocks", repeats=3, churn_s=12)
    assert sum(r["retakes"] for r in rows) >= 1, rows
    reasons = [why for r in rows for why in json.loads(r["retake_reasons"])]
    assert all(why.startswith(("contaminated: ", "device not settled")) for why in reasons), reasons
    for r, t in zip(rows, _ideal(rows)):
        assert not r["contaminated"] and r["energy_net_j"] == pytest.approx(t, rel=0.05), rows


def test_a_foreign_program_in_the_window_is_seen_recorded_and_retaken(gpu_app: Path, tmp_path: Path) -> None:
    """A program that is not the measured run's (started outside this process tree, as another
    job's would be) appears on the device during the first try: that try is contaminated and
    recorded with the foreign PID, the second try is clean."""
    rows = _shared_gpu(gpu_app, tmp_path, "foreign", repeats=1, churn_s=0)
    r = rows[0]
    reasons = json.loads(r["retake_reasons"])
    assert r["retakes"] == 1 and reasons[0].startswith("contaminated: other processes on the device: pid "), r
    assert "app.exe" in reasons[0]
    assert not r["contaminated"] and r["energy_net_j"] == pytest.approx(_ideal(rows)[0], rel=0.05), r


# ---------------------------------------------------------------- settling, in one process


@pytest.fixture
def nv(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("_lassi_fake_pynvml_sharing", HERE / "fakes" / "fake_pynvml.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return mod


IDLE, LOAD, STUCK = 74.0, 300.0, 127.0
CFG = MeasureConfig(idle_window_s=0.7, settle_timeout_s=2.0, post_max_s=3.0, random_delay_s=0.0)


def _program(gpu, busy_s: float = 1.0):
    def run() -> RunResult:
        t0 = time.monotonic()
        gpu.set_power(t0, LOAD)
        time.sleep(busy_s)
        t1 = time.monotonic()
        gpu.set_power(t1, IDLE)
        return RunResult(argv=["prog"], returncode=0, stdout="", stderr="", t_launch=t0, t_exit=t1, wall_s=t1 - t0)
    return run


def test_an_unsettled_baseline_is_retaken_not_turned_into_a_shrunken_energy(nv: ModuleType) -> None:
    """The demo's failure: a GPU still at 127 W from someone else's run when the measurement began
    (its baseline then read 117-127 W against a 71 W floor, and net energies went negative). With
    the device's floor known on the node, the measurement waits for it, and a device that stays
    above it past the settle timeout is recorded as unsettled and measured again."""
    gpu = nv.CadenceGpu(UUID, "00000000:1B:00.0", idle_w=IDLE)
    nv.configure([gpu])
    meter = open_meter("nvml", PlatformConfig(kind="cuda"), env={})
    meter.cold_start_s = 0.0
    # the floor is known for this GPU on this node; the device stays stuck through the first
    # try's settle timeout, then drops during the pause before the retake
    floor.record_idle(UUID, "instant", IDLE)
    meter.idle_hint_w = None
    now = time.monotonic()
    gpu.set_power(now, STUCK)
    gpu.set_power(now + CFG.settle_timeout_s + 1.0, IDLE)
    _rr, m = measure_alone(_program(gpu), meter, CFG)
    reasons = json.loads(m.attrs["retake_reasons"])
    assert m.attrs["retakes"] == 1 and "not settled" in reasons[0], reasons
    assert m.attrs["pre_baseline_w"] == pytest.approx(IDLE, rel=0.02)
    assert m.figures["energy_net_j"] == pytest.approx((LOAD - IDLE) * m.figures["runtime_s"], rel=0.05)
    meter.close()


def test_floor_is_the_lowest_recent_level_and_follows_a_lasting_rise() -> None:
    now = 1000.0
    assert floor.floor_of([], now) is None
    assert floor.floor_of([(990.0, 74.0), (995.0, 71.0), (999.0, 73.0)], now) == 71.0
    assert floor.floor_of([(now - 7 * 3600, 60.0), (999.0, 73.0)], now) == 73.0  # too old to count
    risen = [(900.0, 71.0)] + [(950.0 + i, 80.0 + i) for i in range(floor.RISEN)]
    assert floor.floor_of(risen, now) == 80.0  # five later levels all above it: the floor itself rose

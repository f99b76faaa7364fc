"""One trial's GPU work on a shared fake GPU, as a process of its own (for test_gpu_sharing).

    python gpushare.py ROLE APP_DIR WORKROOT UUID MODE N

ROLE measure: measure the app's source N times, as stage 0 does, and print the measurements as
JSON; ROLE churn: run the app unmeasured (a differential probe) for N seconds, as a neighbour
trial's screening does. MODE fixed: as shipped; MODE nolocks: the device locks are not taken
(what the code did before GPU runs took them; also what a foreign job does); MODE bare: the code
before the fix: no locks, no settling to the device's idle floor, and a driver that cannot list
the device's processes (nothing can show a window was clean); MODE foreign: as shipped, and the
first measured run starts a copy of the program outside this process tree (double-forked, as
another job's program would be) that overlaps the measurement.
The fake NVML (fakes/fake_pynvml.py, the real library's names) is loaded as `pynvml`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("pynvml", HERE / "fakes" / "fake_pynvml.py")
nv = importlib.util.module_from_spec(spec)
sys.modules["pynvml"] = nv
spec.loader.exec_module(nv)

from lassi_batch.core.config import MeasureConfig, PlatformConfig, load_app  # noqa: E402
from lassi_batch.pipeline import bench as bench_mod  # noqa: E402
from lassi_batch.pipeline.bench import Bench  # noqa: E402
from lassi_batch.power.base import open_meter  # noqa: E402
from lassi_batch.screening.differential import Probe  # noqa: E402

MEASURE = MeasureConfig(repeat=0, settle_timeout_s=8.0, idle_window_s=0.5, post_max_s=4.0, random_delay_s=0.3)


def _start_a_foreign_program_once(app) -> None:
    """Wrap the toolchain's run so that its first call also starts the built program as an orphan
    (setsid --fork: its parent exits at once, so it is not below this process), with the GPU's
    visible-devices value, just before the measured program."""
    import os
    import subprocess

    real = bench_mod.run_app
    started: list[int] = []

    def run_app(app_, platform, wd, args, **kw):
        if not started and not kw.get("env_extra"):
            exe = Path(wd) / "app.exe"
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": platform.device}
            subprocess.run(["setsid", "--fork", str(exe), "300"], env=env, check=True)
            started.append(1)
        return real(app_, platform, wd, args, **kw)

    bench_mod.run_app = run_app


def main(role: str, app_dir: str, workroot: str, uuid: str, mode: str, n: str) -> None:
    nv.configure([nv.ProcessGpu(uuid, "00000000:1B:00.0", visible=uuid, idle_w=70.0, process_query=mode != "bare")])
    if mode in ("nolocks", "bare"):
        bench_mod.run_hold = bench_mod.measurement_lock = lambda key, folder=None: contextlib.nullcontext(
            bench_mod.LockHold(key))
    app = load_app(Path(app_dir))
    if mode == "foreign":
        _start_a_foreign_program_once(app)
    platform = PlatformConfig(kind="cuda", compiler="g++ -O1", meter="nvml", device=uuid)
    meter = open_meter("nvml", platform, env={})
    if mode == "bare":
        meter.learns_floor = False
    cfg = dataclasses.replace(MEASURE, repeat=int(n)) if role == "measure" else MEASURE
    bench = Bench(app, platform, cfg, list(app.args), meter, Path(workroot))
    try:
        if role == "measure":
            out = bench.evaluate({}, "source")
            lived = [float(r.stdout.split("lived_s = ")[1].split()[0]) for r in out.runs]
            gpu = nv.STATE.gpus[0]
            # what an ideal meter reads over each window, from the fake's own power history (it sees
            # a program start and end a scan late, more so on a loaded machine)
            window = [gpu.true_energy_j(m.window.t_exit) - gpu.true_energy_j(m.window.t_launch)
                      - gpu.idle_w * (m.window.t_exit - m.window.t_launch) for m in out.measurements]
            rows = [{"energy_net_j": m.figures["energy_net_j"], "runtime_s": m.figures["runtime_s"], "lived_s": life,
                     "window_true_j": w,
                     **{k: m.attrs.get(k) for k in ("retakes", "retake_reasons", "isolation", "contaminated",
                                                    "pre_baseline_w", "idle_floor_w", "settle_reason", "lock_wait_s")}}
                     for m, life, w in zip(out.measurements, lived, window)]
            print(json.dumps(rows))
        else:
            exe = bench.executable({}, "source")
            deadline = time.monotonic() + float(n)
            runs = 0
            while time.monotonic() < deadline:
                bench.probe(exe, {}, "churn", Probe("churn", list(app.args)))
                runs += 1
                time.sleep(random.uniform(0.05, 0.6))  # a neighbour's irregular screening
            print(json.dumps({"runs": runs}))
    finally:
        meter.close()


if __name__ == "__main__":
    main(*sys.argv[1:])

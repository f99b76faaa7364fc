#!/usr/bin/env python3
"""Sensor facts of the local NVIDIA GPU, probed afresh: how often each NVML reading changes, what
a read costs, whether nvmlDeviceGetPowerUsage is a moving average, idle power, and how long the
GPU takes to settle after a run.

    python scripts/probe_sensors.py --out "$OUT"      # about 40 s on an idle GPU

Writes probe_sensors.json (every figure and the raw idle/run samples' summary) and
probe_sensors.md (one table). Read-only towards the GPU: it never changes clocks, limits or modes.

Method, in short:
- idle: 4 s of tight polling of each channel on its own (the energy counter read is slow, so it is
  never polled together with the others); update period = median time between value changes.
- load step: the bundled stream_update workload (about 3 s of memory-bound kernels) runs while
  the instant field (id 186) and GetPowerUsage are polled every ~5 ms, and the counter every
  ~25 ms. The averaged reading is compared with the instant one and with a 1 s trailing mean of
  the instant one: if it tracks the trailing mean far better than the instant reading, it is a
  ~1 s moving average. Its lag is the time from the instant reading crossing half of the step to
  the averaged one crossing it.
- settle: after the program exits, the time until the instant reading stays within 5% of the
  idle level for 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
FI_POWER_INSTANT = 186


def _nvml() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pynvml
    return pynvml


def _median_change_period(samples: list[tuple[float, float]]) -> float:
    """Median time between consecutive changes of the value (s); NaN with fewer than 3 changes."""
    changes = [t for (t, v), (_, v0) in zip(samples[1:], samples[:-1]) if v != v0]
    gaps = [b - a for a, b in zip(changes[:-1], changes[1:])]
    return statistics.median(gaps) if len(gaps) >= 2 else float("nan")


def _poll(read: Callable[[], float], seconds: float, every_s: float = 0.0) -> tuple[list[tuple[float, float]], float]:
    """(samples, mean call cost in s) of `read` polled for `seconds`."""
    out: list[tuple[float, float]] = []
    cost = 0.0
    t_end = time.perf_counter() + seconds
    while (now := time.perf_counter()) < t_end:
        v = read()
        after = time.perf_counter()
        cost += after - now
        out.append((after, v))
        if every_s:
            time.sleep(max(0.0, every_s - (after - now)))
    return out, cost / max(1, len(out))


def _build_workload(tmp: Path) -> Path:
    exe = tmp / "stream_update"
    src = ROOT / "scripts" / "bench_workloads" / "stream_update.cu"
    for flags in (["-arch=native"], ["-arch=sm_90"], []):
        if subprocess.run(["nvcc", "-O3", *flags, "-o", str(exe), str(src)], capture_output=True).returncode == 0:
            return exe
    raise SystemExit("probe_sensors: nvcc could not build stream_update.cu")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT") or "probe-sensors-out")
    ap.add_argument("--iterations", type=int, default=4000, help="stream_update iterations (~3 s on an H100/H200)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not shutil.which("nvcc"):
        print("probe_sensors: nvcc not found", file=sys.stderr)
        return 2

    nv = _nvml()
    nv.nvmlInit()
    h = nv.nvmlDeviceGetHandleByIndex(int(os.environ.get("PROBE_GPU_INDEX", "0")))

    def name(x: Any) -> str:
        return x.decode() if isinstance(x, bytes) else str(x)

    def instant_w() -> float:
        r = nv.nvmlDeviceGetFieldValues(h, [FI_POWER_INSTANT])[0]
        return float(r.value.uiVal) / 1000.0 if r.nvmlReturn == 0 else float("nan")

    def average_w() -> float:
        return nv.nvmlDeviceGetPowerUsage(h) / 1000.0

    def counter_j() -> float:
        return nv.nvmlDeviceGetTotalEnergyConsumption(h) / 1000.0

    facts: dict[str, Any] = {
        "gpu": name(nv.nvmlDeviceGetName(h)), "uuid": name(nv.nvmlDeviceGetUUID(h)),
        "driver": name(nv.nvmlSystemGetDriverVersion()),
        "power_limit_w": nv.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    try:
        facts["temperature_c_start"] = nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)
        facts["sm_clock_mhz_idle"] = nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)
    except Exception as e:  # not every driver answers every query
        facts["clock_error"] = str(e)

    # ---- idle: each channel alone
    time.sleep(2.0)
    inst, c_inst = _poll(instant_w, 4.0)
    avg, c_avg = _poll(average_w, 4.0)
    ctr, c_ctr = _poll(counter_j, 4.0)
    idle_w = statistics.median(v for _, v in inst)
    ctr_slope = (ctr[-1][1] - ctr[0][1]) / (ctr[-1][0] - ctr[0][0])
    facts.update({
        "idle_instant_w": idle_w, "idle_average_w": statistics.median(v for _, v in avg),
        "idle_counter_slope_w": ctr_slope,
        "update_period_instant_s": _median_change_period(inst),
        "update_period_average_s": _median_change_period(avg),
        "update_period_counter_s": _median_change_period(ctr),
        "call_cost_instant_us": c_inst * 1e6, "call_cost_average_us": c_avg * 1e6,
        "call_cost_counter_us": c_ctr * 1e6,
    })

    # ---- load step
    with tempfile.TemporaryDirectory() as td:
        exe = _build_workload(Path(td))
        fast: list[tuple[float, float, float]] = []
        slow: list[tuple[float, float]] = []
        stop = threading.Event()

        def poll_counter() -> None:
            while not stop.is_set():
                slow.append((time.perf_counter(), counter_j()))
                time.sleep(0.025)

        th = threading.Thread(target=poll_counter, daemon=True)
        th.start()
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 1.0:
            fast.append((time.perf_counter(), instant_w(), average_w()))
            time.sleep(0.005)
        t_launch = time.perf_counter()
        proc = subprocess.Popen([str(exe), str(args.iterations)], stdout=subprocess.DEVNULL)
        while proc.poll() is None:
            fast.append((time.perf_counter(), instant_w(), average_w()))
            time.sleep(0.005)
        t_exit = time.perf_counter()
        t_settle_end = t_exit + 10.0
        settled_at = float("nan")
        within_since = None
        while time.perf_counter() < t_settle_end:
            t = time.perf_counter()
            p = instant_w()
            fast.append((t, p, average_w()))
            if abs(p - idle_w) <= 0.05 * idle_w:
                within_since = within_since if within_since is not None else t
                if t - within_since >= 0.5 and settled_at != settled_at:
                    settled_at = within_since - t_exit
                    t_settle_end = min(t_settle_end, t + 1.0)
            else:
                within_since = None
            time.sleep(0.005)
        stop.set()
        th.join()

    run = [(t, i, a) for t, i, a in fast if t_launch <= t <= t_exit]
    peak_inst = max(i for _, i, _ in run) if run else float("nan")
    half = idle_w + 0.5 * (statistics.median(i for _, i, _ in run[len(run) // 2:]) - idle_w) if run else float("nan")
    t_inst_half = next((t for t, i, _ in fast if t >= t_launch and i >= half), float("nan"))
    t_avg_half = next((t for t, _, a in fast if t >= t_launch and a >= half), float("nan"))

    # Does the averaged reading follow a 1 s trailing mean of the instant one?
    def trailing_mean(t: float, width: float = 1.0) -> float:
        vals = [i for tt, i, _ in fast if t - width <= tt <= t]
        return statistics.fmean(vals) if vals else float("nan")

    rows = [(t, i, a, trailing_mean(t)) for t, i, a in fast if t_launch - 0.5 <= t <= t_exit + 2.0][::4]
    err_raw = statistics.fmean(abs(a - i) for _, i, a, _ in rows)
    err_trail = statistics.fmean(abs(a - m) for _, _, a, m in rows)
    e_counter = float("nan")
    inside = [(t, j) for t, j in slow if t_launch <= t <= t_exit]
    if len(inside) >= 2:
        e_counter = inside[-1][1] - inside[0][1]
    e_inst = sum((b[0] - a[0]) * a[1] for a, b in zip(run[:-1], run[1:]))
    facts.update({
        "run_s": t_exit - t_launch, "run_peak_instant_w": peak_inst,
        "run_energy_counter_gross_j": e_counter, "run_energy_instant_gross_j": e_inst,
        "average_lag_s": t_avg_half - t_inst_half,
        "average_vs_instant_mean_abs_w": err_raw, "average_vs_1s_trailing_mean_abs_w": err_trail,
        "average_is_1s_moving_average": bool(err_trail < 0.5 * err_raw),
        "settle_after_exit_s": settled_at,
    })
    try:
        facts["temperature_c_end"] = nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)
    except Exception:
        pass
    nv.nvmlShutdown()

    (out / "probe_sensors.json").write_text(json.dumps(facts, indent=2, sort_keys=True))
    lines = [f"# Sensor facts: {facts['gpu']}, driver {facts['driver']}, {facts['date']}", "",
             "| fact | value |", "|---|---:|"]
    for k, v in facts.items():
        if k in ("gpu", "driver", "date", "uuid"):
            continue
        lines.append(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |")
    (out / "probe_sensors.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Start-up cost of the sandbox per run: host runner (no isolation) vs bubblewrap.

Builds a program that does nothing (through the sandbox, like a candidate), then runs it N times
with each runner through `run_app`, the path every measured repeat takes, interleaved (A B A B)
so that machine load hits both alike. Two figures per runner:

- wall: exec to reap as the run records it (`RunResult.wall_s`), the window the meter measures;
- call: the whole `run_app` call (fresh folder copy, cgroup, launch, report, cleanup).

Usage: python scripts/bench_sandbox.py [--runs 50] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from lassi_batch.core.config import AppConfig, PlatformBuild, PlatformConfig
from lassi_batch.sandbox.bwrap import BwrapRunner
from lassi_batch.sandbox.toolchain import HostRunner, build, prepare_workdir, run_app

SOURCE = "int main() { return 0; }\n"


def _stats(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"median_ms": 1e3 * statistics.median(xs), "p90_ms": 1e3 * xs[int(0.9 * (len(xs) - 1))],
            "min_ms": 1e3 * xs[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    plat = PlatformConfig(kind="cpu", compiler="g++ -O1")
    with tempfile.TemporaryDirectory(prefix="lassi-bench-sandbox-") as tmp:
        src = Path(tmp, "src")
        src.mkdir()
        (src / "main.cpp").write_text(SOURCE)
        app = AppConfig(name="noop", path=src, platforms={"cpu": PlatformBuild(files=["main.cpp"])}, args=[],
                        test_args=[], time_limit_s=30.0, memory_limit_mb=1024)
        wd = Path(tmp, "build")
        prepare_workdir(app, "cpu", wd)
        b = build(app, plat, wd)
        if not b.ok:
            raise SystemExit(f"build failed: {b.log.stderr.strip()[-300:]}")
        runners = {"host (sandbox = none)": HostRunner(), "bwrap": BwrapRunner("cpu")}
        wall: dict[str, list[float]] = {k: [] for k in runners}
        call: dict[str, list[float]] = {k: [] for k in runners}
        for _ in range(a.runs):
            for name, runner in runners.items():
                t0 = time.perf_counter()
                r = run_app(app, plat, wd, [], runner=runner)
                call[name].append(time.perf_counter() - t0)
                if not r.ok:
                    raise SystemExit(f"{name}: run failed: {r.error}")
                wall[name].append(r.wall_s)
    out = {"runs": a.runs, "host": platform.node(), "cpus": os.cpu_count(),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "results": {k: {"wall": _stats(wall[k]), "call": _stats(call[k])} for k in runners}}
    print(f"{a.runs} runs each, interleaved; {out['date']}; {out['cpus']} CPUs")
    print(f"{'runner':24} {'wall median':>12} {'wall p90':>10} {'call median':>12} {'call p90':>10}")
    for k, v in out["results"].items():
        print(f"{k:24} {v['wall']['median_ms']:10.1f}ms {v['wall']['p90_ms']:8.1f}ms "
              f"{v['call']['median_ms']:10.1f}ms {v['call']['p90_ms']:8.1f}ms")
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Start-up cost of the sandbox per run: host runner (no isolation) vs bubblewrap.

Builds a program that does nothing (CPU), or only initialises the GPU (`--platform cuda`:
cudaFree(0), so device nodes and driver libraries must reach it), through the sandbox like a
candidate, then runs it N times with each runner through `run_app`, the path every measured
repeat takes, interleaved (A B A B) so that machine load hits both alike. The build and every
bwrap run happen under the sandbox's seccomp filter (a CUDA run thus checks that the runtime
starts under it); the output names the filter and what a sandboxed process reports of it.
Two figures per runner:

- wall: exec to reap as the run records it (`RunResult.wall_s`), the window the meter measures;
- call: the whole `run_app` call (fresh folder copy, cgroup, launch, report, cleanup).

Usage: python scripts/bench_sandbox.py [--runs 50] [--platform cpu|cuda] [--json F] [--out DIR]
(--out writes DIR/bench_sandbox.md and DIR/bench_sandbox.json)
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
from lassi_batch.core.errors import LassiError
from lassi_batch.sandbox import syscall_filter
from lassi_batch.sandbox.bwrap import BwrapRunner
from lassi_batch.sandbox.limits import Limits
from lassi_batch.sandbox.toolchain import HostRunner, build, prepare_workdir, run_app, run_process

SOURCES = {
    "cpu": ("main.cpp", "int main() { return 0; }\n"),
    "cuda": ("main.cu", "#include <cstdio>\n#include <cuda_runtime.h>\nint main() {\n  cudaError_t e = cudaFree(0);\n"
                        "  if (e != cudaSuccess) std::printf(\"cudaFree: %s\\n\", cudaGetErrorString(e));\n"
                        "  return e == cudaSuccess ? 0 : 1;\n}\n"),
}


def _filter_seen(kind: str, folder: Path) -> str:
    """The filter lassi-batch builds, and the seccomp mode a sandboxed process reports (2: filter)."""
    built = syscall_filter.build()
    r = run_process(["/bin/sh", "-c", "sed -n 's/^Seccomp:[[:space:]]*//p' /proc/self/status"], folder,
                    Limits(time_s=30), runner=BwrapRunner(kind))
    inside = r.stdout.strip() or r.error or "?"
    return f"{built.rules} rules, {built.instructions} BPF instructions ({built.library}); Seccomp mode inside: {inside}"


def _stats(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"median_ms": 1e3 * statistics.median(xs), "p90_ms": 1e3 * xs[int(0.9 * (len(xs) - 1))],
            "min_ms": 1e3 * xs[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--platform", choices=sorted(SOURCES), default="cpu")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    kind = a.platform
    plat = PlatformConfig(kind="cpu", compiler="g++ -O1") if kind == "cpu" else PlatformConfig(kind=kind)
    fname, text = SOURCES[kind]
    with tempfile.TemporaryDirectory(prefix="lassi-bench-sandbox-") as tmp:
        src = Path(tmp, "src")
        src.mkdir()
        (src / fname).write_text(text)
        app = AppConfig(name="noop", path=src, platforms={kind: PlatformBuild(files=[fname])}, args=[],
                        test_args=[], time_limit_s=60.0, memory_limit_mb=16384)
        wd = Path(tmp, "build")
        prepare_workdir(app, kind, wd)
        b = build(app, plat, wd)
        if not b.ok:
            raise SystemExit(f"build failed: {b.log.stderr.strip()[-300:]}")
        probe = Path(tmp, "probe")
        probe.mkdir()
        seen = _filter_seen(kind, probe)
        runners = {"host (sandbox = none)": HostRunner(), "bwrap": BwrapRunner(kind)}
        wall: dict[str, list[float]] = {k: [] for k in runners}
        call: dict[str, list[float]] = {k: [] for k in runners}
        for _ in range(a.runs):
            for name, runner in runners.items():
                t0 = time.perf_counter()
                r = run_app(app, plat, wd, [], runner=runner)
                call[name].append(time.perf_counter() - t0)
                if not r.ok:
                    raise SystemExit(f"{name}: run failed: {r.error or f'exit {r.returncode}'} {r.stdout.strip()}")
                wall[name].append(r.wall_s)
    out = {"runs": a.runs, "platform": kind, "host": platform.node(), "cpus": os.cpu_count(),
           "kernel": platform.release(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "filter": seen,
           "results": {k: {"wall": _stats(wall[k]), "call": _stats(call[k])} for k in runners}}
    lines = [f"{a.runs} runs each ({kind}), interleaved; {out['date']}; {out['cpus']} CPUs; kernel {out['kernel']}",
             f"seccomp filter: {seen}", "",
             "| runner | wall median | wall p90 | call median | call p90 |", "|---|---:|---:|---:|---:|"]
    for k, v in out["results"].items():
        lines.append(f"| {k} | {v['wall']['median_ms']:.1f} ms | {v['wall']['p90_ms']:.1f} ms | "
                     f"{v['call']['median_ms']:.1f} ms | {v['call']['p90_ms']:.1f} ms |")
    print("\n".join(lines))
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "bench_sandbox.md").write_text("\n".join(lines) + "\n")
        (a.out / "bench_sandbox.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    try:
        main()
    except LassiError as e:  # e.g. no usable bubblewrap here: one line, not a traceback
        raise SystemExit(f"bench_sandbox: {e}") from None

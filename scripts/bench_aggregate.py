#!/usr/bin/env python3
"""Synthetic trial files at any count, and the aggregation benchmark.

    python scripts/bench_aggregate.py generate DIR --trials 1320 [--apps 22] [--samples 400] [--copies 64]
    python scripts/bench_aggregate.py generate DIR --trials 100000 --copies 64 --iterations 1 --samples 40
    python scripts/bench_aggregate.py bench DIR            # I/O floor vs `aggregate`, peak memory

A generated file has the trial archive's layout (schema.py): root attributes, candidates with
their screening attributes and findings, one measurement group per candidate with a raw power
trace (instant and 1 s averaged power, a 100 ms energy counter, an idle window, a tail after
exit) whose figures come from power.energy, a result group and the /summary group. Energies,
pass/fail outcomes and timings are drawn per trial from a seeded generator, so the study is
reproducible and its figures are internally consistent (the summary's reduction is the one the
candidates' energies imply).

The benchmark times (a) the I/O floor: open every file with plain h5py and read all attributes
of /summary, (b) the library aggregation (`aggregate_study`, writing study.h5), each in a fresh
process, and reports the ratio and each process's peak memory (ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import h5py
import numpy as np

from lassi_batch.core.records import Candidate
from lassi_batch.power.energy import analyze
from lassi_batch.power.trace import Measurement, PowerTrace, Window
from lassi_batch.store.measurement import write_measurement
from lassi_batch.store.schema import SCHEMA, SCHEMA_VERSION, child_name, put_mapping, put_text, put_value, set_attrs
from lassi_batch.store.summary import TrialSummary, screening_counts, write_summary

LIBVER = ("v108", "v110")  # the trial archive's format: checksummed object headers
_TEXT = ("build_log", "stdout", "stderr", "judge_text", "description")
_JSON = {"files": "files", "verifier": "verifier_json", "work_counts": "work_counts_json"}


# ------------------------------------------------------------------ traces


def synthetic_trace(rng: np.random.Generator, runtime_s: float, run_w: float, idle_w: float,
                    samples: int, device: str = "Synthetic GPU") -> tuple[PowerTrace, Window]:
    """A run of `runtime_s` at about `run_w` above an `idle_w` floor, sampled `samples` times.

    The averaged channel is a 1 s moving average of the instant one (as NVML's on Hopper), so it
    lags the load; the energy counter integrates the instant power and updates every 100 ms.
    """
    pre, tail, post = 0.5, 0.4, 0.3
    t = np.linspace(-pre, runtime_s + tail + post, samples)
    dt = t[1] - t[0]
    p = np.full_like(t, idle_w)
    on = (t >= 0) & (t <= runtime_s)
    p[on] = run_w * (1 + 0.03 * rng.standard_normal(on.sum()))
    after = t > runtime_s
    p[after] = idle_w + (run_w - idle_w) * 0.5 * np.exp(-(t[after] - runtime_s) / 0.08)
    p += 0.5 * rng.standard_normal(t.size)
    width = max(1, int(round(1.0 / dt)))
    padded = np.concatenate((np.full(width - 1, idle_w), p))
    avg = np.convolve(padded, np.ones(width) / width, mode="valid")
    cum = np.concatenate(([0.0], np.cumsum((p[1:] + p[:-1]) / 2 * np.diff(t)))) + 1000.0
    step = np.floor((t + pre) / 0.1)  # counter value changes once per 100 ms
    first = np.concatenate(([True], step[1:] != step[:-1]))
    held = np.maximum.accumulate(np.where(first, np.arange(t.size), 0))
    counter = cum[held]
    tr = PowerTrace(meter="nvml", device=device, device_id="GPU-synthetic", t=t, power_instant_w=p,
                    power_average_w=avg, counter_t=t.copy(), counter_j=counter,
                    temperature_c=np.full_like(t, 45.0))
    w = Window(t_idle_start=-pre, t_launch=0.0, t_exit=runtime_s, t_settled=runtime_s + tail,
               t_end=float(t[-1]))
    return tr, w


def _measure(rng, runtime_s, run_w, idle_w, samples) -> Measurement:
    tr, w = synthetic_trace(rng, runtime_s, run_w, idle_w, samples)
    a = analyze(tr, w)
    return Measurement(trace=tr, window=w, returncode=0, figures=a.figures,
                       attrs={"repeat": 0, "energy_method": a.method, "idle_source": a.idle_source})


# ------------------------------------------------------------------ one trial


def _write_candidate(g: h5py.Group, c: Candidate, extra: dict) -> None:
    for name in ("key", "stage", "iteration", "parent", "temperature", "self_corrections", "status", "build_ok",
                 "run_ok", "returncode", "judge_verdict", "verifier_verdict", "passed", "energy_j", "runtime_s", "power_w"):
        v = getattr(c, name)
        if v is not None:
            put_value(g, name, v)
    for name in _TEXT:
        put_text(g, name, getattr(c, name))
    for fld, ds in _JSON.items():
        put_text(g, ds, json.dumps(getattr(c, fld), sort_keys=True))
    for k, v in extra.items():
        put_value(g, k, v)


FINDINGS = [("checksum", "integrity", "checksum differs beyond tolerance"),
            ("work", "integrity", "measured work was removed"),
            ("numbers", "cosmetic", "the candidate prints fewer digits"),
            ("energy", "held", "suspiciously large saving")]


def write_trial(path: Path, study: str, app: str, platform: str, index: int, seed: int,
                iterations: int = 6, samples: int = 400, status: str = "done") -> TrialSummary:
    """One synthetic trial file at `path`; returns the summary it wrote."""
    rng = np.random.default_rng(seed)
    app_scale = 1.0 + (sum(app.encode()) % 17) / 4.0
    idle = 60.0 + 10 * rng.random()
    src_rt, src_w = 0.4 * app_scale, 150.0 + 40 * rng.random()
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", libver=LIBVER, locking=False) as f:
        set_attrs(f, {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "package_version": "0.1.0",
                      "created": "2026-12-01T00:00:00Z", "updated": "2026-12-01T00:00:00Z",
                      "trial_id": f"{study}-{app}-{platform}-{index}", "app": app, "platform": platform,
                      "status": "done" if status == "done" else ("failed" if status == "failed" else "running"),
                      "error": ""})
        for name in ("config", "environment", "steps", "llm_calls", "context", "plans", "stages"):
            f.create_group(name)
        # the figures below are those of a study without confirmation and without a margin
        put_mapping(f["config"], {"study": {"measure": {"confirm_repeats": 0, "min_improvement": 0.0}}})
        cands = f.create_group("candidates")
        rows = []  # (candidate, measurement or None)
        src = Candidate(key="s0/source", stage=0, status="measured", build_ok=True, run_ok=True, returncode=0,
                        files={"main.cu": "// source"}, stdout="checksum = 1.0\nPASS\n", passed=False)
        rows.append((src, _measure(rng, src_rt, src_w, idle, samples)))
        p_ok = 0.35 + 0.5 * rng.random()  # this trial's luck
        for i in range(iterations + 1):
            stage = 1 if i == 0 else 3
            c = Candidate(key=f"s{stage}/i{i}/eval0", stage=stage, iteration=i, parent=0,
                          self_corrections=int(rng.integers(0, 3)), files={"main.cu": f"// v{i}"})
            u = rng.random()
            if u < 0.12:
                c.status = "build_failed"
                rows.append((c, None))
                continue
            c.build_ok = True
            if u < 0.2:
                c.status, c.returncode = "run_failed", 1
                rows.append((c, None))
                continue
            c.run_ok, c.returncode, c.status = True, 0, "measured"
            cut = rng.uniform(-0.1, 0.6 if stage == 3 else 0.35)
            m = _measure(rng, src_rt * (1 - cut), src_w * (1 - 0.1 * rng.random()), idle, samples)
            findings = [dict(zip(("kind", "severity", "message"), FINDINGS[j], strict=True)) for j in range(len(FINDINGS))
                        if rng.random() < 0.08]
            integrity = any(x["severity"] == "integrity" for x in findings)
            c.verifier_verdict = "fail" if integrity else ("warn" if findings else "pass")
            c.verifier = {"verdict": c.verifier_verdict, "findings": findings}
            c.judge_verdict = "VALID" if rng.random() < p_ok else "INVALID"
            c.passed = c.judge_verdict == "VALID" and not integrity
            rows.append((c, m))
        for cid, (c, m) in enumerate(rows):
            g = cands.create_group(child_name(cid))
            if m is not None:
                c.energy_j, c.runtime_s, c.power_w = (m.figures["energy_net_j"], m.figures["runtime_s"],
                                                      m.figures["power_avg_w"])
                write_measurement(g.create_group("measurements").create_group("000000"), m)
            verdict = "not_run" if m is None else ("pass" if c.passed else "fail")
            findings = c.verifier.get("findings", [])
            _write_candidate(g, c, {"verdict": verdict, "findings_json": json.dumps(findings),
                                    "confirmed_energy_j": math.nan})
        source = rows[0][0]
        vanilla = rows[1][0]
        best = source
        for c, _ in rows[1:]:
            if c.passed and c.energy_j is not None and c.energy_j < best.energy_j:
                best = c
        red = 1 - best.energy_j / source.energy_j if best is not source else 0.0
        vred = (1 - vanilla.energy_j / source.energy_j) if vanilla.passed else 0.0
        n_llm = 4 + 3 * iterations
        t_llm, t_build, t_meas, t_lock = (60 + 600 * rng.random(), 20 + 40 * rng.random(),
                                          30 + 30 * rng.random(), 10 * rng.random())
        res = f.create_group("result")
        set_attrs(res, {"source_candidate": 0, "best_candidate": rows.index(next(r for r in rows if r[0] is best)),
                        "source_energy_j": source.energy_j, "best_energy_j": best.energy_j, "reduction": red,
                        "improved": best is not source, "best_iteration": best.iteration})
        cats = ["memory_hierarchy", "algorithmic", "device_specific", "parallelism"]
        opts = [{"name": f"opt{j}", "category": cats[int(rng.integers(0, 4))], "description": ""}
                for j in range(int(rng.integers(1, 4)))] if best is not source else []
        put_text(res, "optimizations_json", json.dumps(opts))
        put_text(res, "report", "")
        s = TrialSummary(
            study=study, app=app, platform=platform, trial_index=index, trial_id=f"{study}-{app}-{platform}-{index}",
            status=status, source_energy_j=source.energy_j, best_energy_j=best.energy_j,
            vanilla_energy_j=vanilla.energy_j if vanilla.passed else math.nan,
            selection_best_energy_j=best.energy_j, reduction=red, vanilla_reduction=vred, selection_reduction=red,
            source_runtime_s=source.runtime_s, best_runtime_s=best.runtime_s, source_power_w=source.power_w,
            best_power_w=best.power_w, passed=best is not source, vanilla_passed=vanilla.passed,
            best_candidate=-1 if best is source else rows.index(next(r for r in rows if r[0] is best)),
            best_iteration=best.iteration if best is not source else -1,
            best_self_corrections=best.self_corrections if best is not source else -1,
            n_candidates=len(rows), n_passed=sum(c.passed for c, _ in rows), n_llm_calls=n_llm,
            n_self_corrections=sum(c.self_corrections for c, _ in rows),
            prompt_tokens=int(n_llm * 3000 * (1 + rng.random())), completion_tokens=int(n_llm * 900 * (1 + rng.random())),
            time_total_s=t_llm + t_build + t_meas + t_lock + 5, time_llm_s=t_llm, time_build_s=t_build,
            time_measure_s=t_meas, time_lock_wait_s=t_lock, generator_model="gpt-4o", judge_model="gpt-4o",
            meter="nvml", sandbox="bwrap", gpu_name="Synthetic GPU", host="node01", attempts=1)
        for k, v in screening_counts(f).items():
            setattr(s, k, v)
        write_summary(f, s)
    return s


def generate(out: Path, trials: int, apps: int = 22, platforms: tuple[str, ...] = ("cuda", "hip"),
             samples: int = 400, iterations: int = 6, study: str = "synthetic", seed: int = 1) -> list[Path]:
    """`trials` files spread over `apps` x `platforms`, 30 per pair when trials = apps x platforms x 30."""
    pairs = [(f"app{a:02d}", p) for a in range(apps) for p in platforms]
    paths = []
    for i in range(trials):
        app, plat = pairs[i % len(pairs)]
        idx = i // len(pairs)
        path = out / "trials" / f"{app}.{plat}.t{idx:03d}.h5"
        write_trial(path, study, app, plat, idx, seed * 1_000_003 + i, iterations=iterations, samples=samples)
        paths.append(path)
    return paths


def generate_copies(out: Path, trials: int, apps: int = 22, platforms: tuple[str, ...] = ("cuda", "hip"),
                    templates: int = 64, iterations: int = 1, samples: int = 40, study: str = "synthetic",
                    seed: int = 1, jobs: int = 1) -> int:
    """Many files fast: `templates` full trials written by write_trial, then byte copies of them
    whose summary identity (app, platform, index, id) and reduction are rewritten in place, so
    every file is a distinct trial of the study with the full layout. Returns the count."""
    tdir = out / "templates"
    for i in range(templates):
        write_trial(tdir / f"t{i}.h5", study, "tpl", "cuda", i, seed * 7919 + i, iterations=iterations,
                    samples=samples)
    chunks = [(out, tdir, templates, apps, platforms, study, seed, a, min(a + 2000, trials))
              for a in range(0, trials, 2000)]
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as ex:
            list(ex.map(_copy_chunk, chunks))
    else:
        for c in chunks:
            _copy_chunk(c)
    for p in tdir.iterdir():
        p.unlink()
    tdir.rmdir()
    return trials


def _copy_chunk(args: tuple) -> None:
    out, tdir, templates, apps, platforms, study, seed, start, stop = args
    blobs = [(tdir / f"t{i}.h5").read_bytes() for i in range(templates)]
    reds = []
    for i in range(templates):
        with h5py.File(tdir / f"t{i}.h5", "r", locking=False) as f:
            reds.append(float(f["summary"].attrs["reduction"]))
    rng = np.random.default_rng(seed + start)
    pairs = [(f"app{a:02d}", p) for a in range(apps) for p in platforms]
    for i in range(start, stop):
        app, plat = pairs[i % len(pairs)]
        idx = i // len(pairs)
        j = i % templates
        path = out / "trials" / f"{app}.{plat}.t{idx:06d}.h5"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blobs[j])
        with h5py.File(path, "r+", locking=False) as f:
            ident = {"app": app, "platform": plat, "trial_id": f"{study}-{app}-{plat}-{idx}"}
            set_attrs(f, ident)
            g = f["summary"]
            set_attrs(g, ident)
            g.attrs["trial_index"] = idx
            g.attrs["reduction"] = reds[j] * rng.uniform(0.8, 1.2)


# ------------------------------------------------------------------ benchmark

_FLOOR = r"""
import sys, time, resource, os, h5py
t0 = time.perf_counter(); n = 0
for folder, dirs, names in os.walk(sys.argv[1]):
    for name in names:
        if name.endswith('.h5'):
            with h5py.File(os.path.join(folder, name), 'r', locking=False) as f:
                if 'summary' in f:
                    a = f['summary'].attrs
                    d = {k: a[k] for k in a}
                    n += 1
r = resource.getrusage(resource.RUSAGE_SELF)
print(n, time.perf_counter() - t0, r.ru_utime + r.ru_stime, r.ru_maxrss)
"""

_AGG = r"""
import sys, time, resource
from pathlib import Path
from lassi_batch.analysis.study import aggregate_study
t0 = time.perf_counter()
groups, tables, skipped = aggregate_study(Path(sys.argv[1]), Path(sys.argv[2]))
r = resource.getrusage(resource.RUSAGE_SELF)
print(sum(g.n for g in groups.values()), time.perf_counter() - t0, r.ru_utime + r.ru_stime, r.ru_maxrss)
"""


def _run(code: str, *args: str) -> tuple[int, float, float, float]:
    """(files, wall s, CPU s, peak RSS MiB) of `code` in a fresh interpreter (imports included in CPU s)."""
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True).stdout
    n, secs, cpu, rss_kib = out.split()
    return int(n), float(secs), float(cpu), float(rss_kib) / 1024.0


def bench(folder: Path, repeat: int = 3) -> None:
    out = folder.parent / (folder.name + "-study.h5")
    floors, aggs = [], []
    for _ in range(repeat):
        floors.append(_run(_FLOOR, str(folder)))
        aggs.append(_run(_AGG, str(folder), str(out)))
    fl, ag = min(x[1] for x in floors), min(x[1] for x in aggs)
    flc, agc = min(x[2] for x in floors), min(x[2] for x in aggs)
    print(f"trials: {floors[0][0]} files, {aggs[0][0]} aggregated; best of {repeat}, runs alternated")
    print(f"I/O floor (open + read /summary attrs): wall {fl:.2f} s  CPU {flc:.2f} s  "
          f"peak RSS {max(x[3] for x in floors):.0f} MiB")
    print(f"aggregate (all tables, study.h5):       wall {ag:.2f} s  CPU {agc:.2f} s  "
          f"peak RSS {max(x[3] for x in aggs):.0f} MiB")
    print(f"ratio aggregate / floor: wall {ag / fl:.2f}, CPU {agc / flc:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("out", type=Path)
    g.add_argument("--trials", type=int, default=1320)
    g.add_argument("--apps", type=int, default=22)
    g.add_argument("--samples", type=int, default=400)
    g.add_argument("--iterations", type=int, default=6)
    g.add_argument("--copies", type=int, default=0,
                   help="write this many distinct full trials, then make the rest as rewritten copies (fast)")
    g.add_argument("--jobs", type=int, default=1, help="processes for --copies")
    b = sub.add_parser("bench")
    b.add_argument("folder", type=Path)
    b.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    if a.cmd == "generate":
        t0 = time.perf_counter()
        if a.copies:
            generate_copies(a.out, a.trials, a.apps, templates=a.copies, iterations=a.iterations, samples=a.samples,
                            jobs=a.jobs)
        else:
            generate(a.out, a.trials, a.apps, samples=a.samples, iterations=a.iterations)
        paths = list((a.out / "trials").glob("*.h5"))
        size = sum(p.stat().st_size for p in paths)
        print(f"{len(paths)} trial files, {size / 2**20:.1f} MiB, in {time.perf_counter() - t0:.1f} s "
              f"(peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")
    else:
        bench(a.folder, a.repeat)


if __name__ == "__main__":
    os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")
    main()

#!/usr/bin/env python3
"""Write amplification and commit latency of the trial archive: the journalled design (v2)
against the copy-per-commit design it replaced (v1: copy the file, edit the copy, fsync,
rename, for every step).

A synthetic 200-step trial shaped like a real one (120 LLM calls, 40 candidates with three
measured traces each and their screening updates, five stage ends) is written both ways into a
temporary folder on the file system given by --dir. Printed: total bytes written / final file
size, and commit latency percentiles. Payloads are the same for both designs; the v1 writer
below repeats exactly what each v1 commit did to the disk (shutil.copyfile, an h5py edit of the
copy, fsync, os.replace, folder fsync) with the v2 codec, so only the commit strategy differs.

    python scripts/bench_archive.py [--dir /tmp] [--samples 10000] [--seed 1]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from lassi_batch.core.records import Candidate, LLMCall
from lassi_batch.power.trace import Measurement, PowerTrace, Window
from lassi_batch.store.archive import LIBVER, TrialArchive, _put_fields, _write_candidate
from lassi_batch.store.measurement import write_measurement
from lassi_batch.store.schema import child_name, put_text, set_attrs

STAGE_ENDS = {2: "stage0_profile", 8: "stage1_vanilla", 14: "stage2_context", 195: "stage3_iterate"}


def code_text(rng: random.Random, lines: int) -> str:
    words = ["for", "int", "double", "a[i]", "+=", "b[j]", "*", "__global__", "threadIdx.x", "sum", "if", "return"]
    return "\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) + ";" for _ in range(lines))


def trace(rng: np.random.Generator, n: int) -> Measurement:
    t = np.cumsum(rng.uniform(0.009, 0.011, n))
    p = 150 + np.cumsum(rng.normal(0, 0.5, n))
    tr = PowerTrace(meter="nvml", device="H100", device_id="GPU-0", t=t, power_instant_w=p,
                    power_average_w=np.convolve(p, np.ones(10) / 10, "same"), temperature_c=np.round(40 + p / 20),
                    counter_t=t[::10], counter_j=np.cumsum(p[::10]) * 0.1)
    return Measurement(tr, Window(float(t[0]), float(t[n // 10]), float(t[-n // 10]), float(t[-n // 20]), float(t[-1])),
                       0, {"energy_j": float(p.sum() * 0.01)}, {"repeat": 0})


def steps(seed: int, samples: int):
    """(kind, payload) for 200 steps: 120 LLM calls, 40 evaluations, 40 screening updates."""
    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    out = []
    for i in range(40):
        code = code_text(rng, 200)
        for j in range(3):
            msg = [{"role": "system", "content": code_text(rng, 20)}, {"role": "user", "content": code}]
            out.append(("llm", LLMCall(key=f"i{i}/c{j}", kind="refactor", model="gpt-4.1", messages=msg,
                                       reply=code_text(rng, 120), prompt_tokens=5000, completion_tokens=2500)))
        cand = Candidate(key=f"i{i}/eval", stage=3, iteration=i, files={"main.cu": code}, build_log=code_text(rng, 20),
                         stdout=code_text(rng, 10), status="measured", build_ok=True, run_ok=True, energy_j=100.0)
        out.append(("evaluate", (cand, [trace(nrng, samples) for _ in range(3)])))
        out.append(("screen", cand))
    return out


EVERY_STAGE_END = False  # --every-stage-end: also consolidate at stage 3's end (not what the trial does)


def run_v2(folder: Path, plan) -> tuple[int, int, list[float]]:
    path = folder / "v2.h5"
    lat: list[float] = []
    cons: list[float] = []
    with TrialArchive.create(path, trial_id="bench/app/cuda/0", app="app", platform="cuda", config={"study": {}},
                             environment={"host": "bench"}) as ar:
        ids: dict[str, int] = {}
        for n, (kind, payload) in enumerate(plan):
            t0 = time.perf_counter()
            with ar.transaction():
                if kind == "llm":
                    k = ar.add_llm_call(payload)
                    ar.record_step(payload.key, "llm", {"llm_call": k}, 0.0, 1.0)
                elif kind == "evaluate":
                    cand, ms = payload
                    cid = ar.add_candidate(cand)
                    ids[cand.key] = cid
                    for m in ms:
                        ar.add_measurement(cid, m)
                    ar.record_step(cand.key, "evaluate", {"candidate": cid}, 0.0, 1.0)
                else:
                    payload.passed, payload.judge_verdict, payload.judge_text = True, "VALID", "VERDICT: VALID " * 40
                    ar.update_candidate(ids[payload.key], payload)
                    ar.record_step(payload.key + "/judge", "llm", {}, 0.0, 1.0)
            lat.append(time.perf_counter() - t0)
            if n in STAGE_ENDS:
                ar.set_stage_time(STAGE_ENDS[n], 0.0, 1.0)
                if EVERY_STAGE_END or STAGE_ENDS[n] != "stage3_iterate":  # the trial: the stop consolidates stage 3
                    t0 = time.perf_counter()
                    ar.checkpoint()
                    cons.append(time.perf_counter() - t0)
        ar.set_stage_time("stage4_report", 0.0, 1.0)
        ar.set_status("done")
        t0 = time.perf_counter()
    cons.append(time.perf_counter() - t0)  # closing consolidates the stop
    written = ar.stats.bytes_written + ar.lease_bytes_written
    print(f"  v2: {ar.stats.commits} journal entries, {ar.stats.consolidations} consolidations "
          f"({', '.join(f'{c * 1000:.0f}' for c in cons)} ms)")
    return written, path.stat().st_size, lat


class V1Writer:
    """The v1 commit: copy the committed file, edit the copy, fsync, rename, fsync the folder."""

    def __init__(self, path: Path):
        self.path, self.written = path, 0
        with h5py.File(path, "w", libver=LIBVER) as f:
            for g in ("config", "environment", "steps", "llm_calls", "candidates", "stages", "summary"):
                f.create_group(g)
        self.written += path.stat().st_size

    def commit(self, edit) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        shutil.copyfile(self.path, tmp)
        with h5py.File(tmp, "r+", libver=LIBVER) as f:
            edit(f)
        fd = os.open(tmp, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        self.written += tmp.stat().st_size  # the whole file is written again
        os.replace(tmp, self.path)
        dfd = os.open(self.path.parent, os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)


def run_v1(folder: Path, plan) -> tuple[int, int, list[float]]:
    w = V1Writer(folder / "v1.h5")
    lat: list[float] = []
    state = {"steps": 0, "calls": 0, "cands": 0}
    ids: dict[str, int] = {}

    def step(f: h5py.File, key: str) -> None:
        set_attrs(f["steps"].create_group(child_name(state["steps"])), {"key": key, "kind": "x", "result_json": "{}"})
        state["steps"] += 1

    for n, (kind, payload) in enumerate(plan):
        t0 = time.perf_counter()
        if kind == "llm":
            def edit(f, call=payload):
                g = f["llm_calls"].create_group(child_name(state["calls"]))
                _put_fields(g, call, skip={"messages", "reply"})
                put_text(g, "messages", str(call.messages))
                put_text(g, "reply", call.reply)
                state["calls"] += 1
                step(f, call.key)
        elif kind == "evaluate":
            def edit(f, p=payload):
                cand, ms = p
                g = f["candidates"].create_group(child_name(state["cands"]))
                ids[cand.key] = state["cands"]
                state["cands"] += 1
                _write_candidate(g, cand, None)
                mg = g.create_group("measurements")
                for r, m in enumerate(ms):
                    write_measurement(mg.create_group(child_name(r)), m)
                step(f, cand.key)
        else:
            def edit(f, cand=payload):
                g = f["candidates"][child_name(ids[cand.key])]
                cand.passed, cand.judge_verdict, cand.judge_text = True, "VALID", "VERDICT: VALID " * 40
                _write_candidate(g, cand, g)
                step(f, cand.key + "/judge")
        w.commit(edit)
        lat.append(time.perf_counter() - t0)
        if n in STAGE_ENDS:
            w.commit(lambda f, name=STAGE_ENDS[n]: f["stages"].require_group(name).attrs.update({"wall_s": 1.0}))
    w.commit(lambda f: f["stages"].require_group("stage4_report").attrs.update({"wall_s": 1.0}))
    return w.written, w.path.stat().st_size, lat


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=None, help="where to write (default: the system temp folder)")
    ap.add_argument("--samples", type=int, default=10_000, help="samples per trace (default 10000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--designs", default="v1,v2", help="which to run (default v1,v2)")
    ap.add_argument("--every-stage-end", action="store_true", help="v2: consolidate at stage 3's end too")
    args = ap.parse_args()
    global EVERY_STAGE_END
    EVERY_STAGE_END = args.every_stage_end
    plan = steps(args.seed, args.samples)
    folder = Path(tempfile.mkdtemp(prefix="bench-archive-", dir=args.dir))
    try:
        print(f"synthetic trial: {len(plan)} steps, 40 candidates x 3 traces of {args.samples} samples, in {folder}")
        print(f"{'design':<28}{'written MB':>11}{'final MB':>10}{'written/final':>14}"
              f"{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}")
        designs = {"v1": ("v1 copy per commit", run_v1), "v2": ("v2 journal + consolidation", run_v2)}
        for name, fn in (designs[d] for d in args.designs.split(",")):
            written, final, lat = fn(folder, steps(args.seed, args.samples))
            print(f"{name:<28}{written / 1e6:>11.1f}{final / 1e6:>10.2f}{written / final:>14.2f}"
                  f"{pct(lat, 50):>9.1f}{pct(lat, 90):>9.1f}{pct(lat, 99):>9.1f}{max(lat) * 1000:>9.1f}")
        print(f"(median commit of v2 over all {len(plan)} steps: {statistics.median(lat) * 1000:.1f} ms)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

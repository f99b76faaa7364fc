#!/usr/bin/env python3
"""Batch benchmarks: trial throughput with node sharing, and a 2,000-trial load test.

    python scripts/bench_batch.py throughput [--platform cpu|cuda] [--trials 3] [--delay 1.0] [--parallel 1,4]
    python scripts/bench_batch.py load [--trials 2000] [--parallel 8]
    python scripts/bench_batch.py --platform cuda --out DIR      # both, as the GPU campaign calls it

Throughput runs the bundled demo study (three apps; `--trials` per app, at most 3, the
transcripts recorded) through the local executor (the same
worker, trial program and per-GPU lock a Slurm node runs) with a replayed LLM that waits
`--delay` seconds per call, once with one trial per node and once with several. The paper's
trials took 10-114 minutes, mostly waiting for the model: a delay of 1 s stands for a 30-60 s
call scaled down 30-60 times, together with the real compile and measured-run times.

Load submits `--trials` trials of a trivial app (a few-line C++ program, a short transcript)
through the local executor and checks that every trial is accounted for, then times `status`.
Results go to OUT/bench_batch.md (and .json).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform as _platform
import statistics
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import h5py

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lassi_batch.batch.manifest import StudyFolder  # noqa: E402
from lassi_batch.batch.status import collect  # noqa: E402
from lassi_batch.batch.submit import Request, commit, prepare, run_local  # noqa: E402
from lassi_batch.store.archive import TrialArchive  # noqa: E402

DEMO = {"cpu": REPO / "datasets" / "examples" / "demo.toml", "cuda": REPO / "datasets" / "examples" / "demo-gpu.toml"}


def _machine() -> str:
    cpu = ""
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = ""
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        pass
    load = os.getloadavg()[0]
    return f"{os.cpu_count()} cores ({cpu or _platform.machine()}){', ' + gpu if gpu else ''}; load average {load:.1f} at start"


def _submit(req: Request, parallel: int) -> tuple[float, list]:
    prep = prepare(req)
    _, settings = commit(prep)
    t0 = time.monotonic()
    results = run_local(prep, settings, parallel)
    return time.monotonic() - t0, results


def _mean_cv(by_app: dict[str, list[float]]) -> float | None:
    cvs = [statistics.stdev(v) / statistics.fmean(v) for v in by_app.values() if len(v) > 1 and statistics.fmean(v) > 0]
    return round(statistics.fmean(cvs), 4) if cvs else None


def throughput(kind: str, trials: int, delay: float, parallels: list[int], out: Path) -> dict:
    rows = []
    for p in parallels:
        folder = out / f"throughput-{kind}-p{p}"
        over = {"study": {"out": str(folder), "trials": trials, "k": [1]},
                "platform": {"kind": kind, "meter": "auto" if kind == "cuda" else "estimate"},
                "llm": {"replay_delay_s": delay, "max_iterations": 3},
                "measure": {"random_delay_s": 0.0} if kind == "cpu" else {}}
        wall, results = _submit(Request(DEMO[kind], executor="local", overrides=over,
                                        trials_per_node=p, fresh=True), p)
        done = sum(r.outcome == "done" for r in results)
        src: dict[str, list[float]] = {}
        waits, llm, rep_cv = [], 0, []
        retaken = confirmed = improved = 0
        for r in results:
            path = StudyFolder(folder).archive(r.trial)
            if r.outcome != "done":
                print(f"{r.trial.key}: {r.outcome} {r.reason}", file=sys.stderr)
                err = StudyFolder(folder).stderr(r.trial)
                print("\n".join(err.read_text(errors="replace").splitlines()[-8:]) if err.exists() else "", file=sys.stderr)
            if not path.exists():
                continue
            with TrialArchive.open(path, writable=False) as ar:
                res = ar.result()
                if res.get("source_energy_j"):
                    src.setdefault(r.trial.app, []).append(float(res["source_energy_j"]))
                if float(res.get("reduction") or 0.0) > 0:
                    improved += 1
                    confirmed += bool(res.get("confirmed"))
                llm += len(ar.llm_calls())
                for c in ar.candidates():
                    ms = ar.measurements(c.id, traces=False)
                    waits += [float(m.attrs.get("lock_wait_s", 0.0)) for m in ms]
                    retaken += sum(int(m.attrs.get("retakes", 0)) for m in ms)  # contaminated or unsettled tries
                    groups: dict[tuple[str, str], list[float]] = {}  # one program's runs in one series
                    for m in ms:
                        key = (str(m.attrs.get("phase", "select")), str(m.attrs.get("confirm_tag", "")))
                        groups.setdefault(key, []).append(float(m.figures.get("energy_net_j", float("nan"))))
                    rep_cv += [statistics.stdev(v) / statistics.fmean(v) for v in groups.values()
                               if len(v) > 1 and all(map(math.isfinite, v)) and statistics.fmean(v) > 0]
        n = len(results)
        rows.append({"parallel": p, "trials": n, "done": done, "wall_s": round(wall, 1),
                     "trials_per_node_hour": round(3600 * done / wall, 1),
                     "llm_calls_per_trial": round(llm / max(1, len(results)), 1),
                     "lock_wait_mean_s": round(statistics.fmean(waits), 3) if waits else None,
                     # spread between trials of one app's reported source energy, averaged over apps,
                     # and the median spread of one program's runs in one series (its selection-time
                     # repeats, or one side of a stage-4 confirmation)
                     "source_energy_cv": _mean_cv(src),
                     "repeat_cv_median": round(statistics.median(rep_cv), 4) if rep_cv else None,
                     "repeats_with_cv": len(rep_cv),
                     "savings_confirmed": f"{confirmed}/{improved}",
                     "measurements_retaken": retaken})
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["trials_per_node_hour"]
    for r in rows:
        r["speedup"] = round(r["trials_per_node_hour"] / base, 2)
    return {"kind": kind, "delay_s": delay, "rows": rows}


TRIVIAL = r"""
#include <cstdio>
int main() { long s = 0; for (int i = 0; i < 1000; ++i) s += i; printf("checksum = %ld\nPASS\n", s); return 0; }
"""


def _trivial_study(root: Path, trials: int) -> Path:
    app = root / "trivial"
    app.mkdir(parents=True, exist_ok=True)
    (app / "main.cpp").write_text(TRIVIAL)
    (app / "app.toml").write_text(textwrap.dedent("""
        name = "trivial"
        [platforms.cpu]
        files = ["main.cpp"]
        [run]
        args = []
        time_limit_s = 10
        [check]
        pass_regex = "^PASS$"
    """))
    reply = f"Same program.\n\n```cpp\n{TRIVIAL}\n```\n"
    rows = [("s1/zero_shot", "zero_shot", reply), ("s1/judge", "judge", "VERDICT: VALID"),
            ("s2/background", "context_background", "b"), ("s2/system", "context_system", "s"),
            ("s2/code", "context_code", "c"), ("s2/plan", "plan", "1. nothing"),
            ("s4/report", "final_report", 'done\n```json\n[]\n```')]
    (root / "trivial.jsonl").write_text("".join(json.dumps({"key": k, "kind": kd, "reply": r}) + "\n" for k, kd, r in rows))
    study = root / "load.toml"
    study.write_text(textwrap.dedent(f"""
        [study]
        name = "load"
        trials = {trials}
        k = [1]
        out = "out"
        [platform]
        kind = "cpu"
        meter = "estimate"
        compiler = "g++ -O0"
        [measure]
        repeat = 1
        settle_timeout_s = 0.0
        idle_window_s = 0.0
        post_max_s = 0.0
        random_delay_s = 0.0
        [llm]
        backend = "replay"
        replay_path = "trivial.jsonl"
        max_iterations = 0
        [[apps]]
        path = "trivial"
    """))
    return study


def load(trials: int, parallel: int, out: Path) -> dict:
    root = out / "load"
    study = _trivial_study(root, trials)
    wall, results = _submit(Request(study, executor="local", fresh=True), parallel)
    folder = root / "out"
    t0 = time.monotonic()
    s = collect(folder)
    t_status = time.monotonic() - t0
    t0 = time.monotonic()
    cli = subprocess.run([sys.executable, "-m", "lassi_batch", "status", str(folder), "--json"], capture_output=True, text=True)
    t_cli = time.monotonic() - t0
    files = list((folder / "trials").glob("*.h5"))
    unreadable = 0
    for f in files:
        try:
            with h5py.File(f, "r", locking=False) as h:
                _ = h.attrs["status"]
        except (OSError, KeyError):
            unreadable += 1
    row = {"trials": trials, "parallel": parallel, "wall_s": round(wall, 1), "results": len(results),
           "archives": len(files), "unreadable": unreadable, "totals": s.totals,
           "accounted": sum(s.totals.values()), "status_s": round(t_status, 2), "status_cli_s": round(t_cli, 2),
           "status_cli_rc": cli.returncode}
    print(json.dumps(row), flush=True)
    return row


def write_md(out: Path, tp: dict | None, ld: dict | None) -> None:
    lines = [f"## Batch benchmarks ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)", "", f"Machine: {_machine()}", ""]
    if tp:
        lines += [f"Throughput, {tp['kind']}, the demo study's three apps, replayed LLM with {tp['delay_s']} s per call:", "",
                  "| trials per node | trials | done | wall (s) | trials / node-hour | speed-up | LLM calls / trial | mean lock wait (s) | source energy CV (per app) | repeat CV (median) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in tp["rows"]:
            lines.append(f"| {r['parallel']} | {r['trials']} | {r['done']} | {r['wall_s']} | {r['trials_per_node_hour']} | "
                         f"{r['speedup']}x | {r['llm_calls_per_trial']} | {r['lock_wait_mean_s']} | {r['source_energy_cv']} | "
                         f"{r['repeat_cv_median']} (n={r['repeats_with_cv']}) |")
        lines.append("")
    if ld:
        lines += ["Load, trivial app through the local executor:", "",
                  "| trials | parallel | wall (s) | archives | accounted in status | done | failed | status (library, s) | status --json (CLI, s) |",
                  "|---|---|---|---|---|---|---|---|---|",
                  f"| {ld['trials']} | {ld['parallel']} | {ld['wall_s']} | {ld['archives']} | {ld['accounted']} | "
                  f"{ld['totals']['done']} | {ld['totals']['failed']} | {ld['status_s']} | {ld['status_cli_s']} |", ""]
    (out / "bench_batch.md").write_text("\n".join(lines))
    (out / "bench_batch.json").write_text(json.dumps({"throughput": tp, "load": ld}, indent=1))
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", nargs="?", choices=["throughput", "load", "all"], default="all")
    ap.add_argument("--platform", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--trials", type=int, default=None)
    ap.add_argument("--delay", type=float, default=1.0, help="seconds per replayed LLM call")
    ap.add_argument("--parallel", default=None, help="throughput: comma list (default 1,4); load: one number (default 8)")
    ap.add_argument("--out", type=Path, default=Path("bench-batch-out"))
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    out = a.out.resolve()
    tp = ld = None
    if a.what in ("throughput", "all"):
        tp = throughput(a.platform, min(3, a.trials or 3), a.delay, [int(x) for x in (a.parallel or "1,4").split(",")], out)
    if a.what in ("load", "all"):
        ld = load(a.trials if a.what == "load" and a.trials else 2000, int(a.parallel) if a.what == "load" and a.parallel else 8, out)
    write_md(out, tp, ld)


if __name__ == "__main__":
    main()

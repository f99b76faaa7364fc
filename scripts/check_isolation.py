#!/usr/bin/env python3
"""Does a measurement on a real GPU prove it ran alone? (run on a GPU machine)

    python scripts/check_isolation.py [--app datasets/examples/heat2d] [--out DIR]

1. three measurements of the app alone: each must say "alone" with its own program listed by the
   device (the process query works and attributes the sandboxed run to this process), no retake,
   a pre-run idle at the device's floor;
2. the same while a foreign copy of the program (started outside any lock, as another job would)
   loops on the GPU for FOREIGN_S seconds: the measurement must be found contaminated and taken
   again, ending clean once the foreign job has stopped (or with DeviceBusy);
3. the GPU's idle floor as learnt for the node, and how long settling took;
4. the CUPTI work counter on one unmeasured run: launches, and the kernels' time and busy time
   (the GPU-side cost the differential runs compare for CUDA apps).
Writes OUT/check_isolation.json and .md.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lassi_batch.core.config import MeasureConfig, PlatformConfig, load_app  # noqa: E402
from lassi_batch.core.errors import DeviceBusy  # noqa: E402
from lassi_batch.power.base import open_meter  # noqa: E402
from lassi_batch.power.floor import node_floor  # noqa: E402
from lassi_batch.power.protocol import measure_alone  # noqa: E402
from lassi_batch.sandbox import toolchain, work_counter  # noqa: E402

FOREIGN_S = 9.0
KEYS = ("isolation", "contaminated", "retakes", "retake_reasons", "busy_before_pct", "idle_floor_w", "pre_baseline_w",
        "settle_reason", "wait_settle_s", "unsettled")


def _row(label: str, m) -> dict:
    a = m.attrs
    return {"label": label, "energy_net_j": round(float(m.figures.get("energy_net_j", math.nan)), 2),
            "runtime_s": round(float(m.figures.get("runtime_s", math.nan)), 3),
            **{k: (round(a[k], 2) if isinstance(a.get(k), float) else a.get(k)) for k in KEYS}}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--app", type=Path, default=REPO / "datasets" / "examples" / "heat2d")
    ap.add_argument("--out", type=Path, default=Path("check-isolation-out"))
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    app = load_app(a.app)
    pcfg = PlatformConfig(kind="cuda", meter="nvml")
    cfg = MeasureConfig()
    meter = open_meter("nvml", pcfg)
    rows: list[dict] = []
    work = Path(tempfile.mkdtemp(prefix="lassi-isolation-"))
    toolchain.prepare_workdir(app, "cuda", work)
    b = toolchain.build(app, pcfg, work)
    if not b.ok:
        print(f"build failed: {b.log.stderr[-2000:]}", file=sys.stderr)
        return 1
    run = lambda: toolchain.run_app(app, pcfg, work, app.args)  # noqa: E731
    for i in range(3):
        _rr, m = measure_alone(run, meter, cfg, i, log=print)
        rows.append(_row(f"alone {i}", m))
        print(json.dumps(rows[-1]), flush=True)
    # a foreign job: the same binary looping outside lassi-batch's locks and sandbox
    exe = work / toolchain.EXE_NAME
    loop = f"end=$((SECONDS+{int(FOREIGN_S)})); while [ $SECONDS -lt $end ]; do {exe} {' '.join(app.args)} >/dev/null; done"
    foreign = subprocess.Popen(["bash", "-c", loop], cwd=work, start_new_session=True)
    time.sleep(1.0)
    try:
        _rr, m = measure_alone(run, meter, cfg, 3, log=print)
        rows.append(_row("with a foreign job", m))
    except DeviceBusy as e:
        rows.append({"label": "with a foreign job", "error": str(e)})
    print(json.dumps(rows[-1]), flush=True)
    foreign.wait()
    rows.append({"label": "node floor (instant channel)", "idle_floor_w": node_floor(meter.device_id, "instant")})
    lib, why = work_counter.build()
    if lib is None:
        rows.append({"label": "CUPTI work counter", "error": why})
    else:
        counted = toolchain.run_app(app, pcfg, work, app.args, count_work=lib)
        rows.append({"label": "CUPTI work counter", "isolation": json.dumps(counted.work_counts),
                     "runtime_s": round(counted.wall_s, 3)})
    print(json.dumps(rows[-1]), flush=True)
    meter.close()
    (a.out / "check_isolation.json").write_text(json.dumps(rows, indent=1))
    lines = ["| run | net J | runtime s | isolation | retakes | busy before % | floor W | pre-run idle W | settle |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r.get('energy_net_j', '')} | {r.get('runtime_s', '')} | "
                     f"{r.get('isolation', r.get('error', ''))} | {r.get('retakes', '')} {r.get('retake_reasons', '')} | "
                     f"{r.get('busy_before_pct', '')} | {r.get('idle_floor_w', '')} | {r.get('pre_baseline_w', '')} | "
                     f"{r.get('settle_reason', '')} |")
    (a.out / "check_isolation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

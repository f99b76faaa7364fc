"""On a GPU node: pin to each GPU in turn, as the batch worker pins a trial, and run the trial's
load check there (a busy kernel through the sandbox, every GPU's utilisation and power judged).

    python scripts/check_gpu_pinning.py [--platform cuda|hip] [--out DIR]

Prints one row per GPU (PCI position, UUID, NVML/amdsmi minor or render node, the device nodes the
sandbox passed, the verdict, the readings, the time taken) and writes check_gpu_pinning.md/.json
under --out. Exit 0 when every GPU passed, 1 otherwise. Never changes clocks, power limits or modes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lassi_batch.core.config import ContainerConfig, PlatformConfig  # noqa: E402
from lassi_batch.core.errors import LassiError  # noqa: E402
from lassi_batch.pipeline.pinning import check_gpu, pin_trial  # noqa: E402
from lassi_batch.sandbox import bwrap  # noqa: E402
from lassi_batch.sandbox.toolchain import make_runner  # noqa: E402
from lassi_batch.system.gpus import PIN_ENV, discover  # noqa: E402

VISIBLE = {"cuda": "CUDA_VISIBLE_DEVICES", "hip": "ROCR_VISIBLE_DEVICES"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--platform", default="cuda", choices=sorted(VISIBLE))
    ap.add_argument("--out", type=Path, default=Path("check-gpu-pinning-out"))
    a = ap.parse_args()
    gpus, source = discover(a.platform)
    if not gpus:
        print(f"no GPU listed: {source}", file=sys.stderr)
        return 2
    rows = []
    for g in gpus:
        os.environ[PIN_ENV] = g.uuid
        os.environ[VISIBLE[a.platform]] = g.uuid
        pin = pin_trial(PlatformConfig(kind=a.platform))
        runner = make_runner(ContainerConfig(), a.platform, gpu_only=pin.nodes)
        passed = bwrap.only_pinned(bwrap.gpu_nodes(a.platform), pin.nodes)
        t0 = time.monotonic()
        try:
            v = check_gpu(pin, runner)
            ok, reason = v.ok, v.reason
        except LassiError as e:
            ok, reason = False, str(e)
        rows.append({"position": g.index, "uuid": g.uuid, "pci_bus_id": g.pci_bus_id, "name": g.name,
                     "minor": g.minor, "render_node": g.render_node, "program_gpu": pin.gpu.key if pin.gpu else "",
                     "sandbox_nodes": passed, "ok": ok, "reason": reason, "seconds": round(time.monotonic() - t0, 1)})
        print(json.dumps(rows[-1]), flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "check_gpu_pinning.json").write_text(json.dumps({"source": source, "gpus": rows}, indent=1))
    lines = ["| pos | UUID | PCI | sandbox nodes | verdict | s |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['position']} | {r['uuid']} | {r['pci_bus_id']} | {' '.join(r['sandbox_nodes'])} | "
              f"{'pass' if r['ok'] else 'FAIL'}: {r['reason']} | {r['seconds']} |" for r in rows]
    (a.out / "check_gpu_pinning.md").write_text("\n".join(lines) + "\n")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Write the replay transcripts of the HeCBench study (datasets/hecbench/transcripts/*.jsonl).

Each transcript answers every LLM call of one CPU (OpenMP) trial of a HeCBench app: the code
versions are complete programs written for this project (sources in
datasets/hecbench/transcripts/src/<app>/cpu/), not HeCBench's files, which stay in the user's
checkout; the prose replies are below. A trial that replays one runs every stage for real
(builds, measured runs, verifier) on the third-party source and these rewrites.

    python scripts/make_hecbench_transcripts.py          # write the JSONL files
    python scripts/make_hecbench_transcripts.py --check  # fail if a file is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "datasets" / "hecbench" / "transcripts"
SRC = OUT / "src"

BACKGROUND = ("The background material describes how a CPU spends energy: package power rises with "
              "the number of busy cores and with memory traffic, so a program that finishes sooner with "
              "the same work, reads memory in order and keeps no thread waiting at a barrier uses less "
              "energy. OpenMP loops with uneven iterations need dynamic scheduling; contiguous inner loops "
              "let the compiler use SIMD instructions.")
SYSTEM = ("The program runs on a small x86-64 Linux host with two cores, built with g++ -O3 -fopenmp. "
          "There is no accelerator: OpenMP target regions run on the host, in the initial thread's team. "
          "Energy comes from the CPU package (RAPL) or from a CPU-time estimate.")
NO_CODE = ("I compared the current version with the remaining ideas. Each would change the run time by "
           "less than the measurement noise, and some would change the order of operations the self-check "
           "relies on. I recommend keeping the current version.")


def code_reply(text: str, fname: str, src: Path) -> str:
    code = src.read_text()
    return f"{text}\n\n```cpp\n// File: {fname}\n{code}```\n"


def judge(text: str, verdict: str = "VALID") -> str:
    return f"{text}\n\nVERDICT: {verdict}"


def report(text: str, items: list[dict[str, str]]) -> str:
    return f"{text}\n\n```json\n{json.dumps(items, indent=2)}\n```\n"


def transcripts() -> dict[str, list[dict[str, str]]]:
    mm, lay = SRC / "murmurhash3" / "cpu", SRC / "layout" / "cpu"
    return {
        "murmurhash3.cpu.trial0.jsonl": [
            {"key": "s1/zero_shot", "kind": "zero_shot", "note": "stage 1: keys packed into one buffer, dynamic schedule",
             "reply": code_reply("The hashing loop now runs as a host parallel loop with a dynamic schedule, because "
                                 "key lengths vary from 0 to 9999 bytes; keys sit in one contiguous buffer with an "
                                 "offset table. The keys, the seeds, the reference and the output are unchanged.",
                                 "murmurhash3.cpp", mm / "zs.cpp")},
            {"key": "s1/judge", "kind": "judge", "note": "stage 1: valid",
             "reply": judge("The hash function is the same MurmurHash3 x64-128, every key is hashed with its index "
                            "as the seed as before, and the result is compared with the host reference over all "
                            "keys; the program prints the same lines and the same verdict.")},
            {"key": "s2/background", "kind": "context_background", "note": "stage 2: background summary", "reply": BACKGROUND},
            {"key": "s2/system", "kind": "context_system", "note": "stage 2: machine summary", "reply": SYSTEM},
            {"key": "s2/code", "kind": "context_code", "note": "stage 2: analysis of the current best",
             "reply": "Most of the run time is the serial set-up (key generation and the host reference); the "
                      "timed loop reads every block byte by byte, eight loads and shifts per 64-bit word."},
            {"key": "s2/plan", "kind": "plan", "note": "stage 2: plan",
             "reply": "Plan: 1. read each 64-bit block with one load (the bytes are little-endian on x86-64); "
                      "2. keep the dynamic schedule and the reference check unchanged."},
            {"key": "s3/i1/refactor", "kind": "refactor", "note": "iteration 1: one 8-byte load per block",
             "reply": code_reply("Blocks are now read with one unaligned 8-byte load; the program refuses to run on "
                                 "a big-endian machine, where that load would change the hashes.",
                                 "murmurhash3.cpp", mm / "step1.cpp")},
            {"key": "s3/i1/judge", "kind": "judge", "note": "iteration 1: valid",
             "reply": judge("The load gives the same value as the byte-wise assembly on a little-endian machine, "
                            "which the program checks at start-up; hashes, reference and verdict are unchanged.")},
            {"key": "s3/i1/plan", "kind": "plan", "note": "iteration 1: next plan",
             "reply": "Plan: try a coarser dynamic chunk so that fewer scheduling decisions are made per repeat."},
            {"kind": "refactor", "note": "a reply without code", "reply": NO_CODE},
            {"kind": "refactor", "note": "a reply without code", "reply": NO_CODE},
            {"kind": "refactor", "note": "a reply without code", "reply": NO_CODE},
            {"kind": "refactor", "note": "a reply without code", "reply": NO_CODE},
            {"key": "s4/report", "kind": "final_report", "note": "stage 4: comparison",
             "reply": report("The refactored version hashes the keys in a host parallel loop with a dynamic "
                             "schedule over one packed key buffer and reads each block with a single load. "
                             "The same keys are hashed with the same seeds and checked against the reference.",
                             [{"name": "dynamic scheduling of uneven keys", "category": "parallelism",
                               "description": "Key lengths vary widely; a dynamic schedule keeps both cores busy."},
                              {"name": "one load per 64-bit block", "category": "memory_hierarchy",
                               "description": "Eight byte loads and shifts per block became one unaligned load."}])},
        ],
        "layout.cpu.trial0.jsonl": [
            {"key": "s1/zero_shot", "kind": "zero_shot", "note": "stage 1: row-wise sweep of the SoA data",
             "reply": code_reply("The structure-of-arrays pass now sweeps the data row by row: each thread adds "
                                 "contiguous runs of every row into its own slice of the sums, so the inner loop "
                                 "vectorizes. The data, the sums and both self-checks are unchanged.",
                                 "main.cpp", lay / "zs.cpp")},
            {"key": "s1/judge", "kind": "judge", "note": "stage 1: valid",
             "reply": judge("Both passes compute the same 4096 sums of the same values and compare them with the "
                            "same reference; only the order of the additions over memory changed, and unsigned "
                            "sums give identical results in any order.")},
            {"key": "s2/background", "kind": "context_background", "note": "stage 2: background summary", "reply": BACKGROUND},
            {"key": "s2/system", "kind": "context_system", "note": "stage 2: machine summary", "reply": SYSTEM},
            {"key": "s2/code", "kind": "context_code", "note": "stage 2: analysis of the current best",
             "reply": "Both timed passes now read memory in order; what remains is the serial reference and the "
                      "initialization of 64 MiB of data, which are not part of the timed loops."},
            {"key": "s2/plan", "kind": "plan", "note": "stage 2: plan",
             "reply": "Plan: the remaining cost is memory bandwidth; no change is likely to help measurably."},
            {"kind": "refactor", "note": "a reply without code", "reply": NO_CODE},
            {"kind": "refactor", "note": "a reply without code", "reply": NO_CODE},
            {"kind": "refactor", "note": "a reply without code", "reply": NO_CODE},
            {"kind": "refactor", "note": "a reply without code", "reply": NO_CODE},
            {"key": "s4/report", "kind": "final_report", "note": "stage 4: comparison",
             "reply": report("The refactored version sums the structure-of-arrays data row by row into per-thread "
                             "slices instead of striding a whole row between reads; the array-of-structures pass "
                             "became a SIMD reduction. Results and self-checks are unchanged.",
                             [{"name": "row-wise sweep of strided data", "category": "memory_hierarchy",
                               "description": "Consecutive reads are neighbours in memory in both passes."}])},
        ],
    }


def render(records: list[dict[str, str]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if a written file differs")
    a = ap.parse_args()
    stale = []
    for name, records in transcripts().items():
        path, text = OUT / name, render(records)
        if a.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)} ({len(records)} replies)")
    if stale:
        print(f"stale: {', '.join(stale)}; run python scripts/make_hecbench_transcripts.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A tiny real C++ app with deliberate waste, and a scripted transcript for whole-trial tests."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

# The source does redundant work: it recomputes the same inner sum `waste` times per repeat.
SOURCE = r"""
#include <cstdio>
#include <cstdlib>
int main(int argc, char** argv) {
  long n = argc > 1 ? atol(argv[1]) : 1000;
  int reps = argc > 2 ? atoi(argv[2]) : 10;
  int waste = WASTE;
  double total = 0; long done = 0;
  for (int r = 0; r < reps; ++r) {
    double s = 0;
    for (int w = 0; w < waste; ++w) { s = 0; for (long i = 0; i < n; ++i) s += (double)(i % 7) * 0.5; }
    total += s; ++done;
  }
  printf("checksum = %.10e\n", total);
  printf("work: reps=%ld\n", done);
  printf(total > 0 ? "PASS\n" : "FAIL\n");
  return total > 0 ? 0 : 1;
}
"""


def code(waste: int, *, reps_expr: str = "reps", broken: bool = False, crash: bool = False) -> str:
    s = SOURCE.replace("WASTE", str(waste)).replace("r < reps", f"r < {reps_expr}")
    if broken:
        s = s.replace("double total = 0;", "double total = 0")  # missing semicolon
    if crash:
        s = s.replace("  printf(\"checksum", "  if (n > 0) return 3;\n  printf(\"checksum")
    return s


def reply(text: str, note: str = "Here is the refactored program.") -> str:
    return f"{note}\n\n```cpp\n{text}\n```\n"


VALID = "The outputs agree and the computation is the same.\nVERDICT: VALID"
REPORT = 'Removed repeated sums.\n```json\n[{"name": "drop redundant recomputation", "category": "algorithmic"}]\n```'


def transcript() -> list[dict]:
    """Stage 1 improves a little; i1 needs a compile fix and improves; i2 deletes work (judge says
    VALID, verifier must fail it); i3 crashes, is fixed, improves; then no gains until the stop.

    Against the source's waste of 10 no honest rewrite saves more than 80%, well clear of the
    verifier's 90% hold threshold: a saving that sat on it (waste 1 of 10) was held in some runs
    and not in others, so the same transcript took two paths. Each step down is at least 1.5x,
    so which candidate measures lower never rests on noise."""
    rows = [
        ("s1/zero_shot", "zero_shot", reply(code(6))),
        ("s1/judge", "judge", VALID),
        ("s2/background", "context_background", "Background summary."),
        ("s2/system", "context_system", "System summary."),
        ("s2/code", "context_code", "The inner sum is recomputed needlessly."),
        ("s2/plan", "plan", "1. Compute the inner sum once per repeat."),
        ("s3/i1/refactor", "refactor", reply(code(3, broken=True))),
        ("s3/i1/fix1", "fix_compile", reply(code(3))),
        ("s3/i1/judge", "judge", VALID),
        ("s3/i1/plan", "plan", "2. Keep going."),
        ("s3/i2/refactor", "refactor", reply(code(3, reps_expr="reps / 2"), "Half the repeats suffice.")),
        ("s3/i2/judge", "judge", VALID),
        ("s3/i3/refactor", "refactor", reply(code(2, crash=True))),
        ("s3/i3/fix1", "fix_runtime", reply(code(2))),
        ("s3/i3/judge", "judge", VALID),
        ("s3/i3/plan", "plan", "3. Nothing left."),
    ]
    for i in range(4, 8):
        # valid but slower than the best: never an improvement, whatever the noise
        rows += [(f"s3/i{i}/refactor", "refactor", reply(code(5))), (f"s3/i{i}/judge", "judge", VALID)]
    rows.append(("s4/report", "final_report", REPORT))
    return [{"key": k, "kind": kind, "reply": r} for k, kind, r in rows]


@pytest.fixture()
def setup(tmp_path: Path):
    app = tmp_path / "sumapp"
    app.mkdir()
    (app / "main.cpp").write_text(code(10))
    (app / "app.toml").write_text(textwrap.dedent("""
        name = "sumapp"
        [platforms.cpu]
        files = ["main.cpp"]
        [run]
        args = ["20000000", "4"]
        time_limit_s = 30
        [check]
        pass_regex = "^PASS$"
        checksum_regex = "^checksum = (\\\\S+)"
        work_regex = "^work: reps=(\\\\d+)"
        ignore_regex = "^work:"
    """))
    tr = tmp_path / "sumapp.jsonl"
    tr.write_text("".join(json.dumps(r) + "\n" for r in transcript()))
    data = {
        "study": {"name": "t", "trials": 1, "k": [1], "out": str(tmp_path / "out")},
        "platform": {"kind": "cpu", "meter": "estimate", "compiler": "g++ -O1 -fopenmp"},
        "measure": {"repeat": 1, "settle_timeout_s": 0.0, "idle_window_s": 0.05, "post_max_s": 0.05,
                    "random_delay_s": 0.0},
        "llm": {"backend": "replay", "replay_path": str(tr)},
        "apps": [{"path": str(app)}],
    }
    return tmp_path, data



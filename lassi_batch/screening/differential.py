"""Differential runs: the candidate and the source on inputs the model never saw, and their costs.

A candidate can fit its output to the measured arguments (a result table keyed on them), reuse
results across repeats, or do its work somewhere the measurement does not look. Running it again
on unseen argument sets next to the source, comparing the outputs with the verifier, and checking
that its cost grows with the work knob the way the source's does exposes all three (KernelBench,
robust-kbench and METR screen GPU kernels the same way: fresh inputs, compared with the reference).

This module is pure: it plans the probes from the app's `ProbeSpec` and judges recorded costs.
The trial runs them (`pipeline/bench.py`) and stores the results.

Probes, in order:
- "below" and "above": the measured arguments with the work knob one step down and up (unseen
  neighbours; a candidate far cheaper at exactly the measured value than below it fails);
- "scale": the knob raised until the source spends `scale_cost_s` more CPU time than "below"
  (chosen once per trial from the source's costs), for the scaling check;
- "probe<i>": each explicit `probe_args` set, compared for output only.
Every probe gets a fresh seed where the app declares one (`seed_arg` or `seed_env`).

CPU time of one short run on a loaded node is noisy (a scheduler hiccup, a page-cache miss), so a
cost check never fails a candidate on single runs: when one would, the probes it rests on are run
`CONFIRM_RUNS` more times for both programs and `cost_findings` judges the medians.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from statistics import median
from typing import Any

from ..core.config import ProbeSpec
from .verifier import Finding

MIN_SCALING = 0.1  # the candidate's added cost must be at least this share of the source's (10x per step)
MIN_SCALE_DELTA_S = 0.05  # the source's added CPU time must reach this before scaling is judged
CHEAP_AT_MEASURED = 0.4  # measured cost below this share of the cost one step below -> fail
MIN_CHEAP_DELTA_S = 0.004  # ... and at least this many CPU seconds cheaper
SOURCE_CONSISTENT = 0.7  # the source itself must not be cheaper at the measured args by that much
REPEAT_COLLAPSE = 0.25  # a measured repeat costing below this share of the dearest repeat
MIN_REPEAT_COST_S = 0.01  # repeats cheaper than this are too noisy to compare
COST_KINDS = ("scaling", "measured_point", "reuse")  # findings judged from CPU times
CONFIRM_RUNS = 2  # extra runs of each probe a failing cost finding rests on, per program
# Unmeasured runs wait passively at OpenMP barriers: spinning threads on a busy host turn waiting
# into CPU time, which would drown the cost differences these checks look at.
PROBE_ENV = {"OMP_WAIT_POLICY": "passive"}


@dataclass(frozen=True)
class Probe:
    """One unseen input: argument list, extra environment, and the knob value when it varies it."""

    label: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    knob: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Probe:
        return cls(label=d["label"], args=list(d["args"]), env=dict(d.get("env", {})), knob=d.get("knob"))


def knob_of(spec: ProbeSpec, args: list[str]) -> int | None:
    if spec.work_arg is None or not 0 <= spec.work_arg < len(args):
        return None
    try:
        return int(args[spec.work_arg])
    except ValueError:
        return None


def step_of(spec: ProbeSpec, k0: int) -> int:
    return spec.work_step if spec.work_step > 0 else max(1, k0 // 4)


def with_knob(spec: ProbeSpec, args: list[str], k: int) -> list[str]:
    out = list(args)
    assert spec.work_arg is not None
    out[spec.work_arg] = str(k)
    return out


def seeded(spec: ProbeSpec, probe: Probe, rng: random.Random) -> Probe:
    """The probe with a fresh seed in the app's seed argument or variable (if it declares one)."""
    seed = str(rng.randrange(1, 2**31 - 1))
    args, env = list(probe.args), dict(probe.env)
    if spec.seed_arg is not None and 0 <= spec.seed_arg < len(args):
        args[spec.seed_arg] = seed
    if spec.seed_env:
        env[spec.seed_env] = seed
    return Probe(probe.label, args, env, probe.knob)


def plan_probes(spec: ProbeSpec, measured: list[str], seen: list[list[str]], seed: int) -> list[Probe]:
    """The neighbour and explicit probes for a trial (the scale probe comes later, from costs).

    `seen` are argument sets the model or the judge may have seen (measured, test args); no
    probe equals one of them. `seed` makes the plan (and its fresh seeds) reproducible.
    """
    rng = random.Random(seed)
    out: list[Probe] = []
    taken = [list(map(str, a)) for a in seen]
    k0 = knob_of(spec, measured)
    if k0 is not None:
        step = step_of(spec, k0)
        for label, k in (("below", k0 - step), ("above", k0 + step)):
            k = min(max(k, spec.work_min), spec.work_max)
            args = with_knob(spec, measured, k)
            if k != k0 and args not in taken:
                out.append(seeded(spec, Probe(label, args, {}, k), rng))
                taken.append(args)
    for i, args in enumerate(spec.probe_args, 1):
        if list(args) not in taken:
            out.append(seeded(spec, Probe(f"probe{i}", list(args)), rng))
            taken.append(list(args))
    return out


def larger_args(spec: ProbeSpec, args: list[str], runtime_s: float | None, target_s: float,
                max_s: float) -> list[str] | None:
    """`args` with the work knob raised so that a run of `runtime_s` lasts about `target_s`
    (4x to 64x the knob, at most `max_s` and the knob's range); None without a knob or room."""
    k0 = knob_of(spec, args)
    if k0 is None:
        return None
    t = runtime_s if runtime_s and runtime_s > 0 else 0.01
    factor = max(4, min(64, math.ceil(target_s / t)))
    factor = min(factor, max(1, int(max_s / t)))
    k = min(k0 * factor, spec.work_max)
    return with_knob(spec, args, k) if k > k0 else None


def next_scale_knob(spec: ProbeSpec, k_lo: int, cost_lo: float, k: int | None, cost: float | None,
                    time_left_s: float, cost_per_step: float = 0.0) -> int | None:
    """The next knob value to try for the scale probe, or None when `k` (cost `cost`) already
    gives the source `scale_cost_s` more CPU time than `k_lo`, or nothing larger is allowed.

    The first guess assumes `cost_per_step` (the low probe's cost over its knob: an upper bound,
    fixed costs included), later ones the slope measured so far; each at most 16x the last.
    """
    target = spec.scale_cost_s
    if k is None:
        nxt = int(k_lo + 1.3 * target / cost_per_step) if cost_per_step > 0 else k_lo * 4
        nxt = min(max(nxt, k_lo + 1), k_lo * 16)
    else:
        gained = (cost or 0.0) - cost_lo
        if gained >= target:
            return None
        slope = gained / max(k - k_lo, 1)
        nxt = int(k_lo + 1.3 * target / slope) if slope > 0 else k * 4
        nxt = min(max(nxt, k + 1), k * 16)
        if slope > 0 and slope * (nxt - k_lo) > time_left_s:  # CPU time bounds run time from below
            nxt = int(k_lo + time_left_s / slope)
    nxt = min(nxt, spec.work_max)
    return nxt if nxt > (k if k is not None else k_lo) else None


# ---------------------------------------------------------------- judging costs


def _fmt(x: float) -> str:
    return f"{x:.3f} s"


def scaling_findings(src: dict[str, float], cand: dict[str, float], knobs: dict[str, int],
                     metric: str = "CPU time", min_scaling: float = MIN_SCALING) -> list[Finding]:
    """Does the candidate's cost grow from the "below" probe (else "above") to the "scale" (else
    "above") probe like the source's? `src`/`cand`: cost per probe label; `knobs`: knob per label."""
    lo = "below" if "below" in src and "below" in cand else "above"
    hi = "scale" if "scale" in src and "scale" in cand else "above"
    if lo == hi or lo not in src or hi not in src or lo not in cand or hi not in cand:
        return []
    ds, dc = src[hi] - src[lo], cand[hi] - cand[lo]
    span = f"work knob {knobs.get(lo)} -> {knobs.get(hi)}"
    if ds < MIN_SCALE_DELTA_S:
        return [Finding("scaling", "info", f"{metric} of the source grows only {_fmt(ds)} over {span}; "
                        "too little to judge how the candidate's work scales")]
    if dc < min_scaling * ds:
        return [Finding("scaling", "fail", f"work does not scale: over {span} the source's {metric} grows by "
                        f"{_fmt(ds)}, the candidate's by {_fmt(dc)} (less than {min_scaling:.0%} of it); the measured "
                        "work is skipped, cached, or done where it is not counted")]
    return [Finding("scaling", "info", f"over {span} the {metric} grows by {_fmt(ds)} (source) and {_fmt(dc)} (candidate)")]


def measured_point_findings(src_k0: float | None, cand_k0: float | None, src_below: float | None,
                            cand_below: float | None, k0: int | None, k_below: int | None) -> list[Finding]:
    """A candidate much cheaper at exactly the measured arguments than one knob step below them
    (where it has less work to do) keys its behaviour on the measured arguments."""
    if None in (src_k0, cand_k0, src_below, cand_below):
        return []
    assert src_k0 is not None and cand_k0 is not None and src_below is not None and cand_below is not None
    if src_k0 < SOURCE_CONSISTENT * src_below:
        return []  # the source itself is not monotone here; no basis for a judgement
    if cand_k0 < CHEAP_AT_MEASURED * cand_below and cand_below - cand_k0 >= MIN_CHEAP_DELTA_S:
        return [Finding("measured_point", "fail", f"the candidate is much cheaper at the measured arguments (knob {k0}: "
                        f"{_fmt(cand_k0)} CPU) than one step below them (knob {k_below}: {_fmt(cand_below)}), where "
                        "it has less to do; its results are keyed on, or cached for, the measured arguments")]
    return []


def repeat_findings(src_costs: list[float], cand_costs: list[float]) -> list[Finding]:
    """A measured repeat far cheaper than the others, while the source's repeats cost alike: a
    result computed once and reused by later runs. A note for the judge and a reader, not a
    failure: CPU time of measured runs (threads spinning at barriers on a busy host) varies too
    much to fail on; `measured_point_findings` makes the call against a fresh-folder run."""
    if len(cand_costs) < 2 or not src_costs:
        return []
    hi, lo = max(cand_costs), min(cand_costs)
    if hi < MIN_REPEAT_COST_S:
        return []
    if len(src_costs) >= 2 and min(src_costs) < SOURCE_CONSISTENT * max(src_costs):
        return []
    if lo < REPEAT_COLLAPSE * hi:
        costs = ", ".join(f"{c:.3f}" for c in cand_costs)
        return [Finding("repeat_cost", "warn", f"the measured repeats' CPU times differ widely ({costs} s) while the "
                        "source's agree; later runs may reuse results of earlier ones")]
    return []


def reuse_findings(src: dict[str, Any] | None, cand: dict[str, Any] | None) -> list[Finding]:
    """The scale probe run twice in one folder: a second run far cheaper than the first, while
    the source's second run costs as much as its first, reuses results kept by the first (in
    the folder, in /tmp, anywhere). At the scale point the work dwarfs start-up costs."""
    if not src or not cand or "again" not in src or "again" not in cand:
        return []
    s1, s2, c1, c2 = src["cpu_s"], src["again"]["cpu_s"], cand["cpu_s"], cand["again"]["cpu_s"]
    if s1 < MIN_SCALE_DELTA_S or s2 < SOURCE_CONSISTENT * s1 or c1 < MIN_CHEAP_DELTA_S:
        return []
    if c2 < REPEAT_COLLAPSE * c1 and c1 - c2 >= MIN_CHEAP_DELTA_S:
        return [Finding("reuse", "fail", f"run twice on the same unseen input, the candidate's second run cost "
                        f"{_fmt(c2)} CPU after {_fmt(c1)} (the source: {_fmt(s2)} after {_fmt(s1)}); it reuses "
                        "results kept by an earlier run instead of computing them")]
    return []


def output_findings(label: str, args: list[str], reps: list[Finding]) -> list[Finding]:
    """The verifier's findings on one probe, renamed as differential findings."""
    out = []
    for f in reps:
        if f.severity in ("fail", "warn"):
            kind = "differential" if f.severity == "fail" else "differential_note"
            out.append(Finding(kind, f.severity, f"on unseen input {label} ({' '.join(args)}): {f.kind}: {f.message}"))
    return out


# the cost figures a probe run may carry, and how findings name them
METRICS = {"cpu_s": "CPU time", "gpu_s": "GPU kernel time"}


def cost_metric(runs: list[dict[str, Any]]) -> str:
    """The probe runs' cost figure: GPU kernel time (CUPTI) when every run has it, else CPU time.
    A GPU program's host CPU time mostly counts waiting and copies (rowstats on an H100: the
    source's grew 0.669 s over its knob span, a rewrite launching the same kernels 0.196 s), so
    its work is compared where it is done; one run without the figure (a program that never
    reaches its exit handlers) puts every run back on CPU time, never a mix."""
    return "gpu_s" if runs and all(isinstance(r.get("gpu_s"), (int, float)) for r in runs) else "cpu_s"


@dataclass
class Costs:
    """Costs of one program's probe runs, every sample kept: `first[label]` the first (or only)
    run in a fresh folder, `again[label]` the second run in the same folder (scale probe).
    `metric`: which figure of a run (METRICS)."""

    first: dict[str, list[float]] = field(default_factory=dict)
    again: dict[str, list[float]] = field(default_factory=dict)
    metric: str = "cpu_s"

    def add(self, label: str, run: dict[str, Any]) -> None:
        value = run.get(self.metric)
        if not isinstance(value, (int, float)):
            return  # a later sample without the figure (the program skipped its exit handlers)
        self.first.setdefault(label, []).append(float(value))
        if "again" in run:
            again = run["again"]
            self.again.setdefault(label, []).append(float(again.get(self.metric, again["cpu_s"])))

    def medians(self) -> dict[str, float]:
        return {k: median(v) for k, v in self.first.items() if v}

    def reuse_view(self, label: str) -> dict[str, Any] | None:
        """What `reuse_findings` reads, from the medians of the samples."""
        if not self.first.get(label) or not self.again.get(label):
            return None
        return {"cpu_s": median(self.first[label]), "again": {"cpu_s": median(self.again[label])}}

    def samples(self) -> int:
        return max((len(v) for v in self.first.values()), default=0)


def cost_findings(src: Costs, cand: Costs, knobs: dict[str, int], k0: int | None,
                  src_measured: list[float], cand_measured: list[float],
                  min_scaling: float = MIN_SCALING) -> list[Finding]:
    """The cost checks (scaling, measured point, reuse) on the medians of the samples.
    `src_measured`/`cand_measured`: CPU times of the measured repeats at the measured arguments
    (compared only with CPU-time probes); `min_scaling`: the app's `[run] min_scaling`."""
    s, c = src.medians(), cand.medians()
    out = scaling_findings(s, c, knobs, metric=METRICS[src.metric], min_scaling=min_scaling)
    if src.metric == "cpu_s":
        out += measured_point_findings(median(src_measured) if src_measured else None,
                                       median(cand_measured) if cand_measured else None,
                                       s.get("below"), c.get("below"), k0, knobs.get("below"))
    if "scale" in src.again and src.metric == "cpu_s":  # a second run's GPU time is not recorded
        out += reuse_findings(src.reuse_view("scale"), cand.reuse_view("scale"))
    n = min(src.samples(), cand.samples())
    if n > 1:
        out = [Finding(f.kind, f.severity, f"{f.message} (median of {n} runs per probe)") if f.severity == "fail" else f
               for f in out]
    return out


def cost_failures(findings: list[Finding]) -> list[str]:
    """Probe labels to run again before the failing cost findings among `findings` stand."""
    if not any(f.kind in COST_KINDS and f.severity == "fail" for f in findings):
        return []
    return ["below", "above", "scale"]

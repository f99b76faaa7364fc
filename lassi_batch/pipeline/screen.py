"""Deterministic screening of one candidate: its measured runs, then differential runs.

The trial calls this between a candidate's measurement and its judge. Order:
1. every measured repeat verified against the source (`verify_runs`), results typed into the
   code (`hardcoded_results`), processes left behind, repeats whose costs collapse, the GPU work
   count, and the implausible-saving hold;
2. if nothing so far fails: the differential runs (`screening/differential.py`) of the candidate
   on the trial's unseen probes, compared with the source's runs on the same probes (made once
   per trial and journalled by the trial), and the cost checks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from ..core.config import AppConfig
from ..core.records import Candidate
from ..screening import differential as dif
from ..screening.processes import Leftover, describe
from ..screening.side_effects import side_effect_findings
from ..screening.verifier import (Finding, VerifierReport, energy_sanity, hardcoded_results, negative_findings,
                                  reports_failure, verify, verify_runs, work_count_finding)
from .bench import Bench

MAX_SCALE_TRIES = 4

NEGATIVE_MIN_S = 10.0  # time limit of a candidate's negative-test run: at least this, ...
NEGATIVE_FACTOR = 20.0  # ... or this multiple of the source's time there (never above the app's limit)


def _runs(cand: Candidate) -> dict[str, Any]:
    """The measured-run record `Trial._evaluate` keeps (older archives: the first run only)."""
    r = cand.verifier.get("runs") if isinstance(cand.verifier, dict) else None
    if r:
        return r
    return {"stdouts": [cand.stdout], "returncodes": [cand.returncode], "cpu_s": [], "wall_s": [], "leftovers": []}


def _leftover_findings(where: str, lists: list[list[dict[str, Any]]]) -> list[Finding]:
    found = [Leftover(**p) for lo in lists for p in lo]
    if not found:
        return []
    return [Finding("processes_left", "fail", f"{where}: {describe(found)}; work done by processes the measurement "
                    "does not wait for escapes it")]


@dataclass
class Screener:
    app: AppConfig
    bench: Bench
    measured_args: list[str]

    # ------------------------------------------------------------ the source, once per trial

    def source_probes(self, source: Candidate, seed: int | None = None) -> dict[str, Any]:
        """Plan the trial's probes and run the source on them; the result is journalled."""
        spec = self.app.probe
        seed = seed if seed is not None else random.SystemRandom().randrange(1, 2**31)
        seen = [self.measured_args, self.app.args, self.app.test_args]
        probes = dif.plan_probes(spec, self.measured_args, seen, seed)
        record: dict[str, Any] = {"seed": seed, "probes": [], "runs": {}, "notes": [], "negative": []}
        negatives = [list(a) for a in self.app.check.negative_args]
        if not probes and not negatives:
            record["notes"].append("the app declares no probe inputs (work_arg, probe_args): no differential runs")
            return record
        exe = self.bench.executable(source.files, "s0_eval")
        if exe is None:
            record["notes"].append("the source could not be built again for the differential runs")
            return record
        for i, args in enumerate(negatives, 1):  # where the source's own check must report failure
            run = self.bench.probe(exe, source.files, "s0_probe", dif.Probe(f"negative{i}", args)).to_dict()
            record["negative"].append({"args": args, **run})
            if not reports_failure(self.app.check, run["stdout"], run["returncode"]):
                record["notes"].append(f"the source does not report failure on the negative test {' '.join(args)}; "
                                       "it is not used")
        if not probes:
            record["notes"].append("the app declares no probe inputs (work_arg, probe_args): no differential runs")
            return record
        for p in probes:
            record["probes"].append(p.to_dict())
            record["runs"][p.label] = self.bench.probe(exe, source.files, "s0_probe", p).to_dict()
        # The scale point: the lowest knob probe ("above" when the knob cannot go lower) plus
        # enough work that the source spends `scale_cost_s` more; "above" itself when it does.
        knobbed = [p for p in probes if p.knob is not None]
        base = next((p for p in knobbed if p.label == "below"), None) or next(iter(knobbed), None)
        lo = record["runs"].get(base.label) if base is not None else None
        if base is not None and base.knob is not None and lo and lo["returncode"] == 0:
            rng = random.Random(seed + 1)
            above = next((p for p in knobbed if p.label == "above" and p is not base), None)
            arun = record["runs"].get("above") if above is not None else None
            k, cost, chosen = None, None, None
            if above is not None and arun and arun["returncode"] == 0:
                k, cost, chosen = above.knob, arun["cpu_s"], above
            for _ in range(MAX_SCALE_TRIES):
                nxt = dif.next_scale_knob(spec, base.knob, lo["cpu_s"], k, cost, self.app.time_limit_s / 4,
                                          cost_per_step=lo["cpu_s"] / max(base.knob, 1))
                if nxt is None:
                    break
                p = dif.seeded(spec, dif.Probe("scale", dif.with_knob(spec, self.measured_args, nxt), {}, nxt), rng)
                run = self.bench.probe(exe, source.files, "s0_probe", p).to_dict()
                if run["returncode"] != 0:
                    record["notes"].append(f"the source failed at the scaling probe (knob {nxt}); probe dropped")
                    break
                k, cost, chosen = nxt, run["cpu_s"], p
            if chosen is not None and chosen is not base:  # run again, twice in one folder (reuse check)
                p = dif.Probe("scale", chosen.args, chosen.env, chosen.knob)
                record["probes"].append(p.to_dict())
                record["runs"]["scale"] = self.bench.probe(exe, source.files, "s0_probe", p, twice=True).to_dict()
        return record

    # ------------------------------------------------------------ one candidate

    def measured_findings(self, source: Candidate, cand: Candidate, repeats: dict[str, list[float]] | None = None,
                          significance: float = 0.05) -> list[Finding]:
        """Checks on the measured runs alone (no new runs). `repeats`: the per-repeat figures
        (source_energy, cand_energy, source_runtime, cand_runtime) the implausible-saving hold
        tests for noise; without them the means are compared."""
        check = self.app.check
        runs = _runs(cand)
        rep = verify_runs(check, source.stdout, list(zip(runs["stdouts"], runs["returncodes"])))
        fs = list(rep.findings)
        fs.append(hardcoded_results(check, source.stdout, source.files, cand.files))
        fs += _leftover_findings("measured runs", runs.get("leftovers", []))
        if "written" in runs and "written" in _runs(source):
            fs += side_effect_findings("measured runs", _runs(source)["written"], runs["written"])
        fs += dif.repeat_findings(_runs(source).get("cpu_s", []), runs.get("cpu_s", []))
        r = repeats or {}
        fs.append(energy_sanity(r.get("source_energy") or source.energy_j, r.get("cand_energy") or cand.energy_j,
                                r.get("source_runtime") or source.runtime_s, r.get("cand_runtime") or cand.runtime_s,
                                significance=significance))
        fs.append(work_count_finding(source.work_counts, cand.work_counts))
        return [f for f in fs if f is not None]

    @staticmethod
    def failed_run_findings(cand: Candidate) -> list[Finding]:
        """Integrity findings on a candidate whose measured run failed: processes it left behind
        that the sandbox had to end (the run fails for them, but its evidence is the same as
        that of the leftovers the unsandboxed runner finds and kills: work hidden from the
        measurement), so it is failed for integrity rather than counted as an error."""
        return _leftover_findings("measured runs", _runs(cand).get("leftovers", []))

    def differential(self, source: Candidate, cand: Candidate, plan: dict[str, Any], tag: str) -> dict[str, Any]:
        """Run the candidate on the trial's probes; returns its runs and findings (as dicts)."""
        out: dict[str, Any] = {"runs": {}, "findings": []}
        probes = [dif.Probe.from_dict(p) for p in plan.get("probes", [])]
        negatives = plan.get("negative", [])
        if not probes and not negatives:
            return out
        exe = self.bench.executable(cand.files, tag)
        if exe is None:
            out["findings"].append(vars(Finding("differential", "error", "the candidate could not be built again "
                                                "for its differential runs")))
            return out
        findings: list[Finding] = []
        for i, neg in enumerate(negatives, 1):
            if not reports_failure(self.app.check, neg["stdout"], neg["returncode"]):
                continue  # the source passes it: no basis (noted once per trial in the plan)
            # the source rejects a negative input at once: a candidate gets a bounded multiple of its time
            limit = max(NEGATIVE_MIN_S, NEGATIVE_FACTOR * float(neg.get("wall_s") or 0.0))
            crun = self.bench.probe(exe, cand.files, tag + "_probe", dif.Probe(f"negative{i}", neg["args"]),
                                    time_s=limit).to_dict()
            out["runs"][f"negative{i}"] = crun
            findings += negative_findings(self.app.check, neg["args"], (neg["stdout"], neg["returncode"]),
                                          (crun["stdout"], crun["returncode"]))
            if crun.get("timed_out"):
                findings.append(Finding("negative_test", "warn", f"on the negative test ({' '.join(neg['args'])}) "
                                        f"the candidate did not finish within {limit:.0f} s; the source took "
                                        f"{float(neg.get('wall_s') or 0.0):.2f} s"))
        pairs: list[tuple[dif.Probe, dict[str, Any], dict[str, Any]]] = []
        side: list[tuple[list[str], list[str]]] = []  # files written per probe: (source, candidate)
        knobs: dict[str, int] = {}
        for p in probes:
            srun = plan["runs"].get(p.label)
            if not srun or srun["returncode"] != 0:
                findings.append(Finding("differential_note", "info", f"the source failed on probe {p.label} "
                                        f"({' '.join(p.args)}); probe skipped"))
                continue
            crun = self.bench.probe(exe, cand.files, tag + "_probe", p, twice="again" in srun).to_dict()
            out["runs"][p.label] = crun
            rep = verify(self.app.check, srun["stdout"], crun["stdout"], crun["returncode"])
            if "again" in crun:
                again = verify(self.app.check, srun["stdout"], crun["again"]["stdout"], crun["again"]["returncode"])
                rep = rep.extended(Finding(f.kind, f.severity, "second run: " + f.message)
                                   for f in again.findings if f.severity in ("fail", "warn"))
            if crun["error"] and crun["returncode"] is None:
                findings.append(Finding("differential", "fail", f"on unseen input {p.label} ({' '.join(p.args)}): "
                                        f"{crun['error']}"))
            findings += dif.output_findings(p.label, p.args, rep.findings)
            findings += _leftover_findings(f"unseen input {p.label}", [crun["leftovers"]])
            if "written" in srun:
                side.append((srun["written"], crun["written"]))
            if crun["returncode"] == 0:
                pairs.append((p, srun, crun))
            if p.knob is not None:
                knobs[p.label] = p.knob
        if side:  # one note for all probes
            findings += side_effect_findings("unseen inputs", [w for w, _ in side], [w for _, w in side])
        metric = dif.cost_metric([r for _p, srun, crun in pairs for r in (srun, crun)])
        src_cost, cand_cost = dif.Costs(metric=metric), dif.Costs(metric=metric)
        for p, srun, crun in pairs:
            src_cost.add(p.label, srun)
            cand_cost.add(p.label, crun)
        k0 = dif.knob_of(self.app.probe, self.measured_args)
        s_meas, c_meas = _runs(source).get("cpu_s", []), _runs(cand).get("cpu_s", [])
        costs = dif.cost_findings(src_cost, cand_cost, knobs, k0, s_meas, c_meas, self.app.probe.min_scaling)
        again = [p for p in probes if p.label in dif.cost_failures(costs) and p.label in cand_cost.first]
        if again:  # a cost check would fail on single runs: more samples of both programs first
            src_exe = self.bench.executable(source.files, "s0_eval")
            for _ in range(dif.CONFIRM_RUNS if src_exe is not None else 0):
                for p in again:
                    twice = p.label in src_cost.again
                    src_cost.add(p.label, self.bench.probe(src_exe, source.files, "s0_probe", p, twice=twice).to_dict())
                    cand_cost.add(p.label, self.bench.probe(exe, cand.files, tag + "_probe", p, twice=twice).to_dict())
            costs = dif.cost_findings(src_cost, cand_cost, knobs, k0, s_meas, c_meas, self.app.probe.min_scaling)
            out["cost_samples"] = {"source": src_cost.first, "candidate": cand_cost.first,
                                   "source_again": src_cost.again, "candidate_again": cand_cost.again}
        findings += costs
        sl = {k: float(v.get("work_counts", {}).get("kernel_launches", 0)) for k, v in plan["runs"].items()}
        cl = {k: float(v.get("work_counts", {}).get("kernel_launches", 0)) for k, v in out["runs"].items()}
        if any(sl.values()) and any(cl.values()):
            findings += [f for f in dif.scaling_findings(sl, cl, knobs, "kernel launches") if f.severity == "fail"]
        out["findings"] = [vars(f) for f in findings]
        return out

    def report(self, measured: list[Finding], diff: dict[str, Any] | None) -> VerifierReport:
        fs = list(measured)
        for f in (diff or {}).get("findings", []):
            fs.append(Finding(f["kind"], f["severity"], f["message"]))
        return VerifierReport.from_findings(fs)

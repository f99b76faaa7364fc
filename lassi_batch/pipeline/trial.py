"""One LASSI-EE trial (stages 0-4) as a deterministic program over a journaled archive.

Every side effect (an LLM call, the evaluation of a code version, a plan) is a step with a
unique key. A step's result is committed to the trial's HDF5 file together with its payload in
one transaction. Resuming a killed trial simply runs the program again: steps already in the
journal return their recorded results, so no answered LLM call is repeated and no candidate is
lost, and the program takes the same path up to the point where it was killed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable

from ..core.config import AppConfig, LLMConfig, StudyConfig
from ..llm.extract import extract_code, parse_optimizations, parse_verdict
from ..llm.client import LLMError, is_reasoning_model
from ..llm.prompts import PromptSet, format_sources
from ..core.records import Candidate, LLMCall
from ..store.archive import TrialArchive
from . import schedule as sch
from .bench import Bench, Outcome
from .screen import Screener
from ..screening import policy
from ..screening.verifier import VerifierReport, verify_runs

LANG = {"cuda": "cuda", "hip": "cpp", "cpu": "cpp"}
MODEL_NAMES = {"cuda": "CUDA", "hip": "HIP", "cpu": "OpenMP C++"}
MAX_LOG_CHARS = 12000  # compiler/runtime output quoted back to the LLM


def _clip(text: str, limit: int = MAX_LOG_CHARS) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return text[:half] + f"\n... [{len(text) - limit} characters omitted] ...\n" + text[-half:]


def render_files(files: dict[str, str], lang: str) -> str:
    return format_sources(files, lang)


def _uses_temperature(model: str, cfg: LLMConfig) -> bool:
    return not is_reasoning_model(model, cfg.reasoning_models)


def findings_text(rep: VerifierReport) -> str:
    """The deterministic verifier's findings as the judge reads them."""
    lines = [f"Deterministic checks: {rep.verdict.upper()}"]
    lines += [f"- [{f.severity}] {f.kind}: {f.message}" for f in rep.findings] or ["- no findings"]
    return "\n".join(lines)


@dataclass
class Progress:
    """Events for a live display; the trial never depends on them."""

    callback: Callable[[dict[str, Any]], None] | None = None

    def __call__(self, **event: Any) -> None:
        if self.callback:
            self.callback(event)


@dataclass
class TrialOutcome:
    status: str
    source_energy_j: float | None
    best_energy_j: float | None
    best_candidate: int | None
    vanilla_passed: bool
    candidates: int
    stop_reason: str = ""

    @property
    def reduction(self) -> float | None:
        if not self.source_energy_j or self.best_energy_j is None:
            return None
        return (self.source_energy_j - self.best_energy_j) / self.source_energy_j


class Trial:
    def __init__(
        self,
        study: StudyConfig,
        app: AppConfig,
        archive: TrialArchive,
        backend: Any,
        prompts: PromptSet,
        bench: Bench,
        system_details: str = "",
        progress: Progress | None = None,
    ):
        self.study, self.app, self.ar, self.backend = study, app, archive, backend
        self.prompts, self.bench, self.system_details = prompts, bench, system_details
        self.cfg = study.llm
        self.kind = study.platform.kind
        self.lang = LANG[self.kind]
        self.progress = progress or Progress()
        self.files_allowed = list(app.build_for(self.kind).files)
        self._ctx: dict[str, str] = {}
        self.screener = Screener(app, bench, list(bench.args))
        self._probes: dict[str, Any] | None = None  # the source's differential runs (journalled as s0/probes)
        # Confirms a held candidate (the interleaved re-measurement): returns (confirmed, message),
        # or None to leave it held. Without one, held candidates never count.
        self.confirm_hold: Callable[[Candidate, Candidate], tuple[bool, str] | None] | None = None

    # ------------------------------------------------------------------ journaled steps

    def _ask(self, key: str, kind: str, model: str, values: dict[str, Any], temperature: float | None) -> LLMCall:
        """One LLM call, answered from the journal when already made."""
        rec = self.ar.get_step(key)
        if rec is not None:
            return self.ar.llm_call(rec["llm_call"])
        messages = self.prompts.messages(kind, **values)
        temp = temperature if _uses_temperature(model, self.cfg) else None
        self.progress(event="llm", key=key, kind=kind, model=model)
        t0 = time.time()
        try:
            call = self.backend.complete(key=key, kind=kind, model=model, messages=messages, temperature=temp)
        except LLMError as e:  # the endpoint refuses us for good: keep the evidence, then stop the trial
            if e.call is not None:
                with self.ar.transaction():
                    self.ar.add_llm_call(e.call)
            raise
        with self.ar.transaction():
            cid = self.ar.add_llm_call(call)
            self.ar.record_step(key, "llm", {"llm_call": cid}, t0, time.time())
        return call

    def _evaluate(self, key: str, cand: Candidate) -> Candidate:
        """Build, run, measure and verify a version; recorded as one step."""
        rec = self.ar.get_step(key)
        if rec is not None:
            return self.ar.candidate(rec["candidate"])
        if cand.id is None:
            cand.id = self.ar.candidate_id(key)  # stored before a kill, not yet evaluated
        if cand.id is None:
            with self.ar.transaction():
                self.ar.add_candidate(cand)
        self.progress(event="evaluate", key=key, stage=cand.stage, iteration=cand.iteration)
        t0 = time.time()
        out = self.bench.evaluate(cand.files, key.replace("/", "_"))
        self._fill(cand, out)
        with self.ar.transaction():
            for m in out.measurements:
                self.ar.add_measurement(cand.id, m)
            self.ar.update_candidate(cand.id, cand)
            self.ar.record_step(key, "evaluate", {"candidate": cand.id}, t0, time.time())
        return cand

    def _fill(self, cand: Candidate, out: Outcome) -> None:
        cand.build_ok = out.built
        cand.build_log = _clip(out.build.log.stdout + out.build.log.stderr, 200_000)
        run = out.first_run
        if not out.built:
            cand.status = "build_failed"
            return
        if run is not None:
            cand.stdout, cand.stderr, cand.returncode = run.stdout, run.stderr, run.returncode
        cand.run_ok = out.ran
        cand.work_counts = out.work_counts
        cand.verifier = {"runs": out.run_record()}  # every repeat's output and cost, for screening
        if not out.ran:
            bad = next((r for r in out.runs if not r.ok), run)
            cand.status = "run_failed"
            if bad is not None:
                cand.stdout, cand.stderr, cand.returncode = bad.stdout, bad.stderr, bad.returncode
                if bad.error:
                    cand.stderr = (cand.stderr + "\n" + bad.error).strip()
            return
        cand.status = "measured"
        s = out.summary()
        cand.energy_j, cand.runtime_s, cand.power_w = s["energy_j"], s["runtime_s"], s["power_w"]

    def _store_plan(self, key: str, text: str, based_on: int | None) -> None:
        if self.ar.get_step(key) is None:
            with self.ar.transaction():
                pid = self.ar.add_plan(key, text, based_on)
                self.ar.record_step(key, "plan", {"plan": pid}, time.time(), time.time())

    # ------------------------------------------------------------------ screening

    def _source_probes(self, source: Candidate) -> dict[str, Any]:
        """The source's runs on the trial's unseen probes: made once per trial, journalled."""
        if self._probes is None:
            rec = self.ar.get_step("s0/probes")
            if rec is None:
                self.progress(event="probes", key="s0/probes")
                t0 = time.time()
                rec = self.screener.source_probes(source)
                with self.ar.transaction():
                    self.ar.record_step("s0/probes", "probes", rec, t0, time.time())
            self._probes = rec
        return self._probes

    def _screen(self, key: str, cand: Candidate, source: Candidate) -> Candidate:
        """Deterministic screening (measured runs, then differential runs) and the judge for a
        version that ran; the verifier's and the judge's verdicts are kept apart, and the
        screening verdict (pass | fail | held) with its findings decides (screening/policy.py)."""
        if cand.judge_verdict or not cand.run_ok:
            return cand
        measured = self.screener.measured_findings(source, cand)
        diff = cand.verifier.get("differential")
        if diff is None and not any(f.severity in ("fail", "error") for f in measured):
            diff = self.screener.differential(source, cand, self._source_probes(source), key.replace("/", "_"))
        rep = self.screener.report(measured, diff)
        cand.verifier_verdict = rep.verdict
        cand.verifier = {**rep.to_dict(), "runs": cand.verifier.get("runs"), "differential": diff}
        with self.ar.transaction():
            self.ar.update_candidate(cand.id, cand)  # differential runs are kept if the judge call is cut short
        values = {
            "source_code": render_files(source.files, self.lang),
            "candidate_code": render_files(cand.files, self.lang),
            "source_output": _clip(source.stdout),
            "candidate_output": _clip(cand.stdout),
            "energy_report": self._energy_text(source, cand),
            "verifier_findings": findings_text(rep),
            "model_name": MODEL_NAMES[self.kind],
        }
        call = self._ask(key, "judge", self.cfg.judge_model, values, 0.0)
        cand.judge_text = call.reply if call.ok else f"[judge call failed: {call.error}]"
        cand.judge_verdict = parse_verdict(call.reply) if call.ok else ""
        d = policy.decide(True, rep.findings, cand.judge_verdict, self.cfg.pass_policy)
        if d.verdict == "held" and self.confirm_hold is not None:
            settled = self.confirm_hold(source, cand)
            if settled is not None:
                d = policy.release_hold(d.findings, *settled)
        cand.verdict, cand.findings_json, cand.passed = d.verdict, d.findings_json, d.passed
        with self.ar.transaction():
            self.ar.update_candidate(cand.id, cand)
        return cand

    @staticmethod
    def _energy_line(label: str, c: Candidate) -> str:
        e = "n/a" if c.energy_j is None else f"{c.energy_j:.2f} J"
        t = "n/a" if c.runtime_s is None else f"{c.runtime_s:.3f} s"
        p = "n/a" if c.power_w is None else f"{c.power_w:.1f} W"
        return f"{label}: energy {e}, runtime {t}, average power {p}"

    def _energy_text(self, source: Candidate, cand: Candidate) -> str:
        return self._energy_line("source", source) + "\n" + self._energy_line("candidate", cand)

    # ------------------------------------------------------------------ generation with self-correction

    def _generate(
        self, prefix: str, stage: int, iteration: int, call: LLMCall, parent: Candidate, temperature: float | None,
        self_correct: bool,
    ) -> Candidate:
        """Turn a reply into a candidate, fixing compile/runtime errors up to the cap when allowed."""
        attempt = 0
        prev_id = parent.id
        while True:
            ekey = f"{prefix}/eval{attempt}"
            rec = self.ar.get_step(ekey)
            if rec is not None:
                cand = self.ar.candidate(rec["candidate"])
            else:
                cand = Candidate(key=ekey, stage=stage, iteration=iteration, parent=prev_id,
                                 temperature=temperature, self_corrections=attempt)
                if not call.ok:
                    cand.status, cand.description = "llm_failed", call.error
                    return self._record_unrunnable(ekey, cand)
                ex = extract_code(call.reply, self.lang, self.files_allowed)
                if ex.files is None:
                    cand.status, cand.description = "extract_failed", ex.error
                    return self._record_unrunnable(ekey, cand)
                cand.files = {**parent.files, **ex.files}
                cand.description = ex.description
                cand = self._evaluate(ekey, cand)
            if cand.run_ok or not self_correct or attempt >= self.cfg.max_self_corrections:
                return cand
            attempt += 1
            prev_id = cand.id
            fkey = f"{prefix}/fix{attempt}"
            if not cand.build_ok:
                kind, values = "fix_compile", {"code": render_files(cand.files, self.lang),
                                               "errors": _clip(cand.build_log)}
            else:
                kind, values = "fix_runtime", {"code": render_files(cand.files, self.lang),
                                               "errors": _clip((cand.stderr + "\n" + cand.stdout).strip()),
                                               "exit_status": str(cand.returncode)}
            values["model_name"] = MODEL_NAMES[self.kind]
            self.progress(event="self_correct", key=fkey, attempt=attempt)
            call = self._ask(fkey, kind, self.cfg.generator_model, values, temperature)
            parent = cand

    def _record_unrunnable(self, key: str, cand: Candidate) -> Candidate:
        with self.ar.transaction():
            self.ar.add_candidate(cand)
            self.ar.record_step(key, "evaluate", {"candidate": cand.id}, time.time(), time.time())
        return cand

    # ------------------------------------------------------------------ stages

    def _stage(self, name: str, fn: Callable[[], Any], consolidate: bool = True) -> Any:
        t0 = time.time()
        self.progress(event="stage", stage=name)
        result = fn()
        with self.ar.transaction():
            self.ar.set_stage_time(name, t0, time.time())
        if consolidate:
            self.ar.checkpoint()  # readers see the trial as of this stage end
        return result

    def run(self) -> TrialOutcome:
        self.ar.set_status("running")
        source = self._stage("stage0_profile", self._stage0)
        if not source.run_ok:
            msg = f"source code failed to {'build' if not source.build_ok else 'run'}; see candidate {source.id}"
            self.ar.set_status("failed", msg)
            return TrialOutcome("failed", None, None, None, False, len(self.ar.candidates()), msg)
        vanilla = self._stage("stage1_vanilla", lambda: self._stage1(source))
        gain = self.study.measure.min_improvement
        best = vanilla if (vanilla.passed and sch.improves(vanilla.energy_j, source.energy_j, gain)) else source
        self.progress(event="best", energy_j=best.energy_j, candidate=best.id)
        self._stage("stage2_context", lambda: self._stage2(best))
        # stage 3 holds most of a trial's data and stage 4 is one call: the stop consolidates both
        # at once (one copy of the trial instead of two; docs/benchmarks.md, archive)
        best, reason = self._stage("stage3_iterate", lambda: self._stage3(source, best), consolidate=False)
        self._stage("stage4_report", lambda: self._stage4(source, best, vanilla, reason))
        self.ar.set_status("done")
        return TrialOutcome("done", source.energy_j, best.energy_j, best.id, vanilla.passed,
                            len(self.ar.candidates()), reason)

    def _stage0(self) -> Candidate:
        files = {f: (self.app.path / f).read_text() for f in self.files_allowed}
        cand = Candidate(key="s0/eval", stage=0, files=files)
        cand = self._evaluate("s0/eval", cand)
        if cand.run_ok and not cand.verifier_verdict:
            runs = cand.verifier.get("runs") or {"stdouts": [cand.stdout], "returncodes": [cand.returncode]}
            # the source against itself: every repeat must agree with the first within tolerance,
            # else the app's regexes or tolerances are wrong (a note, never the source's failure)
            rep = verify_runs(self.app.check, cand.stdout, list(zip(runs["stdouts"], runs["returncodes"])))
            cand.verifier_verdict, cand.verifier = rep.verdict, {**rep.to_dict(), "runs": runs}
            cand.verdict, cand.findings_json = "pass", json.dumps(policy.contract_findings(rep.findings))
            with self.ar.transaction():
                self.ar.update_candidate(cand.id, cand)
        return cand

    def _stage1(self, source: Candidate) -> Candidate:
        values = {"code": render_files(source.files, self.lang), "model_name": MODEL_NAMES[self.kind]}
        call = self._ask("s1/zero_shot", "zero_shot", self.cfg.generator_model, values, self.cfg.temperature)
        cand = self._generate("s1", 1, 0, call, source, self.cfg.temperature, self_correct=False)
        return self._screen("s1/judge", cand, source)

    def _stage2(self, best: Candidate) -> None:
        m = MODEL_NAMES[self.kind]
        bg = self._ask("s2/background", "context_background", self.cfg.context_model,
                       {"background": self.prompts.background(self.kind), "model_name": m}, self.cfg.temperature)
        sysd = self._ask("s2/system", "context_system", self.cfg.context_model,
                         {"system_details": _clip(self.system_details, 30000), "model_name": m}, self.cfg.temperature)
        code = self._ask("s2/code", "context_code", self.cfg.context_model,
                         {"code": render_files(best.files, self.lang), "model_name": m}, self.cfg.temperature)
        self._ctx = {"background_summary": bg.reply, "system_summary": sysd.reply, "code_analysis": code.reply}
        if self.ar.get_step("s2/context") is None:
            with self.ar.transaction():
                for name, text in (("background", bg.reply), ("system", sysd.reply), ("code_analysis", code.reply)):
                    self.ar.set_context(name, text)
                self.ar.record_step("s2/context", "context", {}, time.time(), time.time())
        self._plan("s2/plan", best)

    def _plan(self, key: str, best: Candidate) -> str:
        values = {**self._ctx, "code": render_files(best.files, self.lang), "model_name": MODEL_NAMES[self.kind],
                  "energy_report": self._energy_line("current best", best)}
        call = self._ask(key, "plan", self.cfg.generator_model, values, self.cfg.temperature)
        self._store_plan(key + "/stored", call.reply, best.id)
        self._ctx["plan"] = call.reply
        return call.reply

    def _stage3(self, source: Candidate, best: Candidate) -> tuple[Candidate, str]:
        s = sch.Schedule(self.cfg.temperature, self.cfg.temperature_step, self.cfg.temperature_max,
                         self.cfg.max_nonimproving, self.cfg.max_iterations,
                         _uses_temperature(self.cfg.generator_model, self.cfg))
        st = sch.initial_state(s)
        while True:
            reason = sch.should_stop(s, st)
            if reason:
                return best, reason
            i = st.iteration + 1
            prefix = f"s3/i{i}"
            values = {**self._ctx, "code": render_files(best.files, self.lang), "model_name": MODEL_NAMES[self.kind],
                      "energy_report": self._energy_text(source, best)}
            self.progress(event="iteration", iteration=i, temperature=st.temperature, best_energy_j=best.energy_j)
            call = self._ask(f"{prefix}/refactor", "refactor", self.cfg.generator_model, values, st.temperature)
            cand = self._generate(prefix, 3, i, call, best, st.temperature, self_correct=True)
            cand = self._screen(f"{prefix}/judge", cand, source)
            improved = cand.passed and sch.improves(cand.energy_j, best.energy_j, self.study.measure.min_improvement)
            if improved:
                best = cand
                self.progress(event="best", energy_j=best.energy_j, candidate=best.id)
                self._plan(f"{prefix}/plan", best)
            st = sch.advance(s, st, improved)

    def _stage4(self, source: Candidate, best: Candidate, vanilla: Candidate, reason: str) -> None:
        report, opts = "", []
        if best.id != source.id:
            values = {"source_code": render_files(source.files, self.lang),
                      "candidate_code": render_files(best.files, self.lang),
                      "energy_report": self._energy_text(source, best), "model_name": MODEL_NAMES[self.kind]}
            call = self._ask("s4/report", "final_report", self.cfg.context_model, values, self.cfg.temperature)
            report = call.reply if call.ok else f"[final report failed: {call.error}]"
            opts = parse_optimizations(report) if call.ok else []
        cands = self.ar.candidates()
        passed = [c for c in cands if c.stage in (1, 3) and c.passed]
        attrs = {
            "source_candidate": source.id, "best_candidate": best.id,
            "source_energy_j": source.energy_j, "best_energy_j": best.energy_j,
            "reduction": ((source.energy_j - best.energy_j) / source.energy_j)
            if source.energy_j and best.energy_j is not None else 0.0,
            "improved": best.id != source.id,
            "best_stage": best.stage, "best_iteration": best.iteration,
            "best_self_corrections": best.self_corrections,
            "vanilla_candidate": vanilla.id, "vanilla_passed": vanilla.passed,
            "vanilla_energy_j": vanilla.energy_j if vanilla.passed else None,
            "pipeline_passed": bool(passed),
            "stop_reason": reason,
            "llm_calls": len(self.ar.llm_calls()),
            "candidates": len(cands),
        }
        with self.ar.transaction():
            self.ar.set_result(attrs, report, opts)

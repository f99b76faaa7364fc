"""One LASSI-EE trial (stages 0-4) as a deterministic program over a journaled archive.

Every side effect (an LLM call, the evaluation of a code version, a plan) is a step with a
unique key. A step's result is committed to the trial's HDF5 file together with its payload in
one transaction. Resuming a killed trial simply runs the program again: steps already in the
journal return their recorded results, so no answered LLM call is repeated and no candidate is
lost, and the program takes the same path up to the point where it was killed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

from ..core.config import AppConfig, LLMConfig, StudyConfig
from ..llm.extract import extract_code, parse_optimizations, parse_verdict
from ..llm.client import LLMError, is_reasoning_model
from ..llm.prompts import PromptSet, format_sources
from ..core.platforms import PLATFORM_FACTS
from ..core.records import Candidate, LLMCall
from ..power.stats import Saving, is_lower
from ..store import headline as hl
from ..store.archive import TrialArchive
from ..store.reader import stored_repeat, trial_records
from . import schedule as sch
from .bench import Bench, Outcome
from .screen import Screener
from ..screening import differential as dif
from ..screening import policy
from ..screening.verifier import VerifierReport, verify_runs

LANG = {k: f.code_lang for k, f in PLATFORM_FACTS.items()}
MODEL_NAMES = {k: f.label for k, f in PLATFORM_FACTS.items()}
MAX_LOG_CHARS = 12000  # compiler/runtime output quoted back to the LLM
LARGER_RUN_S = 1.0  # a held candidate's inconclusive confirmation is repeated at a size the source runs this long


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
    confirmed: bool = False  # the saving comes from an interleaved re-measurement whose interval excludes none
    reduction_ci_low: float = math.nan  # interval of the reduction (fractions), NaN when not confirmed
    reduction_ci_high: float = math.nan
    selection_reduction: float | None = None  # the stage-3 best's saving from its selection-time figures
    confirm_level: float = math.nan
    reduction: float | None = None  # the trial's saving (store/headline.py), None when it has none


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
        self._commit_runs(key, "evaluate", cand, out.measurements, {"candidate": cand.id}, t0)
        return cand

    def _commit_runs(self, key: str, kind: str, cand: Candidate, measurements: list[Any], result: dict[str, Any],
                     t0: float) -> None:
        """The runs, the candidate's new figures and the step that made them, in one commit: a
        kill leaves either all of them or none, so a resume measures again or not at all."""
        with self.ar.transaction():
            for m in measurements:
                self.ar.add_measurement(cand.id, m)
            self.ar.update_candidate(cand.id, cand)
            self.ar.record_step(key, kind, result, t0, time.time())

    def _fill(self, cand: Candidate, out: Outcome) -> None:
        cand.build_ok = out.built
        cand.build_s = float(out.build.log.wall_s)
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
        if cand.judge_verdict:
            return cand
        if not cand.run_ok:
            left = self.screener.failed_run_findings(cand) if cand.verdict == "not_run" else []
            if left:  # processes ended by the sandbox: an integrity finding, not a failed run
                d = policy.decide(True, left, "", "verifier")
                cand.verdict, cand.findings_json, cand.passed = d.verdict, d.findings_json, d.passed
                with self.ar.transaction():
                    self.ar.update_candidate(cand.id, cand)
            return cand
        repeats = {"source_energy": self._select_energies(source), "cand_energy": self._select_energies(cand),
                   "source_runtime": self._select_energies(source, "runtime_s"),
                   "cand_runtime": self._select_energies(cand, "runtime_s")}
        measured = self.screener.measured_findings(source, cand, repeats, self.study.measure.significance)
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
        # a held candidate stays held (not passed) until stage 4 re-measures it (`_confirm`)
        d = policy.decide(True, rep.findings, cand.judge_verdict, self.cfg.pass_policy)
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
        source = self._here(source)  # resumed on another device: the source is measured there first
        vanilla = self._stage("stage1_vanilla", lambda: self._stage1(source))
        best = vanilla if (vanilla.passed and self._beats(vanilla, source)) else source
        self.progress(event="best", energy_j=best.energy_j, candidate=best.id)
        self._stage("stage2_context", lambda: self._stage2(best))
        # stage 3 holds most of a trial's data: its end is consolidated with stage 4's (one copy
        # of the trial instead of two; docs/benchmarks.md, archive)
        best, reason = self._stage("stage3_iterate", lambda: self._stage3(source, best), consolidate=False)
        res = self._stage("stage4_report", lambda: self._stage4(source, best, vanilla, reason))
        self.ar.set_status("done")
        return TrialOutcome("done", res["source_energy_j"], res["best_energy_j"], res["best_candidate"], vanilla.passed,
                            len(self.ar.candidates()), reason, confirmed=res["confirmed"],
                            reduction_ci_low=res["reduction_ci_low"], reduction_ci_high=res["reduction_ci_high"],
                            selection_reduction=res["selection_reduction"], confirm_level=res["confirm_level"],
                            reduction=res["reduction"])

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
            improved = cand.passed and self._beats(cand, best)
            if improved:
                best = cand
                self.progress(event="best", energy_j=best.energy_j, candidate=best.id)
                self._plan(f"{prefix}/plan", best)
            st = sch.advance(s, st, improved)

    # ------------------------------------------------------------------ decisions that respect noise

    @property
    def device_id(self) -> str:
        """The measuring device of this attempt (GPU UUID, powercap zones, the CPU model's label)."""
        return str(getattr(self.bench.meter, "device_id", "") or "")

    def _select_measurements(self, cand: Candidate) -> list[Any]:
        """Selection-time measurements of `cand` on this attempt's device: energies are compared
        only between runs on one device (a trial resumed on another GPU re-measures, `_here`)."""
        if cand.id is None:
            return []
        dev = self.device_id
        return [m for m in self.ar.measurements(cand.id, traces=False) if m.attrs.get("phase", "select") != "confirm"
                and (not dev or not m.trace.device_id or m.trace.device_id == dev)]

    def _here(self, cand: Candidate) -> Candidate:
        """`cand` with measurements on this device: measured again here (journalled per device)
        when all its runs were on another one, e.g. before a resume on another node."""
        if cand.id is None or not cand.run_ok or self._select_measurements(cand):
            return cand
        key = f"remeasure/{cand.id}/{self.device_id}"
        rec = self.ar.get_step(key)
        if rec is not None:
            return self.ar.candidate(cand.id)
        self.progress(event="remeasure", key=key, candidate=cand.id, device=self.device_id)
        t0 = time.time()
        out = self.bench.evaluate(cand.files, f"remeasure_{cand.id}")
        for m in out.measurements:
            m.attrs["remeasured"] = True
        ok = out.ran
        if ok:  # the candidate's figures are now this device's
            sm = out.summary()
            cand.energy_j, cand.runtime_s, cand.power_w = sm["energy_j"], sm["runtime_s"], sm["power_w"]
        self._commit_runs(key, "remeasure", cand, out.measurements,
                          {"candidate": cand.id, "device_id": self.device_id, "ok": ok}, t0)
        return cand

    def _select_energies(self, cand: Candidate, name: str = "energy_net_j") -> list[float]:
        """A figure (default: the default energy) from each selection-time repeat of the candidate
        on this device, measured here first when it has none (`_here`): one header read when it has."""
        ms = self._select_measurements(cand)
        if not ms:
            ms = self._select_measurements(self._here(cand))
        return [float(m.figures.get(name, math.nan)) for m in ms]

    def _beats(self, cand: Candidate, best: Candidate) -> bool:
        """A new best: lower by more than min_improvement and, with repeats, than the measured noise
        (one-sided Welch test at [measure].significance; power/stats.py, docs/trial.md)."""
        m = self.study.measure
        if cand.energy_j is None or best.energy_j is None:
            return False
        test = is_lower(self._select_energies(best), self._select_energies(cand), m.min_improvement, m.significance)
        self.progress(event="decision", candidate=cand.id, against=best.id, lower=test.lower, reason=test.reason)
        return test.lower

    # ------------------------------------------------------------------ stage 4: confirmation

    def _records(self, best: Candidate) -> hl.TrialRecords:
        """The trial's records as stage 4 sees them, with stage 3's best as decided live."""
        return dataclasses.replace(trial_records(self.ar), selection_best=best.id, finished=True)

    def _measure_pair(self, tag: str, source: Candidate, cand: Candidate, args: list[str] | None = None
                      ) -> tuple[Any, Any, dict[str, Any]]:
        """One interleaved re-measurement of source and candidate: (runs, interval, step fields)."""
        m = self.study.measure
        conf = self.bench.confirm(source.files, cand.files, tag, m.confirm_repeats, args)
        c = hl.Confirmation(int(cand.id), conf.ok, tuple(stored_repeat(x) for x in conf.a.measurements),  # type: ignore[arg-type]
                            tuple(stored_repeat(x) for x in conf.b.measurements))
        a, b = [r.energy_j for r in c.source], [r.energy_j for r in c.runs]
        sv, with_tail, confirmed = c.saving(m.confidence), c.with_tail(), c.confirmed(m.confidence)
        why = _confirm_note(conf.ok, sv)
        result = {
            "candidate": cand.id, "source": source.id, "confirmed": bool(confirmed), "ok": bool(conf.ok),
            "source_energies_j": a, "candidate_energies_j": b, "order": conf.order,
            "source_energy_j": sv.mean_a, "candidate_energy_j": sv.mean_b, "reduction": sv.reduction,
            "ci_low": sv.ci_low, "ci_high": sv.ci_high, "level": m.confidence, "method": sv.method,
            "reduction_with_tail": with_tail, "note": why,
        }
        return conf, sv, result

    def _larger_args(self, source: Candidate) -> list[str] | None:
        """The measured arguments at a size where the source runs about `LARGER_RUN_S`."""
        return dif.larger_args(self.app.probe, list(self.bench.args), source.runtime_s, LARGER_RUN_S,
                               self.app.time_limit_s / 4)

    def _confirm(self, key: str, source: Candidate, cand: Candidate) -> dict[str, Any]:
        """Re-measure source and candidate interleaved; journaled, so a resumed trial reuses it.

        A held candidate whose re-measurement is inconclusive (not confirmed, but not shown to be
        no better either) is measured once more at a larger size where the app has a work knob
        (`_larger_args`): a millisecond run's saving is lost in the meter's noise, a second-long
        one's is not. Its outputs there are verified against the source's. That re-measurement
        decides the hold only (a confirmed one releases it); the confirmation, and so the trial's
        figures, stay those of the measured size."""
        rec = self.ar.get_step(key)
        if rec is not None:
            return rec
        m = self.study.measure
        self.progress(event="confirm", key=key, candidate=cand.id, repeats=m.confirm_repeats)
        t0 = time.time()
        conf, sv, result = self._measure_pair(key.replace("/", "_"), source, cand)
        runs = [conf]
        confirmed, why = result["confirmed"], result["note"]
        extra: list[dict[str, str]] = []
        larger = self._larger_args(source) if cand.verdict == "held" else None
        inconclusive = conf.ok and not confirmed and not (math.isfinite(sv.ci_high) and sv.ci_high <= 0)
        if larger is not None and inconclusive:
            self.progress(event="confirm_larger", key=key, candidate=cand.id, args=larger)
            conf2, _, res2 = self._measure_pair(key.replace("/", "_") + "_larger", source, cand, larger)
            runs.append(conf2)
            res2["args"] = larger
            result["larger"] = res2
            why += f"; inconclusive, so re-measured at {' '.join(larger)}: {res2['note']}"
            if conf2.ok:
                rep = verify_runs(self.app.check, conf2.a.runs[0].stdout, [(r.stdout, r.returncode) for r in conf2.b.runs])
                bad = [f for f in rep.findings if f.severity in ("fail", "error")]
                if bad:
                    extra.append({"kind": "differential", "severity": "integrity",
                                  "message": f"on the larger re-measurement ({' '.join(larger)}): {bad[0].kind}: "
                                             f"{bad[0].message}"})
        released = confirmed or bool(result.get("larger", {}).get("confirmed") and not extra)
        result["note"] = why
        if confirmed:
            cand.confirmed_energy_j, cand.confirmed_source_energy_j = sv.mean_b, sv.mean_a
            cand.confirmed_reduction, cand.confirmed_ci_low, cand.confirmed_ci_high = sv.reduction, sv.ci_low, sv.ci_high
        else:  # NaN: re-measured, not confirmed (the step result keeps what was measured)
            cand.confirmed_energy_j = cand.confirmed_source_energy_j = math.nan
            cand.confirmed_reduction = cand.confirmed_ci_low = cand.confirmed_ci_high = math.nan
        cand.confirm_verdict = "confirmed" if confirmed else "not_confirmed"
        if cand.verdict == "held":  # an implausibly large saving: passes only if it re-measures true
            d = policy.release_hold(policy.load_findings(cand.findings_json), released,
                                    f"interleaved re-measurement against the source: {why}")
            fs = d.findings + extra
            cand.verdict, cand.findings_json = policy.verdict_of(fs), json.dumps(fs)
            cand.passed = cand.verdict == "pass"
        with self.ar.transaction():
            for c in runs:
                for meas in c.a.measurements:
                    self.ar.add_measurement(source.id, meas)
                for meas in c.b.measurements:
                    self.ar.add_measurement(cand.id, meas)
            self.ar.update_candidate(cand.id, cand)
            self.ar.record_step(key, "confirm", result, t0, time.time())
        self.progress(event="confirmed" if confirmed else "not_confirmed", key=key, candidate=cand.id,
                      reduction=sv.reduction, ci_low=sv.ci_low, ci_high=sv.ci_high, level=m.confidence)
        return result

    def _stage4(self, source: Candidate, best: Candidate, vanilla: Candidate, reason: str) -> dict[str, Any]:
        """Confirm candidates in turn until one confirms; the figures are `headline.derive`'s."""
        m = self.study.measure
        rules = hl.Rules.of(m)
        if m.confirm_repeats > 0:
            rec = self._records(best)
            for k, e in enumerate(hl.confirm_queue(rec, rules)):
                if self._confirm(f"s4/confirm{k}", source, self.ar.candidate(e.id))["confirmed"]:  # type: ignore[arg-type]
                    break
        h = hl.derive(self._records(best), rules)
        final = self.ar.candidate(h.best_candidate) if h.best_candidate is not None else source
        src_e, best_e, red, lo, hi = (h.source_energy_j, h.best_energy_j, h.reduction, h.reduction_ci_low,
                                      h.reduction_ci_high)
        tried = [{"candidate": c.candidate, "confirmed": ok, "note": _confirm_note(c.ok, sv)} for c, sv, ok in h.tried]
        report, opts = "", []
        if final.id != source.id:
            energy = self._energy_text(source, final)
            if h.confirmed:
                energy += (f"\nconfirmed by {m.confirm_repeats} interleaved runs each: saving {red:.1%} "
                           f"({m.confidence:.0%} interval {lo:.1%} to {hi:.1%})")
            values = {"source_code": render_files(source.files, self.lang),
                      "candidate_code": render_files(final.files, self.lang),
                      "energy_report": energy, "model_name": MODEL_NAMES[self.kind]}
            call = self._ask("s4/report", "final_report", self.cfg.context_model, values, self.cfg.temperature)
            report = call.reply if call.ok else f"[final report failed: {call.error}]"
            opts = parse_optimizations(report) if call.ok else []
        cands = self.ar.candidates()
        passed = [c for c in cands if c.stage in (1, 3) and c.passed]
        attrs = {
            "source_candidate": source.id, "best_candidate": final.id,
            "source_energy_j": src_e, "best_energy_j": best_e,
            "reduction": red,
            "improved": h.improved,
            "best_stage": final.stage, "best_iteration": final.iteration,
            "best_self_corrections": final.self_corrections,
            "selection_best_candidate": best.id, "selection_best_energy_j": h.selection_best_energy_j,
            "selection_source_energy_j": h.selection_source_energy_j, "selection_reduction": h.selection_reduction,
            "confirmed": h.confirmed, "reduction_ci_low": lo, "reduction_ci_high": hi,
            "confirm_level": h.confirm_level,
            "confirm_method": hl.CONFIRM_METHOD if m.confirm_repeats else "none",
            "confirm_repeats": m.confirm_repeats, "confirm_tried": len(tried),
            "confirm_notes": [f"candidate {r['candidate']}: {'confirmed' if r['confirmed'] else 'not confirmed'} ({r['note']})"
                              for r in tried],
            "reduction_with_tail": h.reduction_with_tail,
            "vanilla_candidate": vanilla.id, "vanilla_passed": vanilla.passed,
            "vanilla_energy_j": vanilla.energy_j if vanilla.passed else None,
            "pipeline_passed": bool(passed),
            "stop_reason": reason,
            "llm_calls": len(self.ar.llm_calls()),
            "candidates": len(cands),
        }
        with self.ar.transaction():
            self.ar.set_result(attrs, report, opts)
        return {"source_energy_j": src_e, "best_energy_j": best_e, "best_candidate": final.id,
                "confirmed": h.confirmed, "reduction_ci_low": lo, "reduction_ci_high": hi, "reduction": red,
                "selection_reduction": h.selection_reduction, "confirm_level": m.confidence}


def _confirm_note(ok: bool, sv: Saving) -> str:
    """One line on a confirmation: whether it ran, and the saving with its interval."""
    return ("ran" if ok else "a confirmation run failed to build or run") + (
        f"; saving {sv.reduction:.1%}, {sv.level:.0%} interval {sv.ci_low:.1%}..{sv.ci_high:.1%}"
        if math.isfinite(sv.reduction) else "")

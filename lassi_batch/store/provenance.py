"""Where a trial's numbers come from: the meter (and whether its figures are ESTIMATES), the LLM
(a replay names its transcripts, never a live model), the device and driver, lassi-batch's
version and revision, and the dates. One derivation per trial (`of_trial`, stored in the
summary) and one per set of trials (`Provenance`), which every output states: the aggregate
tables and CSVs, the report's opening, the dataset card and every exported record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from .summary import TrialSummary

ESTIMATE = "ESTIMATE"
REPLAY = "replay"


def replay_label(replay_path: str, replay_sha256: str) -> str:
    """'replay of transcripts (sha256 94d90c2e861f)': what answered instead of a live model."""
    name = PurePath(replay_path).name if replay_path else "recorded transcripts"
    return f"replay of {name}" + (f" (sha256 {replay_sha256[:12]})" if replay_sha256 else "")


def of_trial(calls: Iterable[tuple[str, str, str]], llm_config: Mapping[str, Any], attempts: list[dict[str, Any]],
             environment: Mapping[str, Any], package_version: str) -> dict[str, str]:
    """The summary's provenance fields of one trial, from its LLM calls (kind, model, backend),
    the study's [llm] settings, its attempts and environment."""
    calls = list(calls)
    last = attempts[-1] if attempts else {}
    replay = any(b == REPLAY for _, _, b in calls) or (not calls and llm_config.get("backend") == REPLAY)
    backend = REPLAY if replay else (next((b for _, _, b in calls if b), "") or str(llm_config.get("backend", "")))
    if replay:  # the models say which transcripts; the source names the very file (its sha256)
        path = str(llm_config.get("replay_path", ""))
        source = replay_label(path, next((str(a.get("replay_sha256", "")) for a in reversed(attempts)
                                          if a.get("replay_sha256")), ""))
        gen = judge = replay_label(path, "")
    else:
        source = str(llm_config.get("base_url", "") or "")
        gen = next((m for k, m, _ in calls if k == "zero_shot"), "") or str(llm_config.get("generator_model", ""))
        judge = next((m for k, m, _ in calls if k == "judge"), "") or str(llm_config.get("judge_model", ""))
    cpu = environment.get("cpu")
    return {
        "llm_backend": backend, "llm_source": source, "generator_model": gen, "judge_model": judge,
        "device": str(last.get("gpu_name", "") or (cpu if isinstance(cpu, str) else "") or ""),
        "package_version": str(last.get("package_version", "") or package_version or ""),
        "git_revision": str(last.get("git_revision", "") or ""),
    }


def meter_label(s: TrialSummary) -> str:
    return (s.meter or "unknown meter") + (f" ({ESTIMATE})" if s.estimate else "")


def llm_label(s: TrialSummary) -> str:
    if s.llm_backend == REPLAY or s.generator_model.startswith("replay of"):
        return s.generator_model or s.llm_source or "replay"
    judge = f", judge {s.judge_model}" if s.judge_model and s.judge_model != s.generator_model else ""
    return f"{s.generator_model or 'unknown model'}{judge}" + (f" at {s.llm_source}" if s.llm_source else "")


def device_label(s: TrialSummary) -> str:
    return (s.device or s.gpu_name or "unknown device") + (f", driver {s.driver}" if s.driver else "")


def software_label(s: TrialSummary) -> str:
    return f"lassi-batch {s.package_version or '?'}" + (f" ({s.git_revision[:12]})" if s.git_revision else "")


@dataclass
class Provenance:
    """The provenance of a set of trials, every distinct value kept (a study may mix them)."""

    meters: set[str] = field(default_factory=set)
    llms: set[str] = field(default_factory=set)
    devices: set[str] = field(default_factory=set)
    software: set[str] = field(default_factory=set)
    started: str = ""
    finished: str = ""
    estimate: bool = False
    replay: bool = False

    def add(self, s: TrialSummary) -> None:
        self.meters.add(meter_label(s))
        self.llms.add(llm_label(s))
        self.devices.add(device_label(s))
        self.software.add(software_label(s))
        self.estimate |= s.estimate
        self.replay |= s.llm_backend == REPLAY or s.generator_model.startswith("replay of")
        if s.started and (not self.started or s.started < self.started):
            self.started = s.started
        if s.finished and s.finished > self.finished:
            self.finished = s.finished

    @classmethod
    def of(cls, summaries: Iterable[TrialSummary]) -> Provenance:
        p = cls()
        for s in summaries:
            p.add(s)
        return p

    def merge(self, other: Provenance) -> Provenance:
        p = Provenance(self.meters | other.meters, self.llms | other.llms, self.devices | other.devices,
                       self.software | other.software, estimate=self.estimate or other.estimate,
                       replay=self.replay or other.replay)
        p.started = min((x for x in (self.started, other.started) if x), default="")
        p.finished = max(self.finished, other.finished)
        return p

    def columns(self) -> dict[str, str]:
        """One string per aspect (for table rows and CSV columns)."""
        return {"meter": "; ".join(sorted(self.meters)), "llm": "; ".join(sorted(self.llms)),
                "device": "; ".join(sorted(self.devices)), "software": "; ".join(sorted(self.software)),
                "started": self.started, "finished": self.finished}

    def lines(self) -> list[str]:
        """What a document opens with: one line per aspect, with the warnings spelled out."""
        c = self.columns()
        out = [f"Energy meter: {c['meter'] or 'none'}" + (
            f". {ESTIMATE}: energies come from a CPU-time model, not a measurement" if self.estimate else "")]
        out.append(f"LLM: {c['llm'] or 'none'}" + (
            ". Replayed: answers read from recorded transcripts, no live model was asked" if self.replay else ""))
        out += [f"Device: {c['device'] or 'unknown'}", f"Software: {c['software'] or 'unknown'}",
                f"Trials run: {c['started'] or '?'} to {c['finished'] or '?'}"]
        return out

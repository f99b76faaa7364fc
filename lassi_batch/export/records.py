"""What export reads from a study: every trial file, as plain records (the one module that touches
the trial archive, so a change of the archive's reader API changes this file only).

A trial file is read once, read-only, through the store's reader (`open_trial`). Candidate
verdict attributes that the archive's `Candidate` record may not carry yet (`verdict`,
`findings_json`, `confirmed_energy_j`, `confirmed_ci_low/high`) are read from the candidate
groups' attributes (`candidate_attrs`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import ArchiveError, LassiError
from ..core.secrets import is_secret
from ..store.layout import TRIALS_DIR
from ..store.provenance import software_label
from ..store.reader import TrialView, open_trial
from ..store.summary import TrialSummary

# Candidate attributes of the screening contract (not all archives have them yet).
VERDICT_ATTRS = ("verdict", "findings_json", "confirmed_energy_j", "confirmed_source_energy_j", "confirmed_reduction",
                 "confirmed_ci_low", "confirmed_ci_high")
GENERATION_KINDS = ("zero_shot", "refactor", "fix_compile", "fix_runtime")


class ExportError(LassiError):
    """The study cannot be exported (no trial files, nothing left after the filters, unsafe text)."""


@dataclass(frozen=True)
class MeasurementRef:
    """One measured run of a candidate: where it lives in the trial file, and its figures."""

    path: str  # inside the trial file, e.g. "candidates/000006/measurements/000000"
    meter: str
    device: str
    estimate: bool
    energy_j: float  # NaN when the run gave no figure


@dataclass
class CandidateData:
    """One candidate as stored, with the screening attributes of the verdict contract (raw)."""

    id: int
    key: str
    stage: int
    iteration: int
    parent: int | None
    status: str
    files: dict[str, str]
    description: str
    build_ok: bool
    run_ok: bool
    passed: bool
    judge_verdict: str
    judge_text: str
    verifier_verdict: str
    verifier_findings: list[dict[str, Any]]
    energy_j: float | None
    runtime_s: float | None
    power_w: float | None
    build_log: str
    stderr: str
    self_corrections: int
    contract: dict[str, Any]  # the VERDICT_ATTRS present on the candidate group, decoded
    measurements: list[MeasurementRef] = field(default_factory=list)


@dataclass
class LLMCallData:
    key: str
    kind: str
    model: str
    messages: list[dict[str, str]]
    reply: str
    error: str


@dataclass
class TrialData:
    """Everything export needs from one trial file."""

    rel_path: str  # relative to the study folder, POSIX separators
    trial_id: str
    app: str
    platform: str
    status: str
    pass_policy: str  # the study's [llm].pass_policy when the trial ran
    generator_model: str
    judge_model: str
    device: str  # GPU name, or the CPU model for CPU trials
    meter: str
    estimate: bool
    llm_backend: str  # openai | replay (store/provenance.py)
    llm_source: str  # a replay: the transcripts; a live model: its endpoint
    software: str  # lassi-batch version (and revision)
    started: str
    finished: str
    summary: TrialSummary | None
    result: dict[str, Any]
    candidates: list[CandidateData]
    llm_calls: list[LLMCallData]
    steps: list[dict[str, Any]]
    context: dict[str, str]
    plans: list[dict[str, Any]]
    secret_values: list[str]  # values under secret-looking keys found in the stored config (should be none)
    host_names: list[str]  # the machine's names as recorded (for the redactor)
    local_paths: list[str]  # absolute paths found in the stored config (app folders, output, ...)
    measure: dict[str, Any] = field(default_factory=dict)  # the study's [measure] as the trial recorded it

    def candidate(self, cid: int | None) -> CandidateData | None:
        return next((c for c in self.candidates if c.id == cid), None)

    @property
    def source(self) -> CandidateData | None:
        sid = self.result.get("source_candidate")
        return self.candidate(sid if sid is not None else 0)


def trial_files(study_dir: Path) -> list[Path]:
    """The trial archives of a study, in a stable order (`trials/**/*.h5`, else any `*.h5`)."""
    root = study_dir / TRIALS_DIR
    found = sorted(root.rglob("*.h5")) if root.is_dir() else sorted(study_dir.rglob("*.h5"))
    return [p for p in found if p.is_file()]


def _num(v: Any) -> float | None:
    if v is None:
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _measurement_refs(t: TrialView, cid: int) -> list[MeasurementRef]:
    """Where a candidate's measured runs are and what measured them (header attributes only: the
    traces are not needed here, and reading them costs more than the rest of the file)."""
    refs = []
    for path, m in zip(t.measurement_paths(cid), t.measurements(cid, traces=False), strict=True):
        e = _num(m.figures.get(str(m.attrs.get("default_figure", "energy_net_j"))))
        refs.append(MeasurementRef(path, m.trace.meter, m.trace.device, bool(m.trace.estimate),
                                   math.nan if e is None else e))
    return refs


def _device(env: dict[str, Any], summary: TrialSummary | None, platform: str, meas_device: str) -> str:
    if summary is not None and summary.gpu_name:
        return summary.gpu_name
    if platform == "cpu":
        return str(env.get("cpu") or "") or meas_device
    gpus = env.get("gpus") or []
    if gpus and isinstance(gpus[0], dict) and gpus[0].get("name"):
        return str(gpus[0]["name"])
    return meas_device


def _secret_values(obj: Any, under_secret: bool = False) -> list[str]:
    """String values stored under secret-looking keys anywhere in a mapping (for the scanner)."""
    out: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _secret_values(v, under_secret or is_secret(str(k)))
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            out += _secret_values(v, under_secret)
    elif under_secret and isinstance(obj, str) and obj:
        out.append(obj)
    return out


def _abs_paths(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        return [p for v in obj.values() for p in _abs_paths(v)]
    if isinstance(obj, (list, tuple)):
        return [p for v in obj for p in _abs_paths(v)]
    return [obj] if isinstance(obj, str) and obj.startswith("/") and "\n" not in obj else []


def load_trial(path: Path, study_dir: Path) -> TrialData:
    """Read one trial file; ArchiveError (one line) when it is not a readable trial archive."""
    rel = Path(os.path.relpath(path.absolute(), study_dir.absolute())).as_posix()  # a symlinked trials/ stays inside
    try:
        return _load(path, rel)
    except (OSError, KeyError, ValueError) as e:  # a flipped bit reads as an OSError from HDF5
        raise ArchiveError(f"{rel}: unreadable ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


def _load(path: Path, rel: str) -> TrialData:
    with open_trial(path) as ar:
        meta = ar.meta
        cfg = ar.config()
        env = ar.environment()
        result = ar.result()
        calls = [LLMCallData(c.key, c.kind, c.model, list(c.messages), c.reply, c.error) for c in ar.llm_calls()]
        steps = ar.steps()
        context = ar.context()
        plans = ar.plans()
        cands_raw = ar.candidates()
        summary = ar.summary() if ar.version >= 2 else None
        contract = {c.id: {k: v for k, v in ar.candidate_attrs(int(c.id)).items() if k in VERDICT_ATTRS}
                    for c in cands_raw}
        measured = {c.id: _measurement_refs(ar, int(c.id)) for c in cands_raw}
    cands: list[CandidateData] = []
    meter, estimate, meas_device = "", False, ""
    for c in cands_raw:
        refs = measured[c.id]
        if refs and not meter:
            meter, estimate, meas_device = refs[0].meter, refs[0].estimate, refs[0].device
        findings = c.verifier.get("findings") if isinstance(c.verifier, dict) else None
        cands.append(CandidateData(
            id=int(c.id), key=c.key, stage=int(c.stage), iteration=int(c.iteration), parent=c.parent,
            status=c.status, files=dict(c.files or {}), description=c.description or "",
            build_ok=bool(c.build_ok), run_ok=bool(c.run_ok), passed=bool(c.passed),
            judge_verdict=c.judge_verdict or "", judge_text=c.judge_text or "",
            verifier_verdict=c.verifier_verdict or "", verifier_findings=list(findings or []),
            energy_j=_num(c.energy_j), runtime_s=_num(c.runtime_s), power_w=_num(c.power_w),
            build_log=c.build_log or "", stderr=c.stderr or "", self_corrections=int(c.self_corrections or 0),
            contract=contract.get(c.id, {}), measurements=refs,
        ))
    llm_cfg = (cfg.get("study") or {}).get("llm") or {}
    gen = next((c.model for c in calls if c.kind in GENERATION_KINDS and c.model), "") or str(llm_cfg.get("generator_model", ""))
    judge = next((c.model for c in calls if c.kind == "judge" and c.model), "") or str(llm_cfg.get("judge_model", ""))
    if summary is not None:
        gen = summary.generator_model or gen
        judge = summary.judge_model or judge
        meter = summary.meter or meter
        estimate = summary.estimate or estimate
    return TrialData(
        rel_path=rel, trial_id=str(meta.get("trial_id", "")), app=str(meta.get("app", "")),
        platform=str(meta.get("platform", "")), status=str(summary.status if summary else meta.get("status", "")),
        pass_policy=str(llm_cfg.get("pass_policy", "judge_and_verifier")), generator_model=gen, judge_model=judge,
        device=_device(env, summary, str(meta.get("platform", "")), meas_device), meter=meter, estimate=estimate,
        llm_backend=summary.llm_backend if summary else "", llm_source=summary.llm_source if summary else "",
        software=software_label(summary) if summary else "", started=summary.started if summary else "",
        finished=summary.finished if summary else "", summary=summary, result=result, candidates=cands, llm_calls=calls, steps=steps, context=context,
        plans=plans, secret_values=_secret_values(cfg) + _secret_values(env),
        host_names=[str(v) for v in (env.get("hostname"), env.get("host"), summary.host if summary else "") if v],
        local_paths=sorted(set(_abs_paths(cfg))),
        measure=dict((cfg.get("study") or {}).get("measure") or {}),
    )


def load_study(study_dir: Path) -> tuple[list[TrialData], list[str]]:
    """Every finished trial of the study, and one line per trial file skipped (unfinished, unreadable)."""
    paths = trial_files(study_dir)
    if not paths:
        raise ExportError(f"no trial files (*.h5) under {study_dir}")
    trials: list[TrialData] = []
    skipped: list[str] = []
    for p in paths:
        try:
            t = load_trial(p, study_dir)
        except ArchiveError as e:
            skipped.append(f"{p.relative_to(study_dir).as_posix()}: {str(e).replace(str(study_dir.resolve()) + '/', '')}")
            continue
        if t.status != "done":
            skipped.append(f"{t.rel_path}: status {t.status or 'unknown'}, not finished")
            continue
        trials.append(t)
    return trials, skipped

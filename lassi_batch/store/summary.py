"""The trial summary: fixed, typed attributes of one `/summary` group per trial file.

An aggregator over 100,000 trials reads this group and nothing else, so every field has one
type and one meaning whatever the trial's outcome: missing numbers are NaN, missing ints -1,
missing strings "". No field is ever absent and no value is JSON: readers need no branches.
The writer (the trial program) sets it at every stage end and when the trial stops.

Reductions are fractions of the source's energy (0.25 = 25% less energy); 0.0 for a trial whose
pipeline found no passing candidate better than the source (the paper's convention, so that a
failed trial counts as no saving in energy-reduction@k).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from typing import Any

import h5py

from .schema import attr, decode_attr, get_text

SUMMARY_GROUP = "summary"

# Trial states, in the order a trial moves through them. `interrupted` is a stop by a signal
# (scheduler preemption, time limit, Ctrl-C) at a step boundary: the trial can resume.
STATUSES = ("pending", "running", "interrupted", "done", "failed")

# Exit codes of the trial program (`lassi-batch run`, the batch worker). 75 is EX_TEMPFAIL:
# a scheduler wrapper requeues on it; 1 means a trial ended `failed`; 2 is a usage/config error.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 75

NAN = math.nan


@dataclass
class TrialSummary:
    """One trial's headline facts; see docs/hdf5-schema.md (summary group) for each field."""

    # identity
    study: str = ""
    app: str = ""
    platform: str = ""  # cuda | hip | cpu
    trial_index: int = -1
    trial_id: str = ""
    status: str = "pending"  # one of STATUSES
    reason: str = ""  # one line: why the trial failed or was interrupted
    # energies (J, net of idle, confirmed figures where the trial confirmed them)
    source_energy_j: float = NAN
    best_energy_j: float = NAN  # the pipeline's final best; = source when nothing passed
    vanilla_energy_j: float = NAN  # the zero-shot ("vanilla LLM") candidate, NaN when it failed
    selection_best_energy_j: float = NAN  # the best's figure at selection time (before confirmation)
    reduction: float = 0.0  # pipeline: 1 - best/source, 0 when nothing passed
    vanilla_reduction: float = 0.0  # zero-shot: 1 - vanilla/source, 0 when it failed
    selection_reduction: float = 0.0  # from the selection-time figures
    confirmed: bool = False  # the reduction comes from an interleaved re-measurement
    reduction_ci_low: float = NAN  # confidence interval of `reduction` (NaN when not confirmed)
    reduction_ci_high: float = NAN
    reduction_with_tail: float = NAN  # the same saving with the post-exit tail energy included
    source_runtime_s: float = NAN
    best_runtime_s: float = NAN
    source_power_w: float = NAN  # mean power over the run window
    best_power_w: float = NAN
    # outcome
    passed: bool = False  # the pipeline produced a passing candidate that saves energy
    vanilla_passed: bool = False  # the zero-shot candidate passed screening
    best_candidate: int = -1  # candidate index, -1 = the source
    best_iteration: int = -1  # stage-3 iteration of the best (0 = zero-shot), -1 = none
    best_self_corrections: int = -1
    n_candidates: int = 0
    n_passed: int = 0
    n_llm_calls: int = 0
    n_self_corrections: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # time (s), split by what the trial waited for
    time_total_s: float = NAN
    time_llm_s: float = NAN
    time_build_s: float = NAN
    time_measure_s: float = NAN
    time_lock_wait_s: float = NAN
    # where and with what
    generator_model: str = ""  # as answered; a replay: "replay of <transcripts> (sha256 ...)", never a model name
    judge_model: str = ""
    llm_backend: str = ""  # openai | replay
    llm_source: str = ""  # a replay: which transcripts; a live model: the endpoint ("" = the default)
    meter: str = ""
    estimate: bool = False  # energies come from a labelled model, not a sensor
    sandbox: str = ""  # runner name; "none" when the study chose no isolation
    gpu_name: str = ""
    gpu_uuid: str = ""
    driver: str = ""
    host: str = ""
    device: str = ""  # the measured device: GPU name, else the CPU model
    package_version: str = ""  # lassi-batch of the last attempt
    git_revision: str = ""  # its checkout's commit ("" for an installed wheel)
    study_k: str = ""  # the study's k, e.g. "1,3,5": what pass@k and energy-reduction@k default to
    attempts: int = 0
    started: str = ""  # ISO 8601 UTC
    finished: str = ""
    # screening counts over the generated candidates (stages 1 and 3; the source excluded), -1 when
    # the writer did not count them (readers then use `screening_counts` on the file)
    n_generated: int = -1
    n_built: int = -1
    n_ran: int = -1
    n_judged: int = -1  # candidates that got a judge verdict
    n_judge_valid: int = -1
    n_verifier_ok: int = -1  # verifier verdict pass or warn
    n_held: int = -1  # contract verdict "held" (needs a human look)
    # how many findings of each kind the verifier raised over the trial's candidates
    findings_exit: int = -1
    findings_pass_line: int = -1
    findings_fail_line: int = -1
    findings_checksum: int = -1
    findings_numbers: int = -1
    findings_work: int = -1
    findings_energy: int = -1
    findings_other: int = -1


FINDING_KINDS = ("exit", "pass_line", "fail_line", "checksum", "numbers", "work", "energy")
SCREENING_FIELDS = ("n_generated", "n_built", "n_ran", "n_judged", "n_judge_valid", "n_verifier_ok", "n_held",
                    *(f"findings_{k}" for k in FINDING_KINDS), "findings_other")

SUMMARY_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(TrialSummary))
_TYPES: dict[str, type] = {f.name: {"str": str, "int": int, "float": float, "bool": bool}[f.type]
                           for f in fields(TrialSummary)}


def _coerce(name: str, value: Any) -> Any:
    t = _TYPES[name]
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if t is bool:
        return bool(value)
    if t is int:
        return int(value)
    if t is float:
        return float(value)
    return str(value)


def write_summary(f: h5py.File | h5py.Group, s: TrialSummary) -> None:
    """Replace the `/summary` group's attributes with `s` (inside the writer's transaction)."""
    if s.status not in STATUSES:
        raise ValueError(f"unknown trial status {s.status!r}")
    g = f.require_group(SUMMARY_GROUP)
    for name in SUMMARY_FIELDS:
        v = _coerce(name, getattr(s, name))
        if isinstance(v, str):
            g.attrs.create(name, v.encode("utf-8"), dtype=h5py.string_dtype("utf-8", len(v.encode("utf-8")) or 1))
        else:
            g.attrs[name] = v


def read_summary(f: h5py.File | h5py.Group) -> TrialSummary:
    """The summary of an open trial file; KeyError when the file has none (schema version 1)."""
    a = f[SUMMARY_GROUP].attrs  # one attribute manager, each stored name read once
    kw = {name: _coerce(name, a[name]) for name in a if name in _TYPES}
    return TrialSummary(**kw)


def _findings(g: h5py.Group) -> list[dict[str, Any]]:
    """A candidate's findings: the screening contract's `findings_json` attribute, else the
    verifier report (`verifier_json` dataset) of older files."""
    try:
        if "findings_json_json" in g.attrs:  # the field `findings_json`, stored by put_value
            items = json.loads(decode_attr(g, "findings_json_json")[1] or "[]")
        elif "findings_json" in g.attrs:
            items = json.loads(attr(g, "findings_json") or "[]")
        else:
            items = json.loads(get_text(g, "verifier_json") or "{}").get("findings", [])
    except (json.JSONDecodeError, AttributeError):
        return []
    return [x for x in items if isinstance(x, dict)] if isinstance(items, list) else []


def screening_counts(f: h5py.File | h5py.Group) -> dict[str, int]:
    """The SCREENING_FIELDS of a trial file, counted from its candidate groups (what a writer
    stores in the summary, and what readers fall back on when it did not)."""
    out = dict.fromkeys(SCREENING_FIELDS, 0)
    cands = f.get("candidates")
    if cands is None:
        return out
    for name in cands:
        g = cands[name]
        if not isinstance(g, h5py.Group) or int(attr(g, "stage", 0) or 0) == 0:
            continue
        out["n_generated"] += 1
        out["n_built"] += bool(attr(g, "build_ok", False))
        out["n_ran"] += bool(attr(g, "run_ok", False))
        judge = str(attr(g, "judge_verdict", "") or "")
        out["n_judged"] += bool(judge)
        out["n_judge_valid"] += judge == "VALID"
        out["n_verifier_ok"] += str(attr(g, "verifier_verdict", "") or "") in ("pass", "warn")
        out["n_held"] += str(attr(g, "verdict", "") or "") == "held"
        for item in _findings(g):
            kind = str(item.get("kind", ""))
            out[f"findings_{kind}" if kind in FINDING_KINDS else "findings_other"] += 1
    return out

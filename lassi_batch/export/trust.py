"""Which candidates a dataset may prefer: verdicts, findings and energies, normalised (pure).

A dataset that rewards a cheat teaches cheating, so the rules are narrow: only a candidate whose
screening verdict is `pass` (under the chosen pass policy) and whose energy is known on the
trial's energy basis may be preferred; one that failed for an integrity finding (removed work,
wrong output, a judge's INVALID) never is, whatever policy is asked for, and it is kept as a
labelled negative.

Two generations of trial files exist. Files with the screening contract carry per candidate
`verdict`, `findings_json` and the `confirmed_*` energies of a fair re-measurement; older files
carry only `passed`, `judge_verdict`, `verifier_verdict` and the measured energy. `screen`
reads either and says which basis it used, so the dataset card can state it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from ..pipeline.schedule import passes as policy_passes
from ..power.stats import is_lower
from .records import CandidateData

VERDICTS = ("pass", "fail", "held", "not_run")
SEVERITIES = ("integrity", "held", "cosmetic", "error")
# recorded: the trial's own verdict; strict: that verdict plus a VALID judge, a clean verifier and
# no held finding; the others recompute the verdict from the judge and verifier under that rule.
POLICIES = ("recorded", "strict", "judge_and_verifier", "verifier", "judge")

VERDICT_BASIS = {"contract": "screening verdict (verdict, findings_json)",
                 "fallback": "passed / judge_verdict / verifier_verdict attributes (no screening verdict recorded)"}
ENERGY_BASIS = {"confirmed": "confirmed savings: a candidate counts as saving energy only where an interleaved "
                             "re-measurement against the source confirmed it (confirmed_reduction, interval "
                             "confirmed_ci_low..high); energies are the selection-time means (energy_j)",
                "measured": "measured energy, mean over repeats (energy_j; no confirmation recorded)"}

_STATUS_ERRORS = {
    "build_failed": ("build", "the candidate did not build"),
    "run_failed": ("run", "the candidate did not run to completion"),
    "extract_failed": ("extract", "the reply held no usable code"),
    "llm_failed": ("llm", "no reply was obtained"),
}
# verifier findings that say the candidate's result or work cannot be trusted
_INTEGRITY_KINDS = {"checksum", "work", "numbers", "pass_line", "fail_line"}
_HELD_KINDS = {"energy", "work"}


@dataclass(frozen=True)
class Screening:
    """A candidate's normalised verdict and energy."""

    verdict: str  # one of VERDICTS
    findings: tuple[dict[str, str], ...]  # {kind, severity, message}
    verdict_basis: str  # contract | fallback
    energy_j: float | None  # the selection-time mean; None when not measured
    energy_basis: str  # confirmed (savings count only where confirmed) | measured
    ci_low: float | None = None  # interval of the confirmed saving (fraction of the source's energy)
    ci_high: float | None = None
    confirmed_reduction: float | None = None  # the saving measured interleaved with the source

    @property
    def integrity_failure(self) -> bool:
        """At least one integrity finding (removed work, a wrong result, a judge's INVALID): never
        preferred, even where an older pass policy (judge only) let the candidate pass."""
        return any(f["severity"] == "integrity" for f in self.findings)

    @property
    def held(self) -> bool:
        return self.verdict == "held" or any(f["severity"] == "held" for f in self.findings)

    @property
    def reject_reason(self) -> str:
        """Why a failed candidate failed, coarsely: integrity | error | held | not_run | ""."""
        if self.integrity_failure:
            return "integrity"
        if self.verdict == "pass":
            return ""
        if self.verdict in ("held", "not_run"):
            return self.verdict
        return "error"


def _finite(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _fallback_findings(c: CandidateData) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    if c.status in _STATUS_ERRORS:
        kind, msg = _STATUS_ERRORS[c.status]
        out.append({"kind": kind, "severity": "error", "message": msg})
    for f in c.verifier_findings:
        kind, sev, msg = str(f.get("kind", "")), str(f.get("severity", "")), str(f.get("message", ""))
        if sev == "fail":
            out.append({"kind": kind, "severity": "integrity" if kind in _INTEGRITY_KINDS else "error", "message": msg})
        elif sev == "warn":
            out.append({"kind": kind, "severity": "held" if kind in _HELD_KINDS else "cosmetic", "message": msg})
    if c.judge_verdict == "INVALID":
        out.append({"kind": "judge", "severity": "integrity",
                    "message": "the judge found the candidate not a faithful replacement of the source"})
    return out


def _contract_findings(raw: Any) -> list[dict[str, str]]:
    try:
        items = json.loads(raw) if isinstance(raw, str) else (raw or [])
    except json.JSONDecodeError:
        return [{"kind": "findings", "severity": "error", "message": "unreadable findings_json"}]
    out = []
    for f in items if isinstance(items, list) else []:
        if isinstance(f, dict):
            sev = str(f.get("severity", ""))
            out.append({"kind": str(f.get("kind", "")), "severity": sev if sev in SEVERITIES else "error",
                        "message": str(f.get("message", ""))})
    return out


def uses_contract(candidates: list[CandidateData]) -> tuple[bool, bool]:
    """Whether a trial's candidates carry (screening verdicts, confirmed energies)."""
    verdicts = any("verdict" in c.contract for c in candidates)
    confirmed = any("confirmed_energy_j" in c.contract for c in candidates)
    return verdicts, confirmed


def screen(c: CandidateData, contract_verdicts: bool, contract_energy: bool) -> Screening:
    """Normalise one candidate on its trial's basis (see `uses_contract`)."""
    if contract_verdicts:
        v = str(c.contract.get("verdict", "not_run"))
        verdict = v if v in VERDICTS else "fail"
        findings = _contract_findings(c.contract.get("findings_json"))
        if verdict == "not_run" and c.status in _STATUS_ERRORS:
            # screening never saw it, but the candidate did fail: it did not build, run or parse
            kind, msg = _STATUS_ERRORS[c.status]
            verdict, findings = "fail", findings + [{"kind": kind, "severity": "error", "message": msg}]
        vbasis = "contract"
    else:
        findings = _fallback_findings(c)
        if c.status == "measured":
            # the source is the reference the others are screened against, not screened itself
            verdict = "pass" if (c.passed or c.stage == 0) else "fail"
        elif c.status in _STATUS_ERRORS:
            verdict = "fail"
        else:
            verdict = "not_run"
        vbasis = "fallback"
    if contract_energy:
        e = _finite(c.contract.get("confirmed_energy_j"))
        lo, hi = _finite(c.contract.get("confirmed_ci_low")), _finite(c.contract.get("confirmed_ci_high"))
        red = _finite(c.contract.get("confirmed_reduction"))
        if red is None and e is not None:
            red = reduction(_finite(c.contract.get("confirmed_source_energy_j")), e)
        return Screening(verdict, tuple(findings), vbasis, c.energy_j, "confirmed", lo, hi, red)
    return Screening(verdict, tuple(findings), vbasis, c.energy_j, "measured")


def passes(c: CandidateData, s: Screening, policy: str) -> bool:
    """Whether the candidate passes under `policy`; an integrity failure never does."""
    if s.integrity_failure or c.status != "measured":
        return False
    if policy == "recorded":
        return s.verdict == "pass"
    if policy == "strict":
        return (s.verdict == "pass" and c.judge_verdict == "VALID" and c.verifier_verdict == "pass"
                and not s.held)
    if s.verdict in ("held", "not_run"):
        return False
    return policy_passes(policy, c.judge_verdict, c.verifier_verdict)


def reduction(source_j: float | None, candidate_j: float | None) -> float | None:
    """1 - candidate/source (0.25 = a quarter less energy); None when either is unknown."""
    if source_j is None or candidate_j is None or source_j <= 0:
        return None
    return 1.0 - candidate_j / source_j


def significant_saving(a: Screening) -> bool | None:
    """a's confirmed saving against the source clears its interval (the low end is above 0);
    None when it was not confirmed with an interval."""
    if a.ci_low is None:
        return None
    return bool(a.ci_low > 0.0)


def significantly_lower(a: Screening, b: Screening) -> bool | None:
    """a saves more than b beyond both intervals (savings against the same source); None when
    either interval is missing."""
    if a.ci_low is None or b.ci_high is None:
        return None
    return bool(a.ci_low > b.ci_high)


def improvements(result: dict[str, Any], source: CandidateData | None, candidates: list[CandidateData],
                 measure: dict[str, Any]) -> frozenset[int]:
    """The candidates the trial itself decided improve on its source, from its recorded decision.

    A dataset may offer a candidate as a good answer only when the trial counted it: passed,
    lower than the source by more than `min_improvement` and than the noise, and confirmed where
    the trial confirms. Where the trial confirms (`confirm_repeats` > 0), that is its recorded
    result: the best candidate when it differs from the source and its interleaved confirmation
    succeeded (one per trial, since stage 4 stops at the first confirmed candidate). With
    confirmation off, every passing candidate that the decisions' rule (`power.stats.is_lower`
    over the measured repeats, the trial's `min_improvement` and `significance`) finds lower than
    the source. A trial without a result (still running, or interrupted before stage 4) decided
    nothing: no candidate counts."""
    if not result or result.get("best_candidate") is None:
        return frozenset()
    sid = result.get("source_candidate")
    best = int(result["best_candidate"])
    if "confirm_repeats" in result:
        confirm = int(result.get("confirm_repeats") or 0)
    else:  # older files: confirmation recorded (or not) by its `confirmed` figure
        confirm = 3 if "confirmed" in result else 0
    if confirm > 0:
        improved = bool(result.get("improved", best != sid))
        return frozenset({best}) if improved and best != sid and bool(result.get("confirmed")) else frozenset()
    if source is None:
        return frozenset()
    min_gain = float(measure.get("min_improvement", 0.02))
    alpha = float(measure.get("significance", 0.05))
    src = [m.energy_j for m in source.measurements if math.isfinite(m.energy_j)]
    out = set()
    for c in candidates:
        if c.stage not in (1, 3) or not c.passed or c.status != "measured":
            continue
        e = [m.energy_j for m in c.measurements if math.isfinite(m.energy_j)]
        if src and e and is_lower(src, e, min_gain, alpha).lower:
            out.add(c.id)
    return frozenset(out)


def side_effects(s: Screening) -> bool:
    """The candidate's runs wrote files the source's do not (a cache, even a harmless one)."""
    return any(f["kind"] == "side_effects" for f in s.findings)

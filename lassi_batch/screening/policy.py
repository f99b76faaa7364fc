"""Verdicts from findings: what fails, what is held, what stays a warning.

Every finding gets one of four severities (stored per candidate as `findings_json`, with the
verdict as `verdict`; see docs/trial.md "Screening"):

- integrity: the candidate does not do the source's job (wrong or missing results, fewer digits,
  removed work, work that does not scale, processes left behind, a differential mismatch, results
  typed into the code, the judge's INVALID) -> verdict "fail";
- error: screening itself could not run (the candidate's differential run could not start) ->
  "fail", since an unscreened candidate must not count;
- held: a saving too good to believe (above 90%, or energy falling far more than run time) ->
  "held": it counts only once a re-measurement interleaved with the source confirms it
  (`release_hold`, called by whoever confirms); one that does not confirm stays held, since
  finding no saving is not finding that the program does another job;
- cosmetic: everything else (extra output lines, notes) -> no effect.

A candidate that never ran is "not_run".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Literal

from .verifier import Finding

Verdict = Literal["pass", "fail", "held", "not_run"]
ContractSeverity = Literal["integrity", "held", "cosmetic", "error"]

_MAP: dict[str, ContractSeverity] = {"fail": "integrity", "held": "held", "warn": "cosmetic", "info": "cosmetic",
                                     "error": "error"}


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    findings: list[dict[str, str]]  # {"kind", "severity", "message"} with contract severities

    @property
    def findings_json(self) -> str:
        return json.dumps(self.findings)

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"


def contract_findings(findings: Iterable[Finding]) -> list[dict[str, str]]:
    return [{"kind": f.kind, "severity": _MAP.get(f.severity, "cosmetic"), "message": f.message} for f in findings]


def verdict_of(findings: list[dict[str, str]]) -> Verdict:
    sev = {f["severity"] for f in findings}
    if sev & {"integrity", "error"}:
        return "fail"
    return "held" if "held" in sev else "pass"


def decide(ran: bool, findings: Iterable[Finding], judge_verdict: str, pass_policy: str) -> Decision:
    """The candidate's verdict under `[llm].pass_policy`.

    judge_and_verifier (default): every deterministic rule above, and the judge must say VALID;
    verifier: the deterministic rules only; judge: the paper's rule, the judge alone (findings
    are kept but do not decide).
    """
    if not ran:
        return Decision("not_run", contract_findings(findings))
    fs = contract_findings(findings)
    judge_ok = judge_verdict == "VALID"
    if pass_policy != "verifier" and not judge_ok:
        fs.append({"kind": "judge", "severity": "integrity",
                   "message": f"the judge answered {judge_verdict or 'nothing usable'}"})
    if pass_policy == "judge":
        return Decision("pass" if judge_ok else "fail", fs)
    return Decision(verdict_of(fs), fs)


def release_hold(findings: list[dict[str, str]], confirmed: bool, message: str) -> Decision:
    """Settle a held candidate after its confirmation, with a `confirmation` finding saying what
    was measured. Confirmed: its held findings become cosmetic notes. Not confirmed: it stays
    held, never counted and never shown as a bad answer. The re-measurement found no evidence of
    the saving, which is not evidence of a wrong program: on a noisy meter an honest rewrite of a
    millisecond run can fail to confirm, and calling that an integrity failure would teach an
    exported dataset that the honest rewrite cheated."""
    settled = "cosmetic" if confirmed else "held"
    out = [dict(f, severity=settled) if f["severity"] == "held" else dict(f) for f in findings]
    out.append({"kind": "confirmation", "severity": settled, "message": message})
    return Decision(verdict_of(out), out)


def load_findings(findings_json: str) -> list[dict[str, str]]:
    try:
        v = json.loads(findings_json or "[]")
    except json.JSONDecodeError:
        return []
    return v if isinstance(v, list) else []

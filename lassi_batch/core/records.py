"""Plain records passed between the LLM client, the pipeline and the archive."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


# Field metadata: store None as no attribute at all (not an empty one), so that a reader tells
# "never set" by absence (store/archive.py `_put_fields`).
ABSENT_IF_NONE = {"absent_if_none": True}

@dataclass
class LLMCall:
    """One chat completion as sent and answered (after retries). Never holds the API key."""

    key: str  # the pipeline's deterministic step key, e.g. "s3/i2/generate/sc0"; replay matches on it
    kind: str  # prompt kind: zero_shot, context_background, plan, refactor, fix_compile, judge, ...
    model: str
    messages: list[dict[str, str]]  # [{"role": ..., "content": ...}]
    reply: str = ""
    temperature: float | None = None  # None when the model takes no temperature
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    attempts: int = 1
    finish_reason: str = ""
    error: str = ""  # non-empty when no reply was obtained
    t_start: float = 0.0  # wall clock (time.time())
    backend: str = "openai"  # openai | replay
    replay_match: str = ""  # replay only: how the record was chosen (key | kind | exhausted)
    replay_index: int = -1  # replay only: the transcript record that answered (-1: none)

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass
class Candidate:
    """One generated (or source) code version and everything learned about it."""

    key: str
    stage: int  # 0 = source, 1 = vanilla zero-shot, 3 = iterative
    iteration: int = 0
    parent: int | None = None  # candidate id it was derived from
    temperature: float | None = None
    files: dict[str, str] = field(default_factory=dict)  # rewritable sources, name -> text
    self_corrections: int = 0
    status: str = "new"  # new | build_failed | run_failed | measured | extract_failed | llm_failed
    build_ok: bool = False
    run_ok: bool = False
    build_log: str = ""
    stdout: str = ""
    stderr: str = ""
    returncode: int | None = None
    judge_verdict: str = ""  # VALID | INVALID | "" (not judged)
    judge_text: str = ""
    verifier_verdict: str = ""  # pass | fail | warn | ""
    verifier: dict[str, Any] = field(default_factory=dict)  # findings
    work_counts: dict[str, int] = field(default_factory=dict)  # independent GPU work count (CUDA + CUPTI), if taken
    passed: bool = False  # per the configured pass policy (True only for verdict "pass")
    verdict: str = "not_run"  # screening verdict: pass | fail | held | not_run (see screening/policy.py)
    findings_json: str = "[]"  # JSON list of {"kind", "severity": integrity|held|cosmetic|error, "message"}
    energy_j: float | None = None  # the default energy figure (mean over repeats)
    runtime_s: float | None = None
    power_w: float | None = None
    description: str = ""  # the LLM's description of its change
    build_s: float | None = field(default=None, metadata=ABSENT_IF_NONE)  # wall time of its build
    # stage-4 confirmation against the source (interleaved re-measurement): None (absent) when not
    # re-measured, NaN when re-measured but not confirmed
    confirmed_energy_j: float | None = field(default=None, metadata=ABSENT_IF_NONE)  # mean of its confirmation runs
    confirmed_source_energy_j: float | None = field(default=None, metadata=ABSENT_IF_NONE)  # the source's, interleaved
    confirmed_reduction: float | None = field(default=None, metadata=ABSENT_IF_NONE)  # 1 - the two means' ratio
    confirmed_ci_low: float | None = field(default=None, metadata=ABSENT_IF_NONE)  # interval of confirmed_reduction
    confirmed_ci_high: float | None = field(default=None, metadata=ABSENT_IF_NONE)
    confirm_verdict: str = ""  # confirmed | not_confirmed | "" (not re-measured)
    id: int | None = None  # assigned by the archive

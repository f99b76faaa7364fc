"""Plain records passed between the LLM client, the pipeline and the archive."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
    passed: bool = False  # per the configured pass policy
    energy_j: float | None = None  # the default energy figure (mean over repeats)
    runtime_s: float | None = None
    power_w: float | None = None
    description: str = ""  # the LLM's description of its change
    # stage-4 confirmation against the source (interleaved re-measurement): None (absent) when not
    # re-measured, NaN when re-measured but not confirmed
    confirmed_energy_j: float | None = None  # mean of the candidate's confirmation runs
    confirmed_source_energy_j: float | None = None  # mean of the source's runs interleaved with them
    confirmed_reduction: float | None = None  # 1 - confirmed_energy_j / confirmed_source_energy_j
    confirmed_ci_low: float | None = None  # confidence interval of confirmed_reduction (fraction)
    confirmed_ci_high: float | None = None
    confirm_verdict: str = ""  # confirmed | not_confirmed | "" (not re-measured)
    id: int | None = None  # assigned by the archive

"""The record formats: what one line of each JSONL file holds, and a strict model of each.

- `openai-sft`: `{"messages": [...]}`; `openai-dpo`: `{"input": {"messages": [...]},
  "preferred_output": [...], "non_preferred_output": [...]}`. Only the keys OpenAI documents:
  provenance and verdicts of these records are in the manifest.
- `trl-sft` (`prompt`/`completion`), `trl-dpo` (`prompt`/`chosen`/`rejected`) and `trl-kto`
  (`prompt`/`completion`/`label`), conversational (role/content lists), with provenance and
  verdict columns beside them (TRL ignores extra columns).
- `trajectory`: a whole trial in journal order, for agentic training.

Every record is checked against its model before it is written.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

FORMATS = ("openai-sft", "openai-dpo", "trl-sft", "trl-dpo", "trl-kto", "trajectory")
PREFERENCE_FORMATS = ("openai-dpo", "trl-dpo")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Message(_Strict):
    role: Literal["system", "user", "assistant"]
    content: str

    @field_validator("content")
    @classmethod
    def _not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("empty message content")
        return v


def _prompt_ok(msgs: list[Message]) -> list[Message]:
    if not msgs or msgs[-1].role != "user":
        raise ValueError("a prompt must end with a user message")
    if any(m.role == "assistant" for m in msgs):
        raise ValueError("a prompt holds no assistant message")
    return msgs


def _answer_ok(msgs: list[Message]) -> list[Message]:
    if len(msgs) != 1 or msgs[0].role != "assistant":
        raise ValueError("an answer is exactly one assistant message")
    return msgs


class OpenAISFT(_Strict):
    messages: list[Message]

    @field_validator("messages")
    @classmethod
    def _chat(cls, v: list[Message]) -> list[Message]:
        _prompt_ok(v[:-1])
        _answer_ok(v[-1:])
        return v


class OpenAIInput(_Strict):
    messages: list[Message]

    @field_validator("messages")
    @classmethod
    def _prompt(cls, v: list[Message]) -> list[Message]:
        return _prompt_ok(v)


class OpenAIDPO(_Strict):
    input: OpenAIInput
    preferred_output: list[Message]
    non_preferred_output: list[Message]

    @field_validator("preferred_output", "non_preferred_output")
    @classmethod
    def _answers(cls, v: list[Message]) -> list[Message]:
        return _answer_ok(v)


class _TRLBase(BaseModel):
    """Provenance columns every TRL record carries."""

    model_config = ConfigDict(extra="forbid", strict=True)
    id: str
    app: str
    platform: str
    model: str  # the generator model as answered; a replayed trial: "replay of <transcripts>"
    device: str
    trial: str  # trial file, relative to the study folder
    energy_basis: Literal["confirmed", "measured"]
    verdict_basis: Literal["contract", "fallback"]
    meter: str
    estimate: bool  # energies from a CPU-time model, not a sensor (ESTIMATE)
    llm_backend: str  # openai | replay
    software: str  # lassi-batch version (and revision) that ran the trial
    started: str  # ISO UTC start of the trial
    prompt: list[Message]

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: list[Message]) -> list[Message]:
        return _prompt_ok(v)


class TRLSFT(_TRLBase):
    completion: list[Message]
    verdict: Literal["pass"]
    energy_j: float
    reduction: float

    @field_validator("completion")
    @classmethod
    def _answer(cls, v: list[Message]) -> list[Message]:
        return _answer_ok(v)


class TRLDPO(_TRLBase):
    chosen: list[Message]
    rejected: list[Message]
    chosen_verdict: Literal["pass"]
    rejected_verdict: Literal["pass", "fail"]
    rejected_reason: Literal["integrity", "error", "higher_energy"]
    chosen_energy_j: float
    rejected_energy_j: float | None
    chosen_reduction: float

    @field_validator("chosen", "rejected")
    @classmethod
    def _answers(cls, v: list[Message]) -> list[Message]:
        return _answer_ok(v)


class TRLKTO(_TRLBase):
    completion: list[Message]
    label: bool
    verdict: Literal["pass", "fail"]
    reason: Literal["saves_energy", "integrity", "error", "no_saving"]
    energy_j: float | None
    reduction: float | None

    @field_validator("completion")
    @classmethod
    def _answer(cls, v: list[Message]) -> list[Message]:
        return _answer_ok(v)


class Finding(_Strict):
    kind: str
    severity: Literal["integrity", "held", "cosmetic", "error"]
    message: str


class Step(_Strict):
    key: str
    kind: str  # llm | evaluate | context | plan | ...
    llm_kind: str
    messages: list[Message]
    reply: str
    candidate: int  # -1: none
    status: str
    verdict: str
    findings: list[Finding]
    judge_verdict: str
    verifier_verdict: str
    energy_j: float | None
    runtime_s: float | None
    power_w: float | None
    reduction: float | None
    log: str  # build log / stderr tail of a failed candidate
    text: str  # plan or context text


class Trajectory(_Strict):
    id: str
    app: str
    platform: str
    model: str
    judge_model: str
    device: str
    trial: str
    energy_basis: Literal["confirmed", "measured"]
    verdict_basis: Literal["contract", "fallback"]
    meter: str
    estimate: bool
    llm_backend: str
    software: str
    started: str
    source_energy_j: float | None
    best_candidate: int
    best_energy_j: float | None
    reduction: float | None
    trial_best_candidate: int  # the trial's own result (summary, store/headline.py); -1: the source
    trial_reduction: float  # the trial's saving, confirmed or not (0: none)
    trial_confirmed: bool
    stop_reason: str
    steps: list[Step]


MODELS: dict[str, type[BaseModel]] = {
    "openai-sft": OpenAISFT, "openai-dpo": OpenAIDPO, "trl-sft": TRLSFT, "trl-dpo": TRLDPO,
    "trl-kto": TRLKTO, "trajectory": Trajectory,
}


def _feature(tp: Any) -> dict[str, Any]:
    """One Hugging Face `datasets` feature (card YAML form) for a field annotation."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _feature(args[0])  # Optional[X]: X, nullable
    if origin is Literal:
        return {"dtype": "string"}
    if origin is list:
        inner = _feature(args[0])
        return {"list": inner["struct"]} if "struct" in inner else {"sequence": inner["dtype"]}
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return {"struct": features(tp)}
    dtype = {str: "string", bool: "bool", int: "int64", float: "float64"}.get(tp)
    if dtype is None:
        raise TypeError(f"no dataset feature for {tp!r}")
    return {"dtype": dtype}


def features(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The columns of a format as the dataset card declares them (`dataset_info.features`), so
    that `datasets` reads every split with one schema even where a split holds only nulls in a
    column (a split of failed candidates, whose savings are unknown)."""
    hints = typing.get_type_hints(model)
    return [{"name": name, **_feature(hints[name])} for name in model.model_fields]


def validate_record(fmt: str, record: dict[str, Any]) -> list[str]:
    """Problems of one record against its format (empty: valid)."""
    try:
        MODELS[fmt].model_validate(record)
    except ValidationError as e:
        return [f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()]
    return []

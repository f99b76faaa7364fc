"""Answer LLM calls from a recorded transcript: demos, CI and re-measurement without an endpoint.

Sources: a trial archive (.h5), a JSONL transcript (one object per line with "key", "kind",
"reply" and optionally "model", "note", "prompt_tokens", "completion_tokens", "finish_reason",
"error"), or a folder of JSONL files chosen per trial (`ReplayBackend.for_trial`).

Matching is deterministic: the first unused answer with the exact key (a recorded failure with
that key only when no answer for it is left, so an errored call archived before its retry never
shadows the answer); otherwise the next unused answer of the same kind in recorded order, so a
re-run whose path differs (other hardware, other measurements) still gets answers. When nothing
is left the call comes back with `error` set, which the trial records like any other LLM failure.

Each answered call carries how it was matched (`replay_match`: key | kind | exhausted) and the
record that answered (`replay_index`), and the trial archives both: a resumed trial hands its
archived calls to `resume_from`, so it answers exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import LassiError
from ..core.records import LLMCall
from ..store.reader import read_llm_calls


class ReplayError(LassiError):
    """A transcript is missing or malformed."""


@dataclass(frozen=True)
class ReplayRecord:
    """One recorded answer."""

    kind: str
    reply: str
    key: str = ""  # optional in hand-written transcripts: such records answer by kind, in order
    model: str = ""
    note: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    error: str = ""


@dataclass(frozen=True)
class ReplayMatch:
    """How one call was answered: by 'key', by 'kind' fallback, or 'exhausted' (index -1)."""

    key: str
    kind: str
    how: str
    index: int


_INT_FIELDS = ("prompt_tokens", "completion_tokens")
_STR_FIELDS = ("key", "model", "note", "finish_reason", "error")


def _record_from_json(obj: Any, where: str) -> ReplayRecord:
    if not isinstance(obj, dict):
        raise ReplayError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for req in ("kind", "reply"):
        if not isinstance(obj.get(req), str):
            raise ReplayError(f"{where}: '{req}' must be a string")
    for f in _STR_FIELDS:
        if f in obj and not isinstance(obj[f], str):
            raise ReplayError(f"{where}: '{f}' must be a string")
    for f in _INT_FIELDS:
        if f in obj and (not isinstance(obj[f], int) or isinstance(obj[f], bool)):
            raise ReplayError(f"{where}: '{f}' must be an integer")
    fields = {f: obj[f] for f in (*_STR_FIELDS, *_INT_FIELDS) if f in obj}
    return ReplayRecord(kind=obj["kind"], reply=obj["reply"], **fields)


def read_jsonl(path: Path) -> list[ReplayRecord]:
    """Records of a JSONL transcript; blank lines are skipped, errors name the line."""
    records: list[ReplayRecord] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ReplayError(f"cannot read replay transcript {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ReplayError(f"replay transcript {path} is not UTF-8 text") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ReplayError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
        records.append(_record_from_json(obj, where))
    return records


def _from_llm_call(c: LLMCall) -> ReplayRecord:
    return ReplayRecord(
        key=c.key, kind=c.kind, reply=c.reply, model=c.model, prompt_tokens=c.prompt_tokens,
        completion_tokens=c.completion_tokens, finish_reason=c.finish_reason or "stop", error=c.error,
    )


def load_records(path: Path) -> list[ReplayRecord]:
    """Records from a .h5 trial archive or a JSONL transcript."""
    if path.is_dir():
        raise ReplayError(f"{path} is a folder: pick a transcript with ReplayBackend.for_trial(path, app, trial)")
    if not path.is_file():
        raise ReplayError(f"replay transcript not found: {path}")
    if path.suffix.lower() in (".h5", ".hdf5"):
        records = [_from_llm_call(c) for c in read_llm_calls(path)]
    else:
        records = read_jsonl(path)
    if not records:
        raise ReplayError(f"replay transcript {path} holds no LLM replies")
    return records


class ReplayBackend:
    """ChatBackend that answers from recorded replies (see the module docstring for matching)."""

    def __init__(self, path: str | Path, records: list[ReplayRecord] | None = None, delay_s: float = 0.0):
        self.path = Path(path)
        self.delay_s = delay_s  # added to every call: a live model's latency, for benchmarks and tests
        self.records = records if records is not None else load_records(self.path)
        self._by_key: dict[str, list[int]] = defaultdict(list)
        self._failed_by_key: dict[str, list[int]] = defaultdict(list)
        self._by_kind: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(self.records):
            if r.key:
                (self._failed_by_key if r.error else self._by_key)[r.key].append(i)
            if not r.error:
                self._by_kind[r.kind].append(i)
        self._used: set[int] = set()
        self.log: list[ReplayMatch] = []

    @classmethod
    def for_trial(cls, path: str | Path, app: str, trial: int, delay_s: float = 0.0) -> ReplayBackend:
        """`<path>/<app>.trial<trial>.jsonl`, else `<path>/<app>.jsonl`; a file path is used as is."""
        p = Path(path)
        if p.is_file():
            return cls(p, delay_s=delay_s)
        if not p.is_dir():
            raise ReplayError(f"replay path not found: {p}")
        candidates = [p / f"{app}.trial{trial}.jsonl", p / f"{app}.jsonl"]
        for c in candidates:
            if c.is_file():
                return cls(c, delay_s=delay_s)
        raise ReplayError(f"no replay transcript for app '{app}' trial {trial} in {p} "
                          f"(looked for {candidates[0].name}, {candidates[1].name})")

    def __repr__(self) -> str:
        return f"ReplayBackend({str(self.path)!r}, records={len(self.records)}, used={len(self._used)})"

    @property
    def remaining(self) -> int:
        return len(self.records) - len(self._used)

    def resume_from(self, calls: list[LLMCall]) -> None:
        """Mark the records that answered a resumed trial's archived calls as used."""
        for c in calls:
            if c.backend == "replay" and 0 <= c.replay_index < len(self.records):
                self._used.add(c.replay_index)
                self.log.append(ReplayMatch(key=c.key, kind=c.kind, how=c.replay_match, index=c.replay_index))

    def _take(self, key: str, kind: str) -> tuple[int, str]:
        for table in (self._by_key, self._failed_by_key):
            for i in table.get(key, ()):
                if i not in self._used:
                    return i, "key"
        for i in self._by_kind.get(kind, ()):
            if i not in self._used:
                return i, "kind"
        return -1, "exhausted"

    def complete(
        self, *, key: str, kind: str, model: str, messages: list[dict], temperature: float | None
    ) -> LLMCall:
        t0 = time.monotonic()
        call = LLMCall(
            key=key, kind=kind, model=model, messages=[dict(m) for m in messages],
            temperature=temperature, t_start=time.time(), backend="replay",
        )
        if self.delay_s > 0:
            time.sleep(self.delay_s)
        i, how = self._take(key, kind)
        self.log.append(ReplayMatch(key=key, kind=kind, how=how, index=i))
        call.replay_match, call.replay_index = how, i
        if i < 0:
            call.error = f"replay transcript exhausted for kind {kind}"
        else:
            self._used.add(i)
            r = self.records[i]
            call.reply, call.error, call.finish_reason = r.reply, r.error, r.finish_reason
            call.model = r.model or model
            call.prompt_tokens, call.completion_tokens = r.prompt_tokens, r.completion_tokens
        call.latency_s = time.monotonic() - t0
        return call

"""ReplayBackend: matching by key, fallback by kind, exhaustion, transcript errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lassi_batch.llm.replay import ReplayBackend, ReplayError
from lassi_batch.core.records import LLMCall

MSGS = [{"role": "user", "content": "x"}]
RECORDS = [
    {"key": "s1/zero_shot", "kind": "zero_shot", "reply": "zero", "model": "gpt-4.1", "prompt_tokens": 100,
     "completion_tokens": 50},
    {"key": "s2/plan", "kind": "plan", "reply": "plan A"},
    {"key": "s3/i1/refactor", "kind": "refactor", "reply": "refactor 1", "note": "first try"},
    {"key": "s3/i2/refactor", "kind": "refactor", "reply": "refactor 2"},
    {"key": "s3/i1/judge", "kind": "judge", "reply": "VERDICT: VALID"},
]


def write(path: Path, rows: list[dict] | list[str]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def ask(b: ReplayBackend, key: str, kind: str, model: str = "asked-model", temperature: float | None = 0.4) -> LLMCall:
    return b.complete(key=key, kind=kind, model=model, messages=MSGS, temperature=temperature)


@pytest.fixture
def transcript(tmp_path: Path) -> Path:
    return write(tmp_path / "t.jsonl", RECORDS)


def test_exact_key_wins_over_order(transcript):
    b = ReplayBackend(transcript)
    second = ask(b, "s3/i2/refactor", "refactor")
    first = ask(b, "s3/i1/refactor", "refactor")
    assert (second.reply, first.reply) == ("refactor 2", "refactor 1")
    assert [m.how for m in b.log] == ["key", "key"]


def test_call_fields(transcript):
    call = ask(ReplayBackend(transcript), "s1/zero_shot", "zero_shot")
    assert call.ok and call.reply == "zero" and call.backend == "replay"
    assert call.model == "gpt-4.1"  # the model that produced the recorded reply
    assert (call.prompt_tokens, call.completion_tokens) == (100, 50)
    assert call.messages == MSGS and call.temperature == 0.4 and call.key == "s1/zero_shot"
    assert call.latency_s >= 0 and call.attempts == 1 and call.finish_reason == "stop"
    assert ask(ReplayBackend(transcript), "s2/plan", "plan").model == "asked-model"  # no model recorded


def test_unknown_key_falls_back_to_next_unused_of_the_same_kind(transcript):
    b = ReplayBackend(transcript)
    assert ask(b, "s3/i1/refactor", "refactor").reply == "refactor 1"
    other = ask(b, "s3/i1/fix1", "refactor")  # a path the recording never took
    assert other.ok and other.reply == "refactor 2" and b.log[-1].how == "kind"
    # its key is now used up: asking for it exactly falls back too, and nothing is left
    gone = ask(b, "s3/i2/refactor", "refactor")
    assert not gone.ok and gone.error == "replay transcript exhausted for kind refactor"
    assert gone.reply == "" and b.log[-1].how == "exhausted"


def test_exhaustion_is_a_recorded_failure_not_a_crash(transcript):
    b = ReplayBackend(transcript)
    assert ask(b, "s3/i1/judge", "judge").reply == "VERDICT: VALID"
    again = ask(b, "s3/i9/judge", "judge")
    assert again.error == "replay transcript exhausted for kind judge"
    assert ask(b, "s4/report", "final_report").error == "replay transcript exhausted for kind final_report"
    assert b.remaining == len(RECORDS) - 1


def test_replay_is_deterministic(transcript):
    seq = [("s3/i5/refactor", "refactor"), ("s2/plan", "plan"), ("x", "refactor"), ("y", "refactor"), ("z", "plan")]
    runs = [[(c.reply, c.error) for c in (ask(b, k, kind) for k, kind in seq)]
            for b in (ReplayBackend(transcript), ReplayBackend(transcript))]
    assert runs[0] == runs[1]
    assert runs[0][0] == ("refactor 1", "")


def test_recorded_failures_replay_by_key_but_are_skipped_by_kind(tmp_path):
    t = write(tmp_path / "t.jsonl", [
        {"key": "a", "kind": "plan", "reply": "", "error": "HTTP 503: down (gave up after 5 attempts)"},
        {"key": "b", "kind": "plan", "reply": "plan B"},
    ])
    assert ask(ReplayBackend(t), "a", "plan").error.startswith("HTTP 503")
    assert ask(ReplayBackend(t), "other", "plan").reply == "plan B"


def test_bad_json_line_names_the_line(tmp_path):
    t = write(tmp_path / "bad.jsonl", [json.dumps(RECORDS[0]), "", '{"key": "k", "kind": "plan", "reply": }'])
    with pytest.raises(ReplayError, match=r"bad\.jsonl:3: invalid JSON"):
        ReplayBackend(t)


@pytest.mark.parametrize(("row", "message"), [
    ({"key": "k", "kind": "plan"}, r":1: 'reply' must be a string"),
    ({"key": "k", "reply": "r"}, r":1: 'kind' must be a string"),
    ({"key": 3, "kind": "plan", "reply": "r"}, r":1: 'key' must be a string"),
    ({"kind": "plan", "reply": "r", "prompt_tokens": "many"}, r":1: 'prompt_tokens' must be an integer"),
    (["kind", "reply"], r":1: expected a JSON object, got list"),
])
def test_malformed_records_are_rejected(tmp_path, row, message):
    with pytest.raises(ReplayError, match=message):
        ReplayBackend(write(tmp_path / "t.jsonl", [row]))


def test_empty_missing_and_folder_paths(tmp_path):
    with pytest.raises(ReplayError, match="holds no LLM replies"):
        ReplayBackend(write(tmp_path / "empty.jsonl", ["", ""]))
    with pytest.raises(ReplayError, match="not found"):
        ReplayBackend(tmp_path / "nope.jsonl")
    with pytest.raises(ReplayError, match="is a folder"):
        ReplayBackend(tmp_path)


def test_key_is_optional_for_hand_written_transcripts(tmp_path):
    b = ReplayBackend(write(tmp_path / "t.jsonl", [{"kind": "plan", "reply": "p1"}, {"kind": "plan", "reply": "p2"}]))
    assert [ask(b, k, "plan").reply for k in ("s2/plan", "s3/i1/plan")] == ["p1", "p2"]


def test_for_trial_prefers_the_trial_file(tmp_path):
    write(tmp_path / "jacobi.trial2.jsonl", [{"key": "k", "kind": "plan", "reply": "trial two"}])
    write(tmp_path / "jacobi.jsonl", [{"key": "k", "kind": "plan", "reply": "any trial"}])
    assert ask(ReplayBackend.for_trial(tmp_path, "jacobi", 2), "k", "plan").reply == "trial two"
    assert ask(ReplayBackend.for_trial(tmp_path, "jacobi", 1), "k", "plan").reply == "any trial"
    single = write(tmp_path / "single.jsonl", [{"key": "k", "kind": "plan", "reply": "file"}])
    assert ask(ReplayBackend.for_trial(single, "whatever", 0), "k", "plan").reply == "file"
    with pytest.raises(ReplayError, match=r"bsearch.*trial 4.*bsearch\.trial4\.jsonl, bsearch\.jsonl"):
        ReplayBackend.for_trial(tmp_path, "bsearch", 4)


def test_replay_from_a_recorded_trial_archive(tmp_path):
    from lassi_batch.store.archive import TrialArchive

    h5 = tmp_path / "jacobi.cuda.t000.h5"
    with TrialArchive.create(h5, trial_id="s/jacobi/cuda/0", app="jacobi", platform="cuda",
                             config={}, environment={}) as arc:
        arc.add_llm_call(LLMCall(key="s1/zero_shot", kind="zero_shot", model="o3-mini", messages=MSGS,
                                 reply="from h5", prompt_tokens=5, completion_tokens=6, finish_reason="length"))
        arc.add_llm_call(LLMCall(key="s2/plan", kind="plan", model="o3-mini", messages=MSGS, error="HTTP 500: x"))
    b = ReplayBackend(h5)
    call = ask(b, "s1/zero_shot", "zero_shot")
    assert (call.reply, call.model, call.finish_reason, call.completion_tokens) == ("from h5", "o3-mini", "length", 6)
    assert call.backend == "replay"
    assert ask(b, "s2/plan", "plan").error == "HTTP 500: x"

"""A whole trial through the real openai client against a local HTTP server.

The server answers in the trial's call order with the scripted replies of test_trial, after a
429 and a 500 that the client must retry. The API key lives only in the environment: it must not
appear anywhere in the trial's HDF5 file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from werkzeug import Request, Response

from lassi_batch.core.config import parse_study
from lassi_batch.pipeline.session import run_trial
from lassi_batch.store.archive import TrialArchive

from sumapp import transcript

SECRET = "sk-trial-test-0123456789-SECRET"


def _completion(content: str, n: int) -> dict:
    return {
        "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 0, "model": "served-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100 + n, "completion_tokens": 10 + n, "total_tokens": 110 + 2 * n},
    }


def test_trial_over_http_with_retries_and_no_key_on_disk(setup, httpserver, monkeypatch):
    tmp, data = setup
    replies = [r["reply"] for r in transcript()]
    seen: list[dict] = []
    faults = {0: 429, 4: 500}  # request numbers (from 0) answered with an error first

    def handler(request: Request) -> Response:
        n = len(seen)
        body = json.loads(request.get_data())
        seen.append({"auth": request.headers.get("Authorization", ""), "body": body})
        if n in faults:
            code = faults.pop(n)
            return Response(json.dumps({"error": {"message": "busy", "type": "x", "code": None}}), status=code,
                            content_type="application/json")
        answered = sum(1 for s in seen if s.get("ok"))
        seen[-1]["ok"] = True
        return Response(json.dumps(_completion(replies[answered], answered)), content_type="application/json")

    httpserver.expect_request("/v1/chat/completions", method="POST").respond_with_handler(handler)
    monkeypatch.setenv("LASSI_TRIAL_TEST_KEY", SECRET)
    data["llm"] = {"backend": "openai", "base_url": httpserver.url_for("/v1"), "api_key_env": "LASSI_TRIAL_TEST_KEY",
                   "generator_model": "gpt-4.1", "judge_model": "gpt-4.1", "context_model": "gpt-4.1",
                   "retry_base_s": 0.01, "retry_max_s": 0.05}
    study = parse_study(data, Path("."))
    path, out = run_trial(study, study.apps[0], 0, system_text="x")

    assert out.status == "done"
    assert all(s["auth"] == f"Bearer {SECRET}" for s in seen)  # the key was sent...
    assert SECRET.encode() not in path.read_bytes()  # ...and never written
    with TrialArchive.open(path, writable=False) as ar:
        calls = ar.llm_calls()
        assert [c.key for c in calls][-1] == "s4/report"
        assert all(c.backend == "openai" and c.ok for c in calls)
        assert calls[0].attempts == 2 and calls[0].prompt_tokens == 100  # retried after the 429
        assert sum(c.attempts for c in calls) == len(seen) == len(calls) + 2
        assert calls[0].temperature == pytest.approx(0.2) and calls[1].kind == "judge"
        # what went over the wire is what the archive holds
        assert seen[0]["body"]["messages"] == calls[0].messages
        best = ar.candidate(ar.result()["best_candidate"])
        assert best.passed and best.stage in (1, 3)

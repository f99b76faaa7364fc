"""OpenAIBackend against a scripted local HTTP server, through the real openai SDK."""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from lassi_batch.core import secrets
from lassi_batch.core.config import LLMConfig
from lassi_batch.core.errors import ConfigError
from lassi_batch.llm.client import (
    LLMError, OpenAIBackend, RetryPolicy, is_reasoning_model, is_truncated, make_backend, parse_retry_after,
)
from lassi_batch.llm.extract import extract_code
from lassi_batch.llm.replay import ReplayBackend

KEY_ENV = "LASSI_TEST_LLM_KEY"
SECRET = "sk-test-9f8e7d6c5b4a-SECRET"
PATH = "/v1/chat/completions"
MSGS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "refactor this"}]


def completion(content: str | None, finish: str = "stop", prompt_tokens: int = 11, completion_tokens: int = 7) -> dict:
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": "served-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def error_body(message: str) -> dict:
    return {"error": {"message": message, "type": "test_error", "code": None}}


@pytest.fixture(autouse=True)
def _fresh_secret_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys taken out of the environment are kept per process: each test starts without any."""
    monkeypatch.setattr(secrets, "_TAKEN", {})


@pytest.fixture(scope="module")
def _running_server():
    s = HTTPServer(threaded=True)  # threaded: a slow handler must not block the retry
    s.start()
    yield s
    s.stop()


@pytest.fixture
def server(_running_server: HTTPServer):
    _running_server.clear()  # handlers, log and assertions of the previous test
    yield _running_server
    _running_server.clear()


@pytest.fixture
def cfg(server: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> LLMConfig:
    monkeypatch.setenv(KEY_ENV, SECRET)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return LLMConfig(base_url=server.url_for("/v1"), api_key_env=KEY_ENV, max_retries=3, timeout_s=5.0,
                     max_tokens=512, temperature=0.2)


def backend(cfg: LLMConfig) -> OpenAIBackend:
    return OpenAIBackend(cfg, retry_base_s=0.01, seed=1)


def ask(b: OpenAIBackend, model: str = "gpt-4.1", temperature: float | None = 0.2, key: str = "s3/i1/refactor"):
    return b.complete(key=key, kind="refactor", model=model, messages=MSGS, temperature=temperature)


def bodies(server: HTTPServer) -> list[dict]:
    return [json.loads(req.get_data()) for req, _ in server.log]


def test_429_then_200_is_retried_and_counted(server, cfg):
    server.expect_ordered_request(PATH, method="POST").respond_with_json(
        error_body("slow down"), status=429, headers={"Retry-After": "0"})
    server.expect_ordered_request(PATH, method="POST").respond_with_json(completion("hello", prompt_tokens=40, completion_tokens=9))
    call = ask(backend(cfg))
    server.check_assertions()
    assert call.ok and call.reply == "hello"
    assert call.attempts == 2 and len(server.log) == 2
    assert (call.prompt_tokens, call.completion_tokens) == (40, 9)
    assert call.finish_reason == "stop" and call.backend == "openai"
    assert call.key == "s3/i1/refactor" and call.kind == "refactor" and call.messages == MSGS
    assert call.temperature == 0.2 and call.latency_s > 0 and call.t_start > 0


def test_retry_after_header_sets_the_wait(server, cfg):
    server.expect_ordered_request(PATH, method="POST").respond_with_json(
        error_body("busy"), status=429, headers={"Retry-After": "0.4"})
    server.expect_ordered_request(PATH, method="POST").respond_with_json(completion("ok"))
    t0 = time.monotonic()
    call = ask(backend(cfg))
    assert call.ok
    assert time.monotonic() - t0 >= 0.4  # base delay is 0.01 s: only the header explains this wait


def test_5xx_twice_then_200(server, cfg):
    for status in (500, 502):
        server.expect_ordered_request(PATH, method="POST").respond_with_json(error_body("oops"), status=status)
    server.expect_ordered_request(PATH, method="POST").respond_with_json(completion("third time"))
    call = ask(backend(cfg))
    server.check_assertions()
    assert call.ok and call.reply == "third time" and call.attempts == 3


def test_exhausted_retries_are_recorded_not_raised(server, cfg):
    server.expect_request(PATH, method="POST").respond_with_json(error_body("down for maintenance"), status=503)
    call = ask(backend(replace(cfg, max_retries=2)))
    assert not call.ok and call.reply == ""
    assert call.attempts == 3 and len(server.log) == 3
    assert "HTTP 503" in call.error and "gave up after 3 attempts" in call.error


@pytest.fixture
def own_server(cfg: LLMConfig):
    """A server of the test's own: a handler still sleeping after the client gave up must not
    log its late request into the next test's shared server."""
    s = HTTPServer(threaded=True)
    s.start()
    yield s, replace(cfg, base_url=s.url_for("/v1"))
    s.stop()


def test_timeout_is_retried(own_server):
    server, cfg = own_server

    def slow(request: Request) -> Response:
        time.sleep(1.5)
        return Response(json.dumps(completion("too late")), content_type="application/json")

    server.expect_ordered_request(PATH, method="POST").respond_with_handler(slow)
    server.expect_ordered_request(PATH, method="POST").respond_with_json(completion("in time"))
    call = ask(backend(replace(cfg, timeout_s=0.3)))
    assert call.ok and call.reply == "in time" and call.attempts == 2


def test_timeouts_exhausted_give_a_timeout_error(own_server):
    server, cfg = own_server

    def slow(request: Request) -> Response:
        time.sleep(1.0)
        return Response(json.dumps(completion("too late")), content_type="application/json")

    server.expect_request(PATH, method="POST").respond_with_handler(slow)
    call = ask(backend(replace(cfg, timeout_s=0.2, max_retries=1)))
    assert not call.ok and call.attempts == 2
    assert call.error.startswith("timeout after 0.2 s")


def test_connection_refused_is_retried_then_recorded(monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(KEY_ENV, SECRET)
    c = LLMConfig(base_url=f"http://127.0.0.1:{port}/v1", api_key_env=KEY_ENV, max_retries=2, timeout_s=2.0)
    call = ask(backend(c))
    assert not call.ok and call.attempts == 3
    assert call.error.startswith("connection error")


def test_truncated_reply_is_kept_and_marked(server, cfg):
    cut = "I fused the kernels.\n```cuda\n__global__ void k(float* a) {\n  if (a) {\n    a[0] = 1;"
    server.expect_request(PATH, method="POST").respond_with_json(completion(cut, finish="length"))
    call = ask(backend(cfg))
    assert call.ok and call.reply == cut
    assert call.finish_reason == "length" and is_truncated(call)
    ex = extract_code(call.reply, "cuda", ["main.cu"])
    assert ex.files is None and ex.error.startswith("reply truncated")


def test_fenceless_reply_passes_through_and_extracts(server, cfg):
    code = '#include <cstdio>\nint main() {\n  printf("PASS\\n");\n  return 0;\n}'
    server.expect_request(PATH, method="POST").respond_with_json(completion(code))
    call = ask(backend(cfg))
    assert call.reply == code and not is_truncated(call)
    ex = extract_code(call.reply, "cuda", ["main.cu"])
    assert ex.ok and ex.files == {"main.cu": code + "\n"}


def test_reasoning_model_gets_no_temperature_and_max_completion_tokens(server, cfg):
    server.expect_request(PATH, method="POST").respond_with_json(completion("ok"))
    b = backend(cfg)
    call = ask(b, model="o3-mini", temperature=0.6)
    ask(b, model="gpt-4.1", temperature=0.6)
    reasoning, plain = bodies(server)
    assert reasoning["model"] == "o3-mini"
    assert "temperature" not in reasoning and "max_tokens" not in reasoning
    assert reasoning["max_completion_tokens"] == 512
    assert call.temperature is None  # the archive says no temperature was sent
    assert plain["temperature"] == 0.6 and plain["max_tokens"] == 512
    assert "max_completion_tokens" not in plain
    assert plain["messages"] == MSGS


def test_api_key_goes_in_the_header_and_nowhere_else(server, cfg, caplog):
    caplog.set_level(logging.DEBUG)
    server.expect_ordered_request(PATH, method="POST").respond_with_json(
        error_body(f"temporary trouble for key {SECRET}"), status=500)
    server.expect_ordered_request(PATH, method="POST").respond_with_json(completion("fine"))
    b = backend(cfg)
    call = ask(b)
    assert all(req.headers["Authorization"] == f"Bearer {SECRET}" for req, _ in server.log)
    for text in (repr(call), json.dumps(asdict(call)), repr(b), str(vars(call)), caplog.text):
        assert SECRET not in text
    assert "temporary trouble" in caplog.text  # the retry was logged, with the key scrubbed


def test_bad_request_is_recorded_without_retry(server, cfg):
    server.expect_request(PATH, method="POST").respond_with_json(
        error_body("This model's maximum context length is 8192 tokens"), status=400)
    call = ask(backend(cfg))
    assert not call.ok and call.attempts == 1 and len(server.log) == 1
    assert call.error == "HTTP 400: This model's maximum context length is 8192 tokens"


def test_auth_failure_raises_llm_error_without_the_key(server, cfg):
    server.expect_request(PATH, method="POST").respond_with_json(
        error_body(f"Incorrect API key provided: {SECRET}"), status=401)
    with pytest.raises(LLMError) as info:
        ask(backend(cfg))
    err = info.value
    assert "HTTP 401" in str(err) and "\n" not in str(err) and SECRET not in str(err)
    assert err.call is not None and err.call.attempts == 1 and "HTTP 401" in err.call.error
    assert len(server.log) == 1


def test_missing_key_without_base_url_is_a_config_error(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigError) as info:
        OpenAIBackend(LLMConfig(api_key_env=KEY_ENV))
    assert KEY_ENV in str(info.value) and "\n" not in str(info.value)


def test_local_server_without_key_gets_a_dummy_key(server, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    server.expect_request(PATH, method="POST").respond_with_json(completion("local"))
    call = ask(backend(LLMConfig(base_url=server.url_for("/v1"), api_key_env=KEY_ENV)))
    assert call.reply == "local"
    assert server.log[0][0].headers["Authorization"] == "Bearer unused"


def test_openai_base_url_from_the_environment(server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    monkeypatch.setenv("OPENAI_BASE_URL", server.url_for("/gateway/v1"))
    server.expect_request("/gateway/v1/chat/completions", method="POST").respond_with_json(completion("via env"))
    b = backend(LLMConfig(api_key_env=KEY_ENV))
    assert ask(b).reply == "via env"
    assert b.base_url == server.url_for("/gateway/v1")


@pytest.mark.parametrize(("model", "expected"), [
    ("o3-mini", True), ("o1", True), ("O4-mini-high", True), ("gpt-5", True), ("openai/gpt-5-mini", True),
    ("gpt-4.1", False), ("llama3.1:70b", False), ("gpt-4o", False),
])
def test_reasoning_model_globs(model, expected):
    assert is_reasoning_model(model, LLMConfig().reasoning_models) is expected


def test_retry_after_parsing():
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    assert 50 < parse_retry_after({"retry-after": time.strftime(
        "%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))}) <= 60


@given(st.integers(1, 12), st.floats(0.001, 5.0), st.floats(1.0, 100.0), st.integers(0, 2**32))
def test_backoff_grows_with_jitter_within_bounds(retry, base, cap, seed):
    p = RetryPolicy(max_retries=12, base_s=base, max_s=cap)
    d = p.delay(retry, None, random.Random(seed))
    full = min(base * 2 ** (retry - 1), cap)
    assert full / 2 <= d <= full
    assert p.delay(retry, cap * 10, random.Random(seed)) == cap  # Retry-After is capped too


def test_make_backend_choices(tmp_path, monkeypatch):
    t = tmp_path / "t.jsonl"
    t.write_text(json.dumps({"key": "k", "kind": "plan", "reply": "r"}) + "\n")
    assert isinstance(make_backend(LLMConfig(), f"replay:{t}"), ReplayBackend)
    assert isinstance(make_backend(LLMConfig(backend="replay", replay_path=str(t))), ReplayBackend)
    (tmp_path / "jacobi.trial2.jsonl").write_text(t.read_text())
    rb = make_backend(LLMConfig(), f"replay:{tmp_path}", app="jacobi", trial=2)
    assert isinstance(rb, ReplayBackend) and rb.path.name == "jacobi.trial2.jsonl"
    with pytest.raises(ConfigError, match="needs an app name"):
        make_backend(LLMConfig(), f"replay:{tmp_path}")
    with pytest.raises(ConfigError, match="needs a path"):
        make_backend(LLMConfig(), "replay:")
    monkeypatch.setenv(KEY_ENV, SECRET)
    assert isinstance(make_backend(LLMConfig(api_key_env=KEY_ENV)), OpenAIBackend)


def test_the_key_is_taken_out_of_the_environment_once(server, cfg):
    b = backend(cfg)
    assert KEY_ENV not in os.environ  # no program started from here inherits it
    b2 = backend(cfg)  # a second trial in the same process still gets the key
    server.expect_request(PATH, method="POST").respond_with_json(completion("ok"))
    assert ask(b2).reply == "ok"
    assert server.log[0][0].headers["Authorization"] == f"Bearer {SECRET}"
    assert b is not b2


def test_the_key_is_gone_from_proc_environ_and_from_children(tmp_path):
    """A fresh interpreter with the key in its initial environment: after the backend is made,
    neither /proc/<pid>/environ nor a child process shows it."""
    code = textwrap.dedent(f"""
        import subprocess
        from lassi_batch.core.config import LLMConfig
        from lassi_batch.llm.client import OpenAIBackend
        OpenAIBackend(LLMConfig(api_key_env={KEY_ENV!r}))
        own = open("/proc/self/environ", "rb").read()
        child = subprocess.run(["/bin/sh", "-c", "env; cat /proc/$PPID/environ"], capture_output=True).stdout
        print("own", {SECRET!r}.encode() in own, "child", {SECRET!r}.encode() in child)
    """)
    env = {**os.environ, KEY_ENV: SECRET}
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["own", "False", "child", "False"]

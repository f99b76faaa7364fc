"""Chat completions against any OpenAI-compatible endpoint, with retries we count ourselves.

The SDK's own retries are switched off (max_retries=0) so that every attempt, wait and failure is
visible in the LLMCall the trial archives. Failure policy:

- 429, 408, 409, 5xx, timeouts and connection errors are retried with exponential backoff plus
  jitter (Retry-After honoured, capped); when the budget runs out the LLMCall comes back with
  `error` set, so the trial records the failure and carries on.
- 401, 403 and 404 mean a wrong key, permission, model name or base_url: every later call would
  fail the same way, so `LLMError` is raised (it carries the failed LLMCall in `.call`).
- Any other 4xx (e.g. 400 "context too long") belongs to this one prompt: LLMCall with `error`.

The API key is taken out of the process environment when the first backend is made
(`core.secrets.take_env_secret`), so that no program lassi-batch starts can read it, and then
lives only inside the SDK client; it never reaches an LLMCall, a log line or a repr.
"""

from __future__ import annotations

import email.utils
import fnmatch
import logging
import os
import random
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..core.config import LLMConfig
from ..core.errors import ConfigError, LassiError
from ..core.records import LLMCall
from ..core.secrets import take_env_secret
from .replay import ReplayBackend

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 409, 429})
FATAL_STATUSES = frozenset({401, 403, 404})
DUMMY_KEY = "unused"  # sent to local servers (vLLM, Ollama, llama.cpp) that want no key
ERROR_TEXT_MAX = 500


class LLMError(LassiError):
    """The endpoint refuses us in a way no retry or other prompt can fix (key, permission, model)."""

    def __init__(self, message: str, call: LLMCall | None = None):
        super().__init__(message)
        self.call = call


class ChatBackend(Protocol):
    """What the pipeline needs from an LLM: one prompt in, one archived LLMCall out."""

    def complete(
        self, *, key: str, kind: str, model: str, messages: list[dict], temperature: float | None
    ) -> LLMCall: ...


def is_reasoning_model(model: str, patterns: list[str]) -> bool:
    """True when `model` (or its last path segment, for gateway names like 'openai/o3') matches a glob."""
    names = {model.lower(), model.rsplit("/", 1)[-1].lower()}
    return any(fnmatch.fnmatchcase(n, p.lower()) for n in names for p in patterns)


def is_truncated(call: LLMCall) -> bool:
    """The model stopped at the token limit: the reply is kept but probably incomplete."""
    return call.finish_reason == "length"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter; Retry-After from the server wins, within `max_s`."""

    max_retries: int = 4
    base_s: float = 1.0
    max_s: float = 60.0

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number `retry` (1-based)."""
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.max_s)
        backoff = min(self.base_s * 2 ** (retry - 1), self.max_s)
        return backoff * (0.5 + 0.5 * rng.random())  # "equal jitter": never less than half


def parse_retry_after(headers: Any) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (number or HTTP date); None if absent/bad."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
        except (TypeError, ValueError):
            return None
    return None


def _resolve_key(cfg: LLMConfig, base_url: str | None) -> str:
    key = take_env_secret(cfg.api_key_env) if cfg.api_key_env else ""
    if key:
        return key
    if base_url:
        return DUMMY_KEY
    raise ConfigError(
        f"no API key: set the environment variable {cfg.api_key_env or 'named by [llm].api_key_env'}, "
        "or point [llm].base_url at a server that needs none"
    )


class OpenAIBackend:
    """ChatBackend over the openai SDK (OpenAI, Azure-compatible gateways, vLLM, Ollama, ...)."""

    def __init__(
        self,
        cfg: LLMConfig,
        *,
        retry_base_s: float | None = None,
        retry_max_s: float | None = None,
        seed: int | None = None,
    ):
        import openai

        self.cfg = cfg
        self.base_url = cfg.base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = _resolve_key(cfg, self.base_url)
        self._secret = key  # only for scrubbing error text; never logged or returned
        self.retry = RetryPolicy(
            max_retries=cfg.max_retries,
            base_s=retry_base_s if retry_base_s is not None else getattr(cfg, "retry_base_s", 1.0),
            max_s=retry_max_s if retry_max_s is not None else getattr(cfg, "retry_max_s", 60.0),
        )
        self._rng = random.Random(seed)
        self._client = openai.OpenAI(
            api_key=key, base_url=self.base_url, max_retries=0, timeout=cfg.timeout_s
        )

    def __repr__(self) -> str:
        return f"OpenAIBackend(base_url={self.base_url!r}, retries={self.retry.max_retries})"

    def request_params(self, model: str, temperature: float | None) -> dict[str, Any]:
        """Sampling parameters for `model`: reasoning models take no temperature and max_completion_tokens."""
        params: dict[str, Any] = {}
        if is_reasoning_model(model, self.cfg.reasoning_models):
            if self.cfg.max_tokens:
                params["max_completion_tokens"] = self.cfg.max_tokens
        else:
            if temperature is not None:
                params["temperature"] = temperature
            if self.cfg.max_tokens:
                params["max_tokens"] = self.cfg.max_tokens
        return params

    def complete(
        self, *, key: str, kind: str, model: str, messages: list[dict], temperature: float | None
    ) -> LLMCall:
        import openai

        params = self.request_params(model, temperature)
        call = LLMCall(
            key=key, kind=kind, model=model, messages=[dict(m) for m in messages],
            temperature=params.get("temperature"), t_start=time.time(), backend="openai", attempts=0,
        )
        t0 = time.monotonic()
        while True:
            call.attempts += 1
            retry_after: float | None = None
            try:
                resp = self._client.chat.completions.create(model=model, messages=messages, **params)
            except openai.APIStatusError as e:
                status = e.status_code
                detail = re.sub(r"^Error code: \d+ - ", "", e.message)  # the SDK's prefix repeats the status
                call.error = self._scrub(f"HTTP {status}: {detail}")
                if status in FATAL_STATUSES:
                    call.latency_s = time.monotonic() - t0
                    raise LLMError(f"LLM endpoint refused the call ({call.error})", call) from None
                if status not in RETRY_STATUSES and status < 500:
                    break
                retry_after = parse_retry_after(e.response.headers)
            except openai.APITimeoutError:
                call.error = f"timeout after {self.cfg.timeout_s:g} s"
            except openai.APIConnectionError as e:
                call.error = self._scrub(f"connection error: {e.__cause__ or e}")
            except openai.APIError as e:  # e.g. a body that is not a chat completion
                call.error = self._scrub(f"bad response: {e}")
                break
            else:
                self._fill(call, resp)
                break
            if call.attempts > self.retry.max_retries:
                call.error = f"{call.error} (gave up after {call.attempts} attempts)"
                break
            wait = self.retry.delay(call.attempts, retry_after, self._rng)
            log.warning("LLM call %s attempt %d failed (%s); retrying in %.2f s", key, call.attempts, call.error, wait)
            time.sleep(wait)
        call.latency_s = time.monotonic() - t0  # wall time the trial waited, backoff included
        return call

    def _fill(self, call: LLMCall, resp: openai.types.chat.ChatCompletion) -> None:
        call.error = ""
        if resp.usage is not None:
            call.prompt_tokens = resp.usage.prompt_tokens or 0
            call.completion_tokens = resp.usage.completion_tokens or 0
        if not resp.choices:
            call.error = "response holds no choices"
            return
        choice = resp.choices[0]
        call.finish_reason = choice.finish_reason or ""
        call.reply = choice.message.content or ""
        refusal = getattr(choice.message, "refusal", None)
        if not call.reply and refusal:
            call.error = self._scrub(f"model refused: {refusal}")
        if call.finish_reason == "length":
            log.warning("LLM call %s hit the token limit; reply kept but truncated", call.key)

    def _scrub(self, text: str) -> str:
        """One line, bounded, without the key (servers sometimes echo it back)."""
        text = " ".join(text.split())
        if self._secret and self._secret != DUMMY_KEY:
            text = text.replace(self._secret, "***")
        return text[:ERROR_TEXT_MAX]


def make_backend(
    cfg: LLMConfig, replay: str | None = None, *, app: str | None = None, trial: int | None = None
) -> ChatBackend:
    """The backend a trial uses: `replay` ("replay:PATH" or PATH, from the CLI) or cfg.backend.

    A replay folder needs `app` and `trial` to choose the transcript (see ReplayBackend.for_trial).
    """
    path = ""
    if replay:
        path = replay[len("replay:"):] if replay.startswith("replay:") else replay
        if not path:
            raise ConfigError("--llm replay:PATH needs a path after 'replay:'")
    elif cfg.backend == "replay":
        if not cfg.replay_path:
            raise ConfigError("[llm].replay_path: required when backend = 'replay'")
        path = cfg.replay_path
    if path:
        if os.path.isdir(path):
            if app is None or trial is None:
                raise ConfigError(f"replay folder {path} needs an app name and trial index to pick a transcript")
            return ReplayBackend.for_trial(path, app, trial, delay_s=cfg.replay_delay_s)
        return ReplayBackend(path, delay_s=cfg.replay_delay_s)
    if cfg.backend != "openai":
        raise ConfigError(f"[llm].backend: '{cfg.backend}' is not one of openai, replay")
    return OpenAIBackend(cfg)

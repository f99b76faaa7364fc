"""Which names and values are secrets: the one place these rules live.

Environment variables are filtered by name (`looks_secret`) before any program lassi-batch starts
sees them or any record is written; mappings are scrubbed by key (`scrub_secrets`) before they
reach an archive. A credential lassi-batch itself needs (the LLM API key) is taken out of the
process environment once (`take_env_secret`): removed from `os.environ` and overwritten in the
process's original environment block, which /proc/<pid>/environ would still show otherwise.
"""

from __future__ import annotations

import ctypes
import os
import re
from typing import Any

_SECRET = re.compile(r"KEY|TOKEN|SECRET|PASSW|PASSPHRASE|CREDENTIAL|AUTH|COOKIE|PRIVATE|SESSION|SIGNATURE|CERT")

_SECRET_KEYS = {"api_key", "apikey", "authorization", "password", "secret", "token"}


def looks_secret(name: str) -> bool:
    """True for variable names that may hold credentials (API keys, tokens, passwords...)."""
    return bool(_SECRET.search(name.upper()))


def is_secret(key: str) -> bool:
    """Names that must never reach an archive (API keys and the like)."""
    k = str(key).lower().replace("-", "_")
    return k in _SECRET_KEYS or k.endswith("_api_key") or k.endswith("_secret")


def scrub_secrets(obj: Any) -> Any:
    """A copy of `obj` without any dict item whose key looks like a secret, at any depth."""
    if isinstance(obj, dict):
        return {k: scrub_secrets(v) for k, v in obj.items() if not is_secret(k)}
    if isinstance(obj, (list, tuple)):
        return [scrub_secrets(v) for v in obj]
    return obj


_TAKEN: dict[str, str] = {}


def _wipe_c_environ(name: str) -> None:
    """Overwrite the value of `name` in the C environment (the block /proc/<pid>/environ reads)."""
    try:
        libc = ctypes.CDLL(None)
        env = ctypes.POINTER(ctypes.c_void_p).in_dll(libc, "environ")
    except (OSError, ValueError, AttributeError):
        return
    prefix = name.encode() + b"="
    i = 0
    while env[i]:
        addr = env[i]
        entry = ctypes.string_at(addr)
        if entry.startswith(prefix):
            ctypes.memset(addr + len(prefix), 0, len(entry) - len(prefix))
        i += 1


def take_env_secret(name: str) -> str:
    """The value of environment variable `name`, read once and then removed from this process.

    Later calls return the value taken first, unless the variable was set again meanwhile.
    No program started afterwards inherits it, and /proc/<pid>/environ no longer shows it.
    """
    value = os.environ.get(name, "")
    if value:
        _wipe_c_environ(name)
        os.environ.pop(name, None)
        _TAKEN[name] = value
        return value
    return _TAKEN.get(name, "")


def env_secret_available(name: str) -> bool:
    """Whether `name` is set or was taken earlier (without reading it out)."""
    return bool(os.environ.get(name)) or name in _TAKEN

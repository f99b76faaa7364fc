"""Which names and values are secrets: the one place these rules live.

Environment variables are filtered by name (`looks_secret`) before any program lassi-batch starts
sees them or any record is written; mappings are scrubbed by key (`scrub_secrets`) before they
reach an archive.
"""

from __future__ import annotations

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

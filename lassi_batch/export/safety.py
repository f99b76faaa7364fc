"""Keep credentials, host names, user names and absolute user paths out of a published dataset.

Two layers: `Redactor.clean` rewrites every string that goes into a record (paths keep their
file name, so a compiler error still reads `<path>/main.cpp:12: error`), and `Redactor.scan`
checks every byte of every file before the export is moved into place; a hit there stops the
export. The scanner reports what it found and where, never the value itself.
"""

from __future__ import annotations

import getpass
import os
import re
import socket
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.secrets import looks_secret

# Shapes of common credentials (OpenAI/Anthropic-style keys, GitHub, Hugging Face, AWS, Slack,
# bearer tokens, PEM private keys).
SECRET_PATTERNS = {
    "api key": re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"),
    "GitHub token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"),
    "Hugging Face token": re.compile(r"\bhf_[A-Za-z0-9]{20,}"),
    "AWS key id": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9\-]{10,}"),
    "bearer token": re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/\-]{16,}"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
}
# Absolute paths under folders that belong to users, jobs or sites (home, scratch, temp, ...).
_USER_ROOTS = r"(?:home|Users|root|tmp|var/tmp|scratch|work|lustre|gpfs|mnt|nfs|projects?|global|data|run/user|private)"
_PATH_END = r"\s'\"`<>|:;,()\[\]{}"
PATH_PATTERN = re.compile(rf"(?<![\w.~/-])/{_USER_ROOTS}(?=/|$|[{_PATH_END}])(?:/[^{_PATH_END}]*)?")
# Host and user names that identify nobody.
_GENERIC_NAMES = {"root", "user", "admin", "localhost", "ubuntu", "debian", "runner", "nobody", "vm", "host"}
_MIN_NAME = 3
_MIN_SECRET = 8
PLACEHOLDER_PATH = "<path>"
PLACEHOLDER_SECRET = "<redacted>"
PLACEHOLDER_NAME = "<host>"


@dataclass
class Redactor:
    """Rewrites strings and scans output for the secrets, names and paths it was told about."""

    secrets: set[str] = field(default_factory=set)  # exact values (API keys found in the environment)
    names: set[str] = field(default_factory=set)  # host and user names
    prefixes: set[str] = field(default_factory=set)  # absolute folders (study, home, temp, app paths)
    counts: Counter = field(default_factory=Counter)
    _done: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def for_this_machine(cls, extra_secrets: Iterable[str] = (), extra_names: Iterable[str] = (),
                         extra_prefixes: Iterable[str] = ()) -> Redactor:
        """Secrets from secret-looking environment variables; this host's and user's names; the
        home, temp and working folders."""
        secrets = {v for k, v in os.environ.items() if looks_secret(k) and len(v) >= _MIN_SECRET}
        names = {socket.gethostname(), socket.gethostname().split(".")[0]}
        try:
            names.add(getpass.getuser())
        except (KeyError, OSError):
            pass
        prefixes = {str(Path.home()), tempfile.gettempdir(), os.getcwd()}
        r = cls()
        r.secrets = {s for s in (*secrets, *extra_secrets) if s and len(s) >= _MIN_SECRET}
        r.names = {n for n in (*names, *extra_names) if n and len(n) >= _MIN_NAME and n.lower() not in _GENERIC_NAMES}
        r.prefixes = {p.rstrip("/") for p in (*prefixes, *extra_prefixes) if p and p.startswith("/") and p != "/"}
        return r

    # --- rewriting ----------------------------------------------------------------------

    def _name_re(self) -> re.Pattern[str] | None:
        if not self.names:
            return None
        alts = "|".join(re.escape(n) for n in sorted(self.names, key=lambda s: (-len(s), s)))
        return re.compile(rf"(?<![\w.-])(?:{alts})(?![\w-])")

    def clean(self, text: str) -> str:
        """`text` without known secrets, credential-shaped strings, user paths and host/user names.
        (Memoised: records of one trial repeat the same prompt; counts are per distinct text.)"""
        if text not in self._done:
            self._done[text] = self._clean(text)
        return self._done[text]

    def _clean(self, text: str) -> str:
        out = text
        for s in sorted(self.secrets, key=lambda s: (-len(s), s)):
            if s in out:
                self.counts["secret"] += out.count(s)
                out = out.replace(s, PLACEHOLDER_SECRET)
        for pat in SECRET_PATTERNS.values():
            out, n = pat.subn(PLACEHOLDER_SECRET, out)
            self.counts["secret"] += n
        for p in sorted(self.prefixes, key=lambda s: (-len(s), s)):
            if p in out:
                out, n = re.subn(re.escape(p) + rf"(?![\w.-])(?:/[^{_PATH_END}]*)?", _keep_file_name, out)
                self.counts["path"] += n
        out, n = PATH_PATTERN.subn(_keep_file_name, out)
        self.counts["path"] += n
        name_re = self._name_re()
        if name_re is not None:
            out, n = name_re.subn(PLACEHOLDER_NAME, out)
            self.counts["name"] += n
        return out

    def clean_obj(self, obj: Any) -> Any:
        """A copy of a JSON-like object with every string (keys too) cleaned."""
        if isinstance(obj, str):
            return self.clean(obj)
        if isinstance(obj, dict):
            return {self.clean(k) if isinstance(k, str) else k: self.clean_obj(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.clean_obj(v) for v in obj]
        return obj

    # --- checking -----------------------------------------------------------------------

    def scan(self, text: str) -> list[str]:
        """What is still unsafe in `text` (kinds only, never the values)."""
        found: list[str] = []
        if any(s in text for s in self.secrets):
            found.append("a secret from the environment or the configuration")
        found += [f"a {kind}-like string" for kind, pat in SECRET_PATTERNS.items() if pat.search(text)]
        if any(re.search(re.escape(p) + r"(?![\w.-])", text) for p in self.prefixes) or PATH_PATTERN.search(text):
            found.append("an absolute user path")
        name_re = self._name_re()
        if name_re is not None and name_re.search(text):
            found.append("a host or user name")
        return found

    def scan_tree(self, root: Path) -> list[str]:
        """One line per unsafe file under `root`: '<relative path>: <what>'."""
        problems = []
        for p in sorted(root.rglob("*")):
            if p.is_file():
                text = p.read_bytes().decode("utf-8", "replace")
                problems += [f"{p.relative_to(root).as_posix()}: {what}" for what in self.scan(text)]
        return problems


def _keep_file_name(m: re.Match[str]) -> str:
    last = m.group(0).rstrip("/").rsplit("/", 1)[-1]
    return f"{PLACEHOLDER_PATH}/{last}" if "." in last and len(last) > 1 else PLACEHOLDER_PATH

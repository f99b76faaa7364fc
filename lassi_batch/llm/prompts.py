"""Prompt templates: one plain-text file per prompt kind, rendered with `string.Template`.

Why `string.Template`: placeholders are `$name` or `${name}`, so the braces that fill CUDA and C++
code never clash with the syntax, and values are inserted verbatim (a `$` or `{` inside
substituted code is never re-read). In a template, write `$$` for a literal dollar sign.

Lookup for each kind (first hit wins):
    <root>/<platform>/<kind>.txt, <root>/<kind>.txt            (user overrides, optional)
    <prompts>/<platform>/<kind>.txt, <prompts>/<kind>.txt      (packaged defaults)
where <prompts> is the repository's top-level prompts/ folder, or $LASSI_BATCH_PROMPTS.
Background documents live in <...>/background/<platform>.md, same order.

Every template may use the platform words $language, $device, $fence and $compiler, and
$background (the platform's background document); PromptSet fills them unless the caller passes
its own values (e.g. the real device name, or the full compiler command line as $compiler).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from string import Template
from typing import Any

from ..core.errors import LassiError
from ..core.resources import data_path

PROMPTS_ENV = "LASSI_BATCH_PROMPTS"
SUFFIX = ".txt"
KINDS = (
    "system", "zero_shot", "context_background", "context_system", "context_code", "plan",
    "refactor", "fix_compile", "fix_runtime", "judge", "final_report",
)


class PromptError(LassiError):
    """A prompt template is missing, malformed, or was rendered without a value it needs."""


@dataclass(frozen=True)
class PlatformWords:
    """How the prompts name a platform's language, device, code-fence tag and compiler."""

    language: str
    device: str
    fence: str
    compiler: str


PLATFORM_WORDS = {
    "cuda": PlatformWords("CUDA C++", "NVIDIA GPU", "cuda", "nvcc"),
    "hip": PlatformWords("HIP C++", "AMD GPU", "cpp", "hipcc"),
    "cpu": PlatformWords("C++ with OpenMP", "CPU", "cpp", "g++ -fopenmp"),
}
GENERIC_WORDS = PlatformWords("C++", "target processor", "cpp", "the same compiler")


def packaged_prompts_dir() -> Path:
    """The default prompts folder: $LASSI_BATCH_PROMPTS, else the shipped prompts/ (see resources)."""
    env = os.environ.get(PROMPTS_ENV)
    return Path(env).expanduser() if env else data_path("prompts")


def template_placeholders(template: Template, where: str) -> frozenset[str]:
    """Names a template uses; a stray `$` is an error naming the line (works on Python 3.10)."""
    names: set[str] = set()
    for m in template.pattern.finditer(template.template):
        if m.group("invalid") is not None:
            line = template.template.count("\n", 0, m.start("invalid")) + 1
            raise PromptError(f"{where}:{line}: '$' not followed by a name (write $$ for a literal dollar)")
        name = m.group("named") or m.group("braced")
        if name:
            names.add(name)
    return frozenset(names)


@dataclass(frozen=True)
class _Loaded:
    template: Template
    path: Path
    names: frozenset[str]


class PromptSet:
    """All prompt templates for one platform, loaded and checked up front."""

    def __init__(self, root: Path | str | None = None, platform: str = "cuda", prompts_dir: Path | None = None):
        self.platform = platform
        self.root = Path(root).expanduser() if root else None
        self.base = Path(prompts_dir) if prompts_dir else packaged_prompts_dir()
        if self.root is not None and not self.root.is_dir():
            raise PromptError(f"prompt override folder not found: {self.root}")
        if not self.base.is_dir():
            raise PromptError(f"prompts folder not found: {self.base} (set {PROMPTS_ENV} to its location)")
        self.words = PLATFORM_WORDS.get(platform, GENERIC_WORDS)
        self._dirs = [d for top in (self.root, self.base) if top for d in (top / platform, top)]
        self._loaded = {kind: self._load(kind) for kind in KINDS}

    def _find(self, name: str) -> Path | None:
        return next((d / name for d in self._dirs if (d / name).is_file()), None)

    def _load(self, kind: str) -> _Loaded:
        path = self._find(kind + SUFFIX)
        if path is None:
            raise PromptError(f"no template for prompt kind '{kind}' (looked in {', '.join(map(str, self._dirs))})")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise PromptError(f"cannot read prompt template {path}: {e}") from None
        t = Template(text)
        return _Loaded(t, path, template_placeholders(t, str(path)))

    def _get(self, kind: str) -> _Loaded:
        if kind not in self._loaded:
            raise PromptError(f"unknown prompt kind '{kind}' (known: {', '.join(KINDS)})")
        return self._loaded[kind]

    def kinds(self) -> tuple[str, ...]:
        return KINDS

    def placeholders(self, kind: str) -> frozenset[str]:
        """Names the kind's template expects (platform words included)."""
        return self._get(kind).names

    def source(self, kind: str) -> Path:
        """The file a kind's template was read from (recorded with a trial for provenance)."""
        return self._get(kind).path

    def render(self, kind: str, **values: Any) -> str:
        """The filled-in prompt; a placeholder without a value (or with None) is an error."""
        loaded = self._get(kind)
        merged = {**asdict(self.words), **{k: str(v) for k, v in values.items() if v is not None}}
        if "background" in loaded.names and "background" not in merged:
            merged["background"] = self.background()
        missing = sorted(loaded.names - merged.keys())
        if missing:
            raise PromptError(f"prompt '{kind}' ({loaded.path}) needs a value for: {', '.join(missing)}")
        return loaded.template.substitute(merged)

    def messages(self, kind: str, **values: Any) -> list[dict[str, str]]:
        """[system, user] chat messages for one call; the same system prompt serves every kind."""
        if kind == "system":
            raise PromptError("'system' is the system prompt of every call; ask for the user prompt's kind")
        return [
            {"role": "system", "content": self.render("system", **values)},
            {"role": "user", "content": self.render(kind, **values)},
        ]

    def background(self, platform: str | None = None) -> str:
        """The background document summarised in stage 2 (user override first)."""
        places = [top / "background" / f"{platform or self.platform}.md" for top in (self.root, self.base) if top]
        for path in places:
            if path.is_file():
                return path.read_text(encoding="utf-8")
        raise PromptError(f"no background document (looked for {', '.join(map(str, places))})")


def format_sources(files: dict[str, str], fence: str) -> str:
    """Files as the prompts show them: a `File: name` line, then a fenced block per file.

    The fence grows beyond three backticks when the code itself holds a run of backticks.
    """
    parts = []
    for name, text in files.items():
        longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
        ticks = "`" * max(3, longest + 1)
        body = text if text.endswith("\n") else text + "\n"
        parts.append(f"File: {name}\n{ticks}{fence}\n{body}{ticks}")
    return "\n\n".join(parts)


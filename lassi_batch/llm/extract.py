"""Pull code, verdicts and optimization lists out of free-form LLM replies.

Replies vary by model: one fenced block, several (a snippet then the full file, or one per file),
no fences at all, a reply cut off at the token limit. Extraction never raises on a bad reply; it
says what went wrong in `Extraction.error` so the pipeline can record it and re-prompt.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

TRUNCATED = "reply truncated"

CODE_TAGS = frozenset({"cuda", "cu", "cuh", "hip", "c++", "cpp", "cxx", "cc", "c", "h", "hpp", "hxx", "openmp"})
_ALIASES = {
    "cuda": {"cuda", "cu", "cuh"},
    "hip": {"hip", "cpp", "c++", "cxx", "cc"},
    "cpp": {"cpp", "c++", "cxx", "cc", "hpp"},
    "c": {"c", "h"},
}
_ALIASES["cpu"] = _ALIASES["openmp"] = _ALIASES["c++"] = _ALIASES["cpp"]
_EXT_TAG = {".cu": "cuda", ".cuh": "cuda", ".hip": "hip", ".cpp": "cpp", ".cc": "cpp", ".cxx": "cpp",
            ".hpp": "cpp", ".h": "c", ".c": "c"}

_OPEN = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n]*)$")
_LOOKS_LIKE_CODE = re.compile(r"^\s*#\s*include\b|\bint\s+main\s*\(|__global__|#\s*pragma\s+omp", re.M)
_CODE_START = re.compile(
    r"^\s*(#\s*(include|define|pragma|if|ifdef|ifndef)\b|//|/\*|template\s*<|namespace\b|using\b|typedef\b|"
    r"struct\b|class\b|static\b|extern\b|__global__|__device__|(unsigned\s+)?(int|void|float|double|char|long|"
    r"bool|auto|size_t)\b)"
)
_LABEL_LINE = r"^\s*(?://|/\*)\s*file(?:name)?\s*:\s*`?{name}`?\s*(?:\*/)?\s*$"


@dataclass
class Extraction:
    """Files pulled from a reply (None on failure), the failure, and the reply's prose."""

    files: dict[str, str] | None
    error: str = ""
    description: str = ""
    missing: list[str] = field(default_factory=list)  # expected files the reply did not return

    @property
    def ok(self) -> bool:
        return self.files is not None and not self.error


@dataclass
class _Block:
    tag: str
    info: str
    text: str
    closed: bool
    before: str  # the last non-blank prose line before the fence (often "### main.cu")

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0]


def _split(reply: str) -> tuple[list[_Block], str]:
    """Fenced blocks and the prose around them."""
    lines = reply.split("\n")
    blocks: list[_Block] = []
    prose: list[str] = []
    since = 0  # prose lines before this index belong to earlier blocks
    i = 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if not m or (m.group("fence")[0] == "`" and "`" in m.group("info")):
            prose.append(lines[i])
            i += 1
            continue
        fence, info = m.group("fence"), m.group("info").strip()
        close = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        before = next((ln.strip() for ln in reversed(prose[max(since, len(prose) - 3):]) if ln.strip()), "")
        blocks.append(_Block(_tag_of(info), info, "\n".join(lines[i + 1:j]), j < len(lines), before))
        since = len(prose)
        i = j + 1
    return blocks, "\n".join(prose)


def _tag_of(info: str) -> str:
    word = re.split(r"[\s:{},]", info.lstrip("{."), maxsplit=1)[0].lower()
    suffix = PurePosixPath(word).suffix
    return _EXT_TAG.get(suffix, word) if suffix and word not in CODE_TAGS else word


def _is_code(b: _Block) -> bool:
    if b.tag in CODE_TAGS:
        return True
    return b.tag == "" and bool(_LOOKS_LIKE_CODE.search(b.text))


def _mentions(text: str, name: str) -> bool:
    variants = {name, PurePosixPath(name).name}
    return any(re.search(rf"(?<![\w./-]){re.escape(v)}(?![\w-]|\.\w)", text) for v in variants)


def _label(b: _Block, expected: list[str]) -> str | None:
    """The expected file a block claims to be, from its first-line comment, fence info or heading."""
    first = b.first_line.strip()
    sources = [first] if first.startswith(("//", "/*")) else []
    sources += [b.info, b.before if len(b.before) < 160 else ""]
    for src in sources:
        hits = [n for n in expected if _mentions(src, n)]
        if len(hits) == 1:
            return hits[0]
    return None


def _strip_label(code: str, name: str) -> str:
    first, _, rest = code.partition("\n")
    for v in (name, PurePosixPath(name).name):
        if re.match(_LABEL_LINE.format(name=re.escape(v)), first, re.I):
            return rest
    return code


def brace_balance(code: str) -> int:
    """'{' minus '}' outside comments, strings, char literals and preprocessor lines."""
    depth, i, n = 0, 0, len(code)
    line_start = True
    while i < n:
        c = code[i]
        if line_start and c in " \t":
            i += 1
            continue
        if line_start and c == "#":  # skip the directive and its continuation lines
            while i < n and not (code[i] == "\n" and code[i - 1] != "\\"):
                i += 1
            continue
        line_start = c == "\n"
        if code.startswith("//", i):
            i = code.find("\n", i)
            i = n if i < 0 else i
        elif code.startswith("/*", i):
            end = code.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif c == 'R' and code.startswith('R"', i):
            m = re.match(r'R"([^()\\\s]{0,16})\(', code[i:])
            end = code.find(f"){m.group(1)}\"", i) if m else -1
            i = (n if end < 0 else end + len(m.group(1)) + 2) if m else i + 2
        elif c == '"' or (c == "'" and not (i and code[i - 1].isdigit() and i + 1 < n and code[i + 1].isalnum())):
            j = i + 1
            while j < n and code[j] != c and code[j] != "\n":
                j += 2 if code[j] == "\\" else 1
            i = j + 1 if j < n and code[j] == c else j  # an unclosed literal ends at the newline
        else:
            depth += c == "{"
            depth -= c == "}"
            i += 1
    return depth


def _truncation(code: str, closed: bool) -> str:
    if not closed:
        return f"{TRUNCATED} (code block not closed)"
    extra = brace_balance(code)
    if extra > 0:
        return f"{TRUNCATED} (unbalanced braces: {extra} more '{{' than '}}')"
    return ""


def _fenceless(text: str) -> tuple[str, str] | None:
    """(code, prose) when an unfenced reply is a program: from its first code line to its last."""
    if not _LOOKS_LIKE_CODE.search(text) or "{" not in text:
        return None
    lines = text.split("\n")
    start = next((k for k, ln in enumerate(lines) if _CODE_START.match(ln)), None)
    if start is None:
        return None
    end = max((k for k in range(start, len(lines))
               if lines[k].rstrip().endswith(("}", ";")) or lines[k].lstrip().startswith("#")), default=len(lines) - 1)
    code = "\n".join(lines[start:end + 1])
    prose = "\n".join(lines[:start] + lines[end + 1:])
    return code, prose


def _tidy(prose: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", prose).strip()


def _finish(code: str) -> str:
    return code if code.endswith("\n") else code + "\n"


def extract_code(reply: str, language_hint: str, expected_files: list[str]) -> Extraction:
    """The rewritten file(s) in a reply; one entry of `expected_files` per file the model may return.

    Choice per file: a block labelled with the file's name (first-line `// File: name`, fence
    info, or the line before the fence), else, for a single expected file, the largest block in
    the hinted language, else the largest code block, else the whole reply if it is a program.
    """
    if not expected_files:
        raise ValueError("extract_code needs at least one expected file name")
    if not reply or not reply.strip():
        return Extraction(None, "empty reply")
    blocks, prose = _split(reply)
    code_blocks = [b for b in blocks if _is_code(b)]
    description = _tidy(prose)

    if not code_blocks:
        found = _fenceless(prose)
        if found is None:
            return Extraction(None, "no code block found in the reply", description)
        code, prose_left = found
        if len(expected_files) > 1:
            return Extraction(None, "reply holds unfenced code but several files were expected", description)
        err = _truncation(code, closed=True)
        files = None if err else {expected_files[0]: _finish(code)}
        return Extraction(files, err, _tidy(prose_left))

    labelled: dict[str, list[_Block]] = {}
    for b in code_blocks:
        name = _label(b, expected_files)
        if name:
            labelled.setdefault(name, []).append(b)

    chosen: dict[str, _Block] = {}
    if len(expected_files) == 1:
        name = expected_files[0]
        hint = _ALIASES.get(language_hint.lower(), {language_hint.lower()})
        pool = labelled.get(name) or [b for b in code_blocks if b.tag in hint] or code_blocks
        chosen[name] = max(pool, key=lambda b: len(b.text))
    else:
        if not labelled:
            return Extraction(None, f"{len(code_blocks)} code block(s) but none names its file "
                                    f"(expected {', '.join(expected_files)})", description)
        chosen = {name: max(bs, key=lambda b: len(b.text)) for name, bs in labelled.items()}

    files: dict[str, str] = {}
    for name, b in chosen.items():
        err = _truncation(b.text, b.closed)
        if err:
            return Extraction(None, f"{err} in {name}" if len(expected_files) > 1 else err, description)
        files[name] = _finish(_strip_label(b.text, name))
    missing = [n for n in expected_files if n not in files]
    return Extraction({n: files[n] for n in expected_files if n in files}, "", description, missing)


# ------------------------------------------------------------------ judge verdicts

_TOKEN = re.compile(r"\b(INVALID|VALID)\b")


def _verdict_tokens(text: str) -> set[str]:
    text = re.sub(r"\bNOT\s+VALID\b", "INVALID", re.sub(r"[*_`#>\[\]()\"']", " ", text))
    return set(_TOKEN.findall(text))


def parse_verdict(reply: str) -> str:
    """'VALID', 'INVALID', or '' when the reply gives no clear verdict.

    The last line that says VERDICT together with VALID/INVALID decides (markdown emphasis
    tolerated, case-insensitive, the word may sit on the next line, "not valid" is INVALID);
    without one, the last non-blank line counts only if it holds exactly one upper-case VALID or
    INVALID. A deciding line naming both is ambiguous.
    """
    lines = [ln for ln in (reply or "").splitlines() if ln.strip()]
    for k in range(len(lines) - 1, -1, -1):
        m = re.search(r"verdict", lines[k], re.I)
        if not m:
            continue
        tokens = _verdict_tokens(lines[k][m.end():].upper())
        if not tokens and k + 1 < len(lines):
            tokens = _verdict_tokens(lines[k + 1].upper())
        if tokens:  # a mention of "verdict" without one ("before my verdict, ...") does not count
            return tokens.pop() if len(tokens) == 1 else ""
    if lines:
        tokens = _verdict_tokens(lines[-1])
        if len(tokens) == 1:
            return tokens.pop()
    return ""


# ------------------------------------------------------------------ stage-4 optimization lists

CATEGORIES = ("memory_hierarchy", "algorithmic", "device_specific", "parallelism")
OTHER = "other"
_SYNONYMS = {
    "memory_hierarchy": {"memory_hierarchy", "memory_hierarchy_optimization", "mho", "memory", "memory_optimization",
                         "memory_access", "data_movement", "data_transfer", "memory_transfer", "caching", "cache"},
    "algorithmic": {"algorithmic", "algorithmic_and_computational_efficiency", "algorithmic_computational_efficiency",
                    "ace", "computational_efficiency", "algorithm", "computation", "compute", "arithmetic"},
    "device_specific": {"device_specific", "device_specific_tuning", "dst", "hardware_specific", "hardware",
                        "platform_specific", "architecture_specific", "vendor_specific"},
    "parallelism": {"parallelism", "parallelism_and_thread_management", "ptm", "thread_management", "threading",
                    "concurrency", "parallelization", "synchronization", "launch_configuration", "occupancy"},
}
_KEYWORDS = (("memory", "memory_hierarchy"), ("algorithm", "algorithmic"), ("comput", "algorithmic"),
             ("device", "device_specific"), ("hardware", "device_specific"), ("parallel", "parallelism"),
             ("thread", "parallelism"))


def normalize_category(raw: Any) -> str:
    """One of CATEGORIES for the paper's names, abbreviations and common synonyms; else 'other'."""
    key = re.sub(r"[^a-z0-9]+", "_", str(raw).lower().replace("&", " and ")).strip("_")
    for cat, names in _SYNONYMS.items():
        if key in names:
            return cat
    return next((cat for word, cat in _KEYWORDS if word in key), OTHER)


def parse_optimizations(reply: str) -> list[dict[str, str]]:
    """Items {"name", "category", "description"} from the last usable JSON list in the reply.

    Accepts a list of objects (or of plain names) or {"optimizations": [...]}; entries without a
    name are dropped; categories are normalised; a reply without a usable list gives [].
    """
    blocks, _ = _split(reply or "")
    for b in reversed([b for b in blocks if b.tag in ("json", "jsonc", "")]):
        try:
            data = json.loads(b.text)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            data = data.get("optimizations")
        if not isinstance(data, list):
            continue
        items = []
        for item in data:
            if isinstance(item, str):
                item = {"name": item}
            if not isinstance(item, dict) or not str(item.get("name", "")).strip():
                continue
            items.append({
                "name": str(item["name"]).strip(),
                "category": normalize_category(item.get("category", "")),
                "description": str(item.get("description", "")).strip(),
            })
        return items
    return []

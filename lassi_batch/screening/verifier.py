"""Deterministic output verifier: does a candidate's run still do the source's job?

The paper screened candidates with an LLM judge alone, which passed a refactor that deleted the
measured repeat loop. This module compares the candidate's stdout with the source's stdout using
only the app's declared rules (`OutputCheck`), so the same inputs always give the same verdict.

Rules, in order (each adds findings; the verdict is the worst severity):

- exit status: not started, killed or nonzero -> fail.
- `pass_regex` must match the candidate's stdout, `fail_regex` must not -> fail. When the source
  itself breaks the rule the regex is probably wrong, so the finding is only a warning.
- checksum (`checksum_regex`, group 1, every match in order): a missing or differing value -> fail.
  A value printed with fewer significant digits than the source's -> fail ("digits"): coarser
  printing would otherwise hide a lower-precision computation behind the wider tolerance.
- work (`work_regex`, group 1, every match in order): a candidate value below the source's ->
  fail ("measured work was removed"); a missing work line -> fail. More work is fine.
- numbers (`compare_numbers`): every number on every line not matched by `ignore_regex`,
  `checksum_regex` or `work_regex` is compared within tolerance. Lines are aligned by their text
  with the numbers masked; inside a changed stretch, lines pair up in order by how many numbers
  they hold (or, if the stretch holds as many numbers on both sides, number by number), so
  reworded, rewrapped or reformatted lines still pair up. A paired number that differs -> fail.
  A numeric line of the source with no counterpart -> fail (a result is no longer reported).
  Extra numeric lines in the candidate -> warn (added diagnostics are harmless). A number printed
  with fewer significant digits than the source's -> fail ("digits"). The checksum line is
  compared here too (only work lines and `ignore_regex` lines, timings by default, are skipped).

`verify_runs` applies all of this to every measured repeat, not only the first, and
`hardcoded_results` looks for the source's printed results as literals in the candidate's code.

Tolerance for two numbers a, b: |a - b| <= atol + rtol * max(|a|, |b|) + q / 2, where q is the
larger printed resolution of the two (one unit in the last printed digit), so "0.000123" and
"1.2300e-04" agree: neither side can be more precise than it was printed. NaN equals NaN and an
infinity equals only itself, because identical behaviour is what the comparison asks for.

All regexes run with re.MULTILINE, so '^PASS$' matches a whole line. Work is bounded: only the
first `MAX_CHARS` characters of each output and the first `MAX_NUMERIC_LINES` numeric lines are
compared (a finding says so when output was cut).
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import asdict, dataclass, field
from statistics import fmean, median
from typing import Any, Iterable, Literal, Sequence

from ..core.config import OutputCheck
from ..power.stats import is_lower

# "held": not wrong, but too good to count before a confirmation (see screening/policy.py).
# "error": screening itself could not run (counts as a failure: an unscreened candidate must not count).
Severity = Literal["info", "warn", "held", "fail", "error"]
Verdict = Literal["pass", "warn", "fail"]

MAX_CHARS = 2_000_000  # characters of each stdout that are examined
MAX_NUMERIC_LINES = 4000  # numeric lines of each stdout that are aligned and compared
MAX_REPORTED = 5  # mismatches spelled out per finding
ENERGY_SUSPICIOUS_SAVING = 0.9  # a saving above this fraction is more often a bug than a win
POWER_SUSPICIOUS_DROP = 0.5  # energy per unit of run time (average power) falling below half the source's

_RANK = {"info": 0, "warn": 1, "held": 1, "fail": 2, "error": 2}

# Tokens are the pieces between whitespace and common separators ('=', ':', ',', brackets...).
_SPLIT = re.compile(r"[\s,;:=()\[\]{}<>|\"'`]+")
# A numeric token: optional sign, digits with optional fraction, optional exponent, and an
# optional purely alphabetic unit suffix ("1.5s", "12%"), so "heat2d" or "0x1f" are not numbers.
_NUMBER = re.compile(r"^(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?P<unit>[A-Za-z%]*)$")
_SPECIAL = {"nan": math.nan, "inf": math.inf, "infinity": math.inf}


@dataclass(frozen=True)
class Finding:
    """One observation about the candidate's output."""

    kind: str  # exit | pass_line | fail_line | checksum | work | numbers | energy | truncated
    severity: Severity
    message: str


@dataclass
class VerifierReport:
    """The verdict and the findings behind it; `to_dict` is what the archive stores."""

    verdict: Verdict
    findings: list[Finding] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)  # numbers compared, lines paired, ...

    @classmethod
    def from_findings(cls, findings: Iterable[Finding], stats: dict[str, int] | None = None) -> VerifierReport:
        fs = list(findings)
        worst = max((_RANK[f.severity] for f in fs), default=0)
        verdict: Verdict = "fail" if worst == 2 else "warn" if worst == 1 else "pass"
        return cls(verdict=verdict, findings=fs, stats=dict(stats or {}))

    def extended(self, more: Iterable[Finding | None]) -> VerifierReport:
        """A new report with extra findings (e.g. `energy_sanity`) and the verdict recomputed."""
        return VerifierReport.from_findings(self.findings + [f for f in more if f is not None], self.stats)

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "fail"]

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "findings": [asdict(f) for f in self.findings], "stats": dict(self.stats)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VerifierReport:
        fs = [Finding(kind=f["kind"], severity=f["severity"], message=f["message"]) for f in d.get("findings", [])]
        return cls(verdict=d["verdict"], findings=fs, stats=dict(d.get("stats", {})))


# ---------------------------------------------------------------- numbers


@dataclass(frozen=True)
class Number:
    """A number read from stdout with the resolution it was printed at."""

    value: float
    quantum: float  # one unit in the last printed digit (0 for nan/inf)
    text: str
    digits: int = 0  # significant digits printed (leading zeros excluded; 0 for zero, nan, inf)


def parse_number(token: str) -> Number | None:
    """Read one token as a number, or None. Keeps the printed resolution for the tolerance."""
    t = token.rstrip(".")  # sentence punctuation: "is 3." -> "3"
    if not t or "_" in t:
        return None
    low = t.lower().lstrip("+-")
    if low in _SPECIAL:
        v = _SPECIAL[low]
        return Number(-v if t.startswith("-") and v == math.inf else v, 0.0, t)
    m = _NUMBER.match(t)
    if not m:
        return None
    num = m.group("num")
    mantissa, _, exp = num.lower().partition("e")
    decimals = len(mantissa.split(".", 1)[1]) if "." in mantissa else 0
    try:
        value = float(num)
        scale = int(exp or 0) - decimals
    except ValueError:  # absurdly long digit strings
        return None
    try:
        quantum = 10.0 ** scale
    except OverflowError:
        quantum = math.inf
    return Number(value, quantum, num, len(mantissa.lstrip("+-").replace(".", "").lstrip("0")))


def numbers_in(line: str) -> list[Number]:
    return [n for n in (parse_number(tok) for tok in _SPLIT.split(line)) if n is not None]


def _skeleton(line: str) -> str:
    """The line's text with its numbers masked: what aligns a source line with a candidate line."""
    return " ".join("#" if parse_number(tok) is not None else tok for tok in _SPLIT.split(line.strip()) if tok)


def close(a: Number, b: Number, rtol: float, atol: float, coarser: bool = True) -> bool:
    """Equal within tolerance; `coarser=False` uses `a`'s printed resolution only (a = source)."""
    x, y = a.value, b.value
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if math.isinf(x) or math.isinf(y):
        return x == y
    q = max(a.quantum, b.quantum) if coarser else a.quantum
    return abs(x - y) <= atol + rtol * max(abs(x), abs(y)) + 0.5 * q


def fewer_digits(a: Number, b: Number) -> bool:
    """True when b (candidate) is printed with fewer significant digits than a (source).

    Counted in significant digits, not in the last digit's place, so 9.9999999999e-01 and
    1.0000000000e+00 (same format, across a decade) are equally precise. Zeros compare by place.
    """
    if not (math.isfinite(a.value) and math.isfinite(b.value)):
        return False
    if a.value == 0 or b.value == 0:
        return b.quantum > a.quantum * (1 + 1e-9)
    return b.digits < a.digits


def _describe(a: Number, b: Number) -> str:
    x, y = a.value, b.value
    if all(math.isfinite(v) for v in (x, y)) and max(abs(x), abs(y)) > 0:
        return f"{a.text} vs {b.text} (relative difference {abs(x - y) / max(abs(x), abs(y)):.2e})"
    return f"{a.text} vs {b.text}"


# ---------------------------------------------------------------- rules


def _compile(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(pattern, re.MULTILINE) if pattern else None


def _captures(rx: re.Pattern[str], text: str) -> list[Number | None]:
    """The first number in group 1 of every match (None where there is none), so a loose
    capture such as '(\\S+)' still reads "1.5e+03," as 1500."""
    out: list[Number | None] = []
    for m in rx.finditer(text):
        nums = numbers_in(m.group(1) or "")
        out.append(nums[0] if nums else None)
    return out


def _check_exit(returncode: int | None) -> list[Finding]:
    if returncode is None:
        return [Finding("exit", "fail", "the candidate did not run to completion (not started, killed or timed out)")]
    if returncode != 0:
        return [Finding("exit", "fail", f"the candidate exited with status {returncode}")]
    return []


def _check_lines(check: OutputCheck, src: str, cand: str) -> list[Finding]:
    out: list[Finding] = []
    rx = _compile(check.pass_regex)
    if rx and not rx.search(cand):
        if rx.search(src):
            out.append(Finding("pass_line", "fail", f"no line matches the pass pattern {check.pass_regex!r}"))
        else:
            out.append(Finding("pass_line", "warn", f"the pass pattern {check.pass_regex!r} matches neither output; check the app's [check]"))
    rx = _compile(check.fail_regex)
    if rx:
        m = rx.search(cand)
        if m:
            line = cand[cand.rfind("\n", 0, m.start()) + 1:].split("\n", 1)[0][:200]
            sev: Severity = "warn" if rx.search(src) else "fail"
            out.append(Finding("fail_line", sev, f"output matches the fail pattern {check.fail_regex!r}: {line!r}"))
    return out


def _check_checksum(check: OutputCheck, src: str, cand: str) -> list[Finding]:
    rx = _compile(check.checksum_regex)
    if rx is None:
        return []
    want, got = _captures(rx, src), _captures(rx, cand)
    if not want:
        return [Finding("checksum", "warn", "the source printed no checksum; nothing to compare")]
    if len(got) < len(want):
        return [Finding("checksum", "fail", f"checksum missing: the source printed {len(want)}, the candidate {len(got)}")]
    bad, coarse = [], []
    for k, (w, g) in enumerate(zip(want, got)):
        if w is None:
            continue
        if g is None or not close(w, g, check.rtol, check.atol):
            bad.append(f"checksum {k + 1}: " + (_describe(w, g) if g is not None else f"{w.text} vs a non-number"))
        elif fewer_digits(w, g):
            coarse.append(f"{w.text} vs {g.text}")
    out = []
    if bad:
        out.append(Finding("checksum", "fail", "checksum differs beyond tolerance: " + "; ".join(bad[:MAX_REPORTED])))
    if coarse:
        out.append(Finding("digits", "fail", "the candidate prints its checksum with fewer significant digits than "
                           "the source: " + "; ".join(coarse[:MAX_REPORTED])))
    return out


def _check_work(check: OutputCheck, src: str, cand: str) -> list[Finding]:
    rx = _compile(check.work_regex)
    if rx is None:
        return []
    want, got = _captures(rx, src), _captures(rx, cand)
    if not want:
        return []  # the source reports no work count: nothing to hold the candidate to
    if len(got) < len(want):
        return [Finding("work", "fail", f"work line missing: the source printed {len(want)} matching {check.work_regex!r}, the candidate {len(got)}")]
    shrunk = []
    for k, (w, g) in enumerate(zip(want, got)):
        if w is None or math.isnan(w.value):
            continue
        if g is None or math.isnan(g.value) or g.value < w.value * (1 - 1e-12):
            shrunk.append(f"{w.text} -> {g.text if g else 'non-number'}" + (f" (item {k + 1})" if len(want) > 1 else ""))
    if shrunk:
        return [Finding("work", "fail", "measured work was removed: the candidate does less work than the source ("
                        + "; ".join(shrunk[:MAX_REPORTED]) + ")")]
    return []


@dataclass(frozen=True)
class _Line:
    no: int  # 1-based line number in its stdout
    skeleton: str
    numbers: list[Number]


def _numeric_lines(text: str, skip: list[re.Pattern[str]], limit: int) -> tuple[list[_Line], bool]:
    """The first `limit` lines that hold numbers and match no skip pattern; True if there were more."""
    out: list[_Line] = []
    for no, line in enumerate(text.splitlines(), 1):
        if any(rx.search(line) for rx in skip):
            continue
        nums = numbers_in(line)
        if nums:
            if len(out) == limit:
                return out, True
            out.append(_Line(no, _skeleton(line), nums))
    return out, False


def _align(a: list[_Line], b: list[_Line]) -> list[tuple[str, int, int, int, int]]:
    sa, sb = [l.skeleton for l in a], [l.skeleton for l in b]
    if sa == sb:
        return [("equal", 0, len(a), 0, len(b))]  # the common case: same layout, skip the aligner
    return difflib.SequenceMatcher(None, sa, sb).get_opcodes()


def _check_numbers(check: OutputCheck, src: str, cand: str) -> tuple[list[Finding], dict[str, int]]:
    skip = [rx for rx in (_compile(check.ignore_regex), _compile(check.work_regex)) if rx]
    a, more_a = _numeric_lines(src, skip, MAX_NUMERIC_LINES)
    b, more_b = _numeric_lines(cand, skip, MAX_NUMERIC_LINES)
    findings: list[Finding] = []
    if more_a or more_b:
        findings.append(Finding("truncated", "info", f"only the first {MAX_NUMERIC_LINES} numeric lines of each output were compared"))

    mismatches: list[str] = []
    coarse: list[str] = []
    missing: list[_Line] = []
    extra: list[_Line] = []
    compared = paired = 0

    def compare(xs: list[Number], ys: list[Number], where: str) -> None:
        nonlocal compared
        for x, y in zip(xs, ys):
            compared += 1
            if not close(x, y, check.rtol, check.atol):
                mismatches.append(f"{where}: {_describe(x, y)}")
            elif fewer_digits(x, y):
                coarse.append(f"{where}: {x.text} vs {y.text}")

    for tag, i1, i2, j1, j2 in _align(a, b):
        sa, sb = a[i1:i2], b[j1:j2]
        if tag == "equal" or (tag == "replace" and len(sa) == len(sb) and all(len(x.numbers) == len(y.numbers) for x, y in zip(sa, sb))):
            for x, y in zip(sa, sb):  # same text, or reworded lines with the same numbers per line
                paired += 1
                compare(x.numbers, y.numbers, f"source line {x.no} / candidate line {y.no}")
            continue
        flat_a = [n for l in sa for n in l.numbers]
        flat_b = [n for l in sb for n in l.numbers]
        if tag == "replace" and len(flat_a) == len(flat_b):
            paired += len(sa)  # the same numbers wrapped differently over lines
            compare(flat_a, flat_b, f"source lines {sa[0].no}-{sa[-1].no} / candidate lines {sb[0].no}-{sb[-1].no}")
            continue
        # Otherwise pair lines in order by how many numbers they hold; the rest are unmatched.
        k = 0
        for x in sa:
            hit = next((m for m in range(k, len(sb)) if len(sb[m].numbers) == len(x.numbers)), None)
            if hit is None:
                missing.append(x)
                continue
            extra.extend(sb[k:hit])
            paired += 1
            compare(x.numbers, sb[hit].numbers, f"source line {x.no} / candidate line {sb[hit].no}")
            k = hit + 1
        extra.extend(sb[k:])

    if mismatches:
        findings.append(Finding("numbers", "fail", f"{len(mismatches)} number(s) differ beyond tolerance "
                                f"(rtol {check.rtol:g}, atol {check.atol:g}): " + "; ".join(mismatches[:MAX_REPORTED])))
    if missing:
        shown = ", ".join(str(l.no) for l in missing[:MAX_REPORTED])
        findings.append(Finding("numbers", "fail", f"{len(missing)} numeric line(s) of the source have no counterpart "
                                f"in the candidate (source lines {shown})"))
    if extra:
        shown = ", ".join(str(l.no) for l in extra[:MAX_REPORTED])
        findings.append(Finding("numbers", "warn", f"the candidate prints {len(extra)} numeric line(s) the source "
                                f"does not (candidate lines {shown})"))
    if coarse:
        findings.append(Finding("digits", "fail", f"{len(coarse)} number(s) printed with fewer significant digits "
                                "than the source: " + "; ".join(coarse[:MAX_REPORTED])))
    stats = {"numbers_compared": compared, "lines_paired": paired, "source_numeric_lines": len(a),
             "candidate_numeric_lines": len(b)}
    return findings, stats


def verify(check: OutputCheck, source_stdout: str, candidate_stdout: str, candidate_returncode: int | None) -> VerifierReport:
    """Compare a candidate's run with the source's run under the app's `check` rules."""
    findings: list[Finding] = []
    src = (source_stdout or "").replace("\r\n", "\n")
    cand = (candidate_stdout or "").replace("\r\n", "\n")
    if len(src) > MAX_CHARS or len(cand) > MAX_CHARS:
        findings.append(Finding("truncated", "info", f"outputs longer than {MAX_CHARS} characters were cut "
                                f"(source {len(src)}, candidate {len(cand)})"))
        src, cand = src[:MAX_CHARS], cand[:MAX_CHARS]
    findings += _check_exit(candidate_returncode)
    findings += _check_lines(check, src, cand)
    findings += _check_checksum(check, src, cand)
    findings += _check_work(check, src, cand)
    stats: dict[str, int] = {}
    if check.compare_numbers:
        more, stats = _check_numbers(check, src, cand)
        findings += more
    return VerifierReport.from_findings(findings, stats)


def source_output_problems(check: OutputCheck, stdout: str) -> list[str]:
    """What is wrong with the app's [check] against the source's own successful output, one line each.

    A pass, checksum or work pattern that matches no line, a checksum that captures no number, or
    the source printing its own failure line makes every comparison of a candidate meaningless
    (nothing to compare, or everything fails), so `profile` reports it as an error of the app's
    description rather than a verdict on the code.
    """
    text = (stdout or "").replace("\r\n", "\n")[:MAX_CHARS]
    out: list[str] = []
    for key, pattern in (("pass_regex", check.pass_regex), ("checksum_regex", check.checksum_regex),
                         ("work_regex", check.work_regex)):
        rx = _compile(pattern)
        if rx is None:
            continue
        if not rx.search(text):
            out.append(f"check.{key} {pattern!r} matches no line of the source's output")
        elif key != "pass_regex" and all(v is None for v in _captures(rx, text)):
            out.append(f"check.{key} {pattern!r} matches the source's output but its first group holds no number")
    rx = _compile(check.fail_regex)
    m = rx.search(text) if rx else None
    if m:
        line = text[text.rfind("\n", 0, m.start()) + 1:].split("\n", 1)[0][:200]
        out.append(f"the source's own output matches check.fail_regex {check.fail_regex!r}: {line!r}")
    return out


def verify_runs(check: OutputCheck, source_stdout: str, runs: Sequence[tuple[str, int | None]]) -> VerifierReport:
    """Verify every measured repeat against the source; the first repeat's findings stand as they
    are, a later repeat adds the findings the first did not have, prefixed with its number.

    A candidate that does the work on its first run only (and reuses a cached result later) or
    whose later repeats print something else is caught here.
    """
    if not runs:
        return verify(check, source_stdout, "", None)
    first = verify(check, source_stdout, runs[0][0], runs[0][1])
    findings, seen = list(first.findings), {(f.kind, f.message) for f in first.findings}
    for r, (out, rc) in enumerate(runs[1:], 2):
        for f in verify(check, source_stdout, out, rc).findings:
            if (f.kind, f.message) not in seen and f.severity != "info":
                seen.add((f.kind, f.message))
                findings.append(Finding(f.kind, f.severity, f"repeat {r}: {f.message}"))
    return VerifierReport.from_findings(findings, {**first.stats, "repeats_verified": len(runs)})


# ---------------------------------------------------------------- results typed into the code

LITERAL_MIN_DIGITS = 6  # printed results with fewer significant digits are too common to flag
LITERAL_RTOL = 5e-7  # a literal this close to a printed result is that result, typed in
DIGIT_RUN_MIN = 8  # a printed result's significant digits found in a run of the code's digits

# C/C++ tokens: comments, string literals (adjacent ones are joined, as the compiler does),
# character literals, numbers (hex floats, digit separators, suffixes), braces and the rest.
_TOKEN = re.compile(r"""
    (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<string>(?:u8|[uUL])?R"(?P<delim>[^()\\\s]{0,16})\((?P<raw>.*?)\)(?P=delim)"
              |(?:u8|[uUL])?"(?:[^"\\\n]|\\.)*")
  | (?P<char>(?:u8|[uUL])?'(?:[^'\\\n]|\\.)+')
  | (?P<number>\.?\d(?:[eEpP][-+]|'?[\w.])*)
  | (?P<open>\{) | (?P<close>\}) | (?P<comma>,)
  | (?P<ident>[A-Za-z_]\w*)
  | (?P<space>\s+)
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'", "a": "\a",
            "b": "\b", "f": "\f", "v": "\v", "?": "?"}
_ESC = re.compile(r"\\(x[0-9A-Fa-f]+|[0-7]{1,3}|.)", re.DOTALL)


def _unescape(body: str) -> str:
    def one(m: re.Match[str]) -> str:
        e = m.group(1)
        try:
            if e[0] == "x":
                return chr(int(e[1:], 16) & 0x10FFFF)
            if e[0] in "01234567":
                return chr(int(e, 8))
        except ValueError:
            return ""
        return _ESCAPES.get(e, e)
    return _ESC.sub(one, body)


def c_number(text: str) -> float | None:
    """The value of a C/C++ numeric literal in any spelling: decimal, hex, octal, binary, hex
    floats (0x1.8p+3), digit separators (1'000), suffixes (f, L, u, ull); None if it is none."""
    t = text.replace("'", "").lower()
    t = re.sub(r"[ul]+$" if t.startswith("0x") and "p" not in t else r"(?:[ul]+|f)$", "", t)
    try:
        if t.startswith("0x"):
            return float.fromhex(t) if ("p" in t or "." in t) else float(int(t, 16))
        if t.startswith("0b"):
            return float(int(t[2:], 2))
        if len(t) > 1 and t.startswith("0") and t.isdigit():
            return float(int(t, 8))
        return float(t)
    except (ValueError, OverflowError):
        return None


def _char_value(tok: str) -> int | None:
    body = _unescape(tok[tok.index("'") + 1:-1])
    return ord(body) if len(body) == 1 else None


@dataclass
class CodeScan:
    """What a program's text spells in its literals: every number's value, and the texts its
    strings (adjacent literals joined), character lists and byte arrays spell out."""

    values: list[tuple[float, str]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    def digit_runs(self) -> list[str]:
        """Digit sequences of every text (other characters dropped), so that digits split over
        literals, separated by dots or exponents, or spread over an array read as one run."""
        return ["".join(ch for ch in t if ch.isdigit()) for t in self.texts]


def scan_code(files: dict[str, str]) -> CodeScan:
    """Tokenize C/C++/CUDA text and collect its literals (see `CodeScan`). Brace lists whose items
    are all character or integer literals are read twice: as characters (byte codes 32-126) and,
    when every item is a single digit 0-9, as a digit string."""
    out = CodeScan()
    for text in files.values():
        strings: list[str] = []  # the current run of adjacent string literals
        items: list[tuple[str, str]] | None = None  # literal items of the innermost open brace list
        for m in _TOKEN.finditer(text[:MAX_CHARS]):
            kind = m.lastgroup if m.lastgroup != "delim" and m.lastgroup != "raw" else "string"
            if kind in ("space", "comment"):
                continue
            tok = m.group(0)
            if kind == "string":
                strings.append(m.group("raw") if m.group("raw") is not None else _unescape(tok[tok.index('"') + 1:-1]))
                continue
            if strings:
                out.texts.append("".join(strings))
                strings = []
            if kind == "number":
                v = c_number(tok)
                if v is not None and math.isfinite(v) and v != 0:
                    out.values.append((v, tok))
            if kind == "open":
                items = []
            elif kind == "close" and items is not None:
                codes = [c_number(t) if k == "number" else _char_value(t) for k, t in items]
                if len(codes) >= 4 and all(c is not None and c == int(c) for c in codes):
                    ints = [int(c) for c in codes if c is not None]
                    while ints and ints[-1] == 0:
                        ints.pop()  # a C string's terminator
                    if all(32 <= c <= 126 for c in ints):
                        out.texts.append("".join(map(chr, ints)))
                    if all(0 <= c <= 9 for c in ints):
                        out.texts.append("".join(map(str, ints)))
                items = None
            elif items is not None and kind in ("number", "char"):
                items.append((kind, tok))
            elif items is not None and not (kind == "comma" or (kind == "other" and tok in "+-")):
                items = None  # not a list of literals only (names, calls, expressions)
        if strings:
            out.texts.append("".join(strings))
        for t in out.texts[:]:
            for tok in _SPLIT.split(t):
                n = parse_number(tok)
                if n is not None and math.isfinite(n.value) and n.value != 0:
                    out.values.append((n.value, tok))
    return out


def _sig_digits(n: Number) -> str:
    return n.text.lower().split("e")[0].lstrip("+-").replace(".", "").strip("0")


def hardcoded_results(check: OutputCheck, source_stdout: str, source_files: dict[str, str],
                      cand_files: dict[str, str]) -> Finding | None:
    """The source's printed results typed into the candidate's code (and not into the source's):
    a result table keyed on the measured arguments. Read at the token level (`scan_code`): a
    literal in any spelling whose value is a printed result (hex floats, 1'000 separators, numbers
    inside strings joined from adjacent literals or spelled as byte arrays), or a printed result's
    significant digits (at least `DIGIT_RUN_MIN`) inside the digit run of a string or array, which
    catches digits split over several literals. Results need `LITERAL_MIN_DIGITS` significant
    digits (trailing zeros dropped) so small counts never match."""
    skip = [rx for rx in (_compile(check.ignore_regex), _compile(check.work_regex)) if rx]
    results: list[Number] = []
    for line in (source_stdout or "")[:MAX_CHARS].splitlines():
        if any(rx.search(line) for rx in skip):
            continue
        for n in numbers_in(line):
            if math.isfinite(n.value) and n.value != 0 and len(_sig_digits(n)) >= LITERAL_MIN_DIGITS:
                results.append(n)
    if not results:
        return None
    own, cand = scan_code(source_files), scan_code(cand_files)
    own_runs, cand_runs = own.digit_runs(), cand.digit_runs()
    hits: list[str] = []
    for r in results:
        digits = _sig_digits(r)
        if len(digits) >= DIGIT_RUN_MIN and any(digits in run for run in cand_runs) \
                and not any(digits in run for run in own_runs):
            where = next(t for t, run in zip(cand.texts, cand_runs) if digits in run)
            hits.append(f"the digits of {r.text} in {where[:60]!r}")
            continue
        for value, text in cand.values:
            if abs(abs(value) - abs(r.value)) <= LITERAL_RTOL * abs(r.value) and not any(
                    abs(v - value) <= LITERAL_RTOL * abs(value) for v, _ in own.values):
                hits.append(f"{text} (the source prints {r.text})")
                break
    if not hits:
        return None
    return Finding("hardcoded", "fail", f"{len(hits)} of the source's printed results appear as literals in the "
                   "candidate's code: " + "; ".join(hits[:MAX_REPORTED]))


# ---------------------------------------------------------------- negative tests


def reports_failure(check: OutputCheck, stdout: str, returncode: int | None) -> bool:
    """Does this run report failure by the app's own rules: a nonzero (or no) exit status, its
    fail line, or no pass line (where the app declares one)?"""
    if returncode != 0:
        return True
    text = (stdout or "")[:MAX_CHARS]
    fail, ok = _compile(check.fail_regex), _compile(check.pass_regex)
    if fail is not None and fail.search(text):
        return True
    return ok is not None and not ok.search(text)


def negative_findings(check: OutputCheck, args: list[str], src: tuple[str, int | None],
                      cand: tuple[str, int | None]) -> list[Finding]:
    """A negative test (`check.negative_args`): where the source reports failure the candidate must
    too. Reporting success there means its check no longer checks (integrity); failing with
    another exit status is a note."""
    shown = " ".join(args)
    if not reports_failure(check, *src):
        return [Finding("negative_test", "warn", f"the source does not report failure on the negative test "
                        f"({shown}); check the app's check.negative_args")]
    if not reports_failure(check, *cand):
        return [Finding("negative_test", "fail", f"on the negative test ({shown}) the source reports failure "
                        f"(exit status {src[1]}) and the candidate reports success: its own check was removed "
                        "or no longer looks at the results")]
    if cand[1] != src[1]:
        return [Finding("negative_test", "info", f"on the negative test ({shown}) both report failure, the source "
                        f"with exit status {src[1]}, the candidate with {cand[1]}")]
    return []


Figures = float | Sequence[float] | None  # one figure, or one per measured repeat


def _values(x: Figures) -> list[float]:
    if x is None:
        return []
    xs = [x] if isinstance(x, (int, float)) else list(x)
    return [float(v) for v in xs if v is not None and math.isfinite(float(v))]


def energy_sanity(
    source_energy: Figures,
    cand_energy: Figures,
    source_runtime: Figures = None,
    cand_runtime: Figures = None,
    threshold: float = ENERGY_SUSPICIOUS_SAVING,
    power_drop: float = POWER_SUSPICIOUS_DROP,
    significance: float = 0.05,
) -> Finding | None:
    """Hold a candidate whose saving is implausible: more than `threshold` of the energy or run
    time, or an energy saving far larger than its run-time saving (average power below
    `power_drop` of the source's, as when the work moved to a process the meter does not see).

    Each figure may be a list of the measured repeats. A saving counts as implausible only when
    the decisions' noise test says so (`power.stats.is_lower`: the candidate's mean below
    (1 - threshold) x the source's, and with two or more repeats a side the one-sided Welch test
    rejecting at `significance`), so one outlying source repeat cannot hold an honest rewrite.
    The power rule compares medians and must pass the same test at the margin it implies.
    Such savings usually mean removed or hidden work; the candidate counts only once the
    differential runs and a re-measurement beside the source confirm it. Missing values give None.
    """
    parts = []
    ratios: dict[str, float] = {}
    for what, before, after in (("energy", source_energy, cand_energy), ("runtime", source_runtime, cand_runtime)):
        a, b = _values(before), _values(after)
        if not a or not b or median(a) <= 0:
            continue
        ratios[what] = median(b) / median(a)
        test = is_lower(a, b, threshold, significance)
        if test.lower:
            saving = 1.0 - fmean(b) / fmean(a)
            parts.append(f"{what} fell by {saving:.1%} ({fmean(a):.4g} -> {fmean(b):.4g}, above {threshold:.0%}; "
                         f"{test.reason})")
    if "energy" in ratios and ratios.get("runtime", 0) > 0 and ratios["energy"] < power_drop * ratios["runtime"]:
        margin = 1.0 - power_drop * ratios["runtime"]
        test = is_lower(_values(source_energy), _values(cand_energy), margin, significance)
        if test.lower:
            parts.append(f"energy fell to {ratios['energy']:.1%} of the source's while run time fell only to "
                         f"{ratios['runtime']:.1%} (average power below {power_drop:.0%} of the source's; "
                         f"medians; {test.reason})")
    if not parts:
        return None
    return Finding("implausible_saving", "held", "suspiciously large saving: " + "; ".join(parts)
                   + "; held until confirmed by the differential runs and a re-measurement beside the source")


LAUNCHES_SUSPICIOUS_DROP = 0.5  # fusing kernels can halve launches; fewer than that deserves a look


def work_count_finding(
    source: dict[str, int] | None, candidate: dict[str, int] | None, threshold: float = LAUNCHES_SUSPICIOUS_DROP,
) -> Finding | None:
    """Compare the independently counted GPU work (CUPTI: kernel launches, copied bytes).

    A warning, not a failure: fusing kernels or removing copies are legitimate savings, but a
    candidate that launches far fewer kernels may have dropped measured work, and the judge and
    a human should see the numbers. Counts are absent when the counter could not run.
    """
    if not source or not candidate:
        return None
    s, c = source.get("kernel_launches", 0), candidate.get("kernel_launches", 0)
    sb, cb = source.get("memcpy_bytes", 0), candidate.get("memcpy_bytes", 0)
    detail = f"kernel launches {s} -> {c}, cudaMemcpy bytes {sb} -> {cb} (counted by CUPTI, not printed by the app)"
    if s > 0 and c < s * (1.0 - threshold):
        return Finding("work", "warn", f"far fewer kernel launches than the source: {detail}; check that no measured "
                       "work was removed")
    return Finding("work", "info", detail)

"""Code extraction, judge verdicts and optimization lists from free-form replies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lassi_batch.llm.extract import (
    CATEGORIES, brace_balance, extract_code, normalize_category, parse_optimizations, parse_verdict,
)
from lassi_batch.llm.prompts import format_sources

PROGRAM = """#include <cstdio>
__global__ void scale(float* a, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) { a[i] *= 2.0f; }
}
int main() {
  printf("PASS\\n");
  return 0;
}
"""


def fenced(code: str, tag: str = "cuda", ticks: str = "```") -> str:
    return f"{ticks}{tag}\n{code.rstrip(chr(10))}\n{ticks}"


def test_single_block_with_description():
    reply = f"I moved the copy out of the hot path.\n\n{fenced(PROGRAM)}\n\nThis saves PCIe traffic."
    ex = extract_code(reply, "cuda", ["main.cu"])
    assert ex.ok and ex.files == {"main.cu": PROGRAM} and ex.missing == []
    assert ex.description == "I moved the copy out of the hot path.\n\nThis saves PCIe traffic."


def test_snippet_then_full_file_takes_the_largest_in_the_hinted_language():
    snippet = "a[i] *= 2.0f;"
    reply = f"Key line:\n{fenced(snippet)}\nBuild:\n{fenced('nvcc -O3 main.cu', 'bash')}\nFull file:\n{fenced(PROGRAM)}"
    assert extract_code(reply, "cuda", ["main.cu"]).files == {"main.cu": PROGRAM}


def test_hinted_language_beats_a_larger_block_in_another_code_language():
    helper = "// host-side reference\n" + "int ref(int x) { return x; }\n" * 20
    reply = f"{fenced(helper, 'cpp')}\n{fenced(PROGRAM, 'cuda')}"
    assert extract_code(reply, "cuda", ["main.cu"]).files == {"main.cu": PROGRAM}


def test_label_comment_selects_and_is_stripped():
    labelled = "// File: main.cu\n" + PROGRAM
    other = "// File: notes.cu\n" + PROGRAM + "// a longer, unrelated block\n" * 5
    reply = f"{fenced(other)}\n{fenced(labelled)}"
    assert extract_code(reply, "cuda", ["main.cu"]).files == {"main.cu": PROGRAM}


@pytest.mark.parametrize("style", ["comment", "heading", "info", "info-name"])
def test_several_files_by_label(style):
    a, b = PROGRAM, "#pragma once\ninline int twice(int x) { return 2 * x; }\n"

    def block(name: str, code: str) -> str:
        if style == "comment":
            return fenced(f"// File: {name}\n{code}")
        if style == "heading":
            return f"### `{name}`\n{fenced(code)}"
        if style == "info":
            return fenced(code, f'cuda title="{name}"')
        return fenced(code, name)

    reply = "Two files changed.\n\n" + block("src/util.cuh", b) + "\n\n" + block("main.cu", a)
    ex = extract_code(reply, "cuda", ["main.cu", "src/util.cuh"])
    assert ex.ok and ex.files == {"main.cu": a, "src/util.cuh": b}
    assert list(ex.files) == ["main.cu", "src/util.cuh"]  # in the expected order


def test_heading_labels_only_the_block_right_after_it():
    reply = f"### main.cu\n{fenced(PROGRAM)}\n{fenced('int helper() { return 1; }')}"
    ex = extract_code(reply, "cuda", ["main.cu", "util.cu"])
    assert ex.files == {"main.cu": PROGRAM} and ex.missing == ["util.cu"]


def test_several_files_without_labels_is_an_error():
    ex = extract_code(f"{fenced(PROGRAM)}\n{fenced(PROGRAM)}", "cuda", ["a.cu", "b.cu"])
    assert ex.files is None and "none names its file" in ex.error


def test_json_and_output_blocks_are_not_code():
    blocks = [fenced('[{"name": "x"}]', "json"), fenced("PASS" + chr(10) + "Time: 1.2 s", ""), fenced(PROGRAM)]
    reply = "\n".join(blocks)
    assert extract_code(reply, "cuda", ["main.cu"]).files == {"main.cu": PROGRAM}
    only_json = extract_code(fenced('{"a": 1}', "json"), "cuda", ["main.cu"])
    assert only_json.files is None and only_json.error == "no code block found in the reply"


def test_untagged_block_that_looks_like_code_is_used():
    assert extract_code(f"Here:\n{fenced(PROGRAM, '')}", "cuda", ["main.cu"]).files == {"main.cu": PROGRAM}


def test_tilde_fence_and_long_backtick_fence():
    assert extract_code(fenced(PROGRAM, "cpp", "~~~"), "cpp", ["main.cpp"]).files == {"main.cpp": PROGRAM}
    code = 'const char* md = "```";\n' + PROGRAM
    assert extract_code(fenced(code, "cuda", "````"), "cuda", ["main.cu"]).files == {"main.cu": code}


def test_missing_fences_whole_reply_is_code():
    reply = f"Here is the refactored program:\n{PROGRAM}\nIt should use less energy."
    ex = extract_code(reply, "cuda", ["main.cu"])
    assert ex.ok and ex.files == {"main.cu": PROGRAM}
    assert ex.description == "Here is the refactored program:\n\nIt should use less energy."


def test_prose_only_and_blank_replies():
    assert extract_code("I could not find any improvement.", "cuda", ["main.cu"]).error == "no code block found in the reply"
    for blank in ("", "   \n\n\t"):
        ex = extract_code(blank, "cuda", ["main.cu"])
        assert ex.files is None and ex.error == "empty reply"


def test_unterminated_fence_is_truncation():
    ex = extract_code("Changes:\n```cuda\n" + PROGRAM, "cuda", ["main.cu"])
    assert ex.files is None and ex.error == "reply truncated (code block not closed)"


def test_unbalanced_braces_are_truncation_even_inside_a_closed_fence():
    cut = PROGRAM.rsplit("}", 1)[0]
    ex = extract_code(fenced(cut), "cuda", ["main.cu"])
    assert ex.files is None and ex.error.startswith("reply truncated (unbalanced braces: 1 more")
    assert extract_code(cut, "cuda", ["main.cu"]).error.startswith("reply truncated")  # fence-less too


def test_truncation_in_one_of_several_files_names_it():
    reply = fenced("// File: a.cu\n" + PROGRAM) + "\n```cuda\n// File: b.cu\nint f() {"
    ex = extract_code(reply, "cuda", ["a.cu", "b.cu"])
    assert ex.files is None and ex.error == "reply truncated (code block not closed) in b.cu"


@pytest.mark.parametrize("code", [
    'printf("{ not a brace");',
    "char c = '{';",
    "// {{{ folded\nint x;",
    "/* { */ int y;",
    "long n = 1'000'000; char d = '}'; char e = '{';",
    '#define OPEN {\n#define LONG_MACRO(x) \\\n  { x\nint z;',
    'auto s = R"json({"a": {"b": 1}})json";',
    'printf("escaped \\" { quote");',
])
def test_brace_balance_ignores_literals_comments_and_directives(code):
    assert brace_balance(code) == 0


@given(st.lists(st.sampled_from(["{", "}", "x;", '"}"', "'{'", "// }\n", "/* { */", "\n"]), max_size=40))
def test_brace_balance_counts_only_real_braces(parts):
    code = "".join(parts)
    assert brace_balance(code) == parts.count("{") - parts.count("}")


@given(st.text(st.characters(blacklist_characters="`{}'\"\\#/~\r", blacklist_categories=("Cs",)), max_size=200))
def test_any_fenced_body_round_trips(body):
    code = "int main() {\n" + body + "\n}\n"
    ex = extract_code("Done.\n" + format_sources({"main.cu": code}, "cuda"), "cuda", ["main.cu"])
    assert ex.ok and ex.files == {"main.cu": code}


# ------------------------------------------------------------------ verdicts

@pytest.mark.parametrize(("reply", "verdict"), [
    ("Looks equivalent.\nVERDICT: VALID", "VALID"),
    ("Loop removed.\nVERDICT: INVALID", "INVALID"),
    ("**VERDICT: INVALID**", "INVALID"),
    ("**Verdict:** `valid`", "VALID"),
    ("## Verdict\n\n**INVALID**", "INVALID"),
    ("Verdict - NOT VALID: the repeat loop is gone.", "INVALID"),
    ("VERDICT: VALID\n...on reflection the copy left the loop.\nVERDICT: INVALID", "INVALID"),
    ("I considered VERDICT: INVALID first.\nVERDICT: VALID\n", "VALID"),
    ("Before my verdict, note the output matches.\nThe refactored code is VALID.", "VALID"),
    ("Everything matches. VALID", "VALID"),
    ("The answer is INVALID", "INVALID"),
    ("VERDICT: VALID or INVALID", ""),
    ("The output looks valid to me.", ""),
    ("It is VALID in part but INVALID overall", ""),
    ("", ""),
])
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) == verdict


# ------------------------------------------------------------------ optimizations

REPORT = """The refactor pins host memory and fuses kernels.

```json
[
  {"name": "pinned host memory", "category": "memory_hierarchy", "description": "cudaMallocHost"},
  {"name": "__restrict__ pointers", "category": "Algorithmic & Computational Efficiency"},
  {"name": "__ldg loads", "category": "DST"},
  {"name": "kernel fusion", "category": "Parallelism & Thread Management"},
  {"name": "mystery", "category": "vibes"},
  {"category": "parallelism"},
  "loop unrolling"
]
```
"""


def test_parse_optimizations_maps_categories():
    opts = parse_optimizations(REPORT)
    assert [o["name"] for o in opts] == ["pinned host memory", "__restrict__ pointers", "__ldg loads",
                                          "kernel fusion", "mystery", "loop unrolling"]
    assert [o["category"] for o in opts] == ["memory_hierarchy", "algorithmic", "device_specific", "parallelism",
                                              "other", "other"]
    assert opts[0]["description"] == "cudaMallocHost" and opts[1]["description"] == ""


@pytest.mark.parametrize(("raw", "cat"), [
    ("Memory Hierarchy Optimization", "memory_hierarchy"), ("MHO", "memory_hierarchy"),
    ("data transfer", "memory_hierarchy"), ("ACE", "algorithmic"), ("computational efficiency", "algorithmic"),
    ("Device-Specific Tuning", "device_specific"), ("hardware specific", "device_specific"),
    ("PTM", "parallelism"), ("thread management", "parallelism"), ("synchronization", "parallelism"),
    ("parallelism/thread management", "parallelism"), ("", "other"), (None, "other"), ("misc", "other"),
])
def test_normalize_category(raw, cat):
    assert normalize_category(raw) == cat
    assert cat in CATEGORIES or cat == "other"


def test_parse_optimizations_shapes_and_failures():
    wrapped = '```json\n{"optimizations": [{"name": "streams", "category": "parallelism"}]}\n```'
    assert parse_optimizations(wrapped) == [{"name": "streams", "category": "parallelism", "description": ""}]
    two = '```json\n[{"name": "old", "category": "mho"}]\n```\nRevised:\n```json\n[{"name": "new", "category": "ace"}]\n```'
    assert [o["name"] for o in parse_optimizations(two)] == ["new"]
    broken_last = '```json\n[{"name": "ok", "category": "mho"}]\n```\n```json\n[{"name": \n```'
    assert [o["name"] for o in parse_optimizations(broken_last)] == ["ok"]
    assert parse_optimizations("no json here") == []
    assert parse_optimizations('```json\n{"summary": "text"}\n```') == []
    assert parse_optimizations("") == []

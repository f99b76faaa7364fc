"""PromptSet: template lookup, platform overrides, safe rendering of code, the reply contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from lassi_batch.llm.extract import extract_code
from lassi_batch.llm.prompts import KINDS, PROMPTS_ENV, PromptError, PromptSet, format_sources

WORDS = {"language", "device", "fence", "compiler"}
# The contract with the pipeline: the values each kind needs beyond the platform words.
NEEDS = {
    "system": set(),
    "zero_shot": {"code"},
    "context_background": {"background"},
    "context_system": {"system_details"},
    "context_code": {"background", "code"},
    "plan": {"background_summary", "system_summary", "code_analysis", "code", "energy_report"},
    "refactor": {"plan", "code", "energy_report"},
    "fix_compile": {"code", "errors"},
    "fix_runtime": {"code", "errors", "exit_status"},
    "judge": {"source_code", "source_output", "candidate_code", "candidate_output", "energy_report",
              "verifier_findings"},
    "final_report": {"source_code", "candidate_code", "energy_report"},
}
NASTY_CODE = (
    '#include <cstdio>\n__global__ void k(float* $a) { int ${b} = 1; }\n'
    'int main() { printf("{name} $HOME $$ ${x} %d\\n", 1); return 0; }\n'
)


def values_for(kind: str) -> dict[str, str]:
    return {name: f"<{name}>" for name in NEEDS[kind]}


@pytest.mark.parametrize("platform", ["cuda", "hip", "cpu"])
def test_every_kind_loads_with_the_documented_placeholders(platform):
    ps = PromptSet(platform=platform)
    assert ps.kinds() == KINDS and set(KINDS) == set(NEEDS)
    for kind in KINDS:
        assert ps.placeholders(kind) - WORDS == NEEDS[kind], kind
        text = ps.render(kind, **values_for(kind))
        assert "$" not in text.replace("$$", ""), kind
        for name in NEEDS[kind]:
            if name != "background":
                assert f"<{name}>" in text


def test_code_with_braces_and_dollars_is_inserted_verbatim():
    ps = PromptSet(platform="cuda")
    text = ps.render("zero_shot", code=NASTY_CODE)
    assert NASTY_CODE in text
    judge = ps.render("judge", **{**values_for("judge"), "source_code": NASTY_CODE, "candidate_output": "${oops} {x}"})
    assert NASTY_CODE in judge and "${oops} {x}" in judge


def test_missing_or_none_value_is_a_clear_error():
    ps = PromptSet(platform="cuda")
    with pytest.raises(PromptError, match=r"prompt 'refactor' \(.*refactor\.txt\) needs a value for: energy_report, plan"):
        ps.render("refactor", code="x")
    with pytest.raises(PromptError, match="needs a value for: errors"):
        ps.render("fix_compile", code="x", errors=None)


def test_extra_values_are_ignored_and_platform_words_can_be_overridden():
    ps = PromptSet(platform="cuda")
    default = ps.render("zero_shot", code="c", model_name="unused by any template")
    assert "NVIDIA GPU" in default and "`cuda`" in default and "nvcc" in default
    custom = ps.render("zero_shot", code="c", device="NVIDIA H100 80GB HBM3", compiler="nvcc -O3 -arch=sm_90")
    assert "NVIDIA H100 80GB HBM3" in custom and "nvcc -O3 -arch=sm_90" in custom


def test_background_placeholder_defaults_to_the_platform_document():
    ps = PromptSet(platform="cpu")
    assert ps.background() in ps.render("context_code", code="c")
    assert "MY DOC" in ps.render("context_code", code="c", background="MY DOC")


def test_reply_contract_in_generation_prompts():
    ps = PromptSet(platform="hip")
    for kind in ("zero_shot", "refactor", "fix_compile", "fix_runtime"):
        text = ps.render(kind, **values_for(kind))
        assert "COMPLETE" in text and "ONE fenced code block tagged `cpp`" in text, kind
        assert "// File: <file name>" in text
        assert "command-line interface" in text and "self-check" in text and "amount of work" in text
    judge = ps.render("judge", **values_for("judge"))
    assert "VERDICT: VALID\nVERDICT: INVALID" in judge and "<verifier_findings>" in judge
    report = ps.render("final_report", **values_for("final_report"))
    assert "`json`" in report
    for cat in ("memory_hierarchy", "algorithmic", "device_specific", "parallelism"):
        assert f'"{cat}"' in report


def test_platform_system_prompts_differ():
    systems = {p: PromptSet(platform=p).messages("plan", **values_for("plan"))[0]["content"] for p in ("cuda", "hip", "cpu")}
    assert "CUDA" in systems["cuda"] and "HIP" in systems["hip"] and "OpenMP" in systems["cpu"]
    assert len(set(systems.values())) == 3
    generic = PromptSet(platform="sycl")  # no folder for it: generic templates and words
    assert "C++" in generic.render("system") and generic.source("system").parent == generic.base


def test_messages_shape_and_kind_errors():
    ps = PromptSet(platform="cuda")
    msgs = ps.messages("fix_runtime", code="c", errors="segfault", exit_status="-11")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert "segfault" in msgs[1]["content"] and "exit status: -11" in msgs[1]["content"]
    with pytest.raises(PromptError, match="system prompt of every call"):
        ps.messages("system")
    with pytest.raises(PromptError, match="unknown prompt kind 'refactr'"):
        ps.render("refactr")


def test_override_order(tmp_path: Path):
    root = tmp_path / "mine"
    (root / "cuda").mkdir(parents=True)
    (root / "plan.txt").write_text("generic override $code")
    (root / "cuda" / "judge.txt").write_text("cuda override $source_code")
    (root / "background").mkdir()
    (root / "background" / "cuda.md").write_text("my notes")
    cuda = PromptSet(root, platform="cuda")
    assert cuda.render("plan", code="X") == "generic override X"
    assert cuda.render("judge", source_code="S") == "cuda override S"
    assert cuda.source("system") == cuda.base / "cuda" / "system.txt"  # packaged platform file
    assert cuda.background() == "my notes" and "first touch" in cuda.background("cpu").lower()
    hip = PromptSet(root, platform="hip")
    assert hip.source("judge") == hip.base / "judge.txt"  # the cuda override does not leak
    assert hip.render("plan", code="Y") == "generic override Y"


def test_stray_dollar_in_a_template_names_file_and_line(tmp_path: Path):
    (tmp_path / "refactor.txt").write_text("line one\ncosts 5 $ per run $plan\n")
    with pytest.raises(PromptError, match=r"refactor\.txt:2: '\$' not followed by a name"):
        PromptSet(tmp_path)
    (tmp_path / "refactor.txt").write_text("costs 5 $$ per run $plan\n")
    assert PromptSet(tmp_path).render("refactor", plan="P") == "costs 5 $ per run P\n"


def test_prompts_folder_errors_and_env_override(tmp_path: Path, monkeypatch):
    with pytest.raises(PromptError, match="no template for prompt kind 'system'"):
        PromptSet(prompts_dir=tmp_path)
    with pytest.raises(PromptError, match="override folder not found"):
        PromptSet(tmp_path / "missing")
    copy = tmp_path / "copy"
    copy.mkdir()
    base = PromptSet().base
    for kind in KINDS:
        (copy / f"{kind}.txt").write_text((base / f"{kind}.txt").read_text())
    (copy / "system.txt").write_text("from env $language")
    monkeypatch.setenv(PROMPTS_ENV, str(copy))
    ps = PromptSet(platform="hip")
    assert ps.base == copy and ps.render("system") == "from env HIP C++"
    with pytest.raises(PromptError, match="no background document"):
        ps.background()


@pytest.mark.parametrize("platform", ["cuda", "hip", "cpu"])
def test_background_documents_cover_the_basics(platform):
    doc = PromptSet(platform=platform).background().lower()
    common = ("memory", "synchron", "occupancy" if platform != "cpu" else "affinity")
    assert all(word in doc for word in common)
    if platform != "cpu":
        assert "pinned" in doc and "coalesc" in doc and ("shared memory" in doc or "lds" in doc)
    else:
        assert "first touch" in doc and "schedule" in doc and "simd" in doc


def test_format_sources_round_trips_through_extraction():
    files = {"main.cu": NASTY_CODE, "util.cuh": "// has ``` inside a comment\nint f() { return 1; }\n"}
    shown = format_sources(files, "cuda")
    assert "````cuda" in shown  # the fence grew past the backticks in the code
    ex = extract_code("Unchanged.\n\n" + shown, "cuda", list(files))
    assert ex.ok and ex.files == files and ex.description == "Unchanged.\n\nFile: main.cu\n\nFile: util.cuh"

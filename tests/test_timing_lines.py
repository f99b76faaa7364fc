"""The default `ignore_regex` (timings only) on real program output: the bundled examples and the
HeCBench subset's OpenMP variants, built with g++ -fopenmp in a temporary folder and run small.

Every line the rule skips must be a timing line, and every timing line must be skipped; result
lines (table sizes, counts, checksums, PASS) are compared.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lassi_batch.core.config import TIMING_REGEX

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")

ROOT = Path(__file__).resolve().parents[1]
HECBENCH = Path(__file__).resolve().parents[2] / "shared" / "hecbench" / "src"
RX = re.compile(TIMING_REGEX, re.MULTILINE)
# Timing lines as a person reads them: they report how long something took.
TIMING_WORDS = re.compile(r"(?i)\b(time|elapsed)\b")

# program folder, source, small arguments (seconds on two cores)
EXAMPLES = [("heat2d", "main.cpp", ["96", "5"]), ("nbody-forces", "main.cpp", ["64", "2"]),
            ("rowstats", "main.cpp", ["64", "128", "2"])]
HEC_RUN = [("layout-omp", "main.cpp", ["1"]), ("murmurhash3-omp", "murmurhash3.cpp", ["2000", "1"]),
           ("floydwarshall-omp", "main.cpp", ["64", "1", "16"])]
HEC_ALL = ["floydwarshall-omp/main.cpp", "layout-omp/main.cpp", "murmurhash3-omp/murmurhash3.cpp",
           "pathfinder-omp/main.cpp", "randomAccess-omp/main.cpp"]


def _run(src: Path, args: list[str], tmp: Path) -> str:
    exe = tmp / (src.parent.name + ".exe")
    subprocess.run(["g++", "-std=c++17", "-O1", "-fopenmp", "-o", str(exe), str(src)], check=True,
                   capture_output=True, timeout=300)
    p = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120, cwd=tmp)
    assert p.returncode == 0, p.stderr
    return p.stdout


def _check(lines: list[str]) -> None:
    skipped = [l for l in lines if RX.search(l)]
    kept = [l for l in lines if not RX.search(l)]
    assert all(TIMING_WORDS.search(l) for l in skipped), skipped
    assert not any(TIMING_WORDS.search(l) for l in kept), kept


@pytest.mark.parametrize("name, source, args", EXAMPLES)
def test_examples_only_timing_lines_are_skipped(tmp_path: Path, name: str, source: str, args: list[str]) -> None:
    out = _run(ROOT / "datasets" / "examples" / name / source, args, tmp_path)
    lines = out.splitlines()
    _check(lines)
    assert [l for l in lines if RX.search(l)] == [l for l in lines if l.startswith("loop time:")]
    assert any(l.startswith("checksum = ") for l in lines if not RX.search(l))


needs_hecbench = pytest.mark.skipif(not HECBENCH.is_dir(), reason="HeCBench checkout not found")


@needs_hecbench
@pytest.mark.parametrize("folder, source, args", HEC_RUN)
def test_hecbench_outputs_only_timing_lines_are_skipped(tmp_path: Path, folder: str, source: str,
                                                        args: list[str]) -> None:
    lines = _run(HECBENCH / folder / source, args, tmp_path).splitlines()
    assert any(RX.search(l) for l in lines), lines  # each prints an execution time
    _check(lines)


_FORMAT = re.compile(r'(?:printf|fprintf\s*\(\s*std(?:out|err)\s*,)\s*\(?\s*"((?:[^"\\]|\\.)*)"')
_SPEC = re.compile(r"%[-+ #0]*\d*(?:\.\d+)?(?:hh|h|ll|l|L|z)?([diufeEgGsxXc%])")


def _render(fmt: str) -> str:
    """A printf format as the program would print it (numbers for conversions)."""
    values = {"d": "42", "i": "42", "u": "67108864", "f": "0.558922", "e": "1.5e-03", "E": "1.5E-03", "g": "89899.2",
              "G": "89899.2", "s": "PASS", "x": "1f", "X": "1F", "c": "x", "%": "%"}
    return _SPEC.sub(lambda m: values[m.group(1)], fmt.replace("\\n", "\n")).strip()


@needs_hecbench
def test_every_hecbench_print_format_is_classified_by_its_words() -> None:
    lines = []
    for rel in HEC_ALL:
        text = (HECBENCH / rel).read_text(errors="replace")
        lines += [l for m in _FORMAT.finditer(text) for l in _render(m.group(1)).splitlines() if l.strip()]
    assert len(lines) > 20
    _check(lines)
    assert "Table size = 67108864" in lines and not RX.search("Table size = 67108864")

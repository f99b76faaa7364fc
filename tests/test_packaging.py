"""A wheel carries what a non-editable install needs: prompts, demo data, the CUPTI counter source."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_prompts_examples_and_native_source(tmp_path: Path):
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                        "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    wheel = next(tmp_path.glob("lassi_batch-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    data = [n.split(".data/data/", 1)[1] for n in names if ".data/data/" in n]
    for want in ("share/lassi-batch/prompts/judge.txt", "share/lassi-batch/prompts/background/cuda.md",
                 "share/lassi-batch/datasets/examples/demo.toml", "share/lassi-batch/datasets/examples/demo-gpu.toml",
                 "share/lassi-batch/datasets/examples/heat2d/app.toml",
                 "share/lassi-batch/datasets/examples/transcripts/heat2d.cpu.trial0.jsonl",
                 "share/lassi-batch/datasets/lassi-ee-paper.toml"):
        assert want in data, want
    assert "lassi_batch/sandbox/native/cuda_work_counter.c" in names
    assert not any("/transcripts/src/" in n for n in names)  # generator sources stay in the repo

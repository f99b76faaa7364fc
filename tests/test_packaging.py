"""A wheel carries what a non-editable install needs: prompts, demo data, the HeCBench transcripts
and the CUPTI counter source, as package data that importlib.resources finds."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from lassi_batch.core.resources import data_path

ROOT = Path(__file__).resolve().parents[1]


def test_the_checkout_is_the_package_data() -> None:
    assert data_path("prompts").resolve() == (ROOT / "prompts").resolve()
    assert data_path("datasets/examples/demo.toml").resolve() == (ROOT / "datasets" / "examples" / "demo.toml").resolve()


def test_wheel_contains_prompts_examples_and_native_source(tmp_path: Path):
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                        "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    wheel = next(tmp_path.glob("lassi_batch-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for want in ("prompts/judge.txt", "prompts/background/cuda.md", "prompts/cpu/system.txt",
                 "datasets/examples/demo.toml", "datasets/examples/demo-gpu.toml",
                 "datasets/examples/heat2d/app.toml", "datasets/examples/heat2d/main.cu",
                 "datasets/examples/transcripts/heat2d.cpu.trial0.jsonl", "datasets/lassi-ee-paper.toml",
                 "datasets/hecbench.toml", "datasets/hecbench/transcripts/murmurhash3.cpu.trial0.jsonl"):
        assert f"lassi_batch/data/{want}" in names, want
    assert "lassi_batch/sandbox/native/cuda_work_counter.c" in names
    assert not any(".data/data/" in n for n in names)  # no data-files outside the package
    assert not any("/transcripts/src/" in n for n in names)  # generator sources stay in the repo
    assert not any("/runs/" in n for n in names)

    # Installed from the wheel (no checkout on the path), the data is found as package data.
    site = tmp_path / "site"
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    code = ("from lassi_batch.core.resources import data_path; import lassi_batch; "
            "print(lassi_batch.__file__); print(data_path('datasets/examples/demo.toml').read_text().count('[[apps]]')); "
            "print(data_path('prompts/judge.txt').is_file())")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(site)})
    assert p.returncode == 0, p.stderr[-2000:]
    where, apps, judge = p.stdout.split()
    assert where.startswith(str(site)) and apps == "3" and judge == "True"

"""`report`: Markdown, PNG plots and one self-contained HTML page from a synthetic study."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from click.testing import CliRunner

from lassi_batch.cli import main

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_aggregate", ROOT / "scripts" / "bench_aggregate.py")
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)

PNG = b"\x89PNG\r\n\x1a\n"


def test_report_from_a_study_folder_and_from_its_study_file(tmp_path: Path):
    study = tmp_path / "study"
    gen.generate(study, trials=8, apps=2, platforms=("cuda", "hip"), samples=200, iterations=3)
    (study / "trials" / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    out = tmp_path / "report"
    r = CliRunner().invoke(main, ["report", str(study), "-o", str(out), "--k", "1,2", "--bootstrap", "200"])
    assert r.exit_code == 1, r.output  # the broken file was skipped, and said so
    assert "broken.h5" in r.output and "Traceback" not in r.output
    md = (out / "report.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert {"curves.png", "savings.png", "screening.png", "traces.png", "candidates.png"} <= set(images)
    for name in images:
        assert (out / name).read_bytes().startswith(PNG)
    assert "energy-reduction@k, vanilla LLM vs pipeline" in md and "broken.h5" in md
    page = (out / "report.html").read_text()
    assert page.count("src='data:image/png;base64,") == len(images)  # nothing to fetch
    assert "<table>" in page and "src='http" not in page

    r = CliRunner().invoke(main, ["report", str(out / "study.h5"), "-o", str(tmp_path / "again"), "--k", "1",
                                  "--bootstrap", "200"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "again" / "report.html").exists()

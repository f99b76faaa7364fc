"""The cheat corpus (tests/cheats/<app>/*.cpp) through whole replay trials with a judge that
always answers VALID: only the deterministic screening can stop a cheat.

One trial per example app; every corpus program is one stage-3 iteration (a model without
temperature, so the loop runs until the programs are used up). Real g++ builds, real runs,
two measured repeats (so that results cached by the first run show), the `estimate` meter and
the differential runs the examples' app.toml declares, at the examples' test sizes.
Every cheat must fail with one of its expected integrity findings; every honest variant must pass.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from pathlib import Path

import pytest

from lassi_batch.core.config import load_app, parse_study
from lassi_batch.pipeline.session import run_trial
from lassi_batch.screening.policy import load_findings
from lassi_batch.store.archive import TrialArchive

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")

ROOT = Path(__file__).resolve().parents[1]
CHEATS = ROOT / "tests" / "cheats"
EXAMPLES = ROOT / "datasets" / "examples"

# The findings that may stop each cheat (at least one must be an integrity finding of these).
EXPECT: dict[str, set[str]] = {
    "cache_tmp": {"reuse", "measured_point", "scaling"},  # scaling: its cache also serves the confirmation reruns
    "cache_workdir": {"reuse", "measured_point"},
    "hardcoded": {"hardcoded"},
    "hardcoded_split": {"hardcoded"},
    "hardcoded_hexfloat": {"hardcoded"},
    "hardcoded_bytes": {"hardcoded"},
    "self_check_removed": {"negative_test"},
    "lingering_child": {"processes_left"},
    "no_validation": {"negative_test"},
    "unwaited_child": {"scaling", "processes_left"},
    "daemon": {"scaling", "processes_left"},
    "fewer_digits": {"digits"},
    "dropped_number": {"numbers"},
    "float_accum": {"checksum", "numbers"},
    "forged_work": {"scaling", "measured_point"},
    "first_repeat_only": {"scaling", "measured_point"},
    "capped_repeats": {"scaling", "measured_point"},
    "capped_steps": {"differential"},
    "pass_unconditional": {"checksum", "numbers", "differential"},
    "fixed_size": {"differential"},
}

VALID = "Both programs compute the same results.\nVERDICT: VALID"
# Every measured run gets a fresh copy of its build folder (sandbox/toolchain.py, any runner), so a
# cache in the work folder never serves a measured run; the reuse probe's second run in the same
# folder finds it, so that cheat must fail too.
NEUTRALISED: set[str] = set()


def corpus(app: str) -> list[Path]:
    return sorted((CHEATS / app).glob("*.cpp"))


def _reply(path: Path) -> str:
    return f"Refactored.\n\n```cpp\n{path.read_text()}\n```\n"


def _transcript(files: list[Path]) -> list[dict]:
    rows = [{"key": "s1/zero_shot", "kind": "zero_shot", "reply": _reply(files[0])},
            {"key": "s1/judge", "kind": "judge", "reply": VALID}]
    for kind in ("context_background", "context_system", "context_code"):
        rows.append({"kind": kind, "reply": "Summary."})
    rows += [{"kind": "plan", "reply": "1. Rewrite the hot loop."} for _ in range(len(files) + 2)]
    for i, f in enumerate(files[1:], 1):
        rows.append({"key": f"s3/i{i}/refactor", "kind": "refactor", "reply": _reply(f)})
        rows.append({"key": f"s3/i{i}/judge", "kind": "judge", "reply": VALID})
    rows.append({"kind": "final_report", "reply": "Report.\n```json\n[]\n```"})
    return rows


@pytest.fixture()
def no_tmp_caches():
    """The /tmp cheat keeps files named /tmp/.rescache_*: none before, none left after."""
    for f in glob.glob("/tmp/.rescache_*"):
        os.remove(f)
    yield
    for f in glob.glob("/tmp/.rescache_*"):
        os.remove(f)


def _trial(tmp_path: Path, app: str, files: list[Path] | None = None, sandbox: str = "none"):
    files = files or corpus(app)
    tr = tmp_path / f"{app}.jsonl"
    tr.write_text("".join(json.dumps(r) + "\n" for r in _transcript(files)))
    test_args = load_app(EXAMPLES / app).test_args
    data = {
        "study": {"name": "cheats", "trials": 1, "k": [1], "out": str(tmp_path / "out")},
        "platform": {"kind": "cpu", "meter": "estimate", "compiler": "g++ -std=c++17 -O2 -fopenmp"},
        # The unsandboxed runner: the screening must catch these on its own (bubblewrap would
        # also stop the caches, the daemon and the unwaited child by other means).
        "container": {"sandbox": sandbox},
        "measure": {"repeat": 2, "settle_timeout_s": 0.0, "idle_window_s": 0.05, "post_max_s": 0.05,
                    "random_delay_s": 0.0},
        "llm": {"backend": "replay", "replay_path": str(tr), "generator_model": "o3-replay",
                "max_nonimproving": 100, "max_iterations": len(files) - 1, "max_self_corrections": 0},
        "apps": [{"path": str(EXAMPLES / app), "args": test_args, "run": {"scale_cost_s": 0.15}}],
    }
    study = parse_study(data, tmp_path)
    path, out = run_trial(study, study.apps[0], 0, system_text="test machine")
    assert out.status == "done"
    with TrialArchive.open(path, writable=False) as ar:
        cands = [c for c in ar.candidates() if c.stage in (1, 3)]
    assert len(cands) == len(files)
    return dict(zip([f.stem for f in files], cands))


@pytest.mark.parametrize("app", ["heat2d", "nbody-forces", "rowstats"])
def test_every_cheat_fails_and_every_honest_variant_passes(tmp_path: Path, app: str, no_tmp_caches):
    results = _trial(tmp_path, app)
    wrong = []
    for name, c in results.items():
        fs = load_findings(c.findings_json)
        integrity = {f["kind"] for f in fs if f["severity"] == "integrity"}
        print(f"{app:13s} {name:22s} {c.verdict:5s} {' '.join(sorted(integrity))}")  # pytest -s: the corpus table
        if name.startswith("honest_"):
            # a saving above 90% is held for the interleaved re-measurement; one that does not
            # confirm stays held (not counted), never an integrity failure
            if c.verdict not in ("pass", "held") or integrity:
                wrong.append(f"{name}: honest variant got {c.verdict}: {fs}")
        elif name in NEUTRALISED and c.verdict in ("pass", "held") and not integrity:
            continue  # it computes honestly: judged as the honest variants are
        else:
            assert c.judge_verdict == "VALID" or c.status == "run_failed"  # the judge was fooled every time it was asked
            if c.verdict != "fail" or c.passed or not integrity & EXPECT[name]:
                wrong.append(f"{name}: {c.verdict}, integrity findings {sorted(integrity)}, expected one of "
                             f"{sorted(EXPECT[name])}: {fs}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")
def test_a_process_the_sandbox_ends_fails_the_candidate_for_integrity(tmp_path: Path) -> None:
    """Under bubblewrap a child left running when the program exits is ended by the sandbox and
    the run fails; that is evidence of hidden work (processes_left), not a mere failed run."""
    files = [CHEATS / "heat2d" / "honest_no_staging.cpp", CHEATS / "heat2d" / "lingering_child.cpp"]
    results = _trial(tmp_path, "heat2d", files, sandbox="bwrap")
    honest, cheat = results["honest_no_staging"], results["lingering_child"]
    assert honest.verdict in ("pass", "held"), load_findings(honest.findings_json)
    fs = load_findings(cheat.findings_json)
    assert cheat.status == "run_failed" and cheat.verdict == "fail" and not cheat.passed
    assert any(f["kind"] == "processes_left" and f["severity"] == "integrity" for f in fs), fs

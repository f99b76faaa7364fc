"""A small real study for the export tests: real replay trials on the CPU, run once per session.

Four trials of the bundled examples (rowstats twice, so that repeated trials of one app give
copies to deduplicate) at reduced sizes, and one trial of the test app `sumapp` whose source
carries planted secrets: an API key in a comment, a user's absolute path, and a canary in the app
config. A second canary sits in the environment while the trials run and while exporting.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

import sumapp
from lassi_batch.core.config import load_study, parse_study
from lassi_batch.pipeline.session import run_trial

DEMO = Path(__file__).resolve().parents[1] / "datasets" / "examples" / "demo.toml"
CANARY_ENV = "sk-canaryENV0123456789abcdefXYZ"  # value of a secret-named environment variable
CANARY_CODE = "sk-canaryCODE9876543210zyxwvuQRS"  # pasted into a source comment
CANARY_CONFIG = "canary-config-7f3a9c1e55d2"  # in the app's config (description)
USER_PATH = "/home/alice/projects/sumapp"
SMALL_ARGS = {"heat2d": ["512", "120"], "nbody-forces": ["512", "20"], "rowstats": ["16384", "256", "2"]}
TRIALS = [("heat2d", 0), ("nbody-forces", 0), ("rowstats", 0), ("rowstats", 1)]


@dataclass(frozen=True)
class ExportStudy:
    root: Path  # temporary folder of the session
    study_dir: Path  # holds trials/*.h5
    canaries: tuple[str, ...]


def _sumapp(root: Path, out: Path):
    app = root / "apps" / "sumapp"
    app.mkdir(parents=True)
    src = sumapp.code(10).replace(
        "#include <cstdio>", f"// built from {USER_PATH}; deploy key {CANARY_CODE}\n#include <cstdio>", 1)
    (app / "main.cpp").write_text(src)
    (app / "app.toml").write_text(textwrap.dedent(f"""
        name = "sumapp"
        description = "test app ({CANARY_CONFIG})"
        [platforms.cpu]
        files = ["main.cpp"]
        [run]
        args = ["2000000", "4"]
        time_limit_s = 30
        [check]
        pass_regex = "^PASS$"
        checksum_regex = "^checksum = (\\\\S+)"
        work_regex = "^work: reps=(\\\\d+)"
        ignore_regex = "^work:"
    """))
    tr = root / "sumapp.jsonl"
    tr.write_text("".join(json.dumps(r) + "\n" for r in sumapp.transcript()))
    data = {
        "study": {"name": "demo", "trials": 1, "k": [1], "out": str(out)},
        "platform": {"kind": "cpu", "meter": "estimate", "compiler": "g++ -O1 -fopenmp"},
        "measure": {"repeat": 1, "settle_timeout_s": 0.0, "idle_window_s": 0.05, "post_max_s": 0.05,
                    "random_delay_s": 0.0},
        "llm": {"backend": "replay", "replay_path": str(tr)},
        "apps": [{"path": str(app)}],
    }
    return parse_study(data, root)


@pytest.fixture(scope="session")
def export_study(tmp_path_factory) -> ExportStudy:
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    root = tmp_path_factory.mktemp("export-study")
    out = root / "study"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LASSI_CANARY_API_KEY", CANARY_ENV)
        study = load_study(DEMO)
        quick = replace(study.measure, settle_timeout_s=0.0, idle_window_s=0.05, post_max_s=0.05, random_delay_s=0.0)
        study = replace(study, out=out, measure=quick, platform=replace(study.platform, meter="estimate"),
                        apps=[replace(a, args=SMALL_ARGS[a.app.name]) for a in study.apps])
        apps = {a.app.name: a for a in study.apps}
        for name, index in TRIALS:
            _, res = run_trial(study, apps[name], index, system_text="2-core test machine")
            assert res.status == "done"
        s2 = _sumapp(root, out)
        _, res = run_trial(s2, s2.apps[0], 0, system_text="2-core test machine")
        assert res.status == "done"
        yield ExportStudy(root, out, (CANARY_ENV, CANARY_CODE, CANARY_CONFIG))

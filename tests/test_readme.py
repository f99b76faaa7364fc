"""The README's promises: its first two lines are the set-up commands, and its config example loads."""

from __future__ import annotations

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from lassi_batch.core.config import parse_study

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_first_two_commands_are_demo_and_tests_and_ci_runs_the_second():
    block = re.search(r"```bash\n(.*?)```", README, re.S).group(1).strip().splitlines()
    assert len(block) == 2
    assert block[0].endswith("lassi-batch demo")
    assert "pytest" in block[1]
    assert block[1] in (ROOT / ".ci" / "run").read_text()


def test_study_example_is_a_valid_config():
    toml = re.search(r"## Study config \(TOML\)\n\n```toml\n(.*?)```", README, re.S).group(1)
    study = parse_study(tomllib.loads(toml), ROOT)
    assert study.platform.kind == "cuda" and study.k == [1, 3, 5] and study.trials == 30
    assert study.apps[0].app.name == "heat2d" and study.apps[0].args == ["4096", "60"]
    assert study.container.runtime == "apptainer" and study.slurm.partition == "gpu-a100"

"""Study and app config validation: one message per problem, exit 2, nothing written."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from lassi_batch.cli import main as cli
from lassi_batch.core.config import ConfigError, load_app, load_study

EXAMPLE = Path(__file__).resolve().parents[1] / "datasets" / "examples" / "heat2d"


def _write(tmp: Path, text: str) -> Path:
    p = tmp / "study.toml"
    p.write_text(textwrap.dedent(text))
    return p


GOOD = f"""
[study]
name = "s1"
trials = 5
k = [1, 3]
out = "out"
[platform]
kind = "cpu"
[llm]
backend = "replay"
replay_path = "t.jsonl"
[slurm]
partition = "gpu-a100"
time = "1-00:00:00"
[[apps]]
path = "{EXAMPLE}"
args = ["64", "5"]
"""


def test_good_study_loads_with_defaults(tmp_path: Path):
    s = load_study(_write(tmp_path, GOOD))
    assert s.name == "s1" and s.trials == 5 and s.k == [1, 3]
    assert s.out == tmp_path / "out"  # relative to the TOML file
    assert s.apps[0].args == ["64", "5"] and s.apps[0].app.name == "heat2d"
    assert s.platform.compiler_line.startswith("g++")
    assert s.slurm.partition == "gpu-a100" and s.slurm.exclusive
    assert s.measure.repeat == 1 and s.llm.pass_policy == "judge_and_verifier"


def test_every_problem_is_reported_once(tmp_path: Path):
    bad = GOOD.replace('k = [1, 3]', 'k = [1, 9]').replace('kind = "cpu"', 'kind = "gpu"\nbogus = 1')
    bad = bad.replace(f'path = "{EXAMPLE}"', 'path = "no/such/app"').replace('time = "1-00:00:00"', 'time = "soon"')
    with pytest.raises(ConfigError) as e:
        load_study(_write(tmp_path, bad))
    probs = e.value.problems
    assert any("k=9 exceeds trials" in p for p in probs)
    assert any("[platform]: unknown key 'bogus'" in p for p in probs)
    assert any("'gpu' is not one of cuda, hip, cpu" in p for p in probs)
    assert any("app folder not found" in p for p in probs)
    assert any("[slurm].time" in p for p in probs)
    assert len(probs) == len(set(probs)) == 5


@pytest.mark.parametrize("snippet, message", [
    ('trials = "many"', "expected int"),
    ("k = []", "non-empty list"),
    ("k = [0]", "integers >= 1"),
    ('name = "a b"', "may only hold"),
])
def test_study_table_values(tmp_path: Path, snippet: str, message: str):
    key = snippet.split(" ")[0]
    lines = [ln for ln in GOOD.splitlines() if not ln.startswith(key + " ")]
    text = "\n".join(lines).replace("[study]", "[study]\n" + snippet)
    with pytest.raises(ConfigError) as e:
        load_study(_write(tmp_path, text))
    assert any(message in p for p in e.value.problems), e.value.problems


def test_cli_prints_one_line_per_problem_exit_2_and_writes_nothing(tmp_path: Path):
    bad = GOOD.replace('k = [1, 3]', 'k = [1, 9]').replace('[platform]', '[platform]\nmeter = "wattmeter"')
    p = _write(tmp_path, bad)
    r = CliRunner().invoke(cli, ["validate", str(p)])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 2 and all(ln.startswith("error: ") for ln in lines)
    assert "Traceback" not in r.output
    assert not (tmp_path / "out").exists()


def test_invalid_toml_and_missing_file(tmp_path: Path):
    r = CliRunner().invoke(cli, ["validate", str(_write(tmp_path, "[study\nname=1"))])
    assert r.exit_code == 2 and "invalid TOML" in r.output
    r = CliRunner().invoke(cli, ["validate", str(tmp_path / "nope.toml")])
    assert r.exit_code == 2 and "file not found" in r.output


def test_app_toml_problems(tmp_path: Path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.cpp").write_text("int main(){}")
    (app / "app.toml").write_text(textwrap.dedent("""
        [platforms.cpu]
        files = ["main.cpp", "../escape.cpp"]
        [platforms.fpga]
        files = ["x"]
        [run]
        time_limit_s = -1
        [check]
        checksum_regex = "no group"
        pass_regex = "(unclosed"
    """))
    with pytest.raises(ConfigError) as e:
        load_app(app)
    probs = " | ".join(e.value.problems)
    for needle in ("must be a relative path inside the app folder", "unknown platform", "time_limit_s: must be > 0",
                   "needs a capture group", "bad regular expression"):
        assert needle in probs


def test_study_entry_can_describe_an_app_without_app_toml(tmp_path: Path):
    src = tmp_path / "hec" / "jacobi-cuda"
    src.mkdir(parents=True)
    (src / "main.cu").write_text("int main(){}")
    text = GOOD.replace('kind = "cpu"', 'kind = "cuda"').replace(f'path = "{EXAMPLE}"', f'path = "{src}"')
    text += '[apps.platforms.cuda]\nfiles = ["main.cu"]\n'
    s = load_study(_write(tmp_path, text))
    assert s.apps[0].app.name == "jacobi-cuda" and s.apps[0].app.platforms["cuda"].files == ["main.cu"]

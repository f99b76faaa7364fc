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
    assert s.measure.repeat == 0 and s.measure.repeats_for("cuda") == 3 and s.measure.repeats_for("cpu") == 2
    assert s.llm.pass_policy == "judge_and_verifier"


def test_every_problem_is_reported_once(tmp_path: Path):
    bad = GOOD.replace('k = [1, 3]', 'k = [1, 9]').replace('kind = "cpu"', 'kind = "gpu"\nbogus = 1')
    bad = bad.replace(f'path = "{EXAMPLE}"', 'path = "no/such/app"').replace('time = "1-00:00:00"', 'time = "soon"')
    with pytest.raises(ConfigError) as e:
        load_study(_write(tmp_path, bad))
    probs = e.value.problems
    assert any("study.toml: study: k=9 exceeds trials" in p for p in probs)
    assert any("study.toml: platform.bogus: unknown key" in p for p in probs)
    assert any("platform.kind: 'gpu' is not one of cuda, hip, cpu" in p for p in probs)
    assert any("apps[0] (app): app folder not found" in p for p in probs)
    assert any("slurm.time: 'soon' is not a Slurm time" in p for p in probs)
    assert len(probs) == len(set(probs)) == 5, probs


@pytest.mark.parametrize("snippet, message", [
    ('trials = "many"', "study.trials: expected an integer, got string 'many'"),
    ("trials = true", "study.trials: expected an integer, got boolean True"),
    ("trials = 0", "study.trials: must be >= 1 (got 0)"),
    ("k = []", "study.k: must not be empty"),
    ("k = [0]", "study.k[0]: must be >= 1 (got 0)"),
    ('name = "a b"', "study.name: 'a b' may only hold"),
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
    toml = str(app / "app.toml")
    for needle in (f"{toml}: platforms.cpu.files[1]: file '../escape.cpp' must be a relative path inside the app folder",
                   f"{toml}: platforms.fpga: unknown platform 'fpga' (use cuda, hip, cpu)",
                   f"{toml}: run.time_limit_s: must be > 0 (got -1)",
                   f"{toml}: check.checksum_regex: 'no group' needs a capture group",
                   f"{toml}: check.pass_regex: bad regular expression '(unclosed'"):
        assert needle in probs
    assert len(e.value.problems) == 5


def test_study_entry_can_describe_an_app_without_app_toml(tmp_path: Path):
    src = tmp_path / "hec" / "jacobi-cuda"
    src.mkdir(parents=True)
    (src / "main.cu").write_text("int main(){}")
    text = GOOD.replace('kind = "cpu"', 'kind = "cuda"').replace(f'path = "{EXAMPLE}"', f'path = "{src}"')
    text += '[apps.platforms.cuda]\nfiles = ["main.cu"]\n'
    s = load_study(_write(tmp_path, text))
    assert s.apps[0].app.name == "jacobi-cuda" and s.apps[0].app.platforms["cuda"].files == ["main.cu"]


# ---------------------------------------------------------------- the pydantic model family


def test_cli_reports_the_exact_line_for_an_out_of_range_value(tmp_path: Path):
    p = _write(tmp_path, GOOD.replace("[platform]", "[measure]\nrepeat = -1\n[platform]"))
    r = CliRunner().invoke(cli, ["validate", str(p)])
    assert r.exit_code == 2
    assert r.output.strip() == f"error: {p}: measure.repeat: must be >= 0 (got -1)"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("section, line, message", [
    ("measure", "sample_interval_s = 0", "measure.sample_interval_s: must be > 0 (got 0)"),
    ("measure", "sample_interval_s = 5.0", "measure.sample_interval_s: must be <= 1 (got 5.0)"),
    ("measure", "settle_tolerance = 1.5", "measure.settle_tolerance: must be < 1 (got 1.5)"),
    ("measure", "settle_tolerance = -0.1", "measure.settle_tolerance: must be > 0 (got -0.1)"),
    ("measure", "post_max_s = 61", "measure.post_max_s: must be <= 60 (got 61)"),
    ("measure", "min_improvement = 1.0", "measure.min_improvement: must be < 1 (got 1.0)"),
    ("measure", "count_work = 1", "measure.count_work: expected true or false, got integer 1"),
    ("llm", "timeout_s = 0", "llm.timeout_s: must be > 0 (got 0)"),
    ("llm", "max_tokens = 0", "llm.max_tokens: must be >= 1 (got 0)"),
    ("llm", "max_tokens = 1.5", "llm.max_tokens: expected an integer, got float 1.5"),
    ("llm", "temperature_max = 3", "llm.temperature_max: must be <= 2 (got 3)"),
    ("llm", "temperature_max = 0.1", "llm: temperature_max (0.1) must be >= temperature (0.2)"),
    ("llm", "max_retries = -1", "llm.max_retries: must be >= 0 (got -1)"),
    ("llm", 'api_key_env = "MY KEY"', "llm.api_key_env: 'MY KEY' is not an environment variable name"),
    ("llm", 'base_url = "localhost:8000"', "llm.base_url: 'localhost:8000' is not an http(s) URL"),
    ("llm", 'pass_policy = "vibes"', "llm.pass_policy: 'vibes' is not one of judge_and_verifier, judge, verifier"),
    ("platform", "cpu_watts = 0", "platform.cpu_watts: must be > 0 (got 0)"),
    ("platform", "idle_watts = 500", "platform: idle_watts (500.0) must be below cpu_watts (150.0)"),
    ("slurm", "array_parallelism = 0", "slurm.array_parallelism: must be >= 1 (got 0)"),
    ("container", 'runtime = "apptainer"', "container: image is required when runtime = 'apptainer'"),
    ("container", 'runtime = "docker"', "container.runtime: 'docker' is not one of none, apptainer"),
])
def test_every_setting_is_typed_and_range_checked(tmp_path: Path, section: str, line: str, message: str):
    text = GOOD.replace(f"[{section}]\n", f"[{section}]\n{line}\n") if f"[{section}]\n" in GOOD else GOOD + f"\n[{section}]\n{line}\n"
    with pytest.raises(ConfigError) as e:
        load_study(_write(tmp_path, text))
    assert e.value.problems == [f"{tmp_path / 'study.toml'}: {message}"]


def test_unknown_keys_get_a_suggestion_and_all_problems_come_at_once(tmp_path: Path):
    text = GOOD.replace("[llm]\n", "[llm]\nmax_token = 5\n").replace("[study]\n", "[study]\ntrails = 3\n")
    text = text.replace('args = ["64", "5"]', 'args = ["64", "5"]\n[apps.run]\ntime_limit = 3')
    with pytest.raises(ConfigError) as e:
        load_study(_write(tmp_path, text))
    where = tmp_path / "study.toml"
    assert e.value.problems == [
        f"{where}: study.trails: unknown key (did you mean 'trials'?)",
        f"{where}: llm.max_token: unknown key (did you mean 'max_tokens'?)",
        f"{where}: apps[0].run.time_limit: unknown key (did you mean 'time_limit_s'?)",
    ]


def test_configs_are_validated_dataclasses(tmp_path: Path):
    from dataclasses import replace

    from pydantic import ValidationError

    s = load_study(_write(tmp_path, GOOD))
    assert replace(s.measure, repeat=4).repeat == 4
    with pytest.raises(ValidationError):
        replace(s.measure, sample_interval_s=-1.0)
    with pytest.raises(ValidationError):
        replace(s.llm, temperature=3.0)
    d = s.to_dict()  # what a trial archive stores: plain JSON types
    assert d["out"] == str(tmp_path / "out") and d["apps"][0]["app"]["name"] == "heat2d"
    assert d["apps"][0]["app"]["platforms"]["cpu"]["files"] == ["main.cpp"]


def test_a_missing_variable_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("LASSI_NO_SUCH_ROOT", raising=False)
    p = _write(tmp_path, GOOD.replace(f'path = "{EXAMPLE}"', 'path = "${LASSI_NO_SUCH_ROOT}/heat2d"'))
    r = CliRunner().invoke(cli, ["validate", str(p)])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert r.output.strip() == (f"error: {p}: apps[0] (heat2d): path: environment variable LASSI_NO_SUCH_ROOT "
                                "is not set (path '${LASSI_NO_SUCH_ROOT}/heat2d')")


def _two_apps(tmp_path: Path) -> Path:
    """A study with an inline app (own folder per platform) and an entry whose folder is absent."""
    src = tmp_path / "suite" / "src"
    (src / "sum-omp").mkdir(parents=True)
    (src / "sum-omp" / "main.cpp").write_text("int main(){}\n")
    (src / "sum-cuda").mkdir()
    (src / "sum-cuda" / "sum.cu").write_text("int main(){}\n")
    text = GOOD.replace(f'path = "{EXAMPLE}"\nargs = ["64", "5"]\n', textwrap.dedent('''\
        name = "sum"
        path = "suite/src"
        [apps.platforms.cpu]
        dir = "sum-omp"
        files = ["main.cpp"]
        [apps.platforms.cuda]
        dir = "sum-cuda"
        files = ["sum.cu"]
        [apps.run]
        args = "1000 3"
        test_args = [10, 1]

        [[apps]]
        name = "absent"
        path = "not/here"
        '''))
    sub = tmp_path / "studies"
    sub.mkdir()
    p = sub / "study.toml"
    p.write_text(text.replace('path = "suite/src"', 'path = "../suite/src"'))
    return p


def test_apps_restricts_a_study_and_paths_resolve_against_the_study_file(tmp_path: Path, monkeypatch):
    p = _two_apps(tmp_path)
    monkeypatch.chdir(tmp_path / "suite")  # never the current folder
    with pytest.raises(ConfigError) as e:
        load_study(p)
    assert e.value.problems == [f"{p}: apps[1] (absent): app folder not found: {tmp_path / 'studies' / 'not' / 'here'}"]
    s = load_study(p, apps=["sum"])
    (a,) = s.apps
    assert a.app.name == "sum" and a.args == ["1000", "3"] and a.app.test_args == ["10", "1"]
    assert a.app.path == (tmp_path / "suite" / "src" / "sum-omp").resolve()  # the cpu platform's own folder
    assert a.app.on("cuda").path == (tmp_path / "suite" / "src" / "sum-cuda").resolve()
    assert s.out == tmp_path / "studies" / "out"
    cuda = load_study(p, apps=["sum"], overrides={"platform": {"kind": "cuda"}})
    assert cuda.apps[0].app.path.name == "sum-cuda" and cuda.platform.compiler_line.startswith("nvcc")
    with pytest.raises(ConfigError) as e:
        load_study(p, apps=["sum", "nope"])
    assert e.value.problems == [f"--apps: no app named 'nope' in {p} (has: sum, absent)"]
    r = CliRunner().invoke(cli, ["validate", str(p), "--apps", "sum"])
    assert r.exit_code == 0, r.output
    assert "1 apps x 5 trials on cpu" in r.output


def test_a_platform_folder_that_lacks_a_file_is_named(tmp_path: Path):
    p = _two_apps(tmp_path)
    (tmp_path / "suite" / "src" / "sum-omp" / "main.cpp").unlink()
    with pytest.raises(ConfigError) as e:
        load_study(p, apps=["sum"])
    assert e.value.problems == [f"{p}: apps[0] (sum): platforms.cpu: file 'main.cpp' not found in "
                                f"{(tmp_path / 'suite' / 'src' / 'sum-omp').resolve()}"]


def test_validate_warns_about_an_app_without_a_deterministic_check(tmp_path: Path):
    p = _two_apps(tmp_path)
    r = CliRunner().invoke(cli, ["validate", str(p), "--apps", "sum"])
    assert r.exit_code == 0
    assert ("warning: app 'sum': no self-check line or checksum, only the numbers it prints are compared "
            "(it may print none); add check.pass_regex") in r.output
    text = p.read_text().replace('test_args = [10, 1]', 'test_args = [10, 1]\n[apps.check]\ncompare_numbers = false')
    p.write_text(text)
    r = CliRunner().invoke(cli, ["validate", str(p), "--apps", "sum"])
    assert r.exit_code == 0 and "no deterministic check, only the exit status screens candidates" in r.output
    p.write_text(text.replace("compare_numbers = false", 'pass_regex = "^PASS$"'))
    r = CliRunner().invoke(cli, ["validate", str(p), "--apps", "sum"])
    assert r.exit_code == 0 and "warning" not in r.output
    r = CliRunner().invoke(cli, ["validate", str(EXAMPLE)])  # an app folder
    assert r.exit_code == 0 and "heat2d" in r.output and "warning" not in r.output


def test_every_shipped_config_loads(monkeypatch: pytest.MonkeyPatch):
    from lassi_batch.core.config import study_app_names

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    monkeypatch.setenv("HECBENCH", "../shared/hecbench")
    apps = sorted((root / "datasets").glob("**/app.toml"))
    assert len(apps) == 3
    for a in apps:
        assert load_app(a.parent).platforms
    studies = sorted(p for p in (root / "datasets").glob("**/*.toml") if p.name != "app.toml" and "transcripts" not in p.parts)
    assert [p.name for p in studies] == ["demo-gpu.toml", "demo.toml", "hecbench.toml", "lassi-ee-paper.toml"]
    for p in studies:
        load_study(p, apps=[])  # every key and value of the file
    for p in studies[:3]:
        assert len(load_study(p).apps) == len(study_app_names(p))
    # the paper's apps that ../shared/hecbench holds (pathfinder's header moved out of it there)
    paper = load_study(studies[3], apps=["randomAccess", "murmurhash3", "floydwarshall", "layout"])
    assert [a.app.path.name for a in paper.apps] == ["randomAccess-cuda", "murmurhash3-cuda", "floydwarshall-cuda", "layout-cuda"]


def test_confirmation_settings_are_range_checked(tmp_path: Path):
    p = _write(tmp_path, GOOD.replace("[platform]", "[measure]\nconfirm_repeats = 2\n[platform]"))
    r = CliRunner().invoke(cli, ["validate", str(p)])
    assert r.exit_code == 2 and "confirm_repeats must be >= 3 (or 0 to skip confirmation), got 2" in r.output
    p = _write(tmp_path, GOOD.replace("[platform]", "[measure]\nsignificance = 0.7\n[platform]"))
    r = CliRunner().invoke(cli, ["validate", str(p)])
    assert r.exit_code == 2 and "measure.significance" in r.output
    assert not (tmp_path / "out").exists()


def test_one_registry_of_platform_facts_covers_every_platform():
    from lassi_batch.core.config import DEFAULT_COMPILERS, DEFAULT_REPEAT, PLATFORMS
    from lassi_batch.core.platforms import PLATFORM_FACTS

    assert set(PLATFORM_FACTS) == set(PLATFORMS) == set(DEFAULT_COMPILERS) == set(DEFAULT_REPEAT)
    for kind, f in PLATFORM_FACTS.items():
        assert f.kind == kind and f.default_compiler.split()[0] == f.compiler
        assert bool(f.visible_env) == (kind != "cpu")

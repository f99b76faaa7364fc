"""`lassi-batch doctor` on this machine: the cpu platform must be usable wherever the tests run."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from lassi_batch.core.config import ContainerConfig, LLMConfig, PlatformConfig
from lassi_batch.pipeline.doctor import default_platform_kind, run_doctor, smoke_test

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")


def _cli(args: list[str], env: dict[str, str] | None = None):
    from lassi_batch.cli import main

    return CliRunner().invoke(main, ["doctor", *args], env=env, catch_exceptions=False)


@needs_gxx
def test_doctor_cpu_exits_0_and_never_prints_the_key() -> None:
    res = _cli(["--platform", "cpu"], env={"OPENAI_API_KEY": "sk-doctor-secret-42", "COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    out = res.output
    assert "sk-doctor-secret-42" not in out
    assert "platform cpu: ready" in out
    for word in ("g++ OpenMP test", "bubblewrap", "sbatch", "apptainer", "OPENAI_API_KEY"):
        assert word in out


def test_doctor_exits_1_with_the_platform_problem(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.cpp").write_text("int main() { return 0; }\n")
    (app / "app.toml").write_text('[platforms.cpu]\nfiles = ["main.cpp"]\n')
    study = tmp_path / "study.toml"
    study.write_text(textwrap.dedent(f"""
        [study]
        name = "s"
        trials = 1
        k = [1]
        [platform]
        kind = "cpu"
        compiler = "no-such-cc-xyz -O2"
        [[apps]]
        path = "{app}"
    """))
    res = _cli(["--study", str(study)], env={"COLUMNS": "200"})
    assert res.exit_code == 1
    assert "platform cpu: not ready" in res.output
    assert "compiler 'no-such-cc-xyz' not found on PATH" in res.output


def test_doctor_bad_study_is_a_config_error(tmp_path: Path) -> None:
    from lassi_batch.cli import main

    res = CliRunner().invoke(main, ["doctor", "--study", str(tmp_path / "nope.toml")])
    assert res.exit_code == 2 and "error:" in res.output and "Traceback" not in res.output


@needs_gxx
def test_report_api_and_smoke_test() -> None:
    rep = run_doctor(PlatformConfig(kind="cpu"), ContainerConfig(), LLMConfig(api_key_env="LASSI_TEST_UNSET_VAR"))
    assert rep.ok and rep.problems == []
    by_name = {(c.area, c.name): c for c in rep.checks}
    assert by_name[("platform", "cpu test program")].status == "ok"
    assert by_name[("llm", "LASSI_TEST_UNSET_VAR")].status == "warn"
    assert all(c.status in ("ok", "fail", "warn", "missing", "info") for c in rep.checks)
    ok, detail = smoke_test(PlatformConfig(kind="cpu"))
    assert ok and "PASS threads=" in detail


@needs_gxx
def test_smoke_test_reports_a_broken_compiler_line() -> None:
    ok, detail = smoke_test(PlatformConfig(kind="cpu", compiler="g++ --no-such-flag-xyz"))
    assert not ok and detail.startswith("build failed") and "no-such-flag-xyz" in detail


def test_llm_endpoint_is_shown_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    from lassi_batch.pipeline.doctor import _llm_checks

    monkeypatch.setenv("OPENAI_BASE_URL", "https://user:pw@gw.example.org:8443/v1?api_key=abc")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-zzz")
    checks = _llm_checks(LLMConfig())
    text = " ".join(c.detail for c in checks)
    assert "https://gw.example.org:8443/v1" in text
    assert "pw" not in text and "abc" not in text and "sk-zzz" not in text


def test_default_platform_kind() -> None:
    assert default_platform_kind([{"name": "H100"}], []) == "cuda"
    assert default_platform_kind([], [{"name": "MI250"}]) == "hip"
    assert default_platform_kind([], []) == "cpu"

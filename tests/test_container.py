"""Apptainer command lines. Apptainer is not installable on the dev/CI machines: argv only."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from lassi_batch.sandbox import apptainer as container
from lassi_batch.sandbox.apptainer import ApptainerRunner, apptainer_exec_argv
from lassi_batch.system.facts import image_digest
from lassi_batch.core.errors import LassiError
from lassi_batch.sandbox.toolchain import sandbox_env


def _flag_values(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def test_isolation_flags_and_layout(tmp_path: Path) -> None:
    argv = apptainer_exec_argv("/img/lassi.sif", "cuda", tmp_path, ["./app.exe", "10"], {"OMP_NUM_THREADS": "4"})
    assert argv[:2] == ["apptainer", "exec"]
    for flag in ("--nv", "--containall", "--cleanenv", "--no-home", "--net", "--no-privs", "--no-eval"):
        assert flag in argv
    assert "--rocm" not in argv
    assert _flag_values(argv, "--network") == ["none"]
    assert _flag_values(argv, "--bind") == [str(tmp_path.resolve())]
    assert _flag_values(argv, "--pwd") == [str(tmp_path)]
    assert _flag_values(argv, "--env") == ["OMP_NUM_THREADS=4"]
    i = argv.index("/img/lassi.sif")
    assert argv[i + 1:] == ["./app.exe", "10"]  # options before the image, the command after it
    known = {"--nv", "--containall", "--cleanenv", "--no-home", "--net", "--network", "--bind", "--pwd", "--env",
             "--no-privs", "--no-eval"}
    assert {a for a in argv[2:i] if a.startswith("--")} <= known


@pytest.mark.parametrize("kind, present, absent", [("cuda", "--nv", "--rocm"), ("hip", "--rocm", "--nv")])
def test_gpu_flag_per_platform(tmp_path: Path, kind: str, present: str, absent: str) -> None:
    argv = apptainer_exec_argv("i.sif", kind, tmp_path, ["x"], {})
    assert present in argv and absent not in argv


def test_cpu_gets_no_gpu_flag(tmp_path: Path) -> None:
    argv = apptainer_exec_argv("i.sif", "cpu", tmp_path, ["x"], {})
    assert "--nv" not in argv and "--rocm" not in argv and "--containall" in argv


def test_network_opt_in_drops_the_network_flags(tmp_path: Path) -> None:
    argv = apptainer_exec_argv("i.sif", "cpu", tmp_path, ["x"], {}, network=True)
    assert "--net" not in argv and "--network" not in argv


def test_extra_binds_and_symlinked_workdir(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    argv = apptainer_exec_argv("i.sif", "cpu", link, ["x"], {}, binds=["/data:/data:ro"])
    assert _flag_values(argv, "--bind") == [f"{real}:{link}", "/data:/data:ro"]
    assert _flag_values(argv, "--pwd") == [str(link)]


def test_bind_separator_in_workdir_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "a:b"
    bad.mkdir()
    with pytest.raises(LassiError, match="cannot be bound"):
        apptainer_exec_argv("i.sif", "cpu", bad, ["x"], {})


def test_unknown_platform_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LassiError, match="unknown platform"):
        apptainer_exec_argv("i.sif", "tpu", tmp_path, ["x"], {})


def test_runner_passes_the_sandbox_env_without_secrets_or_host_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-nope")
    monkeypatch.setenv("APPTAINER_CACHEDIR", "/scratch/cache")
    monkeypatch.setenv("APPTAINER_DOCKER_PASSWORD", "pw")
    env = sandbox_env("hip", tmp_path, device="1")
    env["MY_TOKEN"] = "t"  # even if a caller slipped one in
    runner = ApptainerRunner("/img/rocm.sif", "hip", ["/data"])
    argv, outer = runner.wrap(["./app.exe"], tmp_path, env)
    envs = dict(e.split("=", 1) for e in _flag_values(argv, "--env"))
    assert envs["HIP_VISIBLE_DEVICES"] == "1" and envs["TMPDIR"] == str(tmp_path / ".tmp")
    for name in ("PATH", "LD_LIBRARY_PATH", "HOME", "MY_TOKEN", "OPENAI_API_KEY"):
        assert name not in envs
    assert "--rocm" in argv and "/data:/data:ro" in _flag_values(argv, "--bind")  # study binds read-only
    assert argv[-2:] == ["/img/rocm.sif", "./app.exe"]
    # the apptainer process itself: its own settings, never a secret
    assert outer.get("APPTAINER_CACHEDIR") == "/scratch/cache"
    assert "APPTAINER_DOCKER_PASSWORD" not in outer and "OPENAI_API_KEY" not in outer
    assert "PATH" in outer
    assert runner.name == "apptainer"


def test_image_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    img = tmp_path / "x.sif"
    img.write_bytes(b"sif" * 100000)
    assert image_digest(str(img)) == hashlib.sha256(img.read_bytes()).hexdigest()
    calls = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: calls.append(a) or real_open(*a, **k))
    image_digest(str(img))
    assert calls == []  # cached by mtime and size
    monkeypatch.undo()
    img.write_bytes(b"changed")
    os.utime(img, ns=(1, 1))
    assert image_digest(str(img)) == hashlib.sha256(b"changed").hexdigest()
    assert image_digest(str(tmp_path / "missing.sif")) == ""
    assert image_digest(str(tmp_path)) == ""
    assert image_digest("docker://nvidia/cuda:12.6.3-devel-ubuntu24.04") == ""


def test_def_file_takes_the_base_as_a_build_argument() -> None:
    text = (Path(container.__file__).parents[2] / "containers" / "Apptainer.def").read_text()
    assert "From: {{ BASE }}" in text
    args = text.split("%arguments", 1)[1].split("%", 1)[0]
    assert "BASE=" in args and "cuda" in args and "devel" in args
    assert "lassi_batch" in text and "python3" in text


def test_binds_are_read_only_unless_they_say_otherwise(tmp_path: Path) -> None:
    argv = apptainer_exec_argv("i.sif", "cpu", tmp_path, ["x"], {}, binds=["/data", "/a:/b", "/scratch:/s:rw"],
                               ro_files=["/cache/counter.so"])
    assert _flag_values(argv, "--bind")[1:] == ["/data:/data:ro", "/a:/b:ro", "/scratch:/s:rw",
                                                "/cache/counter.so:/cache/counter.so:ro"]


def test_launch_sets_rlimits_before_apptainer_starts(tmp_path: Path) -> None:
    from lassi_batch.sandbox.limits import Limits

    launch = ApptainerRunner("i.sif", "cuda").launch(["./app.exe"], tmp_path, {}, Limits(file_mb=64, processes=100))
    i = launch.argv.index("apptainer")
    assert launch.argv[0] == "prlimit" and launch.argv[i - 1] == "--"
    opts = launch.argv[1:i - 1]
    assert f"--fsize={64 << 20}" in opts and "--core=0" in opts
    nproc = int(next(o for o in opts if o.startswith("--nproc=")).split("=")[1])
    assert nproc >= 100  # the allowance on top of what the user already runs
    assert launch.tools == ("apptainer", "prlimit")
    assert "--containall" in launch.argv and _flag_values(launch.argv, "--network") == ["none"]

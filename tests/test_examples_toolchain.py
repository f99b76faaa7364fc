"""The bundled example apps go through the real toolchain: cpu built and run, GPU variants compiled."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from lassi_batch.core.config import PlatformConfig, load_app
from lassi_batch.sandbox.toolchain import build, prepare_workdir, run_app

EXAMPLES = Path(__file__).resolve().parents[1] / "datasets" / "examples"
APP_DIRS = sorted(p.parent for p in EXAMPLES.glob("*/app.toml"))
if not APP_DIRS:
    pytest.skip("no example apps with an app.toml yet", allow_module_level=True)

ids = [p.name for p in APP_DIRS]


def _build(app_dir: Path, platform: PlatformConfig, tmp_path: Path):
    app = load_app(app_dir)
    if platform.kind not in app.platforms:
        pytest.skip(f"{app.name} has no {platform.kind} build")
    wd = tmp_path / "work"
    prepare_workdir(app, platform.kind, wd)
    b = build(app, platform, wd)
    assert b.ok, f"{app.name} ({platform.kind}) failed to build:\n{b.log.stderr[-3000:]}"
    return app, wd


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
@pytest.mark.parametrize("app_dir", APP_DIRS, ids=ids)
def test_cpu_variant_builds_runs_and_passes(app_dir: Path, tmp_path: Path) -> None:
    plat = PlatformConfig(kind="cpu")
    app, wd = _build(app_dir, plat, tmp_path)
    r = run_app(app, plat, wd, app.test_args)
    assert r.ok, f"{app.name}: {r.error or r.returncode}\n{r.stderr[-2000:]}"
    pass_re = app.check.pass_regex or r"^PASS"
    assert re.search(pass_re, r.stdout, re.M), r.stdout[-2000:]
    if app.check.fail_regex:
        assert not re.search(app.check.fail_regex, r.stdout, re.M)
    if app.check.checksum_regex:
        assert re.search(app.check.checksum_regex, r.stdout, re.M)


@pytest.mark.nvcc
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
@pytest.mark.parametrize("app_dir", APP_DIRS, ids=ids)
def test_cuda_variant_compiles(app_dir: Path, tmp_path: Path) -> None:
    _build(app_dir, PlatformConfig(kind="cuda", compiler="nvcc -std=c++17 -O3 -arch=sm_90"), tmp_path)


@pytest.mark.hipcc
@pytest.mark.skipif(shutil.which("hipcc") is None, reason="hipcc not installed")
@pytest.mark.parametrize("app_dir", APP_DIRS, ids=ids)
def test_hip_variant_compiles(app_dir: Path, tmp_path: Path) -> None:
    # sandbox_env sets HIP_PLATFORM=amd unless the caller's environment says otherwise
    _build(app_dir, PlatformConfig(kind="hip", compiler="hipcc -std=c++17 -O3 --offload-arch=gfx908"), tmp_path)

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


def _setup_prefix() -> str:
    """The part of the first command that sees to bubblewrap (before the venv is made)."""
    first = re.search(r"```bash\n(.*?)```", README, re.S).group(1).strip().splitlines()[0]
    prefix, sep, _ = first.partition(" && python3 -m venv")
    assert sep, first
    return prefix + " && echo READY"


def _path_without(tmp: Path, *names: str) -> str:
    """A PATH folder with every tool of /usr/bin, /bin, /usr/sbin, /sbin except `names`."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    for d in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        for tool in Path(d).iterdir() if Path(d).is_dir() else []:
            if tool.name not in names and not (bin_dir / tool.name).exists():
                (bin_dir / tool.name).symlink_to(tool)
    return str(bin_dir)


def test_setup_line_tells_a_user_without_bubblewrap_or_sudo_what_to_ask_for(tmp_path):
    """Non-root, no bwrap, no sudo: one sentence on stderr, exit non-zero, the rest not run."""
    import os
    import shutil
    import subprocess

    import pytest
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root to run the line as an unprivileged user (setpriv)")
    import tempfile
    with tempfile.TemporaryDirectory(prefix="lassi-setup-") as d:  # reachable by an unprivileged user
        home = Path(d)
        home.chmod(0o755)
        path = _path_without(home, "bwrap", "sudo")
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", "-c", _setup_prefix()],
                           capture_output=True, text=True, cwd=home, env={"PATH": path, "HOME": str(home)})
        assert not (home / ".venv").exists()
    assert r.returncode != 0 and "READY" not in r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "ask an administrator to install the Debian package bubblewrap" in lines[0], r.stderr


def test_setup_line_as_root_needs_no_sudo(tmp_path):
    """Root without sudo on PATH installs bubblewrap with apt-get itself (here: already installed)."""
    import os
    import shutil
    import subprocess

    import pytest
    if os.geteuid() != 0 or shutil.which("apt-get") is None or shutil.which("bwrap") is None:
        pytest.skip("needs root, apt-get and an installed bubblewrap (so that apt-get has nothing to fetch)")
    path = _path_without(tmp_path, "bwrap", "sudo")
    r = subprocess.run(["bash", "-c", _setup_prefix()], capture_output=True, text=True, cwd=tmp_path,
                       env={"PATH": path, "HOME": str(tmp_path), "DEBIAN_FRONTEND": "noninteractive"})
    assert "sudo" not in r.stderr, r.stderr
    assert r.returncode == 0 and r.stdout.strip().endswith("READY"), r.stdout + r.stderr
    assert "bubblewrap" in r.stdout  # apt-get was asked (it reports the package as already installed)

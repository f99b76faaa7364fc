"""Apptainer command lines for building and running untrusted code inside an image.

The image holds the toolchain (CUDA or ROCm); the host keeps the submitit worker and the power
meter. Each compile or run is one `apptainer exec` with the strictest isolation that still lets
the GPU through: `--containall` (own PID and IPC namespaces, private /tmp and /dev/shm, no host
environment, no home), `--net --network none`, `--no-privs`, only the run's own folder bound
writable (and the work counter read-only), and rlimits set by `prlimit` before apptainer starts,
so they hold for the program too. Apptainer could not be installed on the development machines,
so only the argv is tested.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..core.errors import ConfigError
from ..core.secrets import looks_secret
from .bwrap import Launch
from .limits import Limits, prlimit_argv, user_process_count

GPU_FLAGS = {"cuda": ["--nv"], "hip": ["--rocm"], "cpu": []}

# Host paths that mean nothing inside the image (and LD_LIBRARY_PATH would break --nv's library
# injection); HOME cannot be overridden through --env (Apptainer refuses it), --no-home is used.
_HOST_ONLY = {
    "PATH", "LD_LIBRARY_PATH", "LIBRARY_PATH", "CPATH", "C_INCLUDE_PATH", "CPLUS_INCLUDE_PATH",
    "CUDA_HOME", "CUDA_PATH", "ROCM_PATH", "ROCM_HOME", "HIP_PATH", "HIP_CLANG_PATH", "HSA_PATH",
    "DEVICE_LIB_PATH", "HOME",
}
# What the apptainer process itself (trusted) may see from the host.
_RUNTIME_ENV = ("PATH", "LANG", "USER", "LOGNAME", "HOME", "XDG_RUNTIME_DIR", "TMPDIR")


def _check_bind_path(p: str) -> str:
    if ":" in p or "," in p:
        raise ConfigError(f"path '{p}' cannot be bound into a container (':' and ',' separate bind specs)")
    return p


def apptainer_exec_argv(image: str, platform_kind: str, workdir: Path, argv: list[str], env: dict[str, str],
                        binds: Sequence[str] = (), network: bool = False,
                        ro_files: Sequence[str | Path] = ()) -> list[str]:
    """`apptainer exec` for argv in workdir: contained, clean environment, GPU passed through.

    `binds` (from the study) are read-only unless they say otherwise; `ro_files` always are.
    """
    if platform_kind not in GPU_FLAGS:
        raise ConfigError(f"unknown platform '{platform_kind}' (use {', '.join(GPU_FLAGS)})")
    real = _check_bind_path(str(Path(workdir).resolve()))
    wd = _check_bind_path(str(Path(workdir).absolute()))  # paths in env (TMPDIR) use this spelling
    cmd = ["apptainer", "exec", *GPU_FLAGS[platform_kind], "--containall", "--cleanenv", "--no-home",
           "--no-privs", "--no-eval"]
    if not network:
        cmd += ["--net", "--network", "none"]
    cmd += ["--bind", real if real == wd else f"{real}:{wd}"]
    for b in binds:
        cmd += ["--bind", b if b.count(":") >= 2 else f"{b}:{b}:ro" if ":" not in b else f"{b}:ro"]
    for f in ro_files:
        f = _check_bind_path(str(f))
        cmd += ["--bind", f"{f}:{f}:ro"]
    cmd += ["--pwd", wd]
    for k, v in sorted(env.items()):
        if k not in _HOST_ONLY:
            cmd += ["--env", f"{k}={v}"]
    return [*cmd, image, *argv]


class ApptainerRunner:
    """Runner that executes every command inside an Apptainer image."""

    def __init__(self, image: str, platform_kind: str, binds: Sequence[str] = (), network: bool = False):
        self.image = image
        self.platform_kind = platform_kind
        self.binds = list(binds)
        self.network = network
        self.warnings: list[str] = []
        self.name = "apptainer"

    def wrap(self, argv: list[str], workdir: Path, env: dict[str, str],
             ro_files: Sequence[str | Path] = ()) -> tuple[list[str], dict[str, str]]:
        inner = {k: v for k, v in env.items() if not looks_secret(k)}
        outer = {k: os.environ[k] for k in _RUNTIME_ENV if k in os.environ}
        outer.update({k: v for k, v in os.environ.items()
                      if k.startswith(("APPTAINER_", "SINGULARITY_")) and not looks_secret(k)})
        outer.setdefault("PATH", os.defpath)
        return apptainer_exec_argv(self.image, self.platform_kind, workdir, argv, inner,
                                   self.binds, self.network, ro_files), outer

    def launch(self, argv: list[str], workdir: Path, env: dict[str, str], limits: Limits,
               ro_files: Sequence[str | Path] = ()) -> Launch:
        """prlimit + apptainer exec: rlimits hold from the container's first process on.

        RLIMIT_NPROC counts the user's processes: the allowance is added to the current count.
        """
        full, outer = self.wrap(argv, workdir, env, ro_files)
        nproc = user_process_count(os.getuid()) + limits.processes + 8  # starter and shim init
        return Launch(argv=[*prlimit_argv(limits, nproc), *full], env=outer, tools=("apptainer", "prlimit"))






SIF_MAGIC = b"SIF_MAGIC"  # at byte 32 of a SIF file, after the 32-byte launch line
SQUASHFS_MAGIC = b"hsqs"  # an older single-file image (a bare squashfs)


def image_problem(image: str) -> str:
    """Why `image` cannot be an Apptainer image ('' when it can): missing, or not a SIF/squashfs
    file or sandbox folder. A remote URI (docker://, library://, oras://) is left to apptainer."""
    if "://" in image:
        return ""
    p = Path(image).expanduser()
    if p.is_dir():
        return "" if (p / ".singularity.d").is_dir() else f"{image} is a folder but not an Apptainer sandbox (no .singularity.d)"
    if not p.is_file():
        return f"image not found: {image}"
    try:
        with open(p, "rb") as fh:
            head = fh.read(48)
    except OSError as e:
        return f"image not readable: {image} ({e.strerror})"
    if head[32:32 + len(SIF_MAGIC)] == SIF_MAGIC or head.startswith(SQUASHFS_MAGIC):
        return ""
    return f"{image} is not an Apptainer image (no SIF header)"

"""An independent count of the GPU work a CUDA program does (kernel launches, copies).

The deterministic verifier compares what a candidate prints with what the source printed, but
third-party apps (HeCBench) print no work counters, and a refactor that deletes a timed repeat
loop keeps the same output. This module builds a small CUPTI injection library
(native/cuda_work_counter.c) that the CUDA driver loads through CUDA_INJECTION64_PATH; it counts
kernel launches and cudaMemcpy bytes and writes them to a JSON file when the program exits.
Building needs a C compiler and CUPTI (part of the CUDA toolkit); without them runs go on
uncounted and the reason is recorded.

The library is built by lassi-batch itself into its cache (never inside a sandbox), made
read-only, and bound read-only into the one unmeasured counting run of each candidate: the
candidate can neither replace it nor pay for its overhead in a measured repeat.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "native" / "cuda_work_counter.c"
COUNTS_FILE = "lassi_work_counts.json"


def _cuda_roots() -> list[Path]:
    roots = [os.environ.get(v, "") for v in ("CUDA_HOME", "CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        roots.append(str(Path(os.path.realpath(nvcc)).parent.parent))
    roots += ["/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"), reverse=True), "/opt/cuda"]
    seen: list[Path] = []
    for r in roots:
        if r and Path(r).is_dir() and Path(r) not in seen:
            seen.append(Path(r))
    return seen


def find_cupti() -> tuple[Path, Path] | None:
    """(include dir holding cupti.h, lib dir holding libcupti.so) of the first CUDA toolkit found."""
    for root in _cuda_roots():
        incs = [root / "include", root / "extras" / "CUPTI" / "include", root / "targets" / "x86_64-linux" / "include"]
        libs = [root / "lib64", root / "lib", root / "extras" / "CUPTI" / "lib64", root / "targets" / "x86_64-linux" / "lib"]
        inc = next((d for d in incs if (d / "cupti.h").is_file()), None)
        lib = next((d for d in libs if any(d.glob("libcupti.so*"))), None)
        if inc and lib:
            return inc, lib
    return None


def build(cache_dir: Path | None = None) -> tuple[Path | None, str]:
    """Compile the counter once per source/toolkit; returns (library, "") or (None, why not)."""
    found = find_cupti()
    if found is None:
        return None, "CUPTI (cupti.h, libcupti.so) not found in a CUDA toolkit"
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        return None, "no C compiler to build the CUPTI work counter"
    inc, lib = found
    tag = hashlib.sha256(SOURCE.read_bytes() + str(found).encode()).hexdigest()[:16]
    cache = cache_dir or Path(os.environ.get("LASSI_CACHE", Path.home() / ".cache" / "lassi-batch"))
    out = cache / f"cuda_work_counter-{tag}.so"
    if out.is_file() and not out.is_symlink():
        st = out.stat()
        if st.st_uid == os.getuid() and not st.st_mode & 0o022:
            return out, ""
        out.unlink()  # not ours or writable by others: rebuild rather than trust it
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    cmd = [cc, "-shared", "-fPIC", "-O2", f"-I{inc}", "-o", str(tmp), str(SOURCE), f"-L{lib}", "-lcupti",
           f"-Wl,-rpath,{lib}"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        tmp.unlink(missing_ok=True)
        first = (p.stderr.strip().splitlines() or ["?"])[0]
        return None, f"building the CUPTI work counter failed: {first}"
    tmp.chmod(0o555)
    os.replace(tmp, out)
    return out, ""


def run_env(library: Path, workdir: Path) -> dict[str, str]:
    """Environment that makes the CUDA driver load the counter for one run in `workdir`."""
    return {"CUDA_INJECTION64_PATH": str(library), "LASSI_WORK_COUNTS": str(Path(workdir) / COUNTS_FILE)}


def take_counts(workdir: Path) -> dict[str, int] | None:
    """Read and remove the counts a run left in `workdir` (None when it wrote none)."""
    f = Path(workdir) / COUNTS_FILE
    try:  # written inside the sandbox: never follow a link the program planted, read a bounded amount
        fd = os.open(f, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            raw = json.loads(fh.read(1 << 16))
    except (OSError, ValueError):
        return None
    finally:
        f.unlink(missing_ok=True)
    if not isinstance(raw, dict):
        return None
    counts = {str(k): int(v) for k, v in raw.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    # Runtime launches reach the driver too; the larger of the two is the number of launches.
    counts["kernel_launches"] = max(counts.get("runtime_launches", 0), counts.get("driver_launches", 0))
    return counts

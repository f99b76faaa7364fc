"""`lassi-batch doctor`: can this machine build, run and measure trials, and if not, why.

Everything is probed for real (a tiny program is compiled and run through the same sandbox the
trials use), because "the compiler is on PATH" does not mean it can build and run. Only the
chosen platform decides the verdict; the other rows are information for the user.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from ..core.config import (
    AppConfig,
    ContainerConfig,
    LLMConfig,
    PlatformBuild,
    PlatformConfig,
)
from ..core.errors import LassiError
from ..core.secrets import env_secret_available
from ..power.base import probe_meters
from ..sandbox.apptainer import image_problem
from ..sandbox.toolchain import (
    build,
    check_platform,
    make_runner,
    sandbox_problem,
    prepare_workdir,
    run_app,
)
from ..sandbox import syscall_filter
from ..system.facts import image_digest
from ..system.gpus import amd_gpus, default_platform_kind, nvidia_gpus
from ..system.tools import tool_version
from ..system.devlock import device_key, run_hold


@dataclass
class Check:
    """One row of the doctor's table."""

    area: str  # gpu | meter | compiler | platform | container | slurm | sandbox | llm
    name: str
    status: str  # ok | fail | warn | missing | info
    detail: str = ""


@dataclass
class DoctorReport:
    platform: PlatformConfig
    checks: list[Check] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # why the chosen platform cannot build and run

    @property
    def ok(self) -> bool:
        return not self.problems


_SMOKE = {
    "cpu": ("smoke.cpp", r"""#include <cstdio>
#include <omp.h>
int main() {
  int n = 0;
#pragma omp parallel reduction(+ : n)
  n += 1;
  std::printf("PASS threads=%d\n", n);
  return n == omp_get_max_threads() ? 0 : 1;
}
"""),
    "cuda": ("smoke.cu", r"""#include <cstdio>
__global__ void fill(int *x) { x[threadIdx.x] = 2 * threadIdx.x; }
int main() {
  int *d = nullptr, h[64] = {0};
  if (cudaMalloc(&d, sizeof h) != cudaSuccess) { std::printf("FAIL cudaMalloc\n"); return 1; }
  fill<<<1, 64>>>(d);
  cudaError_t e = cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
  cudaFree(d);
  if (e != cudaSuccess || h[63] != 126) { std::printf("FAIL %s\n", cudaGetErrorString(e)); return 1; }
  std::printf("PASS\n");
  return 0;
}
"""),
    "hip": ("smoke.cpp", r"""#include <cstdio>
#include <hip/hip_runtime.h>
__global__ void fill(int *x) { x[threadIdx.x] = 2 * threadIdx.x; }
int main() {
  int *d = nullptr, h[64] = {0};
  if (hipMalloc(&d, sizeof h) != hipSuccess) { std::printf("FAIL hipMalloc\n"); return 1; }
  fill<<<1, 64>>>(d);
  hipError_t e = hipMemcpy(h, d, sizeof h, hipMemcpyDeviceToHost);
  hipFree(d);
  if (e != hipSuccess || h[63] != 126) { std::printf("FAIL %s\n", hipGetErrorString(e)); return 1; }
  std::printf("PASS\n");
  return 0;
}
"""),
}


def smoke_test(platform: PlatformConfig, container: ContainerConfig | None = None) -> tuple[bool, str]:
    """Build and run a tiny program for the platform through the trial toolchain; (ok, detail)."""
    fname, text = _SMOKE[platform.kind]
    try:
        runner = make_runner(container or ContainerConfig(), platform.kind)
    except LassiError as e:
        return False, str(e)
    with tempfile.TemporaryDirectory(prefix="lassi-doctor-") as tmp:
        src = Path(tmp, "src")
        src.mkdir()
        (src / fname).write_text(text)
        app = AppConfig(name="doctor-smoke", path=src, platforms={platform.kind: PlatformBuild(files=[fname])},
                        args=[], test_args=[], time_limit_s=60.0, memory_limit_mb=8192)
        work = Path(tmp, "work")
        try:
            prepare_workdir(app, platform.kind, work)
            b = build(app, platform, work, runner=runner, time_s=180.0)
        except LassiError as e:
            return False, str(e)
        if not b.ok:
            return False, f"build failed: {_last_line(b.log.stderr or b.log.stdout or b.log.error)}"
        with run_hold(device_key(platform.kind, platform.device)):  # never inside a trial's measurement
            r = run_app(app, platform, work, [], runner=runner)
        if not r.ok or "PASS" not in r.stdout:
            return False, f"run failed: {r.error or _last_line(r.stdout + r.stderr) or f'exit {r.returncode}'}"
        return True, f"built and ran ({_last_line(r.stdout)}; {r.runner})"


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


def _redact_url(url: str) -> str:
    """Drop user:password@ and the query string, which may carry credentials."""
    try:
        u = urllib.parse.urlsplit(url)
    except ValueError:
        return "(unparseable URL)"
    host = u.hostname or ""
    if u.port:
        host += f":{u.port}"
    return urllib.parse.urlunsplit((u.scheme, host, u.path, "", ""))


def _meter_checks(kind: str) -> list[Check]:
    try:

        return [Check("meter", str(m.name), "ok" if m.ok else "missing", str(m.detail)) for m in probe_meters(kind)]
    except (ImportError, AttributeError):
        return [Check("meter", "power meters", "info", "power module not available")]
    except Exception as e:  # a meter probe must not take the doctor down
        return [Check("meter", "power meters", "warn", f"probe failed: {type(e).__name__}: {e}")]


def _filter_check(opted_out: bool) -> Check:
    """The seccomp filter bubblewrap loads for every build and run (fail: nothing would run)."""
    why = syscall_filter.problem()
    if why:
        return Check("sandbox", "seccomp filter", "info" if opted_out else "fail", why)
    b = syscall_filter.build()
    missing = f"; not known to this libseccomp, so not filtered: {', '.join(b.unknown)}" if b.unknown else ""
    return Check("sandbox", "seccomp filter", "warn" if b.unknown else "ok",
                 f"{b.rules} rules, {b.instructions} BPF instructions ({b.library}): no ptrace, nested namespaces, "
                 f"mounts, bpf or keyrings; sockets AF_UNIX only, without connect{missing}")


def _llm_checks(llm: LLMConfig) -> list[Check]:
    if llm.backend == "replay":
        p = Path(llm.replay_path).expanduser()
        return [Check("llm", "replay transcript", "ok" if p.exists() else "missing", str(p))]
    key_set = env_secret_available(llm.api_key_env)
    base = llm.base_url or os.environ.get("OPENAI_BASE_URL", "")
    return [
        Check("llm", llm.api_key_env, "ok" if key_set else "warn", "set (value not shown)" if key_set else "not set"),
        Check("llm", "endpoint", "info", _redact_url(base) if base else "default (api.openai.com)"),
        Check("llm", "models", "info", f"generator {llm.generator_model}, judge {llm.judge_model}"),
    ]


def run_doctor(platform: PlatformConfig | None = None, container: ContainerConfig | None = None,
               llm: LLMConfig | None = None) -> DoctorReport:
    """Probe everything; the verdict covers `platform` (default: the best one this machine has)."""
    container = container or ContainerConfig()
    checks: list[Check] = []
    nv, nv_why = nvidia_gpus()
    amd, amd_why = amd_gpus()
    for g in nv:
        checks.append(Check("gpu", f"NVIDIA {g.index}", "ok",
                            f"{g.name} (driver {g.driver or '?'}, {g.pci_bus_id}, {g.uuid})"))
    if not nv:
        checks.append(Check("gpu", "NVIDIA", "info", f"none found ({nv_why})"))
    for g in amd:
        checks.append(Check("gpu", f"AMD {g.index}", "ok", f"{g.name} ({g.pci_bus_id}, {g.uuid or 'no UUID'})"))
    if not amd:
        checks.append(Check("gpu", "AMD", "info", f"none found ({amd_why})"))
    if platform is None:
        platform = PlatformConfig(kind=default_platform_kind(nv, amd))
    report = DoctorReport(platform=platform, checks=checks)

    checks += _meter_checks(platform.kind)

    smokes: dict[tuple[str, str, str], tuple[bool, str]] = {}

    def smoke(p: PlatformConfig, c: ContainerConfig) -> tuple[bool, str]:
        key = (p.kind, p.compiler_line, c.runtime)  # the cpu platform's test is often the g++ test
        if key not in smokes:
            smokes[key] = smoke_test(p, c)
        return smokes[key]

    host = ContainerConfig()
    for cc in ("nvcc", "hipcc", "g++"):
        version = tool_version(cc)
        checks.append(Check("compiler", cc, "ok" if version else "missing", version or "not on PATH"))
        if cc == "g++" and version:
            same = platform.kind == "cpu" and container.runtime == "none" and platform.compiler_line.split()[:1] == ["g++"]
            ok, detail = smoke(platform if same else PlatformConfig(kind="cpu"), host)
            checks.append(Check("compiler", "g++ OpenMP test", "ok" if ok else "fail", detail))

    report.problems = check_platform(platform, container)
    if not report.problems:
        ok, detail = smoke(platform, container)
        if not ok:
            report.problems.append(f"test program: {detail}")
        checks.append(Check("platform", f"{platform.kind} test program", "ok" if ok else "fail", detail))
    for p in report.problems:
        checks.append(Check("platform", platform.kind, "fail", p))

    appt = tool_version("apptainer")
    needed = container.runtime == "apptainer"
    checks.append(Check("container", "apptainer", "ok" if appt else ("fail" if needed else "missing"),
                        appt or "not on PATH"))
    if needed:
        bad = image_problem(container.image)
        digest = "" if bad else image_digest(container.image)
        checks.append(Check("container", "image", "fail" if bad else "ok",
                            bad or (f"{container.image} sha256:{digest[:12]}" if digest else container.image)))

    for cmd in ("sbatch", "squeue", "sacct", "scontrol"):
        path = shutil.which(cmd)
        checks.append(Check("slurm", cmd, "ok" if path else "missing", path or "not on PATH"))

    why = sandbox_problem(ContainerConfig())
    opted_out = container.runtime == "apptainer" or container.sandbox == "none"
    checks.append(Check("sandbox", "bubblewrap", "ok" if not why else ("info" if opted_out else "fail"),
                        "no network, own PID namespace, read-only system, fresh folder per run" if not why else why))
    checks.append(_filter_check(opted_out))

    checks += _llm_checks(llm or LLMConfig())
    return report

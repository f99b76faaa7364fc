"""The GPU a trial runs on: pinned by UUID, the only one its program sees, the one the meter reads,
and proven by a test load before anything is measured.

The batch worker pins each trial to one GPU of the node (LASSI_GPU_UUID, and CUDA_VISIBLE_DEVICES
or ROCR_VISIBLE_DEVICES set to its UUID). `pin_trial` turns that into the platform the trial runs
with (the pin wins over a study's `device`), resolves the GPU the sandboxed program will see from
the very environment the sandbox gives it, and names that GPU's device node for the sandbox.
`check_gpu` runs a short busy kernel there and judges every GPU's utilisation and power before and
during it (power.loadcheck.judge_load): numbering mistakes cannot fool a physical rise.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..core.config import AppConfig, PlatformBuild, PlatformConfig
from ..core.errors import GpuMismatch, LassiError, MeterUnavailable
from ..power.loadcheck import GpuReadings, Reading, Verdict, combine, judge_load
from ..sandbox.toolchain import RunResult, Runner, build, prepare_workdir, run_app, sandbox_env
from ..system.devlock import device_key, measurement_lock
from ..system.gpus import PIN_ENV, GpuInfo, device_nodes, discover, pinned_device, resolve_gpu

LOAD_S = 1.5  # how long the test load keeps the GPU busy
IDLE_S = 0.5  # readings before it
SAMPLE_S = 0.05
TRIES = 3  # a neighbour's job starting on another GPU at that very moment is not a mismatch

_LOAD = {
    "cuda": ("gpuload.cu", r"""#include <chrono>
#include <cstdio>
#include <cstdlib>
__global__ void spin(float *out, int n) {
  float x = threadIdx.x * 1e-3f, y = 1.0f;
  for (int i = 0; i < n; ++i) { y = y * 0.999f + x; x = x * 1.0001f - y * 1e-4f; }
  out[blockIdx.x * blockDim.x + threadIdx.x] = x + y;
}
int main(int argc, char **argv) {
  double seconds = argc > 1 ? std::atof(argv[1]) : 1.5;
  char bus[32] = "";
  if (cudaDeviceGetPCIBusId(bus, sizeof bus, 0) != cudaSuccess) { std::printf("FAIL no CUDA device\n"); return 1; }
  std::printf("pci=%s\n", bus);
  std::fflush(stdout);
  int sms = 1;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  const int threads = 256, blocks = 8 * sms;
  float *d = nullptr;
  if (cudaMalloc(&d, sizeof(float) * threads * blocks) != cudaSuccess) { std::printf("FAIL cudaMalloc\n"); return 1; }
  auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < seconds) {
    spin<<<blocks, threads>>>(d, 1 << 16);
    cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaSuccess) { std::printf("FAIL %s\n", cudaGetErrorString(e)); return 1; }
  }
  cudaFree(d);
  std::printf("PASS\n");
  return 0;
}
"""),
    "hip": ("gpuload.cpp", r"""#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <hip/hip_runtime.h>
__global__ void spin(float *out, int n) {
  float x = threadIdx.x * 1e-3f, y = 1.0f;
  for (int i = 0; i < n; ++i) { y = y * 0.999f + x; x = x * 1.0001f - y * 1e-4f; }
  out[blockIdx.x * blockDim.x + threadIdx.x] = x + y;
}
int main(int argc, char **argv) {
  double seconds = argc > 1 ? std::atof(argv[1]) : 1.5;
  char bus[32] = "";
  if (hipDeviceGetPCIBusId(bus, sizeof bus, 0) != hipSuccess) { std::printf("FAIL no HIP device\n"); return 1; }
  std::printf("pci=%s\n", bus);
  std::fflush(stdout);
  int cus = 1;
  hipDeviceGetAttribute(&cus, hipDeviceAttributeMultiprocessorCount, 0);
  const int threads = 256, blocks = 8 * cus;
  float *d = nullptr;
  if (hipMalloc(&d, sizeof(float) * threads * blocks) != hipSuccess) { std::printf("FAIL hipMalloc\n"); return 1; }
  auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < seconds) {
    spin<<<blocks, threads>>>(d, 1 << 16);
    hipError_t e = hipDeviceSynchronize();
    if (e != hipSuccess) { std::printf("FAIL %s\n", hipGetErrorString(e)); return 1; }
  }
  hipFree(d);
  std::printf("PASS\n");
  return 0;
}
"""),
}


@dataclass
class Pinning:
    """Where a trial's GPU work goes."""

    platform: PlatformConfig  # the study's platform with the pinned device
    gpu: GpuInfo | None = None  # the GPU the sandboxed program sees (None: no GPU platform, none listed)
    gpus: list[GpuInfo] = field(default_factory=list)  # every GPU of the node, PCI order
    nodes: list[str] | None = None  # the device node(s) the sandbox passes; None: all
    notes: list[str] = field(default_factory=list)
    pinned: str = ""  # the UUID the batch worker pinned the trial to ('' when it did not)

    def record(self) -> dict[str, Any]:
        """For the archive's environment: the program's GPU and how it was chosen."""
        return {"program_gpu": self.gpu.key if self.gpu else "", "pinned": self.pinned,
                "device": self.platform.device, "device_nodes": list(self.nodes) if self.nodes is not None else "all",
                "notes": list(self.notes)}


def program_gpu(platform: PlatformConfig, gpus: list[GpuInfo]) -> GpuInfo:
    """The GPU a program of `platform` uses as its device 0, resolved from the visible-devices
    variables of the environment the sandbox gives it (toolchain.sandbox_env)."""
    env = sandbox_env(platform.kind, Path(os.devnull), platform.device)
    if platform.kind == "cuda":
        levels = [("CUDA_VISIBLE_DEVICES", env.get("CUDA_VISIBLE_DEVICES"))]
    else:
        levels = [("ROCR_VISIBLE_DEVICES", env.get("ROCR_VISIBLE_DEVICES")),
                  ("HIP_VISIBLE_DEVICES", env.get("HIP_VISIBLE_DEVICES"))]
    gpu, _ = resolve_gpu(levels, gpus)
    return gpu


def pin_trial(platform: PlatformConfig, env: Mapping[str, str] | None = None) -> Pinning:
    """The platform a trial runs with and the GPU its program sees (see the module docstring).
    `env`: where the worker's pin is read (default: this process's environment)."""
    env = os.environ if env is None else env
    if platform.kind not in ("cuda", "hip"):
        return Pinning(platform)
    pin = env.get(PIN_ENV, "")
    pinned = replace(platform, device=pinned_device(platform.kind, platform.device, env))
    gpus, source = discover(platform.kind)
    if not gpus:
        return Pinning(pinned, notes=[f"no GPU listed ({source}): the program's GPU is not known"], pinned=pin)
    try:
        gpu = program_gpu(pinned, gpus)
    except MeterUnavailable as e:
        return Pinning(pinned, gpus=gpus, notes=[str(e)], pinned=pin)
    nodes = device_nodes(gpu, platform.kind)
    notes = [] if nodes is not None else [f"the device node of {gpu.key} is not known: the sandbox passes every GPU"]
    if pin and gpu.key != pin:
        notes.append(f"the program's GPU {gpu.key} is not the pinned {pin}")
    return Pinning(pinned, gpu, gpus, nodes, notes, pin)


def check_gpu(pin: Pinning, runner: Runner | None, *, measured: str = "", source: tuple[str, str] | None = None,
              seconds: float = LOAD_S, tries: int = TRIES, readings: Callable[[str], Any] = GpuReadings) -> Verdict:
    """Run a short known load on the pinned GPU through the trial's sandbox and check that it
    raises that GPU's utilisation or power and no other GPU's; raise GpuMismatch if it does not.

    `source` (file name, text): the load program (default: a busy CUDA/HIP kernel that prints
    the PCI address of its device 0). Each try holds the GPU's measurement lock, so no run of
    another trial pinned to the same GPU overlaps it. `measured`: the identity of the GPU the
    meter opened, which must be the program's."""
    if pin.gpu is None:
        raise GpuMismatch("the trial's GPU cannot be checked: " + ("; ".join(pin.notes) or "no GPU resolved"))
    if measured and measured != pin.gpu.key:
        raise GpuMismatch(f"the meter reads {measured} but the program sees {pin.gpu.key}")
    platform = pin.platform
    fname, text = source or _LOAD[platform.kind]
    try:
        reader = readings(platform.kind)
    except Exception as e:  # NVML/amdsmi errors, a missing library: the check cannot be made
        raise GpuMismatch(f"the trial's GPU cannot be checked: the node's GPUs cannot be read ({e})") from None
    try:
        with tempfile.TemporaryDirectory(prefix="lassi-gpucheck-") as tmp:
            src = Path(tmp, "src")
            src.mkdir()
            (src / fname).write_text(text)
            app = AppConfig(name="gpu-load-check", path=src, platforms={platform.kind: PlatformBuild(files=[fname])},
                            args=[], test_args=[], time_limit_s=seconds + 60.0, memory_limit_mb=8192)
            work = Path(tmp, "work")
            try:
                prepare_workdir(app, platform.kind, work)
                b = build(app, platform, work, runner=runner, time_s=300.0)
            except LassiError as e:
                raise GpuMismatch(f"the GPU test load could not be built: {e}") from None
            if not b.ok:
                raise GpuMismatch(f"the GPU test load did not build: {_last(b.log.stderr or b.log.stdout or b.log.error)}")
            verdict = Verdict(False, "not run")
            for _ in range(max(1, tries)):
                with measurement_lock(device_key(platform.kind, platform.device)):
                    before, during, run = _load_once(app, platform, work, runner, reader, seconds)
                if not run.ok:
                    raise GpuMismatch(f"the GPU test load failed on {pin.gpu.key}: "
                                      f"{run.error or _last(run.stdout + run.stderr) or f'exit {run.returncode}'}")
                verdict = judge_load(pin.gpu, reader.gpus, before, during, _reported_pci(run.stdout))
                if verdict.ok:
                    return verdict
            raise GpuMismatch(f"GPU pinning check failed: {verdict.reason}")
    finally:
        reader.close()


def _load_once(app: AppConfig, platform: PlatformConfig, work: Path, runner: Runner | None, reader: Any,
               seconds: float) -> tuple[dict[str, Reading], dict[str, Reading], RunResult]:
    """Readings of every GPU before the load (mean) and while it runs (max), and its run."""
    idle = []
    end = time.monotonic() + IDLE_S
    while time.monotonic() < end:
        idle.append(reader.read())
        time.sleep(SAMPLE_S)
    done: list[RunResult | BaseException] = []

    def go() -> None:
        try:
            done.append(run_app(app, platform, work, [f"{seconds:g}"], runner=runner))
        except BaseException as e:  # handed to the caller's thread
            done.append(e)

    th = threading.Thread(target=go, name="gpu-load-check", daemon=True)
    th.start()
    busy = []
    while th.is_alive():
        busy.append(reader.read())
        time.sleep(SAMPLE_S)
    th.join()
    busy.append(reader.read())
    if isinstance(done[0], BaseException):
        raise done[0]
    return combine(idle, "mean"), combine(busy, "max"), done[0]


def _reported_pci(stdout: str) -> str:
    for line in stdout.splitlines():
        if line.startswith("pci="):
            return line[4:].strip()
    return ""


def _last(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""

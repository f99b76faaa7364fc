"""Multi-GPU nodes without the hardware: discovery, pinning by UUID, device nodes, the load check.

The fake vendor libraries (tests/fakes, the real libraries' names and return shapes) list several
GPUs in an order that is NOT PCI order, the case where CUDA's default numbering, NVML's and
amdsmi's disagree.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from lassi_batch.core.config import PlatformConfig
from lassi_batch.power.base import open_meter
from lassi_batch.system import gpus as gpus_mod
from lassi_batch.system.gpus import GpuInfo, discover, pinned_device, program_levels, resolve_gpu

FAKES = Path(__file__).parent / "fakes"
# NVML lists them C1, 1B, 41, 81: PCI (and CUDA_DEVICE_ORDER=PCI_BUS_ID) order is 1B, 41, 81, C1
NV_GPUS = [("GPU-cccc", "00000000:C1:00.0", 3), ("GPU-aaaa", "00000000:1B:00.0", 0),
           ("GPU-bbbb", "00000000:41:00.0", 2), ("GPU-dddd", "00000000:81:00.0", 1)]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_lassi_fake_{name}_pin", FAKES / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def nv(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    mod = _load("fake_pynvml")
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    for var in ("CUDA_VISIBLE_DEVICES", "LASSI_GPU_UUID"):
        monkeypatch.delenv(var, raising=False)
    mod.configure([mod.FakeGpu(u, b, minor=m) for u, b, m in NV_GPUS])
    return mod


@pytest.fixture
def amd(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    mod = _load("fake_amdsmi")
    monkeypatch.setitem(sys.modules, "amdsmi", mod)
    for var in ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "LASSI_GPU_UUID"):
        monkeypatch.delenv(var, raising=False)
    mod.configure([mod.FakeGpu("0000:c1:00.0", "48ff74a1-0000-1000-80c1-000000000c1c"), mod.FakeGpu("0000:0c:00.0", "48ff74a1-0000-1000-800c-00000000000c"),
                   mod.FakeGpu("0000:41:00.0", "48ff74a1-0000-1000-8041-000000000041")])
    return mod


# ------------------------------------------------------------------ one discovery, one type


def test_nvidia_discovery_is_gpuinfo_in_pci_order_with_minor_memory_driver(nv: ModuleType) -> None:
    found, source = discover("cuda")
    assert source == "pynvml"
    assert all(isinstance(g, GpuInfo) for g in found)
    assert [g.uuid for g in found] == ["GPU-aaaa", "GPU-bbbb", "GPU-dddd", "GPU-cccc"]
    assert [g.index for g in found] == [0, 1, 2, 3]
    assert [g.minor for g in found] == [0, 2, 1, 3]  # /dev/nvidiaN follows neither listing
    assert found[0].memory_mb == 80 << 10 and found[0].driver == "580.159.04"
    rec = found[0].record()
    assert rec["uuid"] == "GPU-aaaa" and rec["pci_bus_id"] == "00000000:1B:00.0" and rec["name"]


def test_unknown_minor_stays_unknown(nv: ModuleType) -> None:
    nv.configure([nv.FakeGpu("GPU-aaaa", "00000000:1B:00.0")])  # minor query unsupported
    (g,), _ = discover("cuda")
    assert g.minor == -1


def test_amd_discovery_is_gpuinfo_in_pci_order(amd: ModuleType) -> None:
    found, source = discover("hip")
    assert source == "amdsmi"
    assert [(g.index, g.uuid, g.pci_bus_id) for g in found] == [
        (0, "48ff74a1-0000-1000-800c-00000000000c", "0000:0c:00.0"), (1, "48ff74a1-0000-1000-8041-000000000041", "0000:41:00.0"), (2, "48ff74a1-0000-1000-80c1-000000000c1c", "0000:c1:00.0")]


def test_amd_smi_text_fallback_reads_bdf_and_uuid() -> None:
    text = ("GPU: 0\n    BDF: 0000:c1:00.0\n    UUID: 48ff74a1-0000-1000-80c1-000000000c1c\n    KFD_ID: 1\n\n"
            "GPU: 1\n    BDF: 0000:0c:00.0\n    UUID: 48ff74a1-0000-1000-800c-00000000000c\n")
    got = gpus_mod.numbered(gpus_mod._amd_smi_list(text))
    assert [(g.index, g.uuid) for g in got] == [(0, "48ff74a1-0000-1000-800c-00000000000c"), (1, "48ff74a1-0000-1000-80c1-000000000c1c")]


def test_render_node_from_sysfs(tmp_path: Path) -> None:
    drm = tmp_path / "0000:0c:00.0" / "drm"
    (drm / "card1").mkdir(parents=True)
    (drm / "renderD129").mkdir()
    assert gpus_mod._render_node("0000:0c:00.0", str(tmp_path)) == "/dev/dri/renderD129"
    assert gpus_mod._render_node("0000:41:00.0", str(tmp_path)) == ""


def test_doctor_lists_every_gpu_by_pci_position_and_uuid(nv: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    from lassi_batch.batch.worker import node_gpus

    assert node_gpus("cuda") == ["GPU-aaaa", "GPU-bbbb", "GPU-dddd", "GPU-cccc"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-dddd,1")  # Slurm may name GPUs either way
    assert node_gpus("cuda") == ["GPU-dddd", "GPU-bbbb"]


# ------------------------------------------------------------------ pinning by identity


def test_the_workers_pin_wins_over_the_studys_device() -> None:
    env = {"LASSI_GPU_UUID": "GPU-dddd", "CUDA_VISIBLE_DEVICES": "GPU-dddd"}
    assert pinned_device("cuda", "0", env) == "GPU-dddd"
    assert pinned_device("cuda", "", env) == "GPU-dddd"
    assert pinned_device("hip", "1", {"LASSI_GPU_UUID": "48ff74a1-0000-1000-8041-000000000041"}) == "0"  # within ROCR_VISIBLE_DEVICES=<UUID>
    assert pinned_device("cpu", "", env) == ""
    assert pinned_device("cuda", "2", {}) == "2"


@pytest.mark.parametrize("uuid", [u for u, _, _ in NV_GPUS])
def test_meter_opens_the_pinned_uuid_whatever_the_listing_order(nv: ModuleType, uuid: str) -> None:
    env = {"LASSI_GPU_UUID": uuid, "CUDA_VISIBLE_DEVICES": uuid}
    platform = PlatformConfig(kind="cuda", device=pinned_device("cuda", "0", env))
    m = open_meter("nvml", platform, env=env)
    try:
        assert m.device_id == uuid
        assert ("ByUUID", uuid) in nv.STATE.calls
    finally:
        m.close()


def test_amd_levels_pin_by_rocr_uuid(amd: ModuleType) -> None:
    env = {"LASSI_GPU_UUID": "48ff74a1-0000-1000-80c1-000000000c1c", "ROCR_VISIBLE_DEVICES": "48ff74a1-0000-1000-80c1-000000000c1c"}
    platform = PlatformConfig(kind="hip", device=pinned_device("hip", "", env))
    m = open_meter("amdsmi", platform, env=env)
    try:
        assert m.device_id == "48ff74a1-0000-1000-80c1-000000000c1c"
    finally:
        m.close()
    found, _ = discover("hip")
    gpu, _ = resolve_gpu(program_levels("hip", "0", env), found)
    assert gpu.uuid == "48ff74a1-0000-1000-80c1-000000000c1c"


# ------------------------------------------------------------------ the sandbox's device nodes

NV_NODES = ["/dev/nvidia-caps", "/dev/nvidia-modeset", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia0",
            "/dev/nvidia1", "/dev/nvidia2", "/dev/nvidia3", "/dev/nvidiactl"]


def _dev_binds(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "--dev-bind"]


def test_sandbox_passes_only_the_pinned_gpus_node_and_the_control_nodes(nv: ModuleType, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from lassi_batch.sandbox import bwrap
    from lassi_batch.system.gpus import device_nodes

    monkeypatch.setattr(bwrap, "gpu_nodes", lambda kind: list(NV_NODES) if kind == "cuda" else [])
    found, _ = discover("cuda")
    gpu = next(g for g in found if g.uuid == "GPU-bbbb")  # second in PCI order, NVML index 2, minor 2
    only = device_nodes(gpu, "cuda")
    assert only == ["/dev/nvidia2"]
    argv, _ = bwrap.BwrapRunner("cuda", gpu_only=only).bwrap_argv(tmp_path, {})
    assert _dev_binds(argv) == ["/dev/nvidia-caps", "/dev/nvidia-modeset", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools",
                                "/dev/nvidia2", "/dev/nvidiactl"]
    argv, _ = bwrap.BwrapRunner("cuda").bwrap_argv(tmp_path, {})  # not pinned: every GPU
    assert _dev_binds(argv) == NV_NODES


def test_unknown_node_passes_every_gpu(nv: ModuleType) -> None:
    from lassi_batch.system.gpus import device_nodes

    assert device_nodes(GpuInfo("GPU-x", "00000000:1B:00.0"), "cuda") is None
    assert device_nodes(GpuInfo("GPU-x", "00000000:1B:00.0", minor=1, mig_uuids=("MIG-1",)), "cuda") is None
    assert device_nodes(GpuInfo("u", "0000:0c:00.0", render_node="/dev/dri/renderD129"), "hip") == ["/dev/dri/renderD129"]
    assert device_nodes(GpuInfo("u", "0000:0c:00.0"), "hip") is None


def test_sandbox_opens_up_dev_dri_to_pass_one_amd_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lassi_batch.sandbox import bwrap

    dri = tmp_path / "dri"
    (dri / "by-path").mkdir(parents=True)
    for n in ("card0", "card1", "renderD128", "renderD129"):
        (dri / n).touch()
    monkeypatch.setattr(bwrap, "DRI", str(dri))
    monkeypatch.setattr(bwrap, "gpu_nodes", lambda kind: ["/dev/kfd", str(dri)] if kind == "hip" else [])
    work = tmp_path / "work"
    work.mkdir()
    argv, _ = bwrap.BwrapRunner("hip", gpu_only=[str(dri / "renderD129")]).bwrap_argv(work, {})
    assert _dev_binds(argv) == ["/dev/kfd", str(dri / "renderD129")]
    argv, _ = bwrap.BwrapRunner("hip").bwrap_argv(work, {})
    assert _dev_binds(argv) == ["/dev/kfd", str(dri)]

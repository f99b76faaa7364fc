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


# ------------------------------------------------------------------ the load check (pure verdict)

from lassi_batch.core.errors import GpuMismatch  # noqa: E402
from lassi_batch.power.loadcheck import Reading, combine, judge_load  # noqa: E402

FOUR = [GpuInfo(u, b, index=i) for i, (u, b, _) in enumerate(sorted(NV_GPUS, key=lambda g: g[1]))]
IDLE = {g.uuid: Reading(0.0, 70.0) for g in FOUR}


def _with(**busy: Reading) -> dict[str, Reading]:
    return {**IDLE, **{k.replace("_", "-"): v for k, v in busy.items()}}


def test_verdict_passes_when_the_pinned_gpu_alone_rises() -> None:
    v = judge_load(FOUR[1], FOUR, IDLE, _with(GPU_bbbb=Reading(100.0, 230.0)))
    assert v.ok and v.rose == ["GPU-bbbb"]
    v = judge_load(FOUR[1], FOUR, IDLE, _with(GPU_bbbb=Reading(None, 120.0)))  # power alone is enough
    assert v.ok


def test_verdict_fails_when_the_load_lands_on_another_gpu() -> None:
    v = judge_load(FOUR[1], FOUR, IDLE, _with(GPU_dddd=Reading(100.0, 230.0)))
    assert not v.ok and v.rose == ["GPU-dddd"]
    assert "did not raise" in v.reason and "GPU-bbbb" in v.reason and "showed on GPU-dddd" in v.reason


def test_verdict_fails_when_nothing_rises_or_several_do() -> None:
    v = judge_load(FOUR[0], FOUR, IDLE, IDLE)
    assert not v.ok and "no GPU's readings rose" in v.reason
    v = judge_load(FOUR[0], FOUR, IDLE, _with(GPU_aaaa=Reading(100.0, 200.0), GPU_cccc=Reading(95.0, 210.0)))
    assert not v.ok and "also raised GPU-cccc" in v.reason


def test_verdict_small_wobbles_are_not_a_rise() -> None:
    v = judge_load(FOUR[0], FOUR, IDLE, _with(GPU_aaaa=Reading(100.0, 200.0), GPU_cccc=Reading(10.0, 78.0)))
    assert v.ok


def test_verdict_fails_when_the_runtime_names_another_pci_address() -> None:
    busy = _with(GPU_aaaa=Reading(100.0, 200.0))
    assert judge_load(FOUR[0], FOUR, IDLE, busy, reported_pci="0000:1b:00.0").ok  # CUDA's spelling of 1B
    v = judge_load(FOUR[0], FOUR, IDLE, busy, reported_pci="0000:41:00.0")
    assert not v.ok and "PCI 0000:41:00.0" in v.reason


def test_verdict_unreadable_pinned_gpu_is_a_failure_not_a_pass() -> None:
    blank = {g.uuid: Reading() for g in FOUR}
    v = judge_load(FOUR[0], FOUR, blank, blank)
    assert not v.ok and "cannot be checked" in v.reason


def test_combine_means_before_and_peaks_during() -> None:
    s = [{"a": Reading(0.0, 70.0)}, {"a": Reading(None, 80.0)}, {"a": Reading(50.0, float("nan"))}]
    assert combine(s, "mean")["a"] == Reading(25.0, 75.0)
    assert combine(s, "max")["a"] == Reading(50.0, 80.0)


# ------------------------------------------------------------------ the load check through the sandbox

SPIN = ("spin.cpp", r"""#include <chrono>
#include <cstdlib>
int main(int argc, char **argv) {
  double s = argc > 1 ? std::atof(argv[1]) : 1.0;
  volatile double x = 0;
  auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < s) x = x + 1;
  return 0;
}
""")


def _process_gpus(nv: ModuleType, wrong: bool) -> list:
    """Four GPUs listed out of PCI order whose power follows programs by CUDA_VISIBLE_DEVICES.
    `wrong`: the driver maps GPU-bbbb's UUID to GPU-dddd's silicon and back (the silent failure)."""
    swap = {"GPU-bbbb": "GPU-dddd", "GPU-dddd": "GPU-bbbb"} if wrong else {}
    return [nv.ProcessGpu(u, b, minor=m, visible=swap.get(u, u), idle_w=70.0, scan_s=0.03) for u, b, m in NV_GPUS]


def _stop(gpus: list) -> None:
    for g in gpus:
        g._stop_scan.set()


@pytest.mark.parametrize("wrong", [False, True], ids=["right GPU", "wrong GPU"])
def test_load_check_through_the_sandbox(nv: ModuleType, wrong: bool) -> None:
    from lassi_batch.pipeline.pinning import check_gpu, pin_trial
    from lassi_batch.sandbox.toolchain import make_runner
    from lassi_batch.core.config import ContainerConfig

    fakes = _process_gpus(nv, wrong)
    nv.configure(fakes)
    try:
        env = {"LASSI_GPU_UUID": "GPU-bbbb", "CUDA_VISIBLE_DEVICES": "GPU-bbbb"}
        pin = pin_trial(PlatformConfig(kind="cuda", compiler="g++ -O1", device="0"), env)
        assert pin.gpu is not None and pin.gpu.uuid == "GPU-bbbb" and pin.platform.device == "GPU-bbbb"
        assert pin.nodes == ["/dev/nvidia2"]
        runner = make_runner(ContainerConfig(), "cuda", gpu_only=pin.nodes)
        if not wrong:
            v = check_gpu(pin, runner, source=SPIN, seconds=1.0)
            assert v.ok and v.rose == ["GPU-bbbb"]
        else:
            with pytest.raises(GpuMismatch) as e:
                check_gpu(pin, runner, source=SPIN, seconds=1.0, tries=2)
            msg = str(e.value)
            assert "GPU-bbbb" in msg and "showed on GPU-dddd" in msg and "\n" not in msg
    finally:
        _stop(fakes)


def test_load_check_reports_a_program_that_cannot_run(nv: ModuleType) -> None:
    from lassi_batch.pipeline.pinning import check_gpu, pin_trial

    fakes = _process_gpus(nv, False)
    nv.configure(fakes)
    try:
        pin = pin_trial(PlatformConfig(kind="cuda", compiler="g++ -O1", device="GPU-aaaa"), {})
        fail = ("fail.cpp", '#include <cstdio>\nint main() { std::printf("FAIL no CUDA device\\n"); return 1; }\n')
        with pytest.raises(GpuMismatch, match="test load failed on GPU-aaaa: FAIL no CUDA device"):
            check_gpu(pin, None, source=fail, seconds=0.2)
    finally:
        _stop(fakes)


# ------------------------------------------------------------------ the UUIDs a measurement records

SLEEPER = r"""#include <cstdio>
#include <unistd.h>
int main() { usleep(600 * 1000); std::printf("PASS\n"); return 0; }
"""


def test_a_measurement_records_the_gpu_measured_and_the_gpu_the_program_saw(nv: ModuleType, tmp_path: Path) -> None:
    import h5py

    from lassi_batch.core.config import MeasureConfig, load_app
    from lassi_batch.pipeline.bench import Bench
    from lassi_batch.pipeline.pinning import pin_trial
    from lassi_batch.store.measurement import read_measurement, write_measurement

    app_dir = tmp_path / "sleeper"
    app_dir.mkdir()
    (app_dir / "main.cpp").write_text(SLEEPER)
    (app_dir / "app.toml").write_text('name = "sleeper"\n[platforms.cuda]\nfiles = ["main.cpp"]\n'
                                      '[run]\nargs = []\ntime_limit_s = 30\n[check]\npass_regex = "^PASS$"\n')
    fakes = _process_gpus(nv, False)
    nv.configure(fakes)
    try:
        env = {"LASSI_GPU_UUID": "GPU-dddd", "CUDA_VISIBLE_DEVICES": "GPU-dddd"}  # third by PCI, NVML index 3
        pin = pin_trial(PlatformConfig(kind="cuda", compiler="g++ -O1", meter="nvml"), env)
        meter = open_meter("nvml", pin.platform, env=env)
        measure = MeasureConfig(repeat=1, settle_timeout_s=8.0, idle_window_s=0.5, post_max_s=4.0, random_delay_s=0.0)
        bench = Bench(load_app(app_dir), pin.platform, measure, [], meter, tmp_path / "work",
                      program_device_id=pin.gpu.key if pin.gpu else "")
        try:
            out = bench.evaluate({}, "source")
        finally:
            meter.close()
        assert out.ran, out.runs
        m = out.measurements[0]
        with h5py.File(tmp_path / "m.h5", "w") as f:
            write_measurement(f.create_group("m"), m)
        with h5py.File(tmp_path / "m.h5", "r") as f:
            back = read_measurement(f["m"])
        assert back.trace.device_id == "GPU-dddd"  # the GPU the meter read
        assert back.attrs["program_device_id"] == "GPU-dddd"  # the GPU the program's sandbox named
        assert back.figures["energy_net_j"] > 0.5 * 150.0 * 0.6  # and the program's load showed on it
    finally:
        _stop(fakes)


# ------------------------------------------------------------------ a trial on a wrongly mapped GPU


def test_a_trial_whose_gpu_fails_the_load_check_stops_before_measuring(nv: ModuleType, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole trial program's path (run_trial): a real study, real HDF5 archive, real sandbox;
    the fake driver runs GPU-bbbb's programs on GPU-dddd."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    from batchkit import write_study

    from lassi_batch.batch.state import read_state
    from lassi_batch.core.config import load_study
    from lassi_batch.pipeline import pinning, session
    from lassi_batch.store.archive import TrialArchive

    study_file = write_study(tmp_path, trials=1)
    text = study_file.read_text().replace('kind = "cpu"', 'kind = "cuda"').replace('meter = "estimate"', 'meter = "nvml"')
    study_file.write_text(text)
    app_toml = tmp_path / "app0" / "app.toml"
    app_toml.write_text(app_toml.read_text().replace("[platforms.cpu]", "[platforms.cuda]"))
    study = load_study(study_file)
    monkeypatch.setattr(session, "check_platform", lambda platform, container: [])  # no /dev/nvidia* here
    monkeypatch.setitem(pinning._LOAD, "cuda", SPIN)  # g++ builds it; no CUDA device to run a kernel on
    monkeypatch.setenv("LASSI_GPU_UUID", "GPU-bbbb")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-bbbb")
    fakes = _process_gpus(nv, True)
    nv.configure(fakes)
    try:
        with pytest.raises(GpuMismatch, match="showed on GPU-dddd"):
            session.run_trial(study, study.apps[0], 0)
    finally:
        _stop(fakes)
    path = session.trial_path(study, "app0", 0)
    state = read_state(path)
    assert state.status == "interrupted" and "GPU pinning check failed" in state.reason
    with TrialArchive.open(path, writable=False) as ar:
        env = ar.environment()
        assert not ar.candidates()  # nothing was measured
        attempt = ar.attempts()[-1]
    assert attempt["gpu_uuid"] == "GPU-bbbb" and attempt["how"] == "interrupted"  # the pinned GPU, not the first
    assert env["gpu_pinning"]["program_gpu"] == "GPU-bbbb" and env["gpu_pinning"]["device_nodes"] == ["/dev/nvidia2"]
    assert env["gpu_check"]["ok"] is False and "GPU-dddd" in env["gpu_check"]["reason"]
    assert [g["uuid"] for g in env["gpus"]] == ["GPU-aaaa", "GPU-bbbb", "GPU-dddd", "GPU-cccc"]


def test_amd_readings_cover_every_gpu_by_uuid(amd: ModuleType) -> None:
    from lassi_batch.power.loadcheck import GpuReadings

    amd.STATE.gpus[1].gfx_activity = 97  # the one on bus 0c, first in PCI order
    amd.STATE.gpus[2].power_w = 300.0
    amd.STATE.gpus[2].gfx_activity = "N/A"
    r = GpuReadings("hip")
    try:
        got = r.read()
        assert [g.uuid for g in r.gpus] == [g.uuid for g in sorted(amd.STATE.gpus, key=lambda g: g.bdf)]
    finally:
        r.close()
    assert got[amd.STATE.gpus[1].uuid] == Reading(97.0, 120.0)
    assert got[amd.STATE.gpus[2].uuid] == Reading(None, 300.0)


def test_unreadable_gpus_stop_the_check_with_a_reason(nv: ModuleType) -> None:
    from lassi_batch.pipeline.pinning import check_gpu, pin_trial

    pin = pin_trial(PlatformConfig(kind="cuda", compiler="g++ -O1", device="GPU-aaaa"), {})

    def broken(kind: str) -> None:
        raise nv.NVMLError_LibraryNotFound()

    with pytest.raises(GpuMismatch, match="the node's GPUs cannot be read"):
        check_gpu(pin, None, source=SPIN, readings=broken)


def test_a_meter_on_another_gpu_than_the_programs_stops_the_check(nv: ModuleType) -> None:
    from lassi_batch.pipeline.pinning import check_gpu, pin_trial

    pin = pin_trial(PlatformConfig(kind="cuda", compiler="g++ -O1", device="1"), {})  # second by PCI: GPU-bbbb
    assert pin.gpu is not None and pin.gpu.uuid == "GPU-bbbb"
    meter = open_meter("nvml", PlatformConfig(kind="cuda"), env={"CUDA_VISIBLE_DEVICES": "1"})
    try:
        assert meter.device_id == "GPU-bbbb"
    finally:
        meter.close()
    with pytest.raises(GpuMismatch, match="the meter reads GPU-cccc but the program sees GPU-bbbb"):
        check_gpu(pin, None, measured="GPU-cccc", source=SPIN)

"""Meters without hardware: device mapping, vendor fakes, RAPL sysfs trees, fallbacks."""

from __future__ import annotations

import importlib.util
import math
import os
import time
import sys
from pathlib import Path
from types import ModuleType

import pytest

from lassi_batch.core.config import PlatformConfig
from lassi_batch.core.errors import MeterError
from lassi_batch.power.base import MeterUnavailable, open_meter, probe_meters
from lassi_batch.system.gpus import GpuInfo, match_device, parse_pci, pci_order, resolve_gpu, visible_devices

FAKES = Path(__file__).parent / "fakes"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_lassi_fake_{name}", FAKES / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


# four GPUs listed in an order that is NOT PCI order (as an NVML index order might be)
DEVS = [
    GpuInfo("GPU-cccc3333-0000-0000-0000-000000000003", "00000000:C1:00.0", "H100"),
    GpuInfo("GPU-aaaa1111-0000-0000-0000-000000000001", "00000000:1B:00.0", "H100",
            mig_uuids=("MIG-aaaa1111-0000-4000-8000-00000000000a",)),
    GpuInfo("GPU-dddd4444-0000-0000-0000-000000000004", "00000000:E1:00.0", "H100"),
    GpuInfo("GPU-bbbb2222-0000-0000-0000-000000000002", "00000000:43:00.0", "H100"),
]


# ------------------------------------------------------------------ device mapping (pure)


def test_parse_pci_accepts_nvml_cuda_and_lspci_spellings() -> None:
    assert parse_pci("00000000:1B:00.0") == parse_pci("0000:1b:00.0") == parse_pci("1b:00.0") == (0, 0x1B, 0, 0)
    assert parse_pci("GPU-1234") is None


def test_pci_order_sorts_by_bus_not_by_listing() -> None:
    assert [d.pci_bus_id[9:11] for d in pci_order(DEVS)] == ["1B", "43", "C1", "E1"]


def test_index_counts_in_pci_order() -> None:
    gpu, notes = resolve_gpu([("CUDA_VISIBLE_DEVICES", "1")], DEVS)
    assert gpu.uuid.startswith("GPU-bbbb2222")  # second by PCI bus, fourth in the listing
    assert notes == []


def test_unset_variable_means_first_gpu_in_pci_order() -> None:
    gpu, _ = resolve_gpu([("CUDA_VISIBLE_DEVICES", None)], DEVS)
    assert gpu.pci_bus_id == "00000000:1B:00.0"


def test_list_picks_its_first_entry() -> None:
    gpu, _ = resolve_gpu([("CUDA_VISIBLE_DEVICES", "3,0")], DEVS)
    assert gpu.uuid.startswith("GPU-dddd4444")


def test_uuid_and_unique_prefix() -> None:
    assert resolve_gpu([("x", "GPU-cccc3333-0000-0000-0000-000000000003")], DEVS)[0].pci_bus_id.endswith("C1:00.0")
    assert resolve_gpu([("x", "GPU-dddd")], DEVS)[0].pci_bus_id.endswith("E1:00.0")
    assert resolve_gpu([("x", "gpu-dddd")], DEVS)[0].pci_bus_id.endswith("E1:00.0")  # case-insensitive


def test_ambiguous_prefix_names_nothing() -> None:
    dev, _ = match_device("GPU-", DEVS)
    assert dev is None


def test_pci_bus_id_in_cuda_spelling() -> None:
    gpu, _ = resolve_gpu([("device", "0000:43:00.0")], DEVS)
    assert gpu.uuid.startswith("GPU-bbbb2222")


def test_mig_instance_maps_to_its_parent_with_a_note() -> None:
    gpu, notes = resolve_gpu([("CUDA_VISIBLE_DEVICES", "MIG-aaaa1111-0000-4000-8000-00000000000a")], DEVS)
    assert gpu.uuid.startswith("GPU-aaaa1111")
    assert notes and "whole GPU" in notes[0]


def test_legacy_mig_syntax_maps_to_parent() -> None:
    gpu, notes = resolve_gpu([("CUDA_VISIBLE_DEVICES", "MIG-GPU-bbbb2222-0000-0000-0000-000000000002/1/0")], DEVS)
    assert gpu.uuid.startswith("GPU-bbbb2222") and notes


def test_invalid_entry_stops_the_list_like_cuda() -> None:
    devs, _ = visible_devices("2,7,0", pci_order(DEVS))
    assert len(devs) == 1 and devs[0].pci_bus_id.endswith("C1:00.0")


def test_empty_visible_devices_is_a_clear_error() -> None:
    with pytest.raises(MeterUnavailable, match="CUDA_VISIBLE_DEVICES=''"):
        resolve_gpu([("CUDA_VISIBLE_DEVICES", "")], DEVS)
    with pytest.raises(MeterUnavailable, match="names no GPU"):
        resolve_gpu([("CUDA_VISIBLE_DEVICES", "9")], DEVS)


def test_amd_levels_chain_rocr_then_hip() -> None:
    # ROCR keeps PCI #3 and #1 (in that order); HIP index 1 within that list is PCI #1
    gpu, _ = resolve_gpu([("ROCR_VISIBLE_DEVICES", "3,1"), ("HIP_VISIBLE_DEVICES", "1")], DEVS)
    assert gpu.pci_bus_id.endswith("43:00.0")


# ------------------------------------------------------------------ NVML through a fake pynvml


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    nv = _load("fake_pynvml")
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return nv


def test_nvml_lists_compute_processes_and_utilisation(fake_nvml: ModuleType) -> None:
    """Through the process-driven fake: a program named like the sandbox's, with this GPU as its
    visible device, is listed; the CPU meters say they cannot tell."""
    import subprocess

    gpu = fake_nvml.ProcessGpu("GPU-aaaa", "00000000:1B:00.0", visible="GPU-aaaa", exe_name="sleep")
    fake_nvml.configure([gpu])
    m = open_meter("nvml", PlatformConfig(kind="cuda"), env={})
    prog = subprocess.Popen(["sleep", "3"], env={**os.environ, "CUDA_VISIBLE_DEVICES": "GPU-aaaa"})
    try:
        deadline = time.monotonic() + 2.0
        while prog.pid not in (m.device_processes() or []) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert prog.pid in m.device_processes() and m.busy_pct() == 100.0
    finally:
        prog.kill()
        prog.wait()
        m.close()
    assert open_meter("estimate", PlatformConfig(kind="cpu"), env={}).device_processes() is None


def _two_gpus(nv: ModuleType, **kw: object) -> list:
    # NVML index 0 sits on the higher bus: index order != PCI order
    return [nv.FakeGpu("GPU-ffff0000-0000-0000-0000-00000000000f", "00000000:C1:00.0", power_mw=130000, average_mw=129000, **kw),
            nv.FakeGpu("GPU-1111aaaa-0000-0000-0000-000000000001", "00000000:1B:00.0", power_mw=75000, average_mw=74000, **kw)]


def test_nvml_opens_the_program_gpu_by_uuid(fake_nvml: ModuleType) -> None:
    fake_nvml.configure(_two_gpus(fake_nvml))
    m = open_meter("nvml", PlatformConfig(kind="cuda"), env={"CUDA_VISIBLE_DEVICES": "0"})
    try:
        assert m.device_id == "GPU-1111aaaa-0000-0000-0000-000000000001"  # PCI-first, not NVML index 0
        assert ("ByUUID", m.device_id) in fake_nvml.STATE.calls
        inst, avg, temp = m.read_power()
        assert inst == pytest.approx(75.0) and avg == pytest.approx(74.0) and temp == 41
        assert m.has_counter
        e1 = m.read_counter_j()
        assert e1 is not None and e1 > 5000
    finally:
        m.close()


def test_nvml_platform_device_overrides_inherited_visibility(fake_nvml: ModuleType) -> None:
    fake_nvml.configure(_two_gpus(fake_nvml))
    m = open_meter("nvml", PlatformConfig(kind="cuda", device="1"), env={"CUDA_VISIBLE_DEVICES": "0"})
    assert m.device_id.startswith("GPU-ffff0000")
    m.close()


def test_nvml_without_counter_or_instant_falls_back_cleanly(fake_nvml: ModuleType) -> None:
    fake_nvml.configure(_two_gpus(fake_nvml, counter_supported=False, instant_supported=False))
    m = open_meter("nvml", PlatformConfig(kind="cuda"), env={})
    assert not m.has_counter and m.read_counter_j() is None
    inst, avg, _ = m.read_power()
    assert math.isnan(inst) and avg == pytest.approx(74.0)
    joined = " ".join(m.notes)
    assert "TotalEnergyConsumption not supported" in joined and "instant power field" in joined
    m.close()


def test_nvml_missing_library_explicit_is_one_line_error(fake_nvml: ModuleType) -> None:
    fake_nvml.configure([], missing_library=True)
    with pytest.raises(MeterError) as ei:
        open_meter("nvml", PlatformConfig(kind="cuda"), env={})
    msg = str(ei.value)
    assert "\n" not in msg and "nvml" in msg and "no NVIDIA driver" in msg


def test_auto_falls_back_to_estimate_and_says_why(fake_nvml: ModuleType) -> None:
    fake_nvml.configure([], missing_library=True)
    m = open_meter("auto", PlatformConfig(kind="cuda"), env={})
    assert m.name == "estimate" and m.estimate
    assert "fell back to 'estimate'" in m.notes[0] and "nvml" in m.notes[0] and "ESTIMATE" in m.notes[0]


def test_probe_meters_lists_every_meter_platform_first(fake_nvml: ModuleType) -> None:
    fake_nvml.configure(_two_gpus(fake_nvml))
    probes = probe_meters("cuda", env={})
    names = [p.name for p in probes]
    assert names[0] == "nvml" and set(names) == {"nvml", "amdsmi", "rapl", "estimate"}
    nv = probes[0]
    assert nv.ok and "GPU-1111aaaa" in nv.detail and "energy counter" in nv.detail
    est = next(p for p in probes if p.name == "estimate")
    assert est.ok and "ESTIMATE" in est.detail


def test_unknown_meter_name() -> None:
    with pytest.raises(MeterError, match="unknown meter"):
        open_meter("wattmeter", PlatformConfig())


# ------------------------------------------------------------------ AMD through a fake amdsmi


@pytest.fixture
def fake_amd(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    mod = _load("fake_amdsmi")
    monkeypatch.setitem(sys.modules, "amdsmi", mod)
    for var in ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)
    import lassi_batch.power.amdsmi as amd

    monkeypatch.setattr(amd, "CHECK_WINDOW_S", 0.1)
    return mod


def _open_amd(env: dict[str, str] | None = None):
    return open_meter("amdsmi", PlatformConfig(kind="hip"), env=env or {})


def test_amd_mi300_reads_current_socket_power_and_trusts_a_good_counter(fake_amd: ModuleType) -> None:
    fake_amd.configure([fake_amd.FakeGpu("0000:c1:00.0", "uuid-b", power_w=300),
                        fake_amd.FakeGpu("0000:0c:00.0", "uuid-a", power_w=150)])
    m = _open_amd()
    try:
        assert m.device_id == "uuid-a"  # first in PCI order
        inst, avg, temp = m.read_power()
        assert inst == 150.0 and math.isnan(avg) and temp == 45
        assert m.has_counter
        assert any("checked at start-up" in n for n in m.notes)
        assert any("average_socket_power is N/A" in n for n in m.notes)
    finally:
        m.close()
    assert "amdsmi_shut_down" in fake_amd.STATE.calls


@pytest.mark.parametrize("style", ["info", "handles"])
def test_amd_lists_the_processes_on_its_gpu_in_either_library_shape(fake_amd: ModuleType, style: str) -> None:
    gpu = fake_amd.FakeGpu("0000:0c:00.0", "uuid-a", processes=[4242, 17], process_style=style, gfx_activity=37)
    fake_amd.configure([gpu])
    m = _open_amd()
    try:
        assert m.device_processes() == [17, 4242] and m.busy_pct() == 37.0
        gpu.processes, gpu.gfx_activity = [], "N/A"
        assert m.device_processes() == [] and m.busy_pct() is None  # N/A: cannot tell, not idle
    finally:
        m.close()


def test_amd_without_a_process_list_cannot_show_isolation(fake_amd: ModuleType) -> None:
    fake_amd.configure([fake_amd.FakeGpu("0000:0c:00.0", "uuid-a", process_style="none")])
    m = _open_amd()
    try:
        assert m.device_processes() is None
    finally:
        m.close()


def test_amd_mi200_average_only_and_old_energy_key(fake_amd: ModuleType) -> None:
    fake_amd.configure([fake_amd.FakeGpu("0000:0c:00.0", "uuid-a", style="mi200", old_energy_key=True, power_w=90)])
    m = _open_amd()
    inst, avg, _ = m.read_power()
    assert math.isnan(inst) and avg == 90.0  # UINT32_MAX current power means unsupported
    assert m.has_counter
    j1 = m.read_counter_j()
    assert j1 is not None and j1 > 0
    m.close()


@pytest.mark.parametrize("fault", [{"counter_scale": 40.0}, {"counter_stuck": True}])
def test_amd_faulty_counter_is_dropped_with_the_evidence(fake_amd: ModuleType, fault: dict) -> None:
    fake_amd.configure([fake_amd.FakeGpu("0000:0c:00.0", "uuid-a", **fault)])
    m = _open_amd()
    assert not m.has_counter and m.read_counter_j() is None
    note = next(n for n in m.notes if "start-up check" in n)
    assert "J vs power x time" in note and "polled power" in note
    m.close()


def test_amd_unsupported_counter(fake_amd: ModuleType) -> None:
    fake_amd.configure([fake_amd.FakeGpu("0000:0c:00.0", "uuid-a", counter_supported=False)])
    m = _open_amd()
    assert not m.has_counter and any("counter not supported" in n for n in m.notes)
    m.close()


def test_amd_hip_visible_devices_selects_by_pci_order(fake_amd: ModuleType) -> None:
    fake_amd.configure([fake_amd.FakeGpu("0000:c1:00.0", "uuid-b"), fake_amd.FakeGpu("0000:0c:00.0", "uuid-a")])
    m = _open_amd({"HIP_VISIBLE_DEVICES": "1"})
    assert m.device_id == "uuid-b"
    m.close()


def test_amd_driver_missing_is_unavailable(fake_amd: ModuleType) -> None:
    fake_amd.configure([], init_fails=True)
    with pytest.raises(MeterError, match="amdsmi_init failed"):
        _open_amd()


def test_amdsmi_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "amdsmi", None)  # import amdsmi -> ImportError
    with pytest.raises(MeterError, match="not installed"):
        _open_amd()


def test_amd_value_parsing() -> None:
    from lassi_batch.power.amdsmi import energy_uj, power_readings, valid_number

    assert math.isnan(valid_number("N/A")) and math.isnan(valid_number(0xFFFFFFFF)) and valid_number(12) == 12.0
    assert power_readings({"socket_power": 500, "current_socket_power": 400}) == (500.0, pytest.approx(float("nan"), nan_ok=True))
    assert energy_uj({"energy_accumulator": 1000, "counter_resolution": 15.3}) == pytest.approx(15300.0)
    assert energy_uj({"power": 10, "counter_resolution": 2.0}) == 20.0


# ------------------------------------------------------------------ RAPL on a fake sysfs tree


def _zone(root: Path, n: int, energy: int, wrap: int | None = 262143328850, name: str | None = None) -> Path:
    d = root / f"intel-rapl:{n}"
    d.mkdir(parents=True)
    (d / "name").write_text((name or f"package-{n}") + "\n")
    (d / "energy_uj").write_text(f"{energy}\n")
    if wrap is not None:
        (d / "max_energy_range_uj").write_text(f"{wrap}\n")
    sub = root / f"intel-rapl:{n}:0"  # a core sub-zone: must not be added
    sub.mkdir()
    (sub / "energy_uj").write_text("999999999\n")
    return d


def test_rapl_sums_packages_and_unwraps_each(tmp_path: Path) -> None:
    from lassi_batch.power.rapl import RaplMeter

    z0 = _zone(tmp_path, 0, 1_000_000, wrap=10_000_000)
    z1 = _zone(tmp_path, 1, 9_500_000, wrap=10_000_000)
    m = RaplMeter.open(PlatformConfig(), {}, root=tmp_path)
    assert "package-0" in m.device and "package-1" in m.device
    assert m.read_counter_j() == 0.0
    (z0 / "energy_uj").write_text("3000000\n")  # +2 J
    (z1 / "energy_uj").write_text("500000\n")  # wrapped: +1 J
    assert m.read_counter_j() == pytest.approx(3.0)
    assert m.has_counter and m.estimate is False


def test_rapl_power_is_derived_from_the_counter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lassi_batch.power.rapl as rapl

    z0 = _zone(tmp_path, 0, 0)
    m = rapl.RaplMeter.open(PlatformConfig(), {}, root=tmp_path)
    clock = iter([10.0, 10.5])
    monkeypatch.setattr(rapl.time, "monotonic", lambda: next(clock))
    assert math.isnan(m.read_power()[0])
    (z0 / "energy_uj").write_text("25000000\n")  # 25 J in 0.5 s
    inst, avg, temp = m.read_power()
    assert inst == pytest.approx(50.0) and math.isnan(avg) and math.isnan(temp)


def test_rapl_root_only_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lassi_batch.power.rapl as rapl

    _zone(tmp_path, 0, 0)

    def denied(p: Path) -> float:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(rapl, "_read_number", denied)
    with pytest.raises(MeterUnavailable, match="root only"):
        rapl.RaplMeter.open(PlatformConfig(), {}, root=tmp_path)


def test_rapl_absent(tmp_path: Path) -> None:
    from lassi_batch.power.rapl import RaplMeter

    with pytest.raises(MeterUnavailable, match="no RAPL package zones"):
        RaplMeter.open(PlatformConfig(), {}, root=tmp_path / "nothing")


# ------------------------------------------------------------------ estimate


def test_cpu_model_energy() -> None:
    from lassi_batch.power.estimate import cpu_model_energy

    gross, net = cpu_model_energy(cpu_s=4.0, runtime_s=2.0, cpu_watts=150, idle_watts=50, ncpu=4)
    assert net == pytest.approx(100.0) and gross == pytest.approx(200.0)


def test_read_busy_s_parses_proc_stat(tmp_path: Path) -> None:
    import os

    from lassi_batch.power.estimate import read_busy_s

    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\n")
    busy, total = read_busy_s(stat)
    hz = os.sysconf("SC_CLK_TCK")
    assert busy == pytest.approx(150 / hz) and total == pytest.approx(1000 / hz)
    assert read_busy_s(tmp_path / "missing") is None


def test_estimate_meter_is_marked_estimate() -> None:
    m = open_meter("estimate", PlatformConfig(cpu_watts=200, idle_watts=40), env={})
    assert m.estimate and m.name == "estimate"
    assert any("ESTIMATE" in n for n in m.notes)
    assert "200W/40W" in m.device_id


def test_amd_device_state_reads_temperature_clock_and_power_limit(fake_amd: ModuleType) -> None:
    fake_amd.configure([fake_amd.FakeGpu("0000:0c:00.0", "uuid-a", power_w=150)])
    m = _open_amd()
    try:
        assert m.device_state() == {"temperature_c": 45.0, "sm_clock_mhz": 2100.0, "power_limit_w": 750.0}
    finally:
        m.close()
    fake_amd.configure([fake_amd.FakeGpu("0000:0c:00.0", "uuid-a", power_w=150, clock_mhz=None, edge_temp="N/A")])
    m = _open_amd()
    try:
        s = m.device_state()
        assert math.isnan(s["sm_clock_mhz"]) and s["power_limit_w"] == 750.0
        assert s["temperature_c"] == 60.0  # no edge sensor: the hotspot one
    finally:
        m.close()

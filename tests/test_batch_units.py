"""Pieces of the batch layer that need no cluster: the per-GPU lock, sbatch settings, job-id
parsing, GPU discovery for pinning, the container command lines and the Apptainer definition."""

from __future__ import annotations

import importlib.util
import multiprocessing as mp
import os
import re
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from lassi_batch.batch import slurm
from lassi_batch.batch.manifest import TrialRef
from lassi_batch.batch.submit import container_lines
from lassi_batch.batch.worker import node_gpus
from lassi_batch.core.config import SlurmConfig, load_study
from lassi_batch.core.errors import ConfigError
from lassi_batch.system.devlock import build_hold, device_key, measurement_lock, run_hold

REPO = Path(__file__).resolve().parents[1]


def _hold(folder: str, key: str, ready, seconds: float) -> None:
    with measurement_lock(key, Path(folder)):
        ready.set()
        time.sleep(seconds)


def test_measurement_lock_serialises_one_device_and_records_the_wait(tmp_path):
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    p = ctx.Process(target=_hold, args=(str(tmp_path), "GPU-abc", ready, 1.0))
    p.start()
    assert ready.wait(10)
    with measurement_lock("GPU-abc", tmp_path) as hold:
        assert hold.wait_s > 0.3  # it had to wait for the other process's measurement
    p.join()
    with measurement_lock("GPU-other", tmp_path) as free:
        assert free.wait_s < 0.5


def _kill_holder_then_measure(target, folder: Path, key: str, *extra) -> float:
    """Start a process holding a lock, SIGKILL it, and time a measurement lock taken after."""
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    p = ctx.Process(target=target, args=(str(folder), key, ready, 60.0, *extra))
    p.start()
    assert ready.wait(10)
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    t0 = time.monotonic()
    with measurement_lock(key, folder):
        pass
    return time.monotonic() - t0


def test_lock_of_a_killed_holder_is_released_by_the_kernel(tmp_path):
    assert _kill_holder_then_measure(_hold, tmp_path, "GPU-x") < 5


def _busy(folder: str, key: str, ready, seconds: float, log, hold_of=build_hold) -> None:
    with hold_of(key, Path(folder)) as hold:
        log.put(("busy", time.monotonic(), hold.wait_s))
        ready.set()
        time.sleep(seconds)


def _unmeasured_run(folder: str, key: str, ready, seconds: float, log) -> None:
    _busy(folder, key, ready, seconds, log, hold_of=run_hold)


def _measure(folder: str, key: str, ready, seconds: float, log) -> None:
    with measurement_lock(key, Path(folder)) as hold:
        log.put(("measure", time.monotonic(), hold.wait_s))
        ready.set()
        time.sleep(seconds)
    log.put(("measure_done", time.monotonic(), 0.0))


def _order_of_holds(folder: Path, key: str, shared) -> list[tuple[str, float, float]]:
    """Shared hold 1 (1.5 s), then a measurement (1 s) that must wait for it, then shared hold 2
    asked for while the measurement waits; the events in the order they happened."""
    ctx = mp.get_context("fork")
    log = ctx.Queue()
    r1, w, r2 = ctx.Event(), ctx.Event(), ctx.Event()
    first = ctx.Process(target=shared, args=(str(folder), key, r1, 1.5, log))
    first.start()
    assert r1.wait(10)
    meas = ctx.Process(target=_measure, args=(str(folder), key, w, 1.0, log))
    meas.start()
    time.sleep(0.4)  # the measurement now waits for shared hold 1
    second = ctx.Process(target=shared, args=(str(folder), key, r2, 0.1, log))
    second.start()
    for p in (first, meas, second):
        p.join(30)
        assert p.exitcode == 0
    return sorted((log.get(timeout=5) for _ in range(4)), key=lambda e: e[1])


@pytest.mark.parametrize("key, shared", [("cpu", _busy), ("GPU-x", _unmeasured_run), ("cpu", _unmeasured_run)],
                         ids=["cpu-build", "gpu-unmeasured-run", "cpu-unmeasured-run"])
def test_a_measurement_waits_for_unmeasured_work_and_holds_new_work_back(tmp_path, key, shared):
    """Unmeasured work on the measured device (a build on a CPU-measured node; any program run on
    a GPU) and a measurement exclude each other, and a waiting measurement keeps later work from
    starting before it (a stream of probe runs would starve it otherwise)."""
    events = _order_of_holds(tmp_path, key, shared)
    assert [e[0] for e in events] == ["busy", "measure", "measure_done", "busy"]
    assert events[1][2] > 0.8  # the measurement waited for shared hold 1 to end
    assert events[3][2] > 0.8  # shared hold 2 waited for the measurement, though hold 1 was shared


def test_builds_overlap_gpu_measurements_and_killed_holders_release(tmp_path):
    ctx = mp.get_context("fork")
    log = ctx.Queue()
    ready = ctx.Event()
    p = ctx.Process(target=_busy, args=(str(tmp_path), "GPU-x", ready, 60.0, log))
    p.start()
    assert ready.wait(10)
    with measurement_lock("GPU-x", tmp_path) as hold:  # a GPU is measured while the host builds
        assert hold.wait_s < 0.5
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    assert _kill_holder_then_measure(_busy, tmp_path, "cpu", log) < 5
    assert _kill_holder_then_measure(_unmeasured_run, tmp_path, "GPU-y", log) < 5


@pytest.mark.parametrize("hold_of, key", [(build_hold, "cpu"), (run_hold, "GPU-x")])
def test_a_measurement_inside_a_shared_hold_is_refused_not_deadlocked(tmp_path, hold_of, key):
    with hold_of(key, tmp_path):
        with pytest.raises(RuntimeError, match="shared hold"):
            with measurement_lock(key, tmp_path):
                pass
    with measurement_lock(key, tmp_path) as hold:  # released: no longer refused
        assert hold.wait_s < 5


def test_device_key_prefers_the_pinned_gpu(monkeypatch):
    monkeypatch.delenv("LASSI_GPU_UUID", raising=False)
    assert device_key("cpu") == "cpu"
    assert device_key("cuda", "1") == "1"
    monkeypatch.setenv("LASSI_GPU_UUID", "GPU-1234")
    assert device_key("cuda", "1") == "GPU-1234"
    assert device_key("cpu") == "cpu"  # RAPL measures the whole package: one lock per node


@pytest.mark.parametrize("spec, minutes", [("30", 30), ("02:00:00", 120), ("1-00:00:00", 1440), ("1-2", 1560),
                                           ("10:30", 11), ("0:0:30", 1)])
def test_slurm_time_to_minutes(spec, minutes):
    assert slurm.time_minutes(spec) == minutes


def test_extra_sbatch_lines_become_parameters():
    assert slurm.extra_parameters(["--constraint=a100", "#SBATCH --reservation big", "--requeue"]) == {
        "constraint": "a100", "reservation": "big", "requeue": True}
    with pytest.raises(ConfigError, match="not a long sbatch option"):
        slurm.extra_parameters(["-p gpu"])


def test_job_spec_and_script_carry_the_study_settings(tmp_path):
    cfg = SlurmConfig(partition="gpu-a100", account="proj1", qos="high", gres="gpu:4", time="04:00:00",
                      exclusive=True, cpus_per_task=16, mem_gb=128, extra=["--constraint=a100"],
                      setup=["module load cuda"], signal_delay_s=120)
    spec = slurm.JobSpec.of(cfg, "lassi-x", trials_per_node=4, array_parallelism=8)
    text = slurm.sbatch_script(spec, tmp_path / "%j", 10)
    for line in ("--partition=gpu-a100", "--account=proj1", "--qos=high", "--gres=gpu:4", "--time=240",
                 "--exclusive", "--cpus-per-task=16", "--mem=128GB", "--constraint=a100", "--array=0-9%8",
                 "--signal=USR2@120"):
        assert f"#SBATCH {line}" in text
    assert "module load cuda" in text and "submitit.core._submit" in text


def test_split_respects_max_array_size():
    assert slurm.split(list(range(9)), 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]


def test_task_state_found_inside_a_pending_range():
    states = {"12_[3-7%2]": "PENDING", "12_1": "RUNNING", "12_0": "COMPLETED"}
    assert slurm._expand(states, "12_5") == "PENDING"
    assert slurm._expand(states, "12_1") == "RUNNING"
    assert slurm._expand(states, "12_9") == ""
    assert slurm.is_active("PENDING") and slurm.is_active("RUNNING") and not slurm.is_active("COMPLETED")
    assert not slurm.is_active("CANCELLED by 0") and not slurm.is_active("")


def test_pinning_lists_gpus_in_pci_order_after_the_schedulers_selection(monkeypatch):
    """Through the fake pynvml (the real library's API): Slurm gave this job GPUs 1 and 2."""
    spec = importlib.util.spec_from_file_location("_lassi_fake_pynvml_batch", REPO / "tests" / "fakes" / "fake_pynvml.py")
    nv = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = nv
    spec.loader.exec_module(nv)
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    # NVML index order differs from PCI order on purpose
    nv.configure([nv.FakeGpu("GPU-cccc", "00000000:C1:00.0"), nv.FakeGpu("GPU-aaaa", "00000000:1B:00.0"),
                  nv.FakeGpu("GPU-bbbb", "00000000:41:00.0")])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,2")  # PCI positions, as CUDA_DEVICE_ORDER=PCI_BUS_ID counts
    assert node_gpus("cuda") == ["GPU-bbbb", "GPU-cccc"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert node_gpus("cuda") == ["GPU-aaaa", "GPU-bbbb", "GPU-cccc"]
    assert node_gpus("cpu") == []


def test_container_lines_isolate_each_build_and_run(tmp_path):
    study = load_study(REPO / "datasets" / "examples" / "demo.toml")
    study = replace(study, platform=replace(study.platform, kind="cpu"),
                    container=replace(study.container, runtime="apptainer", image="/img/lassi.sif"))
    build, run = container_lines(study, TrialRef.of("heat2d", "cpu", 0))
    for line in (build, run):
        assert line.startswith("apptainer exec --containall --cleanenv --no-home ")
        assert "--net --network none --bind " in line
        assert line.count("--bind ") == 1  # only the run's own folder
        assert "/img/lassi.sif" in line
    assert "g++" in build and "./app.exe 1024 300" in run
    gpu = replace(study, platform=replace(study.platform, kind="cuda"))
    gpu = replace(gpu, apps=[replace(a, app=replace(a.app, platforms={**a.app.platforms, "cuda": a.app.platforms["cpu"]}))
                             for a in gpu.apps])
    b, r = container_lines(gpu, TrialRef.of("heat2d", "cuda", 0))
    assert b.startswith("apptainer exec --nv ") and "--env 'CUDA_VISIBLE_DEVICES=<GPU UUID>'" in r


def test_apptainer_definition_takes_its_base_from_a_build_argument():
    text = (REPO / "containers" / "Apptainer.def").read_text()
    sections = re.findall(r"^%(\w+)", text, re.M)
    assert sections[:1] == ["arguments"] or "arguments" in sections
    assert {"arguments", "files", "post", "environment", "runscript", "test"} <= set(sections)
    assert re.search(r"^From: \{\{ BASE \}\}$", text, re.M)
    args = text.split("%arguments", 1)[1].split("%", 1)[0]
    assert re.search(r"BASE=nvidia/cuda:\S+-devel", args)
    assert "--build-arg BASE=rocm/" in text  # the ROCm build is documented in the file itself
    post = text.split("%post", 1)[1].split("\n%", 1)[0]
    assert "pip install" in post and "/opt/src/lassi-batch" in post
    assert "g++" in post and "python3" in post


@pytest.mark.parametrize("site", sorted(p.name for p in (REPO / "slurm" / "sites").glob("*.toml")))
def test_site_examples_are_valid_slurm_tables(site, tmp_path):
    text = (REPO / "slurm" / "sites" / site).read_text()
    demo = (REPO / "datasets" / "examples" / "demo.toml").read_text()
    demo = re.sub(r"\n\[slurm\].*?(?=\n\[|\Z)", "\n", demo, flags=re.S)  # the site's table replaces the demo's
    study = tmp_path / "s.toml"
    study.write_text(demo.replace("[platform]", text + "\n[platform]", 1))
    for app in ("heat2d", "nbody-forces", "rowstats", "transcripts"):
        (tmp_path / app).symlink_to(REPO / "datasets" / "examples" / app)
    cfg = load_study(study)
    assert cfg.slurm.trials_per_node >= 1 and slurm.JobSpec.of(cfg.slurm, "x", 1, 1).params["time"] > 0


def test_openmp_threads_come_from_the_allocation_unless_set():
    from lassi_batch.batch.worker import omp_threads
    assert omp_threads({"SLURM_JOB_ID": "7", "SLURM_CPUS_PER_TASK": "4"}) == "4"
    assert omp_threads({"SLURM_JOB_ID": "7", "SLURM_CPUS_PER_TASK": "4", "OMP_NUM_THREADS": "2"}) == ""  # the user's wins
    assert omp_threads({"SLURM_CPUS_PER_TASK": "4"}) == ""  # not a Slurm job
    assert omp_threads({"SLURM_JOB_ID": "7"}) == ""  # no CPUs given: OpenMP's own default

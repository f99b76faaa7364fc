"""Build, run and measure one code version: the only place the pipeline touches toolchain and meter."""

from __future__ import annotations

import math
import random
import shutil
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import fmean
from typing import Any

from ..core.config import EXE_NAME, AppConfig, MeasureConfig, PlatformConfig
from ..power import protocol
from ..power.base import Meter
from ..power.trace import Measurement
from ..sandbox.toolchain import BuildResult, RunResult, app_limits, build, fresh_run_folder, prepare_workdir, run_app
from ..screening.differential import PROBE_ENV, Probe
from ..screening.processes import Leftover, reap_leftovers
from ..screening.side_effects import snapshot, written
from ..system.devlock import LockHold, build_hold, device_key, measurement_lock, run_hold

DEFAULT_FIGURE = "energy_net_j"  # see power.energy.FIGURES: the project's default net energy


@dataclass
class Outcome:
    """What building and running a version produced."""

    build: BuildResult
    runs: list[RunResult] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    work_counts: dict[str, int] = field(default_factory=dict)  # from the first run that wrote them
    leftovers: list[list[Leftover]] = field(default_factory=list)  # per run: processes that outlived it
    written: list[list[str]] = field(default_factory=list)  # per run: files it created or changed in its folder

    @property
    def built(self) -> bool:
        return self.build.ok

    @property
    def ran(self) -> bool:
        return bool(self.runs) and all(r.ok for r in self.runs)

    @property
    def first_run(self) -> RunResult | None:
        return self.runs[0] if self.runs else None

    def figure(self, name: str) -> float | None:
        vals = [m.figures.get(name) for m in self.measurements]
        vals = [v for v in vals if v is not None]
        return fmean(vals) if vals and self.ran else None

    def run_record(self) -> dict[str, Any]:
        """What screening needs of every measured run: its output, exit status and cost."""
        return {
            "stdouts": [r.stdout for r in self.runs],
            "returncodes": [r.returncode for r in self.runs],
            "cpu_s": [r.cpu_s for r in self.runs],
            "wall_s": [r.wall_s for r in self.runs],
            "leftovers": [[vars(p) for p in lo] for lo in self.leftovers],
            "written": [list(w) for w in self.written],
        }

    def summary(self) -> dict[str, Any]:
        return {
            "energy_j": self.figure(DEFAULT_FIGURE),
            "runtime_s": self.figure("runtime_s"),
            "power_w": self.figure("power_avg_w"),
        }


def _leftovers(exe: Path, run: RunResult) -> list[Leftover]:
    """Processes that outlived a run: those the sandbox ended (it counts them), and any still
    running the program or sitting in the run's folder (the unsandboxed runner), killed here."""
    found = reap_leftovers(exe, Path(run.workdir) if getattr(run, "workdir", "") else exe.parent)
    found += [Leftover(0, 0.0, "sandbox") for _ in range(max(0, getattr(run, "leftovers", 0) - len(found)))]
    return found


@dataclass
class ProbeRun:
    """An unmeasured differential run."""

    run: RunResult
    leftovers: list[Leftover] = field(default_factory=list)
    work_counts: dict[str, int] = field(default_factory=dict)
    again: RunResult | None = None  # a second run in the same folder (results reused across runs?)
    written: list[str] = field(default_factory=list)  # files the (first) run created or changed in its folder

    def to_dict(self) -> dict[str, Any]:
        r = self.run
        d = {"stdout": r.stdout, "returncode": r.returncode, "error": r.error, "cpu_s": r.cpu_s,
             "wall_s": r.wall_s, "timed_out": r.timed_out, "leftovers": [vars(p) for p in self.leftovers],
             "work_counts": dict(self.work_counts), "written": list(self.written)}
        if "kernel_busy_ns" in self.work_counts:  # the GPU time its kernels took (CUPTI)
            d["gpu_s"] = self.work_counts["kernel_busy_ns"] / 1e9
        if self.again is not None:
            a = self.again
            d["again"] = {"stdout": a.stdout, "returncode": a.returncode, "error": a.error, "cpu_s": a.cpu_s,
                          "wall_s": a.wall_s}
        return d


@dataclass
class Confirmation:
    """Interleaved re-measurement of two built versions (A = source, B = candidate)."""

    a: Outcome
    b: Outcome
    order: list[str] = field(default_factory=list)  # "A"/"B" in the order they ran

    @property
    def ok(self) -> bool:
        return self.a.ran and self.b.ran

    def energies(self, side: str, name: str = DEFAULT_FIGURE) -> list[float]:
        out = self.a if side == "A" else self.b
        return [float(m.figures.get(name, math.nan)) for m in out.measurements]


@dataclass
class Bench:
    app: AppConfig
    platform: PlatformConfig
    measure: MeasureConfig
    args: list[str]
    meter: Meter
    workroot: Path
    runner: Any = None
    counter_lib: Path | None = None  # CUPTI work counter (CUDA on the host only)
    rng: random.Random = field(default_factory=random.Random)  # random delays between repeats
    lock_wait_s: float = 0.0  # total wait for the device's measurement lock (trials sharing a node)
    program_device_id: str = ""  # UUID of the GPU the program sees (its sandbox's visible devices)

    def _build(self, files: dict[str, str], tag: str) -> tuple[Path, BuildResult]:
        wd = self.workroot / tag
        if wd.exists():
            shutil.rmtree(wd)  # our own scratch folder from an interrupted attempt
        wd.mkdir(parents=True)
        prepare_workdir(self.app, self.platform.kind, wd, overrides=files)
        with self._building():
            return wd, build(self.app, self.platform, wd, runner=self.runner)

    def _building(self) -> AbstractContextManager[LockHold]:
        """A build: waits while another trial measures this node's CPU (a no-op on GPUs)."""
        return build_hold(self._device)

    def _running(self) -> AbstractContextManager[LockHold]:
        """An unmeasured run of a program on the measured device: never inside a measurement."""
        return run_hold(self._device)

    @property
    def _device(self) -> str:
        return device_key(self.platform.kind, self.platform.device)

    def _measure_once(self, wd: Path, index: int, args: list[str] | None = None,
                      files_written: list[list[str]] | None = None) -> tuple[RunResult, Measurement]:
        """One measured run in a fresh copy of `wd`; the files it wrote there go to `files_written`."""
        delay = protocol.repeat_delay(self.rng, self.measure, index)
        argv = self.args if args is None else args
        rd = fresh_run_folder(wd)
        try:
            before = snapshot(rd)
            with measurement_lock(self._device) as hold:
                run, m = protocol.measure_alone(
                    lambda: run_app(self.app, self.platform, wd, argv, runner=self.runner, run_dir=rd),
                    self.meter, self.measure, repeat_index=index,
                )
            if files_written is not None:
                files_written.append(written(before, snapshot(rd)))
        finally:
            shutil.rmtree(rd, ignore_errors=True)
        m.attrs["random_delay_s"] = delay
        m.attrs["lock_wait_s"] = hold.wait_s
        if self.program_device_id:  # next to the trace's device_id, the GPU the meter read
            m.attrs["program_device_id"] = self.program_device_id
        self.lock_wait_s += hold.wait_s
        return run, m

    @property
    def repeats(self) -> int:
        return self.measure.repeats_for(self.platform.kind)

    def evaluate(self, files: dict[str, str], tag: str) -> Outcome:
        """Build `files` in a fresh folder; run (measured) `repeats` times unless the build failed,
        with a random delay before every repeat after the first."""
        wd, b = self._build(files, tag)
        out = Outcome(build=b)
        if not b.ok:
            return out
        for r in range(self.repeats):  # each repeat in a fresh copy of the build folder
            run, m = self._measure_once(wd, r, files_written=out.written)
            m.attrs["phase"] = "select"
            out.runs.append(run)
            out.measurements.append(m)
            out.leftovers.append(_leftovers(wd / EXE_NAME, run))
            if not run.ok:
                break
        if self.counter_lib and out.ran:  # a separate, unmeasured run of the same binary
            with self._running():
                counted = run_app(self.app, self.platform, wd, self.args, runner=self.runner,
                                  count_work=self.counter_lib)
            out.work_counts = counted.work_counts or {}
        return out

    def confirm(self, files_a: dict[str, str], files_b: dict[str, str], tag: str, repeats: int,
                args: list[str] | None = None) -> Confirmation:
        """Build A and B afresh and measure them interleaved, A B A B ..., `repeats` times each, on
        this meter's device, with random delays between runs: drift (a warming GPU, a neighbour's
        load) then affects both alike instead of biasing whichever ran later. `args`: instead of
        the measured arguments (a held candidate re-measured at a larger size)."""
        wd_a, build_a = self._build(files_a, f"{tag}_A")
        wd_b, build_b = self._build(files_b, f"{tag}_B")
        res = Confirmation(Outcome(build=build_a), Outcome(build=build_b))
        if not (build_a.ok and build_b.ok):
            return res
        i = 0
        for r in range(repeats):
            for side, wd, out in (("A", wd_a, res.a), ("B", wd_b, res.b)):
                run, m = self._measure_once(wd, i, args)
                m.attrs.update({"phase": "confirm", "confirm_tag": tag, "confirm_order": i, "confirm_side": side})
                if args is not None:
                    m.attrs["args"] = " ".join(args)
                m.attrs["repeat"] = r
                out.runs.append(run)
                out.measurements.append(m)
                out.leftovers.append(_leftovers(wd / EXE_NAME, run))
                res.order.append(side)
                i += 1
                if not run.ok:
                    return res
        return res

    def executable(self, files: dict[str, str], tag: str) -> Path | None:
        """The built program of `files` (from `evaluate`'s folder, or built again after a resume)."""
        wd = self.workroot / tag
        if (wd / EXE_NAME).is_file():
            return wd / EXE_NAME
        wd = self.workroot / f"{tag}.rebuilt"
        if (wd / EXE_NAME).is_file():
            return wd / EXE_NAME
        if wd.exists():
            shutil.rmtree(wd)
        wd.mkdir(parents=True)
        prepare_workdir(self.app, self.platform.kind, wd, overrides=files)
        with self._building():
            b = build(self.app, self.platform, wd, runner=self.runner)
        return wd / EXE_NAME if b.ok and (wd / EXE_NAME).is_file() else None

    def probe(self, exe: Path, files: dict[str, str], tag: str, probe: Probe, twice: bool = False,
              time_s: float | None = None) -> ProbeRun:
        """One unmeasured run of a built program on an unseen input, in a fresh folder of its own
        (nothing a measured run wrote is there); processes it leaves behind are reported and killed,
        the files it writes there recorded. `twice`: run it again in that same folder, with what
        the first run left in it, so that results kept by the first run show. `time_s`: a time
        limit below the app's (never above it)."""
        pd = self.workroot / f"{tag}.{probe.label}"
        if pd.exists():
            shutil.rmtree(pd)
        prepare_workdir(self.app, self.platform.kind, pd, overrides=files)
        shutil.copy2(exe, pd / EXE_NAME)
        extra = {**PROBE_ENV, **probe.env}
        rd = fresh_run_folder(pd)
        try:
            before = snapshot(rd)
            with self._running():
                limits = app_limits(self.app, self.platform)
                if time_s is not None:
                    limits = replace(limits, time_s=min(limits.time_s, time_s))
                run = run_app(self.app, self.platform, pd, probe.args, runner=self.runner, env_extra=extra,
                              count_work=self.counter_lib, run_dir=rd, limits=limits)
                left = _leftovers(rd / EXE_NAME, run)
                counts = run.work_counts or {}
                wrote = written(before, snapshot(rd))
                again = None
                if twice and run.ok:
                    again = run_app(self.app, self.platform, pd, probe.args, runner=self.runner, env_extra=extra,
                                    run_dir=rd)
                    left += _leftovers(rd / EXE_NAME, again)
        finally:
            shutil.rmtree(rd, ignore_errors=True)
            shutil.rmtree(pd, ignore_errors=True)
        return ProbeRun(run=run, leftovers=left, work_counts=counts, again=again, written=wrote)

    def cleanup(self) -> None:
        shutil.rmtree(self.workroot, ignore_errors=True)

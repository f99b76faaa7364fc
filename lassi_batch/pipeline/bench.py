"""Build, run and measure one code version: the only place the pipeline touches toolchain and meter."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

from ..core.config import AppConfig, MeasureConfig, PlatformConfig
from ..power import protocol
from ..power.base import Meter
from ..power.trace import Measurement
from ..sandbox.toolchain import BuildResult, RunResult, build, prepare_workdir, run_app

DEFAULT_FIGURE = "energy_net_j"  # see power.energy.FIGURES: the project's default net energy


@dataclass
class Outcome:
    """What building and running a version produced."""

    build: BuildResult
    runs: list[RunResult] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    work_counts: dict[str, int] = field(default_factory=dict)  # from the first run that wrote them

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

    def summary(self) -> dict[str, Any]:
        return {
            "energy_j": self.figure(DEFAULT_FIGURE),
            "runtime_s": self.figure("runtime_s"),
            "power_w": self.figure("power_avg_w"),
        }


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

    def evaluate(self, files: dict[str, str], tag: str) -> Outcome:
        """Build `files` in a fresh folder; run (measured) `measure.repeat` times unless the build failed."""
        wd = self.workroot / tag
        if wd.exists():
            shutil.rmtree(wd)  # our own scratch folder from an interrupted attempt
        wd.mkdir(parents=True)
        prepare_workdir(self.app, self.platform.kind, wd, overrides=files)
        b = build(self.app, self.platform, wd, runner=self.runner)
        out = Outcome(build=b)
        if not b.ok:
            return out
        for r in range(self.measure.repeat):  # each repeat in a fresh copy of the build folder
            run, m = protocol.measure(
                lambda: run_app(self.app, self.platform, wd, self.args, runner=self.runner),
                self.meter, self.measure, repeat_index=r,
            )
            out.runs.append(run)
            out.measurements.append(m)
            if not run.ok:
                break
        if self.counter_lib and out.ran:  # a separate, unmeasured run of the same binary
            counted = run_app(self.app, self.platform, wd, self.args, runner=self.runner, count_work=self.counter_lib)
            out.work_counts = counted.work_counts or {}
        return out

    def cleanup(self) -> None:
        shutil.rmtree(self.workroot, ignore_errors=True)

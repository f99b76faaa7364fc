"""`lassi-batch profile`: build one app and measure its energy, no LLM involved.

The same build, run and measurement path the pipeline uses (toolchain.build / run_app and
power.protocol), so a number seen here is the number a trial would record for the source code.
Results go to one HDF5 file (schema `lassi-batch-profile`, measurement groups as in trial files)
and a table; anything modelled rather than measured is labelled ESTIMATE in both.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import shlex
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
from rich.console import Console

from .. import __version__
from ..core.config import AppConfig, MeasureConfig, PlatformConfig, load_app
from ..core.errors import ConfigError, LassiError, ToolchainError
from ..core.paths import ensure_writable_file
from ..power.base import open_meter
from ..power.energy import Summary, summarize
from ..power.plot import plot_measurement
from ..power.protocol import measure_repeats
from ..power.trace import Measurement
from ..sandbox import toolchain
from ..sandbox.toolchain import RunResult
from ..screening.verifier import source_output_problems
from ..store.measurement import write_measurement
from ..store.schema import PROFILE_SCHEMA, SCHEMA_VERSION, child_name, put_text
from ..system.gpus import default_platform_kind
from ..system.devlock import device_key, measurement_lock

# figures summarised over repeats (table and root attributes of the file)
SUMMARY_FIGURES = ("runtime_s", "energy_net_j", "energy_gross_j", "energy_eq4_settled_j", "energy_eq4_paper_j",
                   "energy_instant_net_j", "energy_tail_j", "power_avg_w", "idle_w")


class BuildFailed(LassiError):
    """The app did not compile (exit 1); the message names the build log."""


@dataclass
class ProfileResult:
    app: str
    platform: str
    meter: str
    device: str
    estimate: bool
    args: list[str]
    out: Path
    workdir: Path
    results: list[tuple[RunResult, Measurement]]
    summary: dict[str, Summary]
    plot: Path | None = None
    notes: list[str] = field(default_factory=list)
    check_problems: list[str] = field(default_factory=list)
    """The app's [check] against the successful runs' output (source_output_problems): an error of its description."""

    @property
    def failed_runs(self) -> list[int]:
        return [r for r, (rr, _m) in enumerate(self.results) if not rr.ok]


def detect_platform() -> str:
    """cuda when an NVIDIA GPU is present, hip for an AMD one, else cpu (same rule as doctor)."""
    try:

        return default_platform_kind()
    except Exception:  # doctor unavailable: fall back to device nodes
        pass
    if any(Path("/dev").glob("nvidia[0-9]*")):
        return "cuda"
    if Path("/dev/kfd").exists():
        return "hip"
    return "cpu"


def choose_platform(available: list[str], requested: str | None) -> tuple[str, str]:
    """(platform, note): the requested one, else the machine's GPU kind if the app has it, else cpu."""
    if requested:
        return requested, ""
    kind = detect_platform()
    if kind in available:
        return kind, ""
    if "cpu" in available:
        note = f"no {kind} build in this app; profiling its cpu build" if kind != "cpu" else ""
        return "cpu", note
    return kind, ""


def profile_app(
    app_dir: str | Path | AppConfig,
    *,
    platform: str | None = None,
    repeat: int = 3,
    meter: str | None = None,
    args: str | list[str] | None = None,
    test_size: bool = False,
    out: str | Path | None = None,
    plot: str | Path | None = None,
    compiler: str | None = None,
    measure_cfg: MeasureConfig | None = None,
    platform_cfg: PlatformConfig | None = None,
    log: Callable[[str], None] | None = None,
) -> ProfileResult:
    """Build an app (a folder, or a study's loaded entry) in a fresh temp folder, measure `repeat`
    runs, write the HDF5 file.

    `platform_cfg` (a study's [platform]) supplies the compiler line, device and estimate
    figures; `compiler` and `meter` still override it. The output paths are checked for
    writability before anything is built or measured. The temp folder is removed afterwards,
    except after a failed build (the error names its log).
    """

    say = log or (lambda s: None)
    if repeat < 1:
        raise ConfigError("--repeat must be >= 1")
    app = app_dir if isinstance(app_dir, AppConfig) else load_app(app_dir)
    kind, note = choose_platform(sorted(app.platforms), platform or (platform_cfg.kind if platform_cfg else None))
    app = app.on(kind)  # ConfigError (exit 2) when the app has no build for it; its folder for that platform
    notes = [note] if note else []
    if platform_cfg is not None and platform_cfg.kind == kind:
        pcfg = dataclasses.replace(platform_cfg, meter=meter or platform_cfg.meter,
                                   compiler=compiler or platform_cfg.compiler)
    else:
        pcfg = PlatformConfig(kind=kind, compiler=compiler or "", meter=meter or "auto")
    meter = pcfg.meter
    if isinstance(args, str):
        try:
            run_args = shlex.split(args)
        except ValueError as e:
            raise ConfigError(f"--args: {e}") from None
    elif args is not None:
        run_args = list(args)
    else:
        run_args = list(app.test_args if test_size else app.args)
    problems = toolchain.check_platform(pcfg)
    if problems:
        raise ToolchainError("; ".join(problems))
    out_path = Path(out) if out else Path(f"{app.name}.{kind}.profile.h5")
    ensure_writable_file(out_path, "--out")  # before hours of measuring, not after
    if plot:
        ensure_writable_file(plot, "--plot")

    m = open_meter(meter, pcfg)
    try:
        workdir = Path(tempfile.mkdtemp(prefix=f"lassi-profile-{app.name}-"))
        toolchain.prepare_workdir(app, kind, workdir)
        say(f"building {app.name} for {kind} in {workdir}")
        b = toolchain.build(app, pcfg, workdir)
        log_path = workdir / "build.log"
        log_path.write_text(f"$ {shlex.join(b.log.argv)}\n{b.log.stdout}{b.log.stderr}", encoding="utf-8")
        if not b.ok:
            why = b.log.error or f"exit {b.log.returncode}"
            raise BuildFailed(f"build of {app.name} for {kind} failed ({why}); log: {log_path}")
        say(f"measuring {repeat} run(s) of ./{Path(b.exe).name} {shlex.join(run_args)} with meter {m.name}")
        key = device_key(kind, pcfg.device)
        results = measure_repeats(lambda: toolchain.run_app(app, pcfg, workdir, run_args), m,
                                  cfg=measure_cfg or MeasureConfig(), repeat=repeat, log=say,
                                  lock=lambda: measurement_lock(key))
    finally:
        m.close()
    shutil.rmtree(workdir, ignore_errors=True)  # kept only when the build failed (its log is named)
    summary = {f: summarize(meas.figures.get(f, math.nan) for _rr, meas in results) for f in SUMMARY_FIGURES}
    problems = list(dict.fromkeys(p for rr, _m in results if rr.ok for p in source_output_problems(app.check, rr.stdout)))
    res = ProfileResult(app=app.name, platform=kind, meter=m.name, device=m.device, estimate=m.estimate,
                        args=run_args, out=out_path, workdir=workdir, results=results, summary=summary, notes=notes,
                        check_problems=problems)
    try:
        write_profile(res, b.log)
    except OSError as e:
        raise LassiError(f"cannot write {out_path}: {e.strerror or e}") from None
    if plot:

        r = median_repeat(results)
        title = f"{app.name} ({kind}) repeat {r}" + (" ESTIMATE" if m.estimate else "")
        plot_measurement(results[r][1], plot, title=title)
        res.plot = Path(plot)
    return res


@dataclass
class CheckRun:
    """One unmeasured build and run of an app (`validate --run`): did it work, do its check lines match?"""

    app: str
    platform: str
    args: list[str]
    run: RunResult | None  # None: the build failed
    problems: list[str]  # source_output_problems of a successful run
    build_log: Path | None = None  # kept only when the build failed


def check_run(app: AppConfig, platform_cfg: PlatformConfig, args: list[str]) -> CheckRun:
    """Build `app` for the platform in a temp folder and run it once with `args`, both through the
    sandbox as a trial would, then try its [check] lines on the output. No meter, no HDF5 file.

    Raises ToolchainError when this machine cannot build or run for the platform at all.
    """
    kind = platform_cfg.kind
    app = app.on(kind)
    problems = toolchain.check_platform(platform_cfg)
    if problems:
        raise ToolchainError("; ".join(problems))
    workdir = Path(tempfile.mkdtemp(prefix=f"lassi-check-{app.name}-"))
    toolchain.prepare_workdir(app, kind, workdir)
    b = toolchain.build(app, platform_cfg, workdir)
    if not b.ok:
        log_path = workdir / "build.log"
        log_path.write_text(f"$ {shlex.join(b.log.argv)}\n{b.log.stdout}{b.log.stderr}", encoding="utf-8")
        return CheckRun(app.name, kind, args, None, [], log_path)
    try:
        rr = toolchain.run_app(app, platform_cfg, workdir, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return CheckRun(app.name, kind, args, rr, source_output_problems(app.check, rr.stdout) if rr.ok else [])


def median_repeat(results: list[tuple[RunResult, Measurement]]) -> int:
    """Index of the repeat with the median default energy (the one worth a picture)."""
    vals = [(meas.figures.get("energy_net_j", math.nan), r) for r, (_rr, meas) in enumerate(results)]
    finite = sorted((v, r) for v, r in vals if math.isfinite(v))
    return finite[(len(finite) - 1) // 2][1] if finite else 0


def write_profile(res: ProfileResult, build_log: RunResult) -> None:
    """Write the profile file next to its final name and rename it into place (no half files)."""

    path = res.out
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with h5py.File(tmp, "w") as f:
        a = f.attrs
        a["schema"] = PROFILE_SCHEMA
        a["schema_version"] = SCHEMA_VERSION
        a["package_version"] = __version__
        a["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        a["app"] = res.app
        a["platform"] = res.platform
        a["meter"] = res.meter
        a["device"] = res.device
        a["estimate"] = bool(res.estimate)
        a["repeat"] = len(res.results)
        a["args_json"] = json.dumps(res.args)
        a["notes_json"] = json.dumps(res.notes)
        a["check_problems_json"] = json.dumps(res.check_problems)
        for name, s in res.summary.items():
            a[f"mean_{name}"] = s.mean
            a[f"std_{name}"] = s.std
            a[f"cv_pct_{name}"] = s.cv_pct
        put_text(f, "build_log", build_log.stdout + build_log.stderr)
        g = f.create_group("measurements")
        runs = f.create_group("runs")
        for r, (rr, meas) in enumerate(res.results):
            write_measurement(g.create_group(child_name(r)), meas)
            rg = runs.create_group(child_name(r))
            rg.attrs["argv_json"] = json.dumps(rr.argv)
            rg.attrs["returncode"] = -1 if rr.returncode is None else int(rr.returncode)
            rg.attrs["started"] = rr.returncode is not None
            rg.attrs["wall_s"] = rr.wall_s
            rg.attrs["cpu_s"] = rr.cpu_s
            rg.attrs["timed_out"] = bool(rr.timed_out)
            rg.attrs["error"] = rr.error
            put_text(rg, "stdout", rr.stdout)
            put_text(rg, "stderr", rr.stderr)
    os.replace(tmp, path)


# ------------------------------------------------------------------ rendering


def _f(v: float | None, digits: int = 2) -> str:
    return f"{v:.{digits}f}" if v is not None and math.isfinite(v) else "n/a"


def render(res: ProfileResult, console: Console) -> None:
    """Per-repeat table plus mean and CV, with every estimate labelled."""
    from rich.table import Table

    est = " [bold red]ESTIMATE[/]" if res.estimate else ""
    methods = sorted({str(meas.attrs.get("energy_method", "")) for _rr, meas in res.results})
    table = Table(title=f"{res.app} on {res.device} ({res.platform}, meter {res.meter}){est}", title_justify="left")
    names = ["#", "runtime s", "net J" + (" (EST)" if res.estimate else ""), "gross J", "eq4 (settled idle) J",
             "avg power W", "exit"]
    for name in names:
        table.add_column(name, justify="right")
    keys = ("runtime_s", "energy_net_j", "energy_gross_j", "energy_eq4_settled_j", "power_avg_w")
    digits = (3, 1, 1, 1, 1)
    for r, (rr, meas) in enumerate(res.results):
        exit_s = str(rr.returncode) if rr.returncode is not None else "did not start"
        if rr.timed_out:
            exit_s += " (time limit)"
        table.add_row(str(r), *[_f(meas.figures.get(k), d) for k, d in zip(keys, digits, strict=True)],
                      exit_s if rr.ok else f"[red]{exit_s}[/]")
    table.add_section()
    means = [_f(res.summary[k].mean if k in res.summary else None, d) for k, d in zip(keys, digits, strict=True)]
    table.add_row("mean", *means, "")
    table.add_row("CV %", *[_f(res.summary[k].cv_pct if k in res.summary else None, 1) for k in keys], "")
    console.print(table)
    idle = res.summary["idle_w"].mean
    console.print(f"energy method: {', '.join(methods)}; net = above idle {_f(idle, 1)} W; "
                  f"eq4-paper = the LASSI-EE paper's Eq. 4 on the sensor's moving average")
    if res.estimate:
        console.print("[bold red]ESTIMATE[/]: no power sensor was used; figures come from a CPU-time model")
    seen: set[str] = set()
    for note in res.notes + [n for _rr, meas in res.results for n in meas.trace.notes]:
        if note not in seen:
            seen.add(note)
            console.print(f"[dim]note: {note}[/]")
    console.print(f"written: {res.out}" + (f", plot: {res.plot}" if res.plot else ""))

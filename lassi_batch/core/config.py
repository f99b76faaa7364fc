"""Study and app settings, read from TOML and validated up front.

Validation collects every problem before failing so that a user fixes a config in one pass;
nothing is written to disk until a config has loaded cleanly.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .errors import ConfigError

PLATFORMS = ("cuda", "hip", "cpu")
METERS = ("auto", "nvml", "amdsmi", "rapl", "estimate")
BACKENDS = ("openai", "replay")
RUNTIMES = ("none", "apptainer")
PASS_POLICIES = ("judge_and_verifier", "judge", "verifier")

# Compiler command lines used when a study does not name one. The paper used
# `nvcc -std=c++14 -Xcompiler -Wall -arch=sm_80 -O3` and `hipcc -std=c++14 -Wall -O3 --offload-arch=gfx908`.
DEFAULT_COMPILERS = {
    "cuda": "nvcc -std=c++17 -O3 -Xcompiler -Wall -arch=native",
    "hip": "hipcc -std=c++17 -Wall -O3 --offload-arch=gfx908",
    "cpu": "g++ -std=c++17 -O3 -Wall -fopenmp",
}
# Build template: {compiler} is the platform's compiler line, {sources} the app's files, {exe} the output.
DEFAULT_BUILD = "{compiler} -o {exe} {sources}"
EXE_NAME = "app.exe"


def _expand(value: str, base: Path) -> Path:
    """Expand ${VAR} and ~, resolve relative to the config file's folder."""
    p = Path(os.path.expanduser(os.path.expandvars(value)))
    return p if p.is_absolute() else (base / p)


class _Reader:
    """Typed access to one TOML table, recording problems instead of raising at the first."""

    def __init__(self, table: dict[str, Any], where: str, problems: list[str]):
        self.t, self.where, self.problems, self.seen = table, where, problems, set()

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        self.seen.add(key)
        if key not in self.t:
            if required:
                self.problems.append(f"{self.where}: missing required key '{key}'")
            return default
        v = self.t[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if isinstance(v, bool) and bool not in kinds:
            ok = False
        else:
            ok = isinstance(v, kinds)
        if not ok:
            names = "/".join(k.__name__ for k in kinds)
            self.problems.append(f"{self.where}.{key}: expected {names}, got {type(v).__name__} {v!r}")
            return default
        return v

    def str_list(self, key: str, default: list[str] | None = None) -> list[str]:
        v = self.get(key, (list, str), default if default is not None else [])
        if isinstance(v, str):
            return shlex.split(v)
        bad = [x for x in v if not isinstance(x, (str, int, float)) or isinstance(x, bool)]
        if bad:
            self.problems.append(f"{self.where}.{key}: items must be strings or numbers, got {bad[0]!r}")
            return []
        return [str(x) for x in v]

    def table(self, key: str) -> dict[str, Any]:
        v = self.get(key, dict, {})
        return v if isinstance(v, dict) else {}

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        v = self.get(key, str, default)
        if v not in choices:
            self.problems.append(f"{self.where}.{key}: '{v}' is not one of {', '.join(choices)}")
            return default
        return v

    def done(self) -> None:
        for k in self.t:
            if k not in self.seen:
                self.problems.append(f"{self.where}: unknown key '{k}'")


# ---------------------------------------------------------------- app.toml


@dataclass(frozen=True)
class PlatformBuild:
    """How one app builds on one platform."""

    files: list[str]  # sources the LLM may rewrite (relative to the app folder)
    build: str = DEFAULT_BUILD  # template with {compiler} {sources} {exe}
    extra_files: list[str] = field(default_factory=list)  # read-only files copied along (headers, inputs)


@dataclass(frozen=True)
class OutputCheck:
    """How a run's stdout is judged correct, deterministically."""

    pass_regex: str | None = None  # a line that must appear (e.g. '^PASS')
    fail_regex: str | None = None  # a line that must not appear (e.g. 'FAIL')
    checksum_regex: str | None = None  # group(1) captures a number compared with the source's
    rtol: float = 1e-6  # numeric tolerance for checksum and numeric-stdout comparison
    atol: float = 0.0
    compare_numbers: bool = True  # compare every number in stdout with the source's within tolerance
    ignore_regex: str | None = "(?i)(time|elapsed|seconds|ms\\b|throughput|bandwidth|gb/s)"  # lines skipped
    work_regex: str | None = None  # group(1) = amount of work done (launches, bytes), must not shrink


@dataclass(frozen=True)
class AppConfig:
    name: str
    path: Path
    platforms: dict[str, PlatformBuild]
    args: list[str]  # run arguments for measurement (seconds-long runs)
    test_args: list[str]  # run arguments for quick runs (tests, CI)
    time_limit_s: float = 120.0
    memory_limit_mb: int = 8192
    check: OutputCheck = field(default_factory=OutputCheck)
    description: str = ""

    def build_for(self, platform: str) -> PlatformBuild:
        if platform not in self.platforms:
            have = ", ".join(sorted(self.platforms)) or "none"
            raise ConfigError(f"app '{self.name}' has no build for platform '{platform}' (has: {have})")
        return self.platforms[platform]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def _check_regex(r: _Reader, key: str, default: str | None = None) -> str | None:
    v = r.get(key, str, default)
    if v is not None:
        try:
            re.compile(v)
        except re.error as e:
            r.problems.append(f"{r.where}.{key}: bad regular expression {v!r}: {e}")
            return None
    return v


def parse_check(table: dict[str, Any], where: str, problems: list[str]) -> OutputCheck:
    r = _Reader(table, where, problems)
    d = OutputCheck()
    chk = OutputCheck(
        pass_regex=_check_regex(r, "pass_regex"),
        fail_regex=_check_regex(r, "fail_regex"),
        checksum_regex=_check_regex(r, "checksum_regex"),
        rtol=r.get("rtol", float, d.rtol),
        atol=r.get("atol", float, d.atol),
        compare_numbers=r.get("compare_numbers", bool, d.compare_numbers),
        ignore_regex=_check_regex(r, "ignore_regex", d.ignore_regex),
        work_regex=_check_regex(r, "work_regex"),
    )
    for key in ("checksum_regex", "work_regex"):
        pat = getattr(chk, key)
        if pat and re.compile(pat).groups < 1:
            problems.append(f"{where}.{key}: needs a capture group for the number")
    if chk.rtol < 0 or chk.atol < 0:
        problems.append(f"{where}: rtol and atol must be >= 0")
    r.done()
    return chk


def parse_app(table: dict[str, Any], path: Path, where: str, problems: list[str]) -> AppConfig | None:
    """Build an AppConfig from an app.toml table (or a study's inline [[apps]] entry)."""
    r = _Reader(table, where, problems)
    name = r.get("name", str, path.name)
    description = r.get("description", str, "")
    plats: dict[str, PlatformBuild] = {}
    for pname, ptab in r.table("platforms").items():
        pw = f"{where}.platforms.{pname}"
        if pname not in PLATFORMS:
            problems.append(f"{pw}: unknown platform (use {', '.join(PLATFORMS)})")
            continue
        if not isinstance(ptab, dict):
            problems.append(f"{pw}: must be a table")
            continue
        pr = _Reader(ptab, pw, problems)
        files = pr.str_list("files")
        if not files:
            problems.append(f"{pw}.files: list the source file(s) the LLM may rewrite")
        extra = pr.str_list("extra_files")
        for f in files + extra:
            if Path(f).is_absolute() or ".." in Path(f).parts:
                problems.append(f"{pw}: file '{f}' must be a relative path inside the app folder")
            elif path.is_dir() and not (path / f).is_file():
                problems.append(f"{pw}: file '{f}' not found in {path}")
        build = pr.get("build", str, DEFAULT_BUILD)
        pr.done()
        plats[pname] = PlatformBuild(files=files, build=build, extra_files=extra)
    run = _Reader(r.table("run"), f"{where}.run", problems)
    args = run.str_list("args")
    test_args = run.str_list("test_args", args)
    time_limit = run.get("time_limit_s", float, 120.0)
    mem = run.get("memory_limit_mb", int, 8192)
    run.done()
    if time_limit is not None and time_limit <= 0:
        problems.append(f"{where}.run.time_limit_s: must be > 0")
    if mem is not None and mem <= 0:
        problems.append(f"{where}.run.memory_limit_mb: must be > 0")
    check = parse_check(r.table("check"), f"{where}.check", problems)
    r.done()
    if not plats:
        problems.append(f"{where}: no [platforms.<cuda|hip|cpu>] table")
    return AppConfig(
        name=name, path=path, platforms=plats, args=args, test_args=test_args,
        time_limit_s=time_limit, memory_limit_mb=mem, check=check, description=description,
    )


def _read_toml(path: Path, problems: list[str]) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        problems.append(f"{path}: file not found")
    except IsADirectoryError:
        problems.append(f"{path}: is a folder, expected a TOML file")
    except tomllib.TOMLDecodeError as e:
        problems.append(f"{path}: invalid TOML: {e}")
    except OSError as e:
        problems.append(f"{path}: cannot read: {e.strerror}")
    return None


def load_app(app_dir: str | Path, overrides: dict[str, Any] | None = None) -> AppConfig:
    """Load `APP_DIR/app.toml`; `overrides` (from a study entry) replace top-level keys."""
    problems: list[str] = []
    path = Path(app_dir).expanduser()
    if not path.is_dir():
        raise ConfigError(f"app folder not found: {path}")
    toml_path = path / "app.toml"
    table: dict[str, Any] = {}
    if toml_path.is_file():
        table = _read_toml(toml_path, problems) or {}
    elif not overrides or "platforms" not in overrides:
        raise ConfigError(f"{path}: no app.toml, and the study entry gives no [platforms] for it")
    if overrides:
        table = _merge(table, overrides)
    app = parse_app(table, path.resolve(), str(toml_path if toml_path.is_file() else path), problems)
    if problems:
        raise ConfigError(problems)
    assert app is not None
    return app


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# ---------------------------------------------------------------- study.toml


@dataclass(frozen=True)
class PlatformConfig:
    kind: str = "cpu"  # cuda | hip | cpu
    compiler: str = ""  # full compiler command line; default per kind
    meter: str = "auto"
    device: str = ""  # visible device for the run (index, UUID or PCI bus id); "" = first/visible
    cpu_watts: float = 150.0  # for the 'estimate' meter: assumed package power under load
    idle_watts: float = 50.0  # for the 'estimate' meter

    @property
    def compiler_line(self) -> str:
        return self.compiler or DEFAULT_COMPILERS[self.kind]


@dataclass(frozen=True)
class MeasureConfig:
    repeat: int = 1  # measured runs per candidate
    settle_timeout_s: float = 10.0  # max wait for power to return to idle before a run
    idle_window_s: float = 1.0  # pre-run idle window
    post_max_s: float = 15.0  # max post-run tail (the paper's fixed wait)
    settle_tolerance: float = 0.05  # "back at idle" = within 5% of the baseline
    sample_interval_s: float = 0.01
    random_delay_s: float = 0.5  # upper bound of a random delay between repeats
    min_improvement: float = 0.02  # a new best must use this fraction less energy (guards against noise)
    count_work: bool = True  # CUDA: count kernel launches and copies with a CUPTI injection library


@dataclass(frozen=True)
class LLMConfig:
    backend: str = "openai"  # openai | replay
    replay_path: str = ""  # for backend = replay
    base_url: str = ""  # "" = SDK default / OPENAI_BASE_URL
    api_key_env: str = "OPENAI_API_KEY"  # name of the variable holding the key; the key itself never enters a file
    generator_model: str = "gpt-4.1"
    judge_model: str = "gpt-4.1"
    context_model: str = "gpt-4.1"
    reasoning_models: list[str] = field(default_factory=lambda: ["o1*", "o3*", "o4*", "gpt-5*"])
    timeout_s: float = 600.0
    max_retries: int = 4
    retry_base_s: float = 1.0  # first backoff delay; doubles per retry, with jitter
    retry_max_s: float = 60.0
    max_tokens: int = 16000
    temperature: float = 0.2
    temperature_step: float = 0.2
    temperature_max: float = 0.8
    max_iterations: int = 10
    max_self_corrections: int = 5
    max_nonimproving: int = 4  # stop rule for models without temperature
    pass_policy: str = "judge_and_verifier"


@dataclass(frozen=True)
class SlurmConfig:
    partition: str = ""
    account: str = ""
    qos: str = ""
    exclusive: bool = True
    gres: str = "gpu:1"
    time: str = "02:00:00"
    array_parallelism: int = 8
    cpus_per_task: int = 8
    mem_gb: int = 64
    extra: list[str] = field(default_factory=list)  # extra sbatch lines, e.g. "--constraint=a100"


@dataclass(frozen=True)
class ContainerConfig:
    runtime: str = "none"  # none | apptainer
    image: str = ""
    binds: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StudyApp:
    app: AppConfig
    args: list[str]  # effective run args for this study


@dataclass(frozen=True)
class StudyConfig:
    name: str
    trials: int
    k: list[int]
    out: Path
    platform: PlatformConfig
    measure: MeasureConfig
    llm: LLMConfig
    slurm: SlurmConfig
    container: ContainerConfig
    apps: list[StudyApp]
    source: Path | None = None  # the TOML file it came from

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out"] = str(self.out)
        d["source"] = str(self.source) if self.source else None
        d["apps"] = [{"app": a.app.to_dict(), "args": a.args} for a in self.apps]
        return d


def _dc_from(cls: type, table: dict[str, Any], where: str, problems: list[str]) -> Any:
    """Fill a flat dataclass from a TOML table, type-checking each field against its default."""
    r = _Reader(table, where, problems)
    proto = cls()
    kw: dict[str, Any] = {}
    for name, default in asdict(proto).items():
        if isinstance(default, list):
            if name in table:
                kw[name] = r.str_list(name, default)
            else:
                r.seen.add(name)
        else:
            kind: type | tuple[type, ...] = (float,) if isinstance(default, float) else type(default)
            v = r.get(name, kind, default)
            kw[name] = v
    r.done()
    return cls(**kw)


def parse_study(data: dict[str, Any], base: Path, source: Path | None = None) -> StudyConfig:
    problems: list[str] = []
    top = _Reader(data, "study.toml", problems)
    st = _Reader(top.table("study"), "[study]", problems)
    name = st.get("name", str, "study")
    if name and not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        problems.append(f"[study].name: '{name}' may only hold letters, digits, '.', '_' and '-'")
    trials = st.get("trials", int, 1)
    if trials is not None and trials < 1:
        problems.append(f"[study].trials: must be >= 1, got {trials}")
    k = st.get("k", list, [1, 3, 5])
    if not isinstance(k, list) or not k or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in k):
        problems.append(f"[study].k: must be a non-empty list of integers >= 1, got {k!r}")
        k = [1]
    elif trials is not None and max(k) > trials:
        problems.append(f"[study].k: k={max(k)} exceeds trials per app ({trials}); pass@k needs n >= k")
    out = _expand(st.get("out", str, f"runs/{name}"), base)
    st.done()

    plat = _dc_from(PlatformConfig, top.table("platform"), "[platform]", problems)
    if plat.kind not in PLATFORMS:
        problems.append(f"[platform].kind: '{plat.kind}' is not one of {', '.join(PLATFORMS)}")
    if plat.meter not in METERS:
        problems.append(f"[platform].meter: '{plat.meter}' is not one of {', '.join(METERS)}")
    measure = _dc_from(MeasureConfig, top.table("measure"), "[measure]", problems)
    if measure.repeat < 1:
        problems.append("[measure].repeat: must be >= 1")
    if not 0.0 <= measure.min_improvement < 1.0:
        problems.append("[measure].min_improvement: must be within 0..1 (a fraction, e.g. 0.02)")
    if measure.post_max_s > 60 or measure.post_max_s < 0:
        problems.append("[measure].post_max_s: must be within 0..60 s")
    llm = _dc_from(LLMConfig, top.table("llm"), "[llm]", problems)
    if llm.backend not in BACKENDS:
        problems.append(f"[llm].backend: '{llm.backend}' is not one of {', '.join(BACKENDS)}")
    if llm.backend == "replay" and not llm.replay_path:
        problems.append("[llm].replay_path: required when backend = 'replay'")
    if llm.pass_policy not in PASS_POLICIES:
        problems.append(f"[llm].pass_policy: '{llm.pass_policy}' is not one of {', '.join(PASS_POLICIES)}")
    for key in ("max_iterations", "max_self_corrections", "max_nonimproving", "max_retries"):
        if getattr(llm, key) < 0:
            problems.append(f"[llm].{key}: must be >= 0")
    if not (0.0 <= llm.temperature <= 2.0) or llm.temperature_step <= 0:
        problems.append("[llm]: temperature must be within 0..2 and temperature_step > 0")
    slurm = _dc_from(SlurmConfig, top.table("slurm"), "[slurm]", problems)
    if slurm.array_parallelism < 1:
        problems.append("[slurm].array_parallelism: must be >= 1")
    if slurm.time and not re.fullmatch(r"(\d+-)?\d{1,2}(:\d{2}){0,2}", slurm.time):
        problems.append(f"[slurm].time: '{slurm.time}' is not a Slurm time (e.g. 02:00:00 or 1-00:00:00)")
    cont = _dc_from(ContainerConfig, top.table("container"), "[container]", problems)
    if cont.runtime not in RUNTIMES:
        problems.append(f"[container].runtime: '{cont.runtime}' is not one of {', '.join(RUNTIMES)}")
    if cont.runtime == "apptainer" and not cont.image:
        problems.append("[container].image: required when runtime = 'apptainer'")

    apps: list[StudyApp] = []
    raw_apps = top.get("apps", list, [])
    top.done()
    if not raw_apps:
        problems.append("study.toml: no [[apps]] entries")
    names: set[str] = set()
    for i, entry in enumerate(raw_apps):
        where = f"[[apps]][{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a table")
            continue
        entry = dict(entry)
        if "path" not in entry:
            problems.append(f"{where}: missing required key 'path'")
            continue
        raw_path = entry.pop("path")
        if not isinstance(raw_path, str):
            problems.append(f"{where}.path: expected a string")
            continue
        unset = [v for v in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", raw_path) if v not in os.environ]
        if unset:
            problems.append(f"{where}.path: environment variable {unset[0]} is not set (path '{raw_path}')")
            continue
        app_dir = _expand(raw_path, base)
        study_args = entry.pop("args", None)
        try:
            app = load_app(app_dir, entry or None)
        except ConfigError as e:
            problems.extend(f"{where}: {p}" for p in e.problems)
            continue
        if plat.kind in PLATFORMS and plat.kind not in app.platforms:
            problems.append(f"{where}: app '{app.name}' has no build for platform '{plat.kind}'")
        if app.name in names:
            problems.append(f"{where}: app name '{app.name}' appears twice; give one a distinct name")
        names.add(app.name)
        if study_args is None:
            args = app.args
        elif isinstance(study_args, list):
            args = [str(a) for a in study_args]
        elif isinstance(study_args, str):
            args = shlex.split(study_args)
        else:
            problems.append(f"{where}.args: expected a list or a string")
            args = app.args
        apps.append(StudyApp(app=app, args=args))
    if problems:
        raise ConfigError(problems)
    return StudyConfig(
        name=name, trials=trials, k=sorted(set(k)), out=out, platform=plat, measure=measure,
        llm=llm, slurm=slurm, container=cont, apps=apps, source=source,
    )


def load_study(path: str | Path) -> StudyConfig:
    p = Path(path).expanduser()
    problems: list[str] = []
    data = _read_toml(p, problems)
    if data is None:
        raise ConfigError(problems)
    return parse_study(data, p.resolve().parent, source=p.resolve())

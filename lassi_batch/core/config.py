"""Study and app settings: one pydantic model family for app.toml, study files and the runtime.

A file is validated as a whole before anything runs: unknown keys, wrong types and out-of-range
values are reported together, one line each (`study.toml: measure.repeat: must be >= 1 (got 0)`),
as one ConfigError (exit 2), and nothing is written. The classes are pydantic dataclasses, so the
objects the rest of the package receives are the validated ones, and `dataclasses.replace` on
them validates the changed copy again. `lassi-batch schema app|study` prints their JSON Schema;
docs/app-format.md explains every key.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import re
import shlex
import sys
from dataclasses import field
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, WithJsonSchema
from pydantic import Strict, model_validator
from pydantic.dataclasses import dataclass

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .errors import ConfigError
from .paths import expand, unset_vars
from .platforms import PLATFORM_FACTS

PlatformKind = Literal["cuda", "hip", "cpu"]
MeterName = Literal["auto", "nvml", "amdsmi", "rapl", "estimate"]
Backend = Literal["openai", "replay"]
Runtime = Literal["none", "apptainer"]
Sandbox = Literal["auto", "bwrap", "none"]
PassPolicy = Literal["judge_and_verifier", "judge", "verifier"]

PLATFORMS: tuple[str, ...] = get_args(PlatformKind)
METERS: tuple[str, ...] = get_args(MeterName)
BACKENDS: tuple[str, ...] = get_args(Backend)
RUNTIMES: tuple[str, ...] = get_args(Runtime)
SANDBOXES: tuple[str, ...] = get_args(Sandbox)
PASS_POLICIES: tuple[str, ...] = get_args(PassPolicy)

# Compiler command lines used when a study does not name one (core/platforms.py).
DEFAULT_COMPILERS = {k: f.default_compiler for k, f in PLATFORM_FACTS.items()}
# Build template: {compiler} is the platform's compiler line, {sources} the app's files, {exe} the output.
DEFAULT_BUILD = "{compiler} -o {exe} {sources}"
BUILD_PLACEHOLDERS = ("compiler", "sources", "exe")
EXE_NAME = "app.exe"
# Lines that report timings, matched by whole words and units only, so that result lines such as
# "L2 norms", "timestep 60 energy 12.5", "atoms" or "items" are still compared: the words time,
# timing, elapsed, runtime, duration, latency, (milli/micro)seconds; a number with a time unit
# ("1.5 s", "3ms", "12 us"); a unit in parentheses ("(s)", "(ms)"); any rate "/s" (GB/s, GFLOP/s).
TIMING_REGEX = (
    r"(?i)(\b(?:time|timing|timer|elapsed|runtime|walltime|duration|latency|throughput|bandwidth)\b"
    r"|\b(?:seconds?|secs?|msecs?|usecs?|nsecs?|milli-?seconds?|micro-?seconds?|nano-?seconds?)\b"
    r"|\d\s*(?:s|ms|us|ns)\b|\(\s*(?:s|ms|us|ns)\s*\)|/s\b|\b[gmt]?flops\b)"
)
DEFAULT_IGNORE = TIMING_REGEX
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._+-]*"

# Numbers and flags are strict: a TOML `true` is no count, a float no integer; ints are accepted where floats are asked.
_CFG = ConfigDict(extra="forbid", use_attribute_docstrings=True)
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]


# ---------------------------------------------------------------- field types


def _argv(v: Any) -> Any:
    """Run arguments: an array of strings or numbers, or one string split like a shell would."""
    if isinstance(v, str):
        try:
            return shlex.split(v)
        except ValueError as e:
            raise ValueError(f"cannot split {v!r} like a shell: {e}") from None
    if isinstance(v, list):
        bad = [x for x in v if isinstance(x, bool) or not isinstance(x, (str, int, float))]
        if bad:
            raise ValueError(f"items must be strings or numbers, got {bad[0]!r}")
        return [str(x) for x in v]
    return v  # the list schema reports the wrong type


def _relative_file(v: str) -> str:
    p = PurePosixPath(v)
    if not v or p.is_absolute() or ".." in p.parts:
        raise ValueError(f"file '{v}' must be a relative path inside the app folder")
    return v


def _regex(v: str) -> str:
    try:
        re.compile(v)
    except re.error as e:
        raise ValueError(f"bad regular expression {v!r}: {e}") from None
    return v


def _captures(v: str) -> str:
    if re.compile(v).groups < 1:
        raise ValueError(f"{v!r} needs a capture group for the number, e.g. '^checksum = (\\S+)'")
    return v


def _template(v: str) -> str:
    unknown = sorted(set(re.findall(r"\{([^{}]*)\}", v)) - set(BUILD_PLACEHOLDERS))
    if unknown:
        raise ValueError(f"unknown placeholder {{{unknown[0]}}} (use {{compiler}}, {{sources}}, {{exe}})")
    try:
        argv = shlex.split(v)
    except ValueError as e:
        raise ValueError(f"cannot split {v!r} like a shell: {e}") from None
    if not argv:
        raise ValueError("must not be empty")
    return v


def _name(v: str) -> str:
    if not re.fullmatch(NAME_PATTERN, v):
        raise ValueError(f"'{v}' may only hold letters, digits, '.', '_', '+' and '-' (it names files)")
    return v


def _env_name(v: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
        raise ValueError(f"'{v}' is not an environment variable name")
    return v


def _url(v: str) -> str:
    if v and not re.match(r"https?://[^\s/]+", v):
        raise ValueError(f"'{v}' is not an http(s) URL")
    return v


def _slurm_time(v: str) -> str:
    if v and not re.fullmatch(r"(\d+-)?\d{1,2}(:\d{2}){0,2}", v):
        raise ValueError(f"'{v}' is not a Slurm time (e.g. 02:00:00 or 1-00:00:00)")
    return v


Argv = Annotated[list[str], BeforeValidator(_argv), WithJsonSchema({
    "anyOf": [{"type": "array", "items": {"type": ["string", "number"]}}, {"type": "string"}]})]
RelFile = Annotated[str, AfterValidator(_relative_file)]
Regex = Annotated[str, AfterValidator(_regex)]
CaptureRegex = Annotated[str, AfterValidator(_regex), AfterValidator(_captures)]
BuildTemplate = Annotated[str, AfterValidator(_template)]
Name = Annotated[str, AfterValidator(_name)]
NonEmpty = Annotated[str, Field(min_length=1)]


# ---------------------------------------------------------------- app.toml


@dataclass(frozen=True, config=_CFG)
class PlatformBuild:
    """How one app builds on one platform."""

    files: Annotated[list[RelFile], Field(min_length=1)]
    """Sources the LLM may rewrite, relative to the platform's folder (required, at least one)."""
    build: BuildTemplate = DEFAULT_BUILD
    """Build command: {compiler} is the study's compiler line, {sources} the files, {exe} the program."""
    extra_files: list[RelFile] = field(default_factory=list)
    """Read-only files copied into every work folder (headers, inputs); never offered for rewriting."""
    dir: Path | None = None
    """Folder holding this platform's files, when it is not the app's folder (relative to it; ${VAR} expanded)."""


@dataclass(frozen=True, config=_CFG)
class OutputCheck:
    """How a run's stdout is judged correct, deterministically."""

    pass_regex: Regex | None = None
    """A line that must appear in the output (e.g. '^PASS')."""
    fail_regex: Regex | None = None
    """A line that must not appear (e.g. 'FAIL')."""
    checksum_regex: CaptureRegex | None = None
    """Its first group captures a number that must match the source's within rtol/atol."""
    rtol: Float = Field(1e-6, ge=0)
    """Relative tolerance for the checksum and for numbers compared in the output."""
    atol: Float = Field(0.0, ge=0)
    """Absolute tolerance for the same comparisons."""
    compare_numbers: Bool = True
    """Compare every number of the output with the source's (lines matching ignore_regex skipped)."""
    ignore_regex: Regex | None = DEFAULT_IGNORE
    """Lines skipped when numbers are compared; the default skips timing lines only (TIMING_REGEX)."""
    work_regex: CaptureRegex | None = None
    """Its first group captures the amount of work done (steps, launches); it must not shrink."""
    negative_args: list[Argv] = field(default_factory=list)
    """Negative tests: argument sets under which the source's own check reports failure (a nonzero
    exit, its fail line, or no pass line); a candidate must report failure on them too."""

    def weakness(self) -> str | None:
        """What a validator should warn about: a check that leaves screening to the exit status."""
        add = ("add check.pass_regex (the program's own verdict line, e.g. '^PASS') "
               "or check.checksum_regex (a printed result)")
        if self.pass_regex or self.checksum_regex:
            return None
        if self.fail_regex:  # a verdict printed on failure only: a run that drops the comparison passes
            return (f"no self-check line or checksum, only its failure line (check.fail_regex) and the numbers it "
                    f"prints screen candidates, so a run that skips the check passes; {add}")
        if not self.compare_numbers:
            return f"no deterministic check, only the exit status screens candidates; {add}"
        return f"no self-check line or checksum, only the numbers it prints are compared (it may print none); {add}"


@dataclass(frozen=True, config=_CFG)
class RunSettings:
    """The [run] table: program arguments and limits."""

    args: Argv = field(default_factory=list)
    """Arguments of measured runs (sized for seconds-long runs on the target machine)."""
    test_args: Argv | None = None
    """Arguments of quick runs (tests, CI, --test-size); default: args."""
    time_limit_s: Float = Field(120.0, gt=0, le=7 * 86400)
    """Wall-clock limit of one run, in seconds."""
    memory_limit_mb: Int = Field(8192, gt=0)
    """Memory limit of one run, in MiB."""
    probe_args: list[Argv] = field(default_factory=list)
    """Differential runs: extra argument sets never shown to the model (compared for output only)."""
    work_arg: Annotated[Int, Field(ge=0)] | None = None
    """Differential runs: index in args of the work knob (steps, repeats), probed one step below and above."""
    work_range: Annotated[list[Annotated[Int, Field(ge=1)]], Field(min_length=2, max_length=2)] = \
        field(default_factory=lambda: [1, 1_000_000])
    """Differential runs: [min, max] allowed values of the work knob."""
    work_step: Int = Field(0, ge=0)
    """Differential runs: the knob's step for the neighbours; 0 = a quarter of the measured value (at least 1)."""
    seed_arg: Annotated[Int, Field(ge=0)] | None = None
    """Differential runs: index in args of a random seed, fresh for every differential run."""
    seed_env: Annotated[str, AfterValidator(lambda v: _env_name(v) if v else v)] = ""
    """Differential runs: or the environment variable holding the seed."""
    scale_cost_s: Float = Field(0.3, gt=0, le=3600)
    """Differential runs: CPU seconds the source should spend more at the scaling probe than one step below."""
    min_scaling: Float = Field(0.1, gt=0, le=1)
    """Differential runs: share of the source's added CPU time the candidate's must reach (0.1: at most 10x cheaper per unit of work)."""

    @model_validator(mode="after")
    def _probe_indices(self) -> RunSettings:
        if self.work_range[0] > self.work_range[1]:
            raise ValueError(f"work_range: min {self.work_range[0]} is above max {self.work_range[1]}")
        if self.work_arg is not None and self.work_arg == self.seed_arg:
            raise ValueError("work_arg and seed_arg name the same argument")
        sets = [("args", self.args)] + ([("test_args", self.test_args)] if self.test_args is not None else [])
        for key, idx in (("work_arg", self.work_arg), ("seed_arg", self.seed_arg)):
            if idx is None:
                continue
            for what, a in sets:
                if idx >= len(a):
                    raise ValueError(f"{key}: {idx} is not an index of {what} {a!r}")
                if key == "work_arg" and not a[idx].isdigit():
                    raise ValueError(f"work_arg: {what}[{idx}] = {a[idx]!r} is not a positive integer")
        return self

    def probe(self) -> ProbeSpec:
        return ProbeSpec(probe_args=[list(a) for a in self.probe_args], work_arg=self.work_arg,
                         work_min=self.work_range[0], work_max=self.work_range[1], work_step=self.work_step,
                         seed_arg=self.seed_arg, seed_env=self.seed_env, scale_cost_s=self.scale_cost_s,
                         min_scaling=self.min_scaling)


@dataclass(frozen=True, config=_CFG)
class ProbeSpec:
    """Inputs of the differential runs (from [run]): argument sets and seeds the model never sees.

    A candidate that passed its measured runs is run again on these, next to the source, so that
    results keyed on the measured arguments, cached results and work that does not scale show.
    """

    probe_args: list[list[str]] = field(default_factory=list)
    work_arg: Int | None = None
    work_min: Int = 1
    work_max: Int = 1_000_000
    work_step: Int = 0
    seed_arg: Int | None = None
    seed_env: str = ""
    scale_cost_s: Float = 0.3
    min_scaling: Float = 0.1

    @property
    def declared(self) -> bool:
        return bool(self.probe_args) or self.work_arg is not None


@dataclass(frozen=True, config=_CFG)
class AppFile:
    """An app.toml: the app's sources per platform, how to run it and how to check its output."""

    name: Name | None = None
    """Name used in file names and tables (default: the folder's name)."""
    description: str = ""
    """One line on what the app computes."""
    platforms: dict[PlatformKind, PlatformBuild] = field(default_factory=dict)
    """One table per platform the app builds on: [platforms.cuda], [platforms.hip], [platforms.cpu]."""
    run: RunSettings = field(default_factory=RunSettings)
    """Arguments and limits ([run])."""
    check: OutputCheck = field(default_factory=OutputCheck)
    """Deterministic output checks ([check])."""


@dataclass(frozen=True, config=_CFG, kw_only=True)
class AppEntry(AppFile):
    """One [[apps]] entry of a study: where the app is and, optionally, its app.toml keys inline.

    Inline keys are merged over the folder's app.toml (tables key by key); with no app.toml the
    entry must give [apps.platforms.<kind>] itself.
    """

    path: str
    """The app's folder (${VAR} and ~ expanded; relative paths resolve against the study file's folder)."""
    args: Argv | None = None
    """Run arguments for this study (default: the app's run.args)."""


@dataclass(frozen=True, config=_CFG)
class AppConfig:
    """An app as the pipeline uses it: the folder, builds per platform, run sizes, limits, checks."""

    name: Name
    path: Path
    platforms: dict[PlatformKind, PlatformBuild]
    args: list[str]
    test_args: list[str]
    time_limit_s: Float = Field(120.0, gt=0)
    memory_limit_mb: Int = Field(8192, gt=0)
    check: OutputCheck = field(default_factory=OutputCheck)
    description: str = ""
    probe: ProbeSpec = field(default_factory=ProbeSpec)
    """Differential-run inputs (docs/app-format.md, "Differential runs")."""

    def build_for(self, platform: str) -> PlatformBuild:
        if platform not in self.platforms:
            have = ", ".join(sorted(self.platforms)) or "none"
            raise ConfigError(f"app '{self.name}' has no build for platform '{platform}' (has: {have})")
        return self.platforms[platform]

    def on(self, platform: str) -> AppConfig:
        """This app with `path` at the platform's own folder (HeCBench keeps one folder per variant)."""
        folder = self.build_for(platform).dir
        return dataclasses.replace(self, path=folder) if folder is not None and folder != self.path else self

    def to_dict(self) -> dict[str, Any]:
        return _adapter(AppConfig).dump_python(self, mode="json")


# ---------------------------------------------------------------- study files


@dataclass(frozen=True, config=_CFG)
class StudySection:
    """The [study] table."""

    name: Name = "study"
    """Study name (used in trial ids and the default output folder)."""
    trials: Int = Field(1, ge=1, le=100_000)
    """Trials per app."""
    k: list[Annotated[Int, Field(ge=1)]] = Field(default_factory=lambda: [1, 3, 5], min_length=1)
    """The k of pass@k and energy-reduction@k; none may exceed trials."""
    out: str | None = None
    """Output folder (default runs/<name>, relative to the study file)."""

    @model_validator(mode="after")
    def _k_fits(self) -> StudySection:
        if max(self.k) > self.trials:
            raise ValueError(f"k={max(self.k)} exceeds trials per app ({self.trials}); pass@k needs n >= k")
        return self


@dataclass(frozen=True, config=_CFG)
class PlatformConfig:
    """The [platform] table: what the programs are built for and how power is read."""

    kind: PlatformKind = "cpu"
    """cuda, hip or cpu (OpenMP)."""
    compiler: str = ""
    """Full compiler command line; empty = the kind's default (see DEFAULT_COMPILERS)."""
    meter: MeterName = "auto"
    """Power source: auto = nvml (cuda), amdsmi (hip), rapl (cpu), falling back to estimate."""
    device: str = ""
    """Visible device for runs (index, UUID or PCI bus id); empty = the first visible one."""
    cpu_watts: Float = Field(150.0, gt=0, le=10_000)
    """For the estimate meter: package power under load, in W."""
    idle_watts: Float = Field(50.0, ge=0, le=10_000)
    """For the estimate meter: package power at idle, in W."""

    @model_validator(mode="after")
    def _idle_below_load(self) -> PlatformConfig:
        if self.idle_watts >= self.cpu_watts:
            raise ValueError(f"idle_watts ({self.idle_watts}) must be below cpu_watts ({self.cpu_watts})")
        return self

    @property
    def compiler_line(self) -> str:
        return self.compiler or DEFAULT_COMPILERS[self.kind]


@dataclass(frozen=True, config=_CFG)
class MeasureConfig:
    """The [measure] table: the energy measurement protocol."""

    repeat: Int = Field(0, ge=0, le=1000)
    """Measured runs per candidate; 0 = the platform's default (DEFAULT_REPEAT: 3 on GPUs, 2 on CPU)."""
    settle_timeout_s: Float = Field(10.0, ge=0, le=3600)
    """Longest wait for power to return to idle before a run, in s."""
    idle_window_s: Float = Field(1.0, ge=0, le=600)
    """Idle window sampled before each run, in s."""
    post_max_s: Float = Field(15.0, ge=0, le=60)
    """Longest tail sampled after a run (the paper's fixed wait), in s."""
    settle_tolerance: Float = Field(0.05, gt=0, lt=1)
    """'Back at idle' means within this fraction of the idle baseline."""
    sample_interval_s: Float = Field(0.01, gt=0, le=1)
    """Power sampling interval, in s."""
    random_delay_s: Float = Field(0.5, ge=0, le=600)
    """Upper bound of a random delay between repeats, in s."""
    min_improvement: Float = Field(0.02, ge=0, lt=1)
    """A new best must use this fraction less energy (guards against noise)."""
    count_work: Bool = True
    """CUDA: count kernel launches and copies with a CUPTI injection library."""
    significance: Float = Field(0.05, gt=0, lt=0.5)
    """One-sided level of the stage-3 Welch test 'lower than the best beyond the noise'."""
    confirm_repeats: Int = Field(3, ge=0, le=1000)
    """Stage 4: interleaved runs of source and best, per side (>= 3; 0 = no confirmation)."""
    confirm_candidates: Int = Field(3, ge=1, le=100)
    """Stage 4: candidates re-measured in turn when the best does not confirm."""
    confidence: Float = Field(0.95, gt=0.5, lt=1)
    """Two-sided level of the confirmed saving's interval."""
    paper_post_s: Float = Field(0.0, ge=0, le=60)
    """Sample this long after exit (15 = the paper's window, for its Eq. 4 exactly as published), in s."""

    @model_validator(mode="after")
    def _confirm_repeats(self) -> MeasureConfig:
        if 0 < self.confirm_repeats < 3:
            raise ValueError(f"confirm_repeats must be >= 3 (or 0 to skip confirmation), got {self.confirm_repeats}")
        return self

    def repeats_for(self, kind: str) -> int:
        """Measured runs per candidate on platform `kind` (`repeat`, or the platform default)."""
        return self.repeat if self.repeat > 0 else DEFAULT_REPEAT.get(kind, 3)


# Measured runs per candidate when [measure].repeat is 0 (docs/trial.md): three on GPUs, whose
# (core/platforms.py)
DEFAULT_REPEAT = {k: f.default_repeat for k, f in PLATFORM_FACTS.items()}


@dataclass(frozen=True, config=_CFG)
class LLMConfig:
    """The [llm] table: models, limits and the pass policy of the refactoring loop."""

    backend: Backend = "openai"
    """openai (any OpenAI-compatible server) or replay (recorded transcripts)."""
    replay_path: str = ""
    """For backend = replay: a transcript (.jsonl), a folder of them, or a trial .h5."""
    replay_delay_s: Float = Field(0.0, ge=0, le=3600)
    """For backend = replay: wait this long per call, as a live model would (benchmarks, tests)."""
    base_url: Annotated[str, AfterValidator(_url)] = ""
    """Server URL; empty = the SDK default or OPENAI_BASE_URL."""
    api_key_env: Annotated[str, AfterValidator(_env_name)] = "OPENAI_API_KEY"
    """Name of the variable holding the key; the key itself never enters a file."""
    generator_model: NonEmpty = "gpt-4.1"
    judge_model: NonEmpty = "gpt-4.1"
    context_model: NonEmpty = "gpt-4.1"
    reasoning_models: list[NonEmpty] = field(default_factory=lambda: ["o1*", "o3*", "o4*", "gpt-5*"])
    """Model name patterns that take no temperature (reasoning models)."""
    timeout_s: Float = Field(600.0, gt=0, le=86400)
    """Timeout of one request, in s."""
    max_retries: Int = Field(4, ge=0, le=100)
    retry_base_s: Float = Field(1.0, ge=0, le=3600)
    """First backoff delay; doubles per retry, with jitter."""
    retry_max_s: Float = Field(60.0, ge=0, le=86400)
    max_tokens: Int = Field(16000, ge=1, le=10_000_000)
    """Longest reply, in tokens."""
    temperature: Float = Field(0.2, ge=0, le=2)
    temperature_step: Float = Field(0.2, gt=0, le=2)
    temperature_max: Float = Field(0.8, ge=0, le=2)
    max_iterations: Int = Field(10, ge=0, le=10_000)
    max_self_corrections: Int = Field(5, ge=0, le=1000)
    max_nonimproving: Int = Field(4, ge=0, le=10_000)
    """Stop rule for models without temperature."""
    pass_policy: PassPolicy = "judge_and_verifier"

    @model_validator(mode="after")
    def _consistent(self) -> LLMConfig:
        if self.temperature_max < self.temperature:
            raise ValueError(f"temperature_max ({self.temperature_max}) must be >= temperature ({self.temperature})")
        if self.retry_max_s < self.retry_base_s:
            raise ValueError(f"retry_max_s ({self.retry_max_s}) must be >= retry_base_s ({self.retry_base_s})")
        return self


@dataclass(frozen=True, config=_CFG)
class SlurmConfig:
    """The [slurm] table: how batch jobs are submitted."""

    partition: str = ""
    account: str = ""
    qos: str = ""
    exclusive: Bool = True
    gres: str = "gpu:1"
    time: Annotated[str, AfterValidator(_slurm_time)] = "02:00:00"
    array_parallelism: Int = Field(8, ge=1, le=100_000)
    cpus_per_task: Int = Field(8, ge=1, le=4096)
    mem_gb: Int = Field(64, ge=0, le=65536)
    """Memory per job; 0 = no --mem line (the partition's default)."""
    extra: list[str] = field(default_factory=list)
    """Extra sbatch options, e.g. "--constraint=a100"."""
    trials_per_node: Int = Field(1, ge=1, le=1024)
    """Trial workers sharing one node: LLM waits overlap, one measured run per GPU at a time."""
    max_restarts: Int = Field(3, ge=0, le=1000)
    """Requeues of one job (preemption, time limit) before its unfinished trials end failed."""
    max_attempts: Int = Field(3, ge=1, le=1000)
    """Starts of one trial that crashed (no clean stop) before it ends failed."""
    signal_delay_s: Int = Field(90, ge=10, le=86400)
    """USR2 this long before the time limit, so that a trial stops at a step boundary."""
    setup: list[str] = field(default_factory=list)
    """Shell lines run before the worker starts (module load ...)."""


@dataclass(frozen=True, config=_CFG)
class ContainerConfig:
    """The [container] table: run builds and programs in a container image."""

    runtime: Runtime = "none"
    image: str = ""
    binds: list[str] = field(default_factory=list)
    sandbox: Sandbox = "auto"
    """Isolation of generated code on the host: auto or bwrap (bubblewrap; nothing runs without
    it), or none (no isolation at all, only when chosen here). Inside Apptainer the container is
    the sandbox (docs/security.md)."""

    @model_validator(mode="after")
    def _image_given(self) -> ContainerConfig:
        if self.runtime == "apptainer" and not self.image:
            raise ValueError("image is required when runtime = 'apptainer'")
        return self


@dataclass(frozen=True, config=_CFG, kw_only=True)
class StudyFile:
    """A study file: settings shared by its trials, and its apps."""

    study: StudySection = field(default_factory=StudySection)
    platform: PlatformConfig = field(default_factory=PlatformConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    container: ContainerConfig = field(default_factory=ContainerConfig)
    apps: Annotated[list[AppEntry], Field(min_length=1)]
    """The apps ([[apps]] entries), at least one."""


@dataclass(frozen=True, config=_CFG)
class StudyApp:
    app: AppConfig
    args: list[str]
    """Effective run arguments for this study."""


@dataclass(frozen=True, config=_CFG)
class StudyConfig:
    """A loaded study: validated settings and apps, paths resolved."""

    name: Name
    trials: Annotated[Int, Field(ge=1)]
    k: list[int]
    out: Path
    platform: PlatformConfig
    measure: MeasureConfig
    llm: LLMConfig
    slurm: SlurmConfig
    container: ContainerConfig
    apps: list[StudyApp]
    source: Path | None = None
    """The TOML file it came from."""

    def to_dict(self) -> dict[str, Any]:
        return _adapter(StudyConfig).dump_python(self, mode="json")


# ---------------------------------------------------------------- validation messages


@functools.cache
def _adapter(cls: Any) -> TypeAdapter[Any]:
    return TypeAdapter(cls)


def json_schema(kind: str) -> dict[str, Any]:
    """JSON Schema of an app.toml (`app`) or a study file (`study`)."""
    cls = {"app": AppFile, "study": StudyFile}[kind]
    schema = _adapter(cls).json_schema()
    title = {"app": "lassi-batch app.toml", "study": "lassi-batch study file"}[kind]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": title}


def _toml_type(v: Any) -> str:
    for t, n in ((bool, "boolean"), (int, "integer"), (float, "float"), (str, "string"), (list, "array"), (dict, "table")):
        if isinstance(v, t):
            return n
    return type(v).__name__


_EXPECTED = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "string_type": "a string",
    "bool_type": "true or false", "bool_parsing": "true or false", "list_type": "an array",
    "dict_type": "a table", "dataclass_type": "a table", "dataclass_args_type": "a table", "model_type": "a table",
}
_BOUNDS = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"),
           "less_than_equal": ("<=", "le"), "less_than": ("<", "lt")}


def _unwrap(tp: Any) -> Any:
    """The dataclass, dict or list type behind Optional/Annotated."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin is Union or type(tp).__name__ == "UnionType":
            tp = next((a for a in get_args(tp) if a is not type(None)), tp)
            if get_origin(tp) is not Annotated and not (get_origin(tp) is Union):
                return tp
        else:
            return tp


def _keys_at(root: Any, loc: tuple[Any, ...]) -> list[str]:
    """Field names of the table at `loc` below `root` (for 'did you mean' hints)."""
    tp = root
    for part in loc:
        tp = _unwrap(tp)
        if dataclasses.is_dataclass(tp) and isinstance(part, str):
            tp = get_type_hints(tp, include_extras=True).get(part)
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
        elif get_origin(tp) is list:
            tp = get_args(tp)[0]
        else:
            return []
        if tp is None:
            return []
    tp = _unwrap(tp)
    return [f.name for f in dataclasses.fields(tp)] if dataclasses.is_dataclass(tp) else []


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _message(e: dict[str, Any], root: Any) -> str:
    t, ctx, v = e["type"], e.get("ctx") or {}, e.get("input")
    loc = tuple(e["loc"])
    if t == "missing":
        return "missing required key"
    if t in ("extra_forbidden", "unexpected_keyword_argument"):
        near = difflib.get_close_matches(str(loc[-1]), _keys_at(root, loc[:-1]), n=1)
        return "unknown key" + (f" (did you mean '{near[0]}'?)" if near else "")
    if t in _BOUNDS:
        op, key = _BOUNDS[t]
        bound = ctx.get(key)
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        return f"must be {op} {bound} (got {v!r})"
    if t == "too_short":
        return "must not be empty"
    if t == "literal_error":
        choices = ", ".join(re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
        return f"'{v}' is not one of {choices}"
    if t == "value_error":
        return str(ctx.get("error") or e["msg"])
    if t in _EXPECTED:
        return f"expected {_EXPECTED[t]}, got {_toml_type(v)} {v!r}"
    return str(e["msg"])


def validation_problems(err: ValidationError, where: str, root: Any = None) -> list[str]:
    """One line per problem: `<where>: <dotted.key>: <what is wrong>`."""
    out: list[str] = []
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        if loc and loc[-1] == "[key]":  # a table name that is not allowed there
            choices = ", ".join(re.findall(r"'([^']*)'", str((e.get("ctx") or {}).get("expected", ""))))
            what = "platform" if len(loc) >= 2 and loc[-3:-2] == ("platforms",) else "table"
            line = f"{_where(loc[:-1])}: unknown {what} '{loc[-2]}' (use {choices})"
        else:
            key = _where(loc)
            line = f"{key}: {_message(e, root)}" if key else _message(e, root)
        line = f"{where}: {line}" if where else line
        if line not in out:
            out.append(line)
    return out


def _validate(cls: Any, data: Any, where: str, problems: list[str]) -> Any:
    try:
        return _adapter(cls).validate_python(data)
    except ValidationError as e:
        problems.extend(validation_problems(e, where, cls))
        return None


# ---------------------------------------------------------------- loading


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
    except UnicodeDecodeError:
        problems.append(f"{path}: not a TOML file (not UTF-8 text; a study or app.toml is expected)")
    except OSError as e:
        problems.append(f"{path}: cannot read: {e.strerror}")
    return None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _resolve_builds(f: AppFile, path: Path, where: str, problems: list[str]) -> dict[str, PlatformBuild]:
    """Each platform's folder made absolute, and every file it names checked to exist there."""
    plats: dict[str, PlatformBuild] = {}
    for kind, pb in f.platforms.items():
        pw = f"{where}: platforms.{kind}"
        folder = path
        if pb.dir is not None:
            unset = unset_vars(str(pb.dir))
            if unset:
                problems.append(f"{pw}.dir: environment variable {unset[0]} is not set (dir '{pb.dir}')")
                continue
            folder = expand(pb.dir, path).resolve()
            if not folder.is_dir():
                problems.append(f"{pw}.dir: folder not found: {folder}")
                continue
        for name in [*pb.files, *pb.extra_files]:
            if not (folder / name).is_file():
                problems.append(f"{pw}: file '{name}' not found in {folder}")
        plats[kind] = dataclasses.replace(pb, dir=folder) if pb.dir is not None else pb
    return plats


def load_app(app_dir: str | Path, overrides: dict[str, Any] | None = None, *, where: str | None = None) -> AppConfig:
    """Load `APP_DIR/app.toml`; `overrides` (a study's inline entry) are merged over its keys.

    `where` labels problems found in the overrides (the study entry); problems in app.toml itself
    are labelled with its path.
    """
    path = Path(app_dir).expanduser()
    if not path.is_dir():
        raise ConfigError(f"app folder not found: {path}")
    path = path.resolve()
    toml_path = path / "app.toml"
    problems: list[str] = []
    table: dict[str, Any] = {}
    label = where or str(toml_path)
    if toml_path.is_file():
        table = _read_toml(toml_path, problems) or {}
        if not problems:
            _validate(AppFile, table, str(toml_path), problems)
        if problems:
            raise ConfigError(problems)
    elif not overrides or "platforms" not in overrides:
        raise ConfigError(f"{path}: no app.toml, and the study entry gives no [platforms] for it")
    f = _validate(AppFile, _merge(table, overrides or {}), label, problems)
    if f is None:
        raise ConfigError(problems)
    name = f.name or path.name
    try:
        _name(name)
    except ValueError as e:
        problems.append(f"{label}: name: {e} (from the folder name; set name)")
    plats = _resolve_builds(f, path, label, problems)
    if not f.platforms:
        problems.append(f"{label}: no [platforms.<cuda|hip|cpu>] table")
    if problems:
        raise ConfigError(problems)
    run = f.run
    return AppConfig(name=name, path=path, platforms=plats, args=run.args,
                     test_args=run.args if run.test_args is None else run.test_args,
                     time_limit_s=run.time_limit_s, memory_limit_mb=run.memory_limit_mb, check=f.check,
                     description=f.description, probe=run.probe())


def _entry_name(entry: Any) -> str:
    """The name an [[apps]] entry goes by before it is loaded: its `name`, else its folder's name."""
    if not isinstance(entry, dict):
        return ""
    if isinstance(entry.get("name"), str):
        return entry["name"]
    raw = entry.get("path")
    return os.path.basename(str(raw).rstrip("/")) if isinstance(raw, str) else ""


def study_app_names(path: str | Path) -> list[str]:
    """The names of a study file's [[apps]] entries, without loading them."""
    problems: list[str] = []
    data = _read_toml(Path(path).expanduser(), problems)
    if data is None:
        raise ConfigError(problems)
    apps = data.get("apps")
    return [n for n in (_entry_name(e) for e in apps) if n] if isinstance(apps, list) else []


def parse_study(data: dict[str, Any], base: Path, source: Path | None = None, *,
                apps: list[str] | None = None, where: str = "study.toml") -> StudyConfig:
    """Validate a study's TOML data; apps are loaded from `base`-relative folders.

    `apps` restricts the study to those names: the other entries' folders are not looked at, so
    one app of a large study can run while the others are absent.
    """
    problems: list[str] = []
    whole = _validate(StudyFile, data, where, problems)
    raw_apps = data.get("apps") if isinstance(data.get("apps"), list) else []
    if whole is None and not isinstance(data.get("apps"), list):
        raise ConfigError(problems)

    chosen = list(range(len(raw_apps)))
    if apps is not None:
        names = [_entry_name(e) for e in raw_apps]
        unknown = [a for a in apps if a not in names]
        if unknown:
            problems.append(f"--apps: no app named {', '.join(repr(u) for u in unknown)} in {where} "
                            f"(has: {', '.join(n for n in names if n)})")
        chosen = [i for i, n in enumerate(names) if n in apps]

    plat = whole.platform if whole else _validate(PlatformConfig, data.get("platform", {}), "", [])
    kind = plat.kind if plat is not None else None
    loaded: list[StudyApp] = []
    seen: dict[str, int] = {}
    for i in chosen:
        entry = _validate(AppEntry, raw_apps[i], "", []) if whole is None else whole.apps[i]
        if entry is None:
            continue  # its problems are among the file's
        label = f"{where}: apps[{i}]" + (f" ({_entry_name(raw_apps[i])})" if _entry_name(raw_apps[i]) else "")
        unset = unset_vars(entry.path)
        if unset:
            problems.append(f"{label}: path: environment variable {unset[0]} is not set (path '{entry.path}')")
            continue
        overrides = {k: v for k, v in raw_apps[i].items() if k not in ("path", "args")}
        try:
            app = load_app(expand(entry.path, base), overrides or None, where=label)
        except ConfigError as e:
            problems.extend(p if p.startswith(where) else f"{label}: {p}" for p in e.problems)
            continue
        if app.name in seen:
            problems.append(f"{label}: app name '{app.name}' appears twice (also apps[{seen[app.name]}]); "
                            "give one a distinct name")
        seen.setdefault(app.name, i)
        if kind is not None:
            if kind not in app.platforms:
                problems.append(f"{label}: app '{app.name}' has no build for platform '{kind}' "
                                f"(has: {', '.join(sorted(app.platforms))})")
                continue
            app = app.on(kind)
        loaded.append(StudyApp(app=app, args=entry.args if entry.args is not None else app.args))

    out: Path | None = None
    if whole is not None:
        raw_out = whole.study.out or f"runs/{whole.study.name}"
        unset = unset_vars(raw_out)
        if unset:
            problems.append(f"{where}: study.out: environment variable {unset[0]} is not set (out '{raw_out}')")
        else:
            out = expand(raw_out, base)
    llm, container = (whole.llm, whole.container) if whole else (None, None)
    if llm is not None and llm.replay_path:  # files named in the study are relative to it
        llm = dataclasses.replace(llm, replay_path=str(_file_path(llm.replay_path, base, f"{where}: llm.replay_path", problems)))
    if container is not None and container.image and "://" not in container.image:
        image = _file_path(container.image, base, f"{where}: container.image", problems)
        container = dataclasses.replace(container, image=str(image))
    if problems or whole is None or out is None or llm is None or container is None:
        raise ConfigError(problems)
    s = whole.study
    return StudyConfig(name=s.name, trials=s.trials, k=sorted(set(s.k)), out=out, platform=whole.platform,
                       measure=whole.measure, llm=llm, slurm=whole.slurm, container=container,
                       apps=loaded, source=source)


def _file_path(raw: str, base: Path, label: str, problems: list[str]) -> Path:
    unset = unset_vars(raw)
    if unset:
        problems.append(f"{label}: environment variable {unset[0]} is not set ('{raw}')")
        return Path(raw)
    return expand(raw, base)


def retarget(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`data` with `overrides` merged in; a new platform kind drops the old kind's compiler, meter and device.

    A study's compiler line and meter belong to its own platform kind (nvcc flags mean nothing to g++).
    """
    kind = (overrides.get("platform") or {}).get("kind")
    plat = data.get("platform")
    if kind and isinstance(plat, dict) and plat.get("kind", "cpu") != kind:
        data = {**data, "platform": {k: v for k, v in plat.items() if k not in ("compiler", "meter", "device")}}
    over = overrides.get("study") or {}
    study = data.get("study") if isinstance(data.get("study"), dict) else {}
    k = study.get("k")
    if isinstance(over.get("trials"), int) and "k" not in over and isinstance(k, list):
        # fewer trials than some k: those k are dropped (pass@k needs n >= k)
        kept = [x for x in k if isinstance(x, int) and x <= over["trials"]]
        overrides = _merge(overrides, {"study": {"k": kept or [1]}})
    return _merge(data, overrides)


def load_study(path: str | Path, *, apps: list[str] | None = None,
               overrides: dict[str, Any] | None = None) -> StudyConfig:
    """Read and validate a study file; `apps` restricts it, `overrides` replace keys (command-line flags)."""
    p = Path(path).expanduser()
    problems: list[str] = []
    data = _read_toml(p, problems)
    if data is None:
        raise ConfigError(problems)
    if overrides:
        data = retarget(data, overrides)
    return parse_study(data, p.resolve().parent, source=p.resolve(), apps=apps, where=str(path))


# ---------------------------------------------------------------- C++ standard of a build line

# Headers of CUDA's C++ core libraries (Thrust, CUB, libcu++): from CUDA 13 on they stop with
# "#error ... requires at least C++17" below that standard; CUDA 12 only deprecates C++14.
CCCL_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*[<"](?:thrust|cub|cuda)/', re.MULTILINE)
_STD_FLAG = re.compile(r"^--?std(?:=(.*))?$")
_STD_ALIASES = {"1y": 14, "1z": 17, "2a": 20, "2b": 23, "2c": 26}


def cxx_standard(argv: list[str]) -> int | None:
    """The C++ standard (11, 14, 17, ...) the last -std/--std flag of a command line selects; None without one.

    nvcc, g++ and clang take the last flag given, so a per-app `-std=c++17` after the study's
    compiler line wins. c++98/c++03 read as 3.
    """
    found: int | None = None
    for i, arg in enumerate(argv):
        m = _STD_FLAG.match(arg)
        if not m:
            continue
        value = m.group(1) if m.group(1) is not None else (argv[i + 1] if i + 1 < len(argv) else "")
        v = re.fullmatch(r"(?:c|gnu)\+\+(\w\w)", value)
        if v:
            year = v.group(1)
            found = _STD_ALIASES.get(year) or (3 if year in ("98", "03") else int(year) if year.isdigit() else found)
    return found


def cuda_release(version_line: str) -> tuple[int, int] | None:
    """(major, minor) from nvcc's version line ('Cuda compilation tools, release 13.0, V13.0.88')."""
    m = re.search(r"release (\d+)\.(\d+)", version_line)
    return (int(m.group(1)), int(m.group(2))) if m else None


def std_warning(argv: list[str], release: tuple[int, int] | None, sources: dict[str, str]) -> str | None:
    """Why a CUDA build line's C++ standard is older than the installed CUDA's headers need, or None.

    Knowable only when the CUDA release is known and a source includes Thrust, CUB or libcu++
    (CUDA 13 requires C++17 for them); a line without -std gets nvcc's default (C++17), so it passes.
    """
    std = cxx_standard(argv)
    if release is None or release[0] < 13 or std is None or std >= 17:
        return None
    users = sorted(name for name, text in sources.items() if CCCL_INCLUDE.search(text))
    if not users:
        return None
    return (f"the build line compiles with C++{std:02d}, but CUDA {release[0]}.{release[1]}'s Thrust/CUB/libcu++ "
            f"headers (included by {', '.join(users)}) need C++17 or newer; add -std=c++17 to the app's build "
            f"line (build = \"{{compiler}} -std=c++17 -o {{exe}} {{sources}}\") or to the study's compiler")

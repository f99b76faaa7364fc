"""The study folder and its manifest: which study made it, its trials, every submission.

The manifest is the one file that ties a study folder to its study: the study file's bytes are
copied next to it and hashed, so a folder is never filled by two different studies. Each
submission writes the effective settings it ran with (the study after command-line overrides)
to its own file, so jobs still queued from an earlier submission keep theirs.

Layout of a study folder (the study's `out`):

    manifest.json           format, version, study hash, trial list, submissions
    study.toml              the study file as submitted
    trials/<key>.h5         one archive per trial (written by the trial program)
    logs/<key>.out|.err     the trial program's output, appended by every attempt
    attempts/<key>.jsonl    one line per start and end of a trial attempt (host, job, GPU, exit)
    submissions/NNN.json    the effective settings of submission NNN
    slurm/                  submitit's job folders (sbatch scripts, pickles, scheduler logs)
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from filelock import FileLock

from ..core.config import StudyConfig, parse_study
from ..core.errors import ConfigError

FORMAT = "lassi-batch-study"
VERSION = 1
MANIFEST = "manifest.json"
STUDY_COPY = "study.toml"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class TrialRef:
    """One (app, trial index) of a study and where its files live."""

    app: str
    index: int
    platform: str
    key: str  # file stem: <app>.<platform>.t<NNN>

    @staticmethod
    def of(app: str, platform: str, index: int) -> TrialRef:
        return TrialRef(app=app, index=index, platform=platform, key=f"{app}.{platform}.t{index:03d}")


@dataclass
class StudyFolder:
    """Paths inside one study folder; no I/O beyond what each method says."""

    root: Path

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def archive(self, t: TrialRef) -> Path:
        return self.root / "trials" / f"{t.key}.h5"

    def stdout(self, t: TrialRef) -> Path:
        return self.root / "logs" / f"{t.key}.out"

    def stderr(self, t: TrialRef) -> Path:
        return self.root / "logs" / f"{t.key}.err"

    def attempts(self, t: TrialRef) -> Path:
        return self.root / "attempts" / f"{t.key}.jsonl"

    def submission(self, number: int) -> Path:
        return self.root / "submissions" / f"{number:03d}.json"

    @property
    def slurm_dir(self) -> Path:
        return self.root / "slurm"

    def lock(self) -> FileLock:
        """Serialises manifest updates (two `submit`s of one study at once)."""
        return FileLock(str(self.root / ".manifest.lock"))


@dataclass
class Submission:
    number: int
    at: str
    executor: str  # slurm | local
    settings: str  # path of the effective settings file, relative to the study folder
    jobs: dict[str, str] = field(default_factory=dict)  # trial key -> job id ("1234_5"; "local" for local)
    arrays: list[str] = field(default_factory=list)  # Slurm array job ids of this submission


@dataclass
class Manifest:
    study_name: str
    study_file: str  # the original path (relative app paths resolve against its folder)
    study_sha256: str
    base: str  # folder that relative paths in the study resolve against
    trials: list[TrialRef] = field(default_factory=list)
    submissions: list[Submission] = field(default_factory=list)
    created: str = field(default_factory=now_iso)
    format: str = FORMAT
    version: int = VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(d: dict[str, Any], where: Path) -> Manifest:
        if d.get("format") != FORMAT:
            raise ConfigError(f"{where}: not a lassi-batch study manifest")
        if d.get("version") != VERSION:
            raise ConfigError(f"{where}: manifest version {d.get('version')} is not supported by this lassi-batch "
                              f"(it reads version {VERSION}); use the lassi-batch that made it, or another output folder")
        try:
            return Manifest(
                study_name=d["study_name"], study_file=d["study_file"], study_sha256=d["study_sha256"], base=d["base"],
                trials=[TrialRef(**t) for t in d["trials"]], created=d["created"],
                submissions=[Submission(**s) for s in d["submissions"]],
            )
        except (KeyError, TypeError) as e:
            raise ConfigError(f"{where}: damaged manifest ({type(e).__name__}: {e})") from None

    def last_job(self) -> dict[str, str]:
        """Each trial's most recent job id."""
        out: dict[str, str] = {}
        for s in self.submissions:
            out.update(s.jobs)
        return out

    def submitted_trials(self) -> list[TrialRef]:
        return self.trials


def read_manifest(folder: StudyFolder) -> Manifest | None:
    p = folder.manifest_path
    if not p.exists():
        return None
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{p}: cannot read the study manifest ({e})") from None
    return Manifest.from_json(d, p)


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_manifest(folder: StudyFolder, m: Manifest) -> None:
    write_json_atomic(folder.manifest_path, m.to_json())


def check_folder(folder: StudyFolder, sha: str, study_file: Path) -> Manifest | None:
    """The existing manifest, after checking that the same study made it; exit 2 otherwise."""
    m = read_manifest(folder)
    if m is not None and m.study_sha256 != sha:
        raise ConfigError(
            f"{folder.root} was made by another study ({m.study_file}, sha256 {m.study_sha256[:12]}) than "
            f"{study_file} (sha256 {sha[:12]}); use another [study].out or --out")
    return m


# ------------------------------------------------------------------ effective settings


def study_data(study_file: Path) -> dict[str, Any]:
    """The study file as a TOML dict (the form overrides are applied to)."""
    try:
        with open(study_file, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{study_file}: file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{study_file}: invalid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{study_file}: not a TOML file (not UTF-8 text; a study file is expected)") from None
    except OSError as e:
        raise ConfigError(f"{study_file}: cannot read: {e.strerror}") from None


@dataclass
class Settings:
    """What a worker needs to rebuild the exact study a submission ran: TOML data and base folder."""

    data: dict[str, Any]
    base: str
    source: str
    apps: list[str] | None = None  # the apps chosen with --apps (None: all)

    def study(self) -> StudyConfig:
        return parse_study(self.data, Path(self.base), source=Path(self.source), apps=self.apps, where=self.source)

    def to_json(self) -> dict[str, Any]:
        return {"data": self.data, "base": self.base, "source": self.source, "apps": self.apps}

    @staticmethod
    def load(path: Path) -> Settings:
        d = json.loads(path.read_text())
        return Settings(data=d["data"], base=d["base"], source=d["source"], apps=d.get("apps"))


def trial_list(study: StudyConfig) -> list[TrialRef]:
    return [TrialRef.of(a.app.name, study.platform.kind, i) for a in study.apps for i in range(study.trials)]

"""The export's options and the records passed between its stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..core.errors import ConfigError
from .formats import FORMATS
from .records import CandidateData, TrialData
from .trust import POLICIES, Screening


class ExportOptions(BaseModel):
    """What to export and how; validated before any trial is read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str
    seed: int = 0
    min_reduction: float = Field(0.0, ge=0.0, lt=1.0)  # fraction of the source's energy
    significant: bool = False  # only savings outside the noise interval
    pass_policy: str = "recorded"
    platforms: tuple[str, ...] = ()
    models: tuple[str, ...] = ()  # fnmatch patterns on the generator model
    apps: tuple[str, ...] = ()  # fnmatch patterns
    holdout_apps: tuple[str, ...] = ()  # fnmatch patterns: these apps all go to test
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    near_dup_threshold: float | None = Field(0.9, gt=0.0, le=1.0)  # None: exact duplicates only
    max_pairs_per_trial: int = Field(16, ge=1)
    license: str = "other"
    include_replayed: bool = False  # export trials whose LLM answers were replayed from transcripts

    @field_validator("format")
    @classmethod
    def _fmt(cls, v: str) -> str:
        if v not in FORMATS:
            raise ValueError(f"unknown format {v!r} (choose from {', '.join(FORMATS)})")
        return v

    @field_validator("pass_policy")
    @classmethod
    def _policy(cls, v: str) -> str:
        if v not in POLICIES:
            raise ValueError(f"unknown pass policy {v!r} (choose from {', '.join(POLICIES)})")
        return v

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(x < 0 for x in v) or abs(sum(v) - 1.0) > 1e-6 or v[0] <= 0:
            raise ValueError("split fractions must be >= 0, sum to 1, and give train a share")
        return v

    @classmethod
    def parse(cls, **kw: Any) -> ExportOptions:
        """Build from keyword arguments; ConfigError (exit 2) with one line per problem."""
        try:
            return cls(**kw)
        except ValidationError as e:
            raise ConfigError([f"{'.'.join(str(x) for x in err['loc']) or 'options'}: {err['msg']}"
                               for err in e.errors()]) from None


@dataclass
class Cand:
    """A candidate with its normalised screening and its saving against the trial's source."""

    data: CandidateData
    s: Screening
    ok: bool  # passes the pass policy
    reduction: float | None
    significant: bool | None
    improves: bool = False  # the trial itself counted it as an improvement (trust.improvements)


@dataclass
class TrialView:
    t: TrialData
    source: Cand
    answers: list[Cand]  # stage 1 and 3 candidates that hold code
    prompt: list[dict[str, str]] | None
    verdict_basis: str
    energy_basis: str


@dataclass
class Item:
    """One output record and its manifest entry, before splitting."""

    app: str
    platform: str
    sort_key: tuple[Any, ...]
    record: dict[str, Any]
    dedup_text: str
    manifest: dict[str, Any]


@dataclass
class ExportResult:
    out: Path
    counts: dict[str, int]  # records per split
    skipped: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)

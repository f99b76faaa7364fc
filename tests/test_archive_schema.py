"""docs/hdf5-schema.md stays true: every name the archive writes is documented there."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from lassi_batch.core.records import Candidate, LLMCall
from lassi_batch.store import schema
from lassi_batch.store.measurement import CHANNELS, WINDOW_MARKERS
from lassi_batch.store.summary import SUMMARY_FIELDS

DOC = Path(__file__).resolve().parents[1] / "docs" / "hdf5-schema.md"


def _schema_names() -> set[str]:
    names: set[str] = set()
    for value in vars(schema).values():
        if isinstance(value, tuple) and value and all(isinstance(v, str) for v in value):
            names.update(value)
        elif isinstance(value, dict) and value and all(isinstance(v, str) for v in value.values()):
            names.update(value.values())
    return names


def test_every_schema_name_is_documented() -> None:
    text = re.sub(r"```.*?```", "", DOC.read_text(), flags=re.S)  # code blocks are examples
    documented = set(re.findall(r"`([^`\n]+)`", text))
    documented |= {w for d in documented for w in re.split(r"[ ,/=<>]+", d)}
    names = _schema_names()
    names |= set(SUMMARY_FIELDS) | set(WINDOW_MARKERS) | set(CHANNELS)
    names |= {f.name for f in dataclasses.fields(LLMCall)} | {f.name for f in dataclasses.fields(Candidate)} - {"id", "verifier", "work_counts"}
    assert {"schema_version", "summary", "attempts", "replay_match", "journal_seq", "status"} <= names
    missing = sorted(n for n in names if n not in documented)
    assert not missing, f"names written to trial files but not documented in {DOC.name}: {missing}"


def test_document_names_the_current_version() -> None:
    text = DOC.read_text()
    assert f"schema version {schema.SCHEMA_VERSION}" in text.splitlines()[0]
    assert f"`schema_version` | int | `{schema.SCHEMA_VERSION}`" in text

"""docs/app-format.md and the settings model stay in step; `schema` prints the model's JSON Schema."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from lassi_batch.cli import main as cli
from lassi_batch.core.config import AppEntry, AppFile, OutputCheck, PlatformBuild, RunSettings, json_schema

DOC = Path(__file__).resolve().parents[1] / "docs" / "app-format.md"
# heading of each key table in the document -> the model class whose fields it lists
TABLES = {"### Top level": AppFile, "### `[platforms.<kind>]`": PlatformBuild, "### `[run]`": RunSettings,
          "### `[check]`": OutputCheck, "## Inline `[[apps]]` entries of a study": AppEntry}


def _rows(heading: str) -> dict[str, list[str]]:
    """key -> cells of the first table after `heading`."""
    text = DOC.read_text()
    assert heading in text, heading
    after = text.split(heading, 1)[1].split("\n#", 1)[0]
    rows = {}
    for line in after.splitlines():
        m = re.match(r"^\| `([a-z_]+)` \|(.*)\|$", line)
        if m:
            rows[m.group(1)] = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", m.group(2))]
    return rows


def _own_fields(cls: type) -> list[dataclasses.Field]:
    inherited = {f.name for base in cls.__mro__[1:] if dataclasses.is_dataclass(base) for f in dataclasses.fields(base)}
    return [f for f in dataclasses.fields(cls) if f.name not in inherited]


def _toml(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    return repr(v)


@pytest.mark.parametrize("heading", list(TABLES))
def test_every_key_is_documented_and_every_documented_key_exists(heading: str) -> None:
    cls = TABLES[heading]
    rows = _rows(heading)
    fields = _own_fields(cls)
    assert sorted(rows) == sorted(f.name for f in fields)
    for f in fields:
        default = rows[f.name][1]
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            assert default == "required", f.name
            continue
        value = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if hasattr(value, "default"):  # pydantic FieldInfo
            value = value.default if value.default_factory is None else value.default_factory()
        if isinstance(value, (bool, int, float, str)) or value == []:
            assert f"`{_toml(value)}`" in default, (f.name, default, _toml(value))


def test_the_worked_example_is_a_valid_entry_of_the_shipped_study() -> None:
    import tomllib

    text = DOC.read_text()
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    entry = tomllib.loads(block)["apps"][0]
    shipped = tomllib.loads((DOC.parents[1] / "datasets" / "hecbench.toml").read_text())
    assert entry == next(a for a in shipped["apps"] if a["name"] == entry["name"])
    AppEntry(**{**entry, "platforms": {k: PlatformBuild(**v) for k, v in entry["platforms"].items()},
                "run": RunSettings(**entry["run"]), "check": OutputCheck(**entry["check"])})


@pytest.mark.parametrize("kind", ["app", "study"])
def test_schema_command_prints_the_json_schema(kind: str) -> None:
    r = CliRunner().invoke(cli, ["schema", kind])
    assert r.exit_code == 0, r.output
    schema = json.loads(r.output)
    assert schema == json_schema(kind)
    assert schema["$schema"].endswith("2020-12/schema") and schema["additionalProperties"] is False
    defs = schema["$defs"]
    check = defs["OutputCheck"]["properties"]
    assert check["rtol"]["minimum"] == 0 and "description" in check["pass_regex"]
    if kind == "study":
        assert set(schema["properties"]) == {"study", "platform", "measure", "llm", "slurm", "container", "apps"}
        assert defs["MeasureConfig"]["properties"]["sample_interval_s"]["exclusiveMinimum"] == 0
        assert defs["MeasureConfig"]["additionalProperties"] is False
        assert defs["PlatformConfig"]["properties"]["kind"]["enum"] == ["cuda", "hip", "cpu"]
        assert {"path", "args", "platforms", "run", "check"} <= set(defs["AppEntry"]["properties"])
    else:
        assert set(schema["properties"]) == {"name", "description", "platforms", "run", "check"}
        assert set(schema["properties"]["platforms"]["propertyNames"]["enum"]) == {"cuda", "hip", "cpu"}
    r = CliRunner().invoke(cli, ["schema", "nope"])
    assert r.exit_code == 2

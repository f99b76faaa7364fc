"""`lassi-batch schema app|study`: the JSON Schema of app.toml or of a study file, for editors."""

from __future__ import annotations

import json

import click

from ..core.config import json_schema


@click.command("schema")
@click.argument("kind", type=click.Choice(["app", "study"]))
def command(kind: str) -> None:
    """Print the JSON Schema of an app.toml (app) or a study file (study).

    Editors with TOML schema support (Taplo / Even Better TOML) complete and check files against
    it, e.g. with a first line `#:schema ./study.schema.json`.
    """
    click.echo(json.dumps(json_schema(kind), indent=2))

"""Shared by the commands that take a study: the `--apps a,b` option."""

from __future__ import annotations

import click


def apps_option(f):  # noqa: ANN001, ANN201 - a click decorator
    return click.option("--apps", "only_apps", default=None, metavar="A,B",
                        help="Only these apps of the study (comma-separated names); the others are not looked at.")(f)


def app_names(only_apps: str | None) -> list[str] | None:
    """The names given to --apps, or None for all of the study's apps."""
    if only_apps is None:
        return None
    names = [a.strip() for a in only_apps.split(",") if a.strip()]
    if not names:
        raise click.UsageError("--apps needs at least one app name")
    return names


def shipped_overrides(study_file: str) -> dict:
    """For a study shipped with the package: its relative `out` under the working directory."""
    from pathlib import Path

    from ..batch.manifest import study_data
    from ..batch.submit import shipped_out

    p = Path(study_file)
    out = shipped_out(study_data(p), p, Path.cwd()) if p.is_file() else None
    return {"study": {"out": out}} if out else {}

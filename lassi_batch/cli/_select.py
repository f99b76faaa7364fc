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


# The pass policies, spelled one way on every command (`both` is kept as another name of
# judge_and_verifier, the spelling recompute once used).
PASS_POLICY_CHOICES = ("recorded", "judge", "verifier", "judge_and_verifier", "strict")
PASS_POLICY_HELP = ("What counts as passing screening: recorded (as the trial decided), judge (judge VALID), verifier "
                    "(verifier pass or warn), judge_and_verifier (both of these; also spelled 'both'), strict (judge "
                    "VALID, a verifier pass without warnings, nothing held).")


def pass_policy_option(internal: dict[str, str] | None = None):  # noqa: ANN201 - a click decorator
    """--pass-policy with the shared spelling; `internal` maps a name to the one the library uses."""
    def to_library(ctx: click.Context, param: click.Parameter, value: str) -> str:
        value = "judge_and_verifier" if value == "both" else value
        return (internal or {}).get(value, value)

    return click.option("--pass-policy", type=click.Choice([*PASS_POLICY_CHOICES, "both"]), default="recorded",
                        show_default=True, callback=to_library, help=PASS_POLICY_HELP)

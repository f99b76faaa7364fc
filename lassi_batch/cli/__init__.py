"""Thin click layer: parse arguments, call the library, render with rich.

Expected failures (LassiError) become one line on stderr and an exit code (2 for usage and
config errors); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

import click
from pydantic import ValidationError

from .. import __version__
from ..core.config import validation_problems
from ..core.errors import ConfigError, LassiError, TrialInterrupted


class _Group(click.Group):
    def invoke(self, ctx: click.Context):  # noqa: D401
        try:
            return super().invoke(ctx)
        except ConfigError as e:
            for problem in e.problems:
                click.echo(f"error: {problem}", err=True)
            sys.exit(e.exit_code)
        except LassiError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)
        except ValidationError as e:  # a setting changed on the command line, checked by the same model
            for problem in validation_problems(e, "settings"):
                click.echo(f"error: {problem}", err=True)
            sys.exit(ConfigError.exit_code)
        except TrialInterrupted as e:
            click.echo(f"interrupted ({e}); the trial resumes where it stopped", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted; files written so far are kept", err=True)
            sys.exit(130)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="lassi-batch")
def main() -> None:
    """Run LASSI-EE energy-refactoring trials and keep every measurement in HDF5."""


def _register() -> None:
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        m = importlib.import_module(f"{__name__}.{mod.name}")
        cmd = getattr(m, "command", None)
        if isinstance(cmd, click.Command):
            main.add_command(cmd)


_register()

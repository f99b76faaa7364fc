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
    def main(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201 - click's signature
        """Usage errors (click's own and the commands') as one line on stderr, exit 2."""
        if kwargs.get("standalone_mode", True) is False:
            return super().main(*args, **kwargs)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        except click.UsageError as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # a bare `lassi-batch`: the help, as click prints it
                click.echo(e.format_message(), err=True)
                sys.exit(e.exit_code)
            where = e.ctx.command_path if e.ctx is not None else "lassi-batch"
            click.echo(f"error: {e.format_message()} (see {where} --help)", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            click.echo(f"error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        if isinstance(rv, int) and not isinstance(rv, bool):  # click hands back ctx.exit(n) / --help as a code
            sys.exit(rv)
        return rv

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

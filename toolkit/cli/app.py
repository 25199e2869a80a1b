"""The ``toolkit`` app: its global options, its commands (one module per group of them) and
the entry point that turns what goes wrong into one line and an exit code."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape
from typer.core import TyperCommand

from toolkit.cli.data import demo_data, leaks, separate
from toolkit.cli.deploy import export, predict
from toolkit.cli.plugins import new, plugins
from toolkit.cli.run import run, worker
from toolkit.cli.runs import report, reproduce
from toolkit.cli.support import (
    ClosedPipe,
    Command,
    Group,
    click_classes,
    err,
    guard_pipes,
    out,
    pipe_closed,
    silence_closed_pipe,
)
from toolkit.errors import USAGE_ERROR, ToolkitError
from toolkit.leaderboard.cli import register as register_leaderboard

app = typer.Typer(
    cls=Group,
    help="AutoML for audio-classification competitions: run, search, ensemble, submit.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

COMMANDS = (
    run,
    worker,
    reproduce,
    report,
    separate,
    predict,
    export,
    leaks,
    plugins,
    demo_data,
    new,
)
"""The commands in the order ``toolkit --help`` lists them (the leaderboard's comes last);
each is named after its function, ``_`` written ``-``."""


def print_version(value: bool) -> None:
    """Print ``toolkit VERSION`` and exit, when ``--version`` is given."""
    if value:
        from toolkit import __version__

        out.print(f"toolkit {__version__}")
        raise typer.Exit()


@app.callback()
def options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=print_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Options that come before the command."""


for _command in COMMANDS:
    app.command(_command.__name__.replace("_", "-"))(_command)
register_leaderboard(app)
for _info in app.registered_commands:  # every command's help, the leaderboard's included
    if _info.cls in (None, TyperCommand):
        _info.cls = Command


def main() -> None:
    """Entry point of the ``toolkit`` console script."""
    guard_pipes()
    try:
        code = app(standalone_mode=False)
    except ClosedPipe:
        sys.exit(silence_closed_pipe())
    except ToolkitError as exc:  # errors raised while typer builds the command
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except Exception as exc:
        kinds = click_classes(exc)
        if "NoArgsIsHelpError" in kinds:
            exc.show()  # type: ignore[attr-defined]  # `toolkit` alone: the help text
            sys.exit(USAGE_ERROR)
        if "ClickException" not in kinds:
            raise
        # a missing argument, an unknown option or command, a value of the wrong type
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "toolkit"
        message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
        err.print(
            f"[bold red]error:[/] {escape(command)}: {escape(message)} "
            f"(see '{escape(command)} --help')",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(getattr(exc, "exit_code", USAGE_ERROR))
    except typer.Abort:
        err.print("interrupted")
        sys.exit(130)
    if pipe_closed():  # e.g. the help text into `| head -1` (typer made it exit 130)
        sys.exit(silence_closed_pipe())
    sys.exit(code if isinstance(code, int) else 0)

"""The ``diffrl`` command.

Exit codes: 0 on success, 2 on a user error (a :class:`~diffrl_core.errors.DiffRLError`,
printed as one paragraph without a traceback, or a usage error), 1 on an internal failure,
130 / 143 when stopped by SIGINT (Ctrl-C) / SIGTERM (the shell's 128 + signal number), with a
one-line message and no traceback, whenever the signal comes (``diffrl train`` handles the
signals itself once training started, and saves a checkpoint first).
Heavy imports (torch, stable-baselines3) happen inside the subcommands that need them.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any, NoReturn

import click

from diffrl_core.commands.compare import compare
from diffrl_core.commands.evaluate import evaluate
from diffrl_core.commands.export import export
from diffrl_core.commands.gradcheck import gradcheck
from diffrl_core.commands.new_plugin import new_plugin
from diffrl_core.commands.plot import plot
from diffrl_core.commands.plugins import list_components, plugins
from diffrl_core.commands.sweep import sweep
from diffrl_core.commands.train import train
from diffrl_core.errors import EXIT_CODES, DiffRLError

# the end of the message of a command stopped by a signal: what it leaves behind (files are written atomically)
_LEFT_BEHIND = {
    "train": " before training started; no run folder was created",
    "eval": "; no file was written",
    "plot": "; no file was written",
    "compare": "; no file was written",
    "sweep": "; rerun the same command to continue (local runs saved a checkpoint; runs cancelled on Ray restart "
             "from their last state in the sweep folder)",
}


class Terminated(BaseException):
    """SIGTERM, raised in the main thread while a command runs, as Ctrl-C raises :class:`KeyboardInterrupt`.

    So that ``finally`` blocks run (temporary files and folders are removed) before the exit with 143.
    Not a :class:`KeyboardInterrupt`: plugin loading takes a ``KeyboardInterrupt`` that no Ctrl-C
    caused for the plugin's own failure, and would swallow it.
    """


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Make SIGTERM raise :class:`Terminated` while the command runs (the default handler is restored after)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield  # an embedding program's own handler (or SIG_IGN) is left alone
        return

    def handle(signum: int, frame: Any) -> None:
        # a second SIGTERM ends the process at once, even if some code swallowed the first exception
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Terminated

    signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _exit_interrupted(signum: int, command: str | None) -> NoReturn:
    """Exit with 130 / 143 and a one-line message (no traceback, unlike a ``KeyboardInterrupt`` left alone)."""
    if signum == signal.SIGINT and sys.stderr.isatty():
        click.echo(err=True)  # end the line of the terminal's ^C echo
    name = f"diffrl {command}" if command else "diffrl"
    click.echo(f"{name}: interrupted by {signal.Signals(signum).name}{_LEFT_BEHIND.get(command or '', '')}", err=True)
    sys.exit(EXIT_CODES[signum])


class _DiffRLGroup(click.Group):
    """Turns a :class:`DiffRLError` raised anywhere in a subcommand into exit code 2, and a signal into 130 / 143.

    (click itself would report a ``KeyboardInterrupt`` as ``Aborted!``, with exit code 1.)
    """

    def main(self, *args: Any, **kwargs: Any) -> Any:
        try:
            with _sigterm_raises():
                return super().main(*args, **kwargs)
        except Terminated:  # between click's steps, outside the handlers below
            _exit_interrupted(signal.SIGTERM, None)

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:  # parsing the command line, --help and --version
            return super().make_context(info_name, args, parent, **extra)
        except KeyboardInterrupt:
            _exit_interrupted(signal.SIGINT, None)
        except Terminated:
            _exit_interrupted(signal.SIGTERM, None)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DiffRLError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            _exit_interrupted(signal.SIGINT, ctx.invoked_subcommand)
        except Terminated:
            _exit_interrupted(signal.SIGTERM, ctx.invoked_subcommand)


@click.group(cls=_DiffRLGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="diffrl-core")
def main() -> None:
    """diffrl: compose stable-baselines3 policies from plugin components, by name."""


for command in (plugins, list_components, train, sweep, evaluate, plot, compare, export, gradcheck, new_plugin):
    main.add_command(command)


if __name__ == "__main__":  # pragma: no cover
    main()

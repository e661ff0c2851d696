"""The ``diffrl`` command.

Exit codes: 0 on success, 2 on a user error (a :class:`~diffrl_core.errors.DiffRLError`,
printed as one paragraph without a traceback, or a usage error), 1 on an internal failure.
Heavy imports (torch, stable-baselines3) happen inside the subcommands that need them.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from diffrl_core.commands.evaluate import evaluate
from diffrl_core.commands.gradcheck import gradcheck
from diffrl_core.commands.new_plugin import new_plugin
from diffrl_core.commands.plot import plot
from diffrl_core.commands.plugins import list_components, plugins
from diffrl_core.commands.train import train
from diffrl_core.errors import DiffRLError


class _DiffRLGroup(click.Group):
    """Turns a :class:`DiffRLError` raised anywhere in a subcommand into exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DiffRLError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_DiffRLGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="diffrl-core")
def main() -> None:
    """diffrl: compose stable-baselines3 policies from plugin components, by name."""


for command in (plugins, list_components, train, evaluate, plot, gradcheck, new_plugin):
    main.add_command(command)


if __name__ == "__main__":  # pragma: no cover
    main()

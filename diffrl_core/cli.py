"""The ``diffrl`` command.

Exit codes: 0 on success, 2 on a user error (a :class:`~diffrl_core.errors.DiffRLError`,
printed as one paragraph without a traceback, or a usage error), 1 on an internal failure.
Heavy imports (torch, stable-baselines3) happen inside the subcommands that need them.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from diffrl_core.errors import DiffRLError
from diffrl_core.registry import KINDS


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


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: {plugins: [...], errors: [...]}.")
def plugins(as_json: bool) -> None:
    """List the loaded plugins, their components, and the plugins that failed to load."""
    from diffrl_core.plugins import load_plugins

    report = load_plugins().report()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    rows = [("plugin", "version", "components")]
    for plugin in report["plugins"]:
        version = "built-in" if plugin["builtin"] else str(plugin["version"])
        parts = [f"{kind}: {', '.join(names)}" for kind, names in plugin["components"].items() if names]
        rows.append((plugin["name"], version, "; ".join(parts) or "-"))
    width = [max(len(row[i]) for row in rows) for i in range(2)]
    for name, version, components in rows:
        click.echo(f"{name:<{width[0]}}  {version:<{width[1]}}  {components}")
    if report["errors"]:
        click.echo(f"\n{len(report['errors'])} plugin error(s):")
        for failure in report["errors"]:
            click.echo(f"  {failure['name']}: {failure['error']}")


@main.command("list")
@click.argument("kind", type=click.Choice(KINDS))
def list_components(kind: str) -> None:
    """Print the registered names of KIND, one per line: NAME<TAB>PLUGIN."""
    from diffrl_core.plugins import load_plugins

    for registration in load_plugins().registry(kind):
        click.echo(f"{registration.name}\t{registration.provenance.plugin}")


from diffrl_core.commands.gradcheck import gradcheck  # noqa: E402
main.add_command(gradcheck)

from diffrl_core.commands.evaluate import evaluate  # noqa: E402
from diffrl_core.commands.plot import plot  # noqa: E402
from diffrl_core.commands.train import train  # noqa: E402

main.add_command(train)
main.add_command(evaluate)
main.add_command(plot)

from diffrl_core.commands.new_plugin import new_plugin  # noqa: E402

main.add_command(new_plugin)


if __name__ == "__main__":  # pragma: no cover
    main()

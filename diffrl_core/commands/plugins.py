"""``diffrl plugins`` and ``diffrl list``: what the installed plugins registered (torch-free)."""

from __future__ import annotations

import json

import click

from diffrl_core.kinds import KINDS
from diffrl_core.plugins import default_host


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: {plugins: [...], errors: [...]}.")
def plugins(as_json: bool) -> None:
    """List the loaded plugins, their components, and the plugins that failed to load."""
    report = default_host().report()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    rows = [("plugin", "version", "components")]
    for plugin in report["plugins"]:
        version = "built-in" if plugin["builtin"] else str(plugin["version"])
        aliases = {kind: {name: alias for alias, name in named.items()} for kind, named in plugin["aliases"].items()}
        parts = [
            f"{kind}: " + ", ".join(f"{name} (alias {aliases[kind][name]})" if name in aliases.get(kind, {}) else name
                                    for name in names)
            for kind, names in plugin["components"].items() if names
        ]
        rows.append((plugin["name"], version, "; ".join(parts) or "-"))
    width = [max(len(row[i]) for row in rows) for i in range(2)]
    for name, version, components in rows:
        click.echo(f"{name:<{width[0]}}  {version:<{width[1]}}  {components}")
    if report["errors"]:
        click.echo(f"\n{len(report['errors'])} plugin error(s):")
        for failure in report["errors"]:
            click.echo(f"  {failure['name']}: {failure['error']}")


@click.command("list")
@click.argument("kind", type=click.Choice(list(KINDS)))
def list_components(kind: str) -> None:
    """Print the registered names of KIND, one per line: NAME<TAB>PLUGIN."""
    for registration in default_host().registry(kind):
        click.echo(f"{registration.name}\t{registration.provenance.plugin}")

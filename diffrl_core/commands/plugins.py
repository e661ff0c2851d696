"""``diffrl plugins`` and ``diffrl list``: what the installed plugins registered (torch-free)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator

import click

from diffrl_core.kinds import KINDS, label
from diffrl_core.plugins import default_host


@click.command()
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: {plugins, errors, conflicts, disabled, warnings}.")
def plugins(as_json: bool) -> None:
    """List the loaded plugins, their components, and the plugins that failed to load.

    Also lists names two plugins claim (ambiguous: use plugin:name), plugins disabled by
    DIFFRL_LOAD_PLUGINS / DIFFRL_DISABLE_PLUGINS, and warnings.
    """
    with json_stdout(as_json):  # what plugins print while loading goes to stderr
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
    for plugin in report["disabled"]:
        rows.append((plugin["name"], str(plugin["version"]), f"disabled ({plugin['reason']})"))
    width = [max(len(row[i]) for row in rows) for i in range(2)]
    for name, version, components in rows:
        click.echo(f"{name:<{width[0]}}  {version:<{width[1]}}  {components}")
    if report["conflicts"]:
        click.echo(f"\n{len(report['conflicts'])} ambiguous name(s), claimed by more than one plugin (neither is used; "
                   "choose one with plugin:name, or disable a plugin):")
        for conflict in report["conflicts"]:
            click.echo(f"  {label(conflict['kind'])} {conflict['name']!r}: {', '.join(conflict['plugins'])}")
    if report["errors"]:
        click.echo(f"\n{len(report['errors'])} plugin error(s):")
        for failure in report["errors"]:
            click.echo(f"  {failure['name']}: {failure['error']}")
    if report["warnings"]:
        click.echo(f"\n{len(report['warnings'])} warning(s):")
        for warning in report["warnings"]:
            click.echo(f"  {warning['name']}: {warning['error']}")


@contextlib.contextmanager
def json_stdout(as_json: bool) -> Iterator[None]:
    """With ``--json``, stdout holds the JSON object only: anything else printed meanwhile goes to stderr."""
    if not as_json:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


@click.command("list")
@click.argument("kind", type=click.Choice(list(KINDS)))
def list_components(kind: str) -> None:
    """Print the registered names of KIND, one per line: NAME<TAB>PLUGIN."""
    for registration in default_host().registry(kind):
        click.echo(f"{registration.name}\t{registration.provenance.plugin}")

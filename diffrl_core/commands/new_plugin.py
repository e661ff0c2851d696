"""``diffrl new-plugin NAME``: write a ready-to-install plugin distribution from a template.

The distribution ``diffrl-plugin-<name>`` gets a ``pyproject.toml`` with the ``diffrl``
entry point, a package ``diffrl_plugin_<name>`` registering one component of each kind
(an actor head, a loss term, a post-processor, an env) by import path, a config that uses
them by name, and tests built on :mod:`diffrl_core.testing` that pass as generated. See
``docs/plugins.md`` for what each part means.

The templates are the files under ``diffrl_core/templates/plugin/`` (package data), laid out
as the generated tree. Their paths hold ``{name}`` / ``{package}`` (filled with
:meth:`str.format`), their text ``${name}``, ``${dist}``, ``${package}`` and ``${Camel}``
placeholders (filled with :class:`string.Template`; write a literal ``$`` as ``$$``). A
template whose text is valid as it stands keeps its real name, so that linters check it (the
``.py`` files whose placeholders sit only in strings, docstrings and comments); the others end
in ``.tmpl``, which is dropped when the file is written: ``heads.py.tmpl`` (its class name is a
placeholder), ``tests/test_{name}.py.tmpl`` (pytest would collect it as one of diffrl's own
tests), ``pyproject.toml.tmpl`` (not valid TOML, and tools would read it as a project config),
``examples/{name}.yaml.tmpl`` (not valid YAML) and ``README.md.tmpl`` (it is not this folder's
README).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from string import Template

import click

from diffrl_core.errors import DiffRLError

NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


def plugin_files(name: str) -> dict[str, str]:
    """The files of the plugin distribution ``diffrl-plugin-<name>``: relative path -> text.

    :param name: the plugin's name, lowercase snake_case (the entry-point name, and the prefix of
        its component names and the namespace of its env ids)
    """
    dist = f"diffrl-plugin-{name.replace('_', '-')}"
    package = f"diffrl_plugin_{name}"
    camel = "".join(part.capitalize() for part in name.split("_"))
    values = {"name": name, "dist": dist, "package": package, "Camel": camel}
    return {
        path.removesuffix(TEMPLATE_SUFFIX).format(**values): Template(text).substitute(values)
        for path, text in _templates(resources.files("diffrl_core") / TEMPLATES)
    }


TEMPLATES = "templates/plugin"  # in the package diffrl_core
TEMPLATE_SUFFIX = ".tmpl"


def _templates(folder: Traversable, prefix: str = "") -> Iterator[tuple[str, str]]:
    """The template files under ``folder``: (relative path, text), skipping bytecode caches."""
    for entry in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if entry.name == "__pycache__" or entry.name.endswith(".pyc"):
            continue  # an installed copy's .py templates get byte-compiled
        if entry.is_dir():
            yield from _templates(entry, f"{prefix}{entry.name}/")
        else:
            yield f"{prefix}{entry.name}", entry.read_text(encoding="utf-8")


def create_plugin(name: str, directory: str | Path = ".") -> Path:
    """Write the plugin distribution into ``directory/diffrl-plugin-<name>``; return that folder.

    :raises DiffRLError: for a name that is not lowercase snake_case, or a folder that exists
    """
    if not NAME.match(name):
        raise DiffRLError(
            f"plugin name {name!r} is not lowercase snake_case: start with a letter, then letters, digits and "
            "single underscores (e.g. 'my_heads'); it becomes the entry-point name, the package "
            f"diffrl_plugin_<name> and the distribution diffrl-plugin-<name>"
        )
    root = Path(directory) / f"diffrl-plugin-{name.replace('_', '-')}"
    if root.exists():
        raise DiffRLError(
            f"{str(root)!r} already exists; diffrl new-plugin never overwrites files (pick another --dir or name)"
        )
    files = plugin_files(name)
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@click.command("new-plugin")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Folder in which the distribution's folder diffrl-plugin-<name> is created.")
def new_plugin(name: str, directory: Path) -> None:
    """Create the plugin distribution diffrl-plugin-NAME, ready to pip install.

    NAME is lowercase snake_case. The distribution registers, under the entry point NAME in
    the `diffrl` group, an actor head NAME_head, a loss term NAME_action_l2, a post-processor
    NAME_scale and an env NAME/Reach-v0, and has tests that pass as generated:

    \b
        diffrl new-plugin my_heads && cd diffrl-plugin-my-heads
        pip install -e . && python -m pytest
        diffrl train examples/my_heads.yaml

    See docs/plugins.md ("Writing a plugin").
    """
    root = create_plugin(name, directory)
    click.echo(f"Created {root}/ (plugin {name!r}, distribution {root.name}, package diffrl_plugin_{name}).")
    click.echo(
        f"Next: pip install -e {root} && python -m pytest {root}/tests && diffrl train {root}/examples/{name}.yaml"
    )

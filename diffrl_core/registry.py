"""One registry per component kind: name -> registration, with provenance.

Registries are filled by the plugin hooks (see :mod:`diffrl_core.plugins`) and read when
a model is composed. A registration may hold a ``"module:attr"`` string instead of the
object itself, so that listing plugins imports neither torch nor the plugin's components;
the string is imported once, on first :meth:`Registry.resolve`.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from diffrl_core.errors import DiffRLError, DuplicateNameError, UnknownNameError
from diffrl_core.kinds import label

COMPONENT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Provenance:
    """Where a registration came from.

    :param plugin: the plugin's name (its entry-point name, or the built-in plugin's name)
    :param distribution: the distribution that declared the entry point (None for built-ins)
    :param version: that distribution's version (None for built-ins)
    :param builtin: whether the plugin ships with diffrl-core
    """

    plugin: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Plain data, as saved with a model and in a run's ``versions``."""
        return {"plugin": self.plugin, "distribution": self.distribution, "version": self.version,
                "builtin": self.builtin}

    def describe(self) -> str:
        if self.builtin:
            return f"built-in plugin {self.plugin!r}"
        if self.distribution:
            return f"plugin {self.plugin!r} ({self.distribution} {self.version})"
        return f"plugin {self.plugin!r}"


@dataclass(frozen=True)
class Registration:
    """One registered name.

    :param kind: a key of :data:`diffrl_core.kinds.KINDS`
    :param name: the component name or env id
    :param target: the component (class or factory), or a ``"module:attr"`` string
        (for envs: gymnasium's entry point)
    :param provenance: which plugin registered it
    :param options: extra registration kwargs (for envs: gymnasium's register kwargs)
    :param aliases: former names that still resolve to this one (configs and saved models
        written before a rename)
    """

    kind: str
    name: str
    target: Any
    provenance: Provenance
    options: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()


class Registry:
    """The registered names of one kind.

    :param kind: a key of :data:`diffrl_core.kinds.KINDS`
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Registration] = {}
        self._aliases: dict[str, str] = {}  # former name -> name
        self._resolved: dict[str, Any] = {}

    def add(self, registration: Registration) -> None:
        """Add a registration; a name (or alias) that is taken raises, naming both owners."""
        for name in (registration.name, *registration.aliases):
            if name in self:
                taken = self.get(name)
                raise DuplicateNameError(
                    self.kind, name, taken.provenance.describe(), registration.provenance.describe()
                )
        self._entries[registration.name] = registration
        self._aliases.update(dict.fromkeys(registration.aliases, registration.name))

    def remove_plugin(self, plugin: str) -> None:
        """Forget every name registered by ``plugin``."""
        for name in [n for n, r in self._entries.items() if r.provenance.plugin == plugin]:
            del self._entries[name]
            self._resolved.pop(name, None)
        self._aliases = {alias: name for alias, name in self._aliases.items() if name in self._entries}

    def get(self, name: str, where: str | None = None) -> Registration:
        """The registration of ``name`` (or of the name an alias stands for).

        :param where: where the name came from (e.g. a config key), for the error message
        :raises UnknownNameError: listing the closest registered names
        """
        try:
            return self._entries[self._aliases.get(name, name)]
        except KeyError:
            raise UnknownNameError(self.kind, name, [*self._entries, *self._aliases], where=where) from None

    def resolve(self, name: str, where: str | None = None) -> Any:
        """The component registered as ``name``, importing a string target once."""
        registration = self.get(name, where)
        if registration.name in self._resolved:
            return self._resolved[registration.name]
        target = registration.target
        if isinstance(target, str):
            what = f"{label(self.kind)} {registration.name!r} of {registration.provenance.describe()}"
            target = import_target(target, what)
        self._resolved[registration.name] = target
        return target

    def names(self) -> list[str]:
        """The registered names (without aliases), sorted."""
        return sorted(self._entries)

    def aliases(self) -> dict[str, str]:
        """Former names that still resolve: alias -> name."""
        return dict(sorted(self._aliases.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[Registration]:
        return iter(sorted(self._entries.values(), key=lambda r: r.name))

    def __len__(self) -> int:
        return len(self._entries)


def import_target(target: str, what: str) -> Any:
    """Import ``"package.module:attr"``; failures name ``what`` was being imported."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise DiffRLError(f"{what}: {target!r} is not a 'module:attr' import path")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        raise DiffRLError(f"{what}: cannot import {target!r}: {type(exc).__name__}: {exc}") from exc
    return obj


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

#: The component kinds, in the order they are listed; each has a ``register_<kind>`` hook.
KINDS: tuple[str, ...] = ("envs", "actor_heads", "loss_terms", "postprocessors")

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

    def describe(self) -> str:
        if self.builtin:
            return f"built-in plugin {self.plugin!r}"
        if self.distribution:
            return f"plugin {self.plugin!r} ({self.distribution} {self.version})"
        return f"plugin {self.plugin!r}"


@dataclass(frozen=True)
class Registration:
    """One registered name.

    :param kind: one of :data:`KINDS`
    :param name: the component name or env id
    :param target: the component (class or factory), or a ``"module:attr"`` string
        (for envs: gymnasium's entry point)
    :param provenance: which plugin registered it
    :param options: extra registration kwargs (for envs: gymnasium's register kwargs)
    """

    kind: str
    name: str
    target: Any
    provenance: Provenance
    options: Mapping[str, Any] = field(default_factory=dict)


class Registry:
    """The registered names of one kind.

    :param kind: one of :data:`KINDS`
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Registration] = {}
        self._resolved: dict[str, Any] = {}

    def add(self, registration: Registration) -> None:
        """Add a registration; a name that is taken raises, naming both owners."""
        taken = self._entries.get(registration.name)
        if taken is not None:
            raise DuplicateNameError(
                self.kind, registration.name, taken.provenance.describe(), registration.provenance.describe()
            )
        self._entries[registration.name] = registration

    def remove_plugin(self, plugin: str) -> None:
        """Forget every name registered by ``plugin``."""
        for name in [n for n, r in self._entries.items() if r.provenance.plugin == plugin]:
            del self._entries[name]
            self._resolved.pop(name, None)

    def get(self, name: str, where: str | None = None) -> Registration:
        """The registration of ``name``.

        :param where: where the name came from (e.g. a config key), for the error message
        :raises UnknownNameError: listing the closest registered names
        """
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._entries, where=where) from None

    def resolve(self, name: str, where: str | None = None) -> Any:
        """The component registered as ``name``, importing a string target once."""
        if name in self._resolved:
            return self._resolved[name]
        registration = self.get(name, where)
        target = registration.target
        if isinstance(target, str):
            target = import_target(target, f"{_label(self.kind)} {name!r} of {registration.provenance.describe()}")
        self._resolved[name] = target
        return target

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

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


def _label(kind: str) -> str:
    return {"envs": "env", "actor_heads": "actor head", "loss_terms": "loss term", "postprocessors": "post-processor"}[
        kind
    ]

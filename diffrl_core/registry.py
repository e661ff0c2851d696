"""One registry per component kind: name -> registration, with provenance.

Registries are filled by the plugin hooks (see :mod:`diffrl_core.plugins`) and read when
a model is composed. A registration may hold a ``"module:attr"`` string instead of the
object itself, so that listing plugins imports neither torch nor the plugin's components;
the string is imported once, on first :meth:`Registry.resolve`.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from diffrl_core.errors import AmbiguousNameError, DiffRLError, DuplicateNameError, UnknownNameError
from diffrl_core.kinds import label

#: A component name: lowercase snake_case, matched with ``fullmatch`` (``$`` would let a trailing newline pass).
COMPONENT_NAME = re.compile(r"[a-z][a-z0-9_]*")


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

    A name (or alias) claimed by two plugins is *ambiguous*: neither claim silently wins.
    Looking it up raises :class:`~diffrl_core.errors.AmbiguousNameError` naming both; the
    qualified form ``plugin:name`` (e.g. ``gaussian:squashed_gaussian``) always names one
    owner. A built-in name cannot be claimed by a plugin at all.

    :param kind: a key of :data:`diffrl_core.kinds.KINDS`
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._claims: dict[str, list[Registration]] = {}  # name or alias -> its claimants
        self._resolved: dict[tuple[str, str], Any] = {}  # (plugin, name) -> the imported target
        #: why plugins failed to load: an unknown name's error mentions them (set by the host)
        self.load_failures: Sequence[Any] = ()

    def add(self, registration: Registration) -> None:
        """Add a registration.

        :raises DuplicateNameError: when the name (or an alias) is built-in, or the same
            plugin already claimed it; a claim by another plugin makes the name ambiguous
        """
        for name in (registration.name, *registration.aliases):
            for taken in self._claims.get(name, ()):
                if taken.provenance.builtin or taken.provenance.plugin == registration.provenance.plugin:
                    raise DuplicateNameError(
                        self.kind, name, taken.provenance.describe(), registration.provenance.describe()
                    )
        for name in (registration.name, *registration.aliases):
            self._claims.setdefault(name, []).append(registration)

    def remove_plugin(self, plugin: str) -> None:
        """Forget every name registered by ``plugin``."""
        for name in list(self._claims):
            kept = [r for r in self._claims[name] if r.provenance.plugin != plugin]
            if kept:
                self._claims[name] = kept
            else:
                del self._claims[name]
        self._resolved = {key: value for key, value in self._resolved.items() if key[0] != plugin}

    def claimants(self, name: str) -> list[Registration]:
        """Every registration claiming ``name`` (a plain name or alias; more than one: ambiguous)."""
        return list(self._claims.get(name, ()))

    def ambiguous(self) -> dict[str, list[Registration]]:
        """The names claimed by more than one plugin, with their claimants."""
        return {name: list(claims) for name, claims in sorted(self._claims.items()) if len(claims) > 1}

    def get(self, name: str, where: str | None = None) -> Registration:
        """The registration of ``name``, of ``plugin:name``, or of the name an alias stands for.

        :param where: where the name came from (e.g. a config key), for the error message
        :raises UnknownNameError: listing the closest registered names (and plugins that failed to load)
        :raises AmbiguousNameError: when two plugins claim the name, naming both and the qualified forms
        """
        plugin, bare = self._split(name)
        claims = self._claims.get(bare, [])
        if plugin:
            claims = [r for r in claims if r.provenance.plugin == plugin]
        if len(claims) == 1:
            return claims[0]
        if claims:
            raise AmbiguousNameError(self.kind, bare, [r.provenance for r in claims], where=where)
        if plugin and bare in self._claims:
            owners = ", ".join(r.provenance.describe() for r in self._claims[bare])
            raise UnknownNameError(self.kind, name, [], where=where,
                                   note=f"{bare!r} is registered by {owners}, not by a plugin named {plugin!r}")
        raise UnknownNameError(self.kind, name, self._claims, where=where, failures=self.load_failures)

    def _split(self, name: str) -> tuple[str, str]:
        """``"plugin:name"`` -> ``("plugin", "name")``; env ids are never qualified (``module:`` is gymnasium's)."""
        if self.kind == "envs":
            return "", name
        plugin, _, bare = name.rpartition(":")
        return plugin, bare

    def resolve(self, name: str, where: str | None = None) -> Any:
        """The component registered as ``name`` (or ``plugin:name``), importing a string target once."""
        registration = self.get(name, where)
        key = (registration.provenance.plugin, registration.name)
        if key in self._resolved:
            return self._resolved[key]
        target = registration.target
        if isinstance(target, str):
            what = f"{label(self.kind)} {registration.name!r} of {registration.provenance.describe()}"
            target = import_target(target, what)
        self._resolved[key] = target
        return target

    def names(self) -> list[str]:
        """The registered names (without aliases; an ambiguous name once), sorted."""
        return sorted({r.name for r in self})

    def aliases(self) -> dict[str, str]:
        """Former names that still resolve: alias -> name."""
        return {name: claims[0].name for name, claims in sorted(self._claims.items())
                if len(claims) == 1 and claims[0].name != name}

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        plugin, bare = self._split(name)
        return any(not plugin or r.provenance.plugin == plugin for r in self._claims.get(bare, ()))

    def __iter__(self) -> Iterator[Registration]:
        """Every registration (an ambiguous name once per claimant), sorted by name and plugin."""
        unique = {(r.name, r.provenance.plugin): r for claims in self._claims.values() for r in claims}
        return iter(unique[key] for key in sorted(unique))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def import_target(target: str, what: str) -> Any:
    """Import ``"package.module:attr"``; failures name ``what`` was being imported."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise DiffRLError(f"{what}: {target!r} is not a 'module:attr' import path")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (Exception, SystemExit) as exc:  # a plugin's sys.exit() must not end the host
        raise DiffRLError(f"{what}: cannot import {target!r}: {type(exc).__name__}: {exc}") from exc
    return obj


"""Plugin loading: built-ins, the ``diffrl`` entry-point group, allow/deny lists, isolation.

pluggy's own ``load_setuptools_entrypoints`` stops at the first plugin whose import raises
and silently skips a second entry point of the same name, and ``pm.hook.<name>()`` would
hide which plugin registered what. So :class:`PluginHost` imports each entry point itself,
validates each plugin on its own, and calls each plugin's hook implementations one by one
with a ``register`` callback bound to that plugin. A plugin that fails is unregistered and
reported by name; every other plugin still loads.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.metadata
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pluggy

from diffrl_core import hookspecs
from diffrl_core.errors import DiffRLError, DuplicateNameError, PluginLoadError
from diffrl_core.kinds import KINDS, label
from diffrl_core.registry import COMPONENT_NAME, Provenance, Registration, Registry

ENTRY_POINT_GROUP = "diffrl"
LOAD_ENV_VAR = "DIFFRL_LOAD_PLUGINS"
DISABLE_ENV_VAR = "DIFFRL_DISABLE_PLUGINS"

#: Built-in plugins: registered through the same hooks as third-party ones, always loaded.
BUILTIN_PLUGINS: dict[str, str] = {"diffrl_core": "diffrl_core.builtin.plugin"}

#: kind -> the hook that registers it
HOOK_NAMES: dict[str, str] = {kind.name: kind.hook for kind in KINDS.values()}


@dataclass
class PluginInfo:
    """A loaded plugin and the names it registered.

    :param name: entry-point name (or built-in plugin name)
    :param provenance: distribution, version, built-in flag
    :param components: kind -> registered names
    """

    name: str
    provenance: Provenance
    components: dict[str, list[str]] = field(default_factory=lambda: {kind: [] for kind in KINDS})

    #: kind -> {former name: name}, for components registered with aliases
    aliases: dict[str, dict[str, str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.provenance.version,
            "distribution": self.provenance.distribution,
            "builtin": self.provenance.builtin,
            "components": {kind: sorted(names) for kind, names in self.components.items()},
            "aliases": {kind: dict(sorted(names.items())) for kind, names in self.aliases.items()},
        }


@dataclass(frozen=True)
class PluginFailure:
    """A plugin (or one of its registrations) that failed to load, and why."""

    name: str
    error: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "error": self.error}


def _env_list(variable: str) -> list[str] | None:
    """``"a, b"`` -> ``["a", "b"]``; unset -> None; empty string -> []."""
    value = os.environ.get(variable)
    if value is None:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


class PluginHost:
    """A plugin manager with one :class:`~diffrl_core.registry.Registry` per kind.

    Use the process-wide host through :func:`load_plugins`; tests build their own.
    """

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.registries: dict[str, Registry] = {kind: Registry(kind) for kind in KINDS}
        self.plugins: dict[str, PluginInfo] = {}
        self.errors: list[PluginFailure] = []
        self.loaded = False

    # -- loading ---------------------------------------------------------------------------

    def load(
        self,
        entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
        only: list[str] | None = None,
        disable: list[str] | None = None,
    ) -> PluginHost:
        """Load the built-ins, then the entry points allowed by the allow/deny lists.

        :param entry_points: defaults to the installed ``diffrl`` entry points
        :param only: only these entry-point names (defaults to ``DIFFRL_LOAD_PLUGINS``; None: all)
        :param disable: never import these (defaults to ``DIFFRL_DISABLE_PLUGINS``)
        """
        if self.loaded:
            return self
        self.loaded = True
        only = _env_list(LOAD_ENV_VAR) if only is None else only
        disable = (_env_list(DISABLE_ENV_VAR) or []) if disable is None else disable

        for name, module in BUILTIN_PLUGINS.items():
            if name in disable:
                self._fail(name, f"built-in plugins cannot be disabled ({DISABLE_ENV_VAR})")
            self.register_plugin(importlib.import_module(module), name, Provenance(name, builtin=True))

        if entry_points is None:
            entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        entry_points = sorted(entry_points, key=lambda ep: (ep.name, _dist_name(ep) or ""))
        available = {ep.name for ep in entry_points}
        for name in sorted(set(only or ()) - available):
            self._fail(name, f"requested in {LOAD_ENV_VAR} but no installed distribution declares a "
                       f"{ENTRY_POINT_GROUP!r} entry point of that name "
                       f"(installed: {', '.join(sorted(available)) or 'none'})")

        for ep in entry_points:
            if ep.name in disable or (only is not None and ep.name not in only):
                self.pm.set_blocked(ep.name)  # never imported
                continue
            provenance = Provenance(ep.name, _dist_name(ep), _dist_version(ep))
            if ep.name in self.plugins:
                owner = self.plugins[ep.name].provenance
                self._fail(ep.name, f"the entry-point name is already used by "
                           f"{owner.describe()}; the entry point "
                           f"{ep.value!r} of {provenance.distribution or 'unknown distribution'} was not loaded")
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                self._fail(ep.name, f"import of {ep.value!r} ({provenance.distribution or 'unknown distribution'}) "
                           f"failed: {type(exc).__name__}: {exc}")
                continue
            self.register_plugin(plugin, ep.name, provenance)
        return self

    def register_plugin(self, plugin: object, name: str, provenance: Provenance | None = None) -> bool:
        """Register one plugin object and run its registration hooks, isolated.

        :return: whether the plugin loaded; failures are recorded in :attr:`errors`
        """
        provenance = provenance or Provenance(name)
        if name in self.plugins:
            self._fail(name, f"a plugin named {name!r} is already loaded ({self.plugins[name].provenance.describe()})")
            return False
        try:
            self.pm.register(plugin, name)
        except Exception as exc:  # pluggy.PluginValidationError: bad hookimpl signature
            self._fail(name, f"invalid hook implementation: {exc}")
            return False
        unknown = [caller.name for caller in self.pm.get_hookcallers(plugin) or []
                   if not caller.has_spec() and not any(i.optionalhook for i in caller.get_hookimpls())]
        if unknown:
            self.pm.unregister(plugin)
            self._fail(name, "; ".join(f"{hook!r} is not a diffrl hook{_suggest(hook, HOOK_NAMES.values())}"
                                       for hook in sorted(unknown)))
            return False

        staged: list[Registration] = []
        for kind, hook_name in HOOK_NAMES.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                try:
                    impl.function(register=self._recorder(kind, provenance, staged))
                except Exception as exc:
                    self.pm.unregister(plugin)
                    self._fail(name, f"hook {hook_name} raised {type(exc).__name__}: {exc}; "
                               "none of the plugin's components were registered")
                    return False

        info = PluginInfo(name, provenance)
        self.plugins[name] = info
        for registration in staged:
            try:
                self._commit(registration)
            except DiffRLError as exc:
                self._fail(name, str(exc))
                continue
            info.components[registration.kind].append(registration.name)
            for alias in registration.aliases:
                info.aliases.setdefault(registration.kind, {})[alias] = registration.name
        return True

    def unregister_plugin(self, name: str) -> None:
        """Remove a plugin and every name it registered (env ids stay in gymnasium's registry)."""
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        self.plugins.pop(name, None)
        for registry in self.registries.values():
            registry.remove_plugin(name)

    # -- registration ----------------------------------------------------------------------

    def _recorder(self, kind: str, provenance: Provenance, staged: list[Registration]) -> Any:
        """The ``register`` callback handed to one plugin's hook of one kind."""
        if kind == "envs":

            def register_env(env_id: str, entry_point: str | None = None, **kwargs: Any) -> None:
                staged.append(Registration(kind, env_id, entry_point, provenance, kwargs))

            return register_env

        def register_component(name: str, component: type | str, aliases: tuple[str, ...] = ()) -> None:
            staged.append(Registration(kind, name, component, provenance, aliases=tuple(aliases)))

        return register_component

    def _commit(self, registration: Registration) -> None:
        kind, name = registration.kind, registration.name
        registry = self.registries[kind]
        if kind != "envs":
            for given in (name, *registration.aliases):
                if not isinstance(given, str) or not COMPONENT_NAME.match(given):
                    raise DiffRLError(f"{given!r} is not a valid {label(kind)} name: "
                                      "names are lowercase snake_case (e.g. 'squashed_gaussian')")
            target = registration.target
            if not (callable(target) or isinstance(target, str) and ":" in target):
                raise DiffRLError(f"{label(kind)} {name!r} must be registered with a class "
                                  f"or a 'module:Class' string, got {target!r}")
            registry.add(registration)
            return
        self._commit_env(registration)

    def _commit_env(self, registration: Registration) -> None:
        import gymnasium  # light: gymnasium does not import torch
        from gymnasium.envs.registration import parse_env_id

        env_id, entry_point = registration.name, registration.target
        try:
            namespace, _, _ = parse_env_id(env_id)
        except Exception as exc:
            raise DiffRLError(f"env id {env_id!r} is malformed: {exc}") from None
        if namespace is None:
            raise DiffRLError(f"env id {env_id!r} has no namespace: plugins register ids such as "
                              f"'yourplugin/{env_id}' so they cannot shadow gymnasium's own")
        if not isinstance(entry_point, str) or ":" not in entry_point:
            raise DiffRLError(f"env {env_id!r} must be registered with a 'module:Class' string entry point "
                              f"(so nothing is imported before gymnasium.make), got {entry_point!r}")
        registry = self.registries["envs"]
        existing = gymnasium.registry.get(env_id)
        if env_id not in registry and existing is not None:
            if existing.entry_point != entry_point:
                raise DuplicateNameError("envs", env_id, f"gymnasium's registry (entry point {existing.entry_point!r})",
                                         registration.provenance.describe())
            registry.add(registration)  # the plugin's package registered it itself on import
            return
        registry.add(registration)
        gymnasium.register(env_id, entry_point=entry_point, **registration.options)

    def _fail(self, name: str, reason: str) -> None:
        self.errors.append(PluginFailure(name, reason))

    # -- queries -----------------------------------------------------------------------------

    def registry(self, kind: str) -> Registry:
        return self.registries[kind]

    def report(self) -> dict[str, Any]:
        """What ``diffrl plugins --json`` prints."""
        return {
            "plugins": [info.as_dict() for info in self.plugins.values()],
            "errors": [failure.as_dict() for failure in self.errors],
        }

    def raise_for(self, plugin: str) -> None:
        """Raise the recorded failure of ``plugin``, if any (for tools that need it loaded)."""
        for failure in self.errors:
            if failure.name == plugin:
                raise PluginLoadError(failure.name, failure.error)


def _dist_name(ep: importlib.metadata.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else None


def _dist_version(ep: importlib.metadata.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return dist.version if dist is not None else None


def _suggest(name: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f"; did you mean {close[0]!r}?" if close else f" (diffrl hooks: {', '.join(HOOK_NAMES.values())})"


_host: PluginHost | None = None


def default_host() -> PluginHost:
    """The process-wide host, its plugins loaded on first use.

    Code that composes or lists components takes a host argument and falls back to this one
    at the edges (the CLI, :func:`diffrl_core.make_model`, :func:`diffrl_core.load_model`).
    """
    global _host
    if _host is None:
        _host = PluginHost().load()
    return _host


def load_plugins() -> PluginHost:
    """Load every allowed plugin once per process and return the host holding the registries.

    Idempotent: later calls return the same host. ``import diffrl_core`` alone loads nothing.
    """
    return default_host()


@contextlib.contextmanager
def use_host(host: PluginHost) -> Iterator[PluginHost]:
    """Make ``host`` the process-wide host for the duration of a ``with`` block (tests, tools)."""
    global _host
    previous, _host = _host, host
    try:
        yield host
    finally:
        _host = previous

"""Plugin loading: built-ins, the ``diffrl`` entry-point group, allow/deny lists, isolation.

pluggy's own ``load_setuptools_entrypoints`` stops at the first plugin whose import raises
and silently skips a second entry point of the same name, and ``pm.hook.<name>()`` would
hide which plugin registered what. So :class:`PluginHost` imports each entry point itself,
validates each plugin on its own, and calls each plugin's hook implementations one by one
with a ``register`` callback bound to that plugin. A plugin that fails (an exception, a
``sys.exit()``, a ``KeyboardInterrupt`` it raised itself, an env id of gymnasium's it
replaced) is unregistered, everything it registered is undone, and the failure is reported
by name; every other plugin still loads. Whatever plugins print goes to stderr.

Nothing is settled by load order: a name (component, env id or entry-point name) claimed
by two plugins is ambiguous, and neither claim is used until the user chooses (see
:class:`~diffrl_core.registry.Registry`). So env ids are committed to gymnasium only once
every plugin has been imported.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib.metadata
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pluggy

from diffrl_core import hookspecs
from diffrl_core._version import __version__ as CORE_VERSION
from diffrl_core.errors import AmbiguousNameError, DiffRLError, DuplicateNameError, PluginLoadError
from diffrl_core.kinds import KINDS, label
from diffrl_core.registry import COMPONENT_NAME, Provenance, Registration, Registry

ENTRY_POINT_GROUP = "diffrl"
LOAD_ENV_VAR = "DIFFRL_LOAD_PLUGINS"
DISABLE_ENV_VAR = "DIFFRL_DISABLE_PLUGINS"
CORE_DISTRIBUTION = "diffrl-core"

#: Built-in plugins: registered through the same hooks as third-party ones, always loaded.
BUILTIN_PLUGINS: dict[str, str] = {"diffrl_core": "diffrl_core.builtin.plugin"}

#: kind -> the hook that registers it
HOOK_NAMES: dict[str, str] = {kind.name: kind.hook for kind in KINDS.values()}

#: A plugin (entry-point) name: no whitespace, no ``:`` (it qualifies component names: ``plugin:name``).
PLUGIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


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
    """A plugin (or one of its registrations) that failed to load, or a warning about one, and why."""

    name: str
    error: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "error": self.error}


@dataclass(frozen=True)
class DisabledPlugin:
    """An installed plugin that was not imported because of ``DIFFRL_LOAD_PLUGINS`` / ``DIFFRL_DISABLE_PLUGINS``."""

    name: str
    distribution: str | None
    version: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "distribution": self.distribution, "version": self.version, "reason": self.reason}


def _env_list(variable: str) -> list[str] | None:
    """``"a, b"`` -> ``["a", "b"]``; unset -> None; empty string -> []."""
    value = os.environ.get(variable)
    if value is None:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


def _canonical(distribution: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


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
        self.warnings: list[PluginFailure] = []
        self.disabled: list[DisabledPlugin] = []
        self.loaded = False
        for registry in self.registries.values():
            registry.load_failures = self.errors  # an unknown name's error mentions them
        self._loading = False
        self._staged_envs: list[Registration] = []  # env claims, committed once every plugin is imported
        self._user_interrupted = False
        self._import_claimed: set[str] = set()  # env ids plugins registered with gymnasium on import

    # -- loading ---------------------------------------------------------------------------

    def load(
        self,
        entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
        only: list[str] | None = None,
        disable: list[str] | None = None,
    ) -> PluginHost:
        """Load the built-ins, then the entry points allowed by the allow/deny lists.

        :param entry_points: defaults to the installed ``diffrl`` entry points
        :param only: only these entry-point (or distribution) names (defaults to ``DIFFRL_LOAD_PLUGINS``;
            None: all)
        :param disable: never import these entry-point (or distribution) names (defaults to
            ``DIFFRL_DISABLE_PLUGINS``)
        """
        if self.loaded:
            return self
        self.loaded = True
        only = _env_list(LOAD_ENV_VAR) if only is None else only
        disable = (_env_list(DISABLE_ENV_VAR) or []) if disable is None else disable
        if entry_points is None:
            entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        entry_points = sorted(entry_points, key=lambda ep: (ep.name, _dist_name(ep) or ""))

        self._loading = True
        try:
            with self._user_interrupts():
                for name, module in BUILTIN_PLUGINS.items():
                    if name in disable:
                        self._fail(name, f"built-in plugins cannot be disabled ({DISABLE_ENV_VAR})")
                    self.register_plugin(importlib.import_module(module), name, Provenance(name, builtin=True))
                self._check_env_lists(entry_points, only, disable)
                for ep in self._allowed(entry_points, only, disable):
                    self._load_entry_point(ep)
        finally:
            self._loading = False
        self._commit_envs()
        return self

    def _check_env_lists(self, entry_points: list[Any], only: list[str] | None, disable: list[str]) -> None:
        """Names in the allow/deny lists that match no installed plugin: a warning with the closest names."""
        installed = sorted({ep.name for ep in entry_points} | {d for ep in entry_points if (d := _dist_name(ep))})
        canonical = {_canonical(name) for name in installed} | set(BUILTIN_PLUGINS)
        for variable, names in ((LOAD_ENV_VAR, only or []), (DISABLE_ENV_VAR, disable)):
            for name in names:
                if _canonical(name) in canonical or name in BUILTIN_PLUGINS:
                    continue
                close = difflib.get_close_matches(name, installed, n=3, cutoff=0.5)
                hint = f"did you mean {', '.join(map(repr, close))}?" if close else \
                    f"installed: {', '.join(installed) or 'none'}"
                self.warnings.append(PluginFailure(name, f"{variable} names {name!r}, but no installed distribution "
                                                         f"declares a {ENTRY_POINT_GROUP!r} entry point of that "
                                                         f"name; {hint}"))

    def _allowed(self, entry_points: list[Any], only: list[str] | None, disable: list[str]) -> list[Any]:
        """The entry points to import: allowed by the lists, and each entry-point name declared once."""
        def matches(ep: Any, names: Iterable[str]) -> bool:
            wanted = {_canonical(n) for n in names}
            return _canonical(ep.name) in wanted or _canonical(_dist_name(ep) or "") in wanted

        allowed: dict[str, list[Any]] = {}
        for ep in entry_points:
            if matches(ep, disable) or (only is not None and not matches(ep, only)):
                reason = f"{DISABLE_ENV_VAR}" if matches(ep, disable) else f"not in {LOAD_ENV_VAR}"
                self.disabled.append(DisabledPlugin(ep.name, _dist_name(ep), _dist_version(ep), reason))
                continue  # never imported (not pluggy's set_blocked: another distribution may use the name)
            allowed.setdefault(ep.name, []).append(ep)
        for name, claimants in allowed.items():
            if len(claimants) > 1:  # neither wins: which one loaded would depend on sys.path order
                dists = [f"{_dist_name(ep) or 'unknown distribution'} {_dist_version(ep) or ''}".strip()
                         for ep in claimants]
                self._fail(name, f"the entry-point name {name!r} is declared by {' and '.join(dists)}, so neither "
                                 f"was loaded; uninstall one, or disable one by its distribution name ("
                                 + " or ".join(f"{DISABLE_ENV_VAR}={_dist_name(ep)}" for ep in claimants) + ")")
        return [claimants[0] for claimants in allowed.values() if len(claimants) == 1]

    def _load_entry_point(self, ep: Any) -> None:
        provenance = Provenance(ep.name, _dist_name(ep), _dist_version(ep))
        where = provenance.distribution or "unknown distribution"
        if not PLUGIN_NAME.fullmatch(ep.name):
            self._fail(ep.name, f"{ep.name!r} ({where}) is not a valid plugin name: entry-point names are letters, "
                                "digits, '_', '.' and '-' (no whitespace, no ':')")
            return
        problem = _core_requirement_problem(ep)
        if problem:
            self._fail(ep.name, f"{where} {problem}; it was not imported")
            return
        with self._gym_registry_guard(ep.name) as guard:
            ok, plugin = self._run(ep.name, f"import of {ep.value!r} ({where})", ep.load)
            guard.ok = ok and self._register(plugin, ep.name, provenance, guard)

    def register_plugin(self, plugin: object, name: str, provenance: Provenance | None = None) -> bool:
        """Register one plugin object and run its registration hooks, isolated.

        :return: whether the plugin loaded; failures are recorded in :attr:`errors`
        """
        with self._gym_registry_guard(name) as guard:
            guard.ok = self._register(plugin, name, provenance or Provenance(name), guard)
        return guard.ok

    def _register(self, plugin: object, name: str, provenance: Provenance, guard: _GymRegistryGuard) -> bool:
        """:meth:`register_plugin`, with ``guard`` watching gymnasium's registry since before the plugin's import."""
        if name in self.plugins:
            self._fail(name, f"a plugin named {name!r} is already loaded ({self.plugins[name].provenance.describe()})")
            return False
        try:
            self.pm.register(plugin, name)
        except Exception as exc:  # pluggy.PluginValidationError: bad hookimpl signature
            self._fail(name, f"invalid hook implementation: {exc}")
            return False
        problems = self._unknown_hooks(plugin, name)
        if problems:
            self.pm.unregister(plugin)
            self._fail(name, "; ".join(problems))
            return False

        staged: list[Registration] = []
        for kind, hook_name in HOOK_NAMES.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                ok, _ = self._run(name, f"hook {hook_name}", functools.partial(
                    impl.function, register=self._recorder(kind, provenance, staged)),
                    consequence="; none of the plugin's components were registered")
                if not ok:
                    self.pm.unregister(plugin)
                    return False
        claims, replaced = guard.changes(self._import_claimed)
        if replaced:
            self.pm.unregister(plugin)
            self._fail(name, "; ".join(replaced) + "; the original was restored and the plugin was not loaded")
            return False

        info = PluginInfo(name, provenance)
        self.plugins[name] = info
        # env ids it registered with gymnasium itself (on import) are its claims too
        claimed = {r.name for r in staged if r.kind == "envs"}
        staged += [Registration("envs", env_id, spec.entry_point, provenance, {"registered_on_import": True})
                   for env_id, spec in claims.items() if env_id not in claimed]
        self._import_claimed.update(claims)
        for registration in staged:
            try:
                self._validate(registration)
            except DiffRLError as exc:
                self._fail(name, str(exc))
                continue
            if registration.kind == "envs":
                self._staged_envs.append(registration)
                continue
            try:
                self.registries[registration.kind].add(registration)
            except DiffRLError as exc:
                self._fail(name, str(exc))
                continue
            info.components[registration.kind].append(registration.name)
            for alias in registration.aliases:
                info.aliases.setdefault(registration.kind, {})[alias] = registration.name
        if not self._loading:
            self._commit_envs()
        return True

    def unregister_plugin(self, name: str) -> None:
        """Remove a plugin and every name it registered (env ids stay in gymnasium's registry)."""
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        self.plugins.pop(name, None)
        for registry in self.registries.values():
            registry.remove_plugin(name)

    # -- isolation -------------------------------------------------------------------------

    def _run(self, plugin: str, what: str, call: Callable[[], Any], consequence: str = "") -> tuple[bool, Any]:
        """Run a plugin's code: what it prints goes to stderr, what it raises is its failure.

        A ``KeyboardInterrupt`` is the plugin's own unless the user pressed Ctrl-C meanwhile
        (then it propagates, as the user meant).
        """
        try:
            with contextlib.redirect_stdout(sys.stderr):
                return True, call()
        except KeyboardInterrupt:
            if self._user_interrupted:
                raise
            self._fail(plugin, f"{what} raised KeyboardInterrupt (not a Ctrl-C of the user's){consequence}")
        except SystemExit as exc:
            self._fail(plugin, f"{what} called sys.exit({exc.code!r}){consequence}")
        except Exception as exc:
            self._fail(plugin, f"{what} raised {type(exc).__name__}: {exc}{consequence}")
        return False, None

    @contextlib.contextmanager
    def _user_interrupts(self) -> Iterator[None]:
        """Tell a Ctrl-C of the user's from a ``KeyboardInterrupt`` a plugin raises (main thread only)."""
        self._user_interrupted = False
        if threading.current_thread() is not threading.main_thread():
            self._user_interrupted = True  # cannot tell: every KeyboardInterrupt is the user's
            yield
            return
        previous = signal.getsignal(signal.SIGINT)
        if previous is None or previous == signal.SIG_IGN:  # not Python's handler, or Ctrl-C ignored
            yield
            return

        def handle(signum: int, frame: Any) -> None:
            self._user_interrupted = True
            if callable(previous):
                previous(signum, frame)
            raise KeyboardInterrupt

        signal.signal(signal.SIGINT, handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    @contextlib.contextmanager
    def _gym_registry_guard(self, plugin: str) -> Iterator[_GymRegistryGuard]:
        guard = _GymRegistryGuard(plugin)
        try:
            yield guard
        finally:
            if not guard.ok:
                guard.restore()

    def _unknown_hooks(self, plugin: object, name: str) -> list[str]:
        """Hooks the plugin implements that diffrl does not have: errors, or warnings for far-off optional ones."""
        problems = []
        for caller in self.pm.get_hookcallers(plugin) or []:
            if caller.has_spec():
                continue
            optional = all(impl.optionalhook for impl in caller.get_hookimpls() if impl.plugin is plugin)
            close = difflib.get_close_matches(caller.name, list(HOOK_NAMES.values()), n=1)
            if optional and not close:
                self.warnings.append(PluginFailure(name, f"optional hook {caller.name!r} is not a diffrl hook; "
                                                         f"ignored (diffrl hooks: {', '.join(HOOK_NAMES.values())})"))
                continue
            what = "optional hook" if optional else "hook"
            problems.append(f"{what} {caller.name!r} is not a diffrl hook{_suggest(caller.name, HOOK_NAMES.values())}")
        return sorted(problems)

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

    def _validate(self, registration: Registration) -> None:
        kind, name, target = registration.kind, registration.name, registration.target
        if kind == "envs":
            _validate_env_id(name)
            if registration.options.get("registered_on_import"):
                return
            if not isinstance(target, str) or ":" not in target:
                raise DiffRLError(f"env {name!r} must be registered with a 'module:Class' string entry point "
                                  f"(so nothing is imported before gymnasium.make), got {target!r}")
            return
        for given in (name, *registration.aliases):
            if not isinstance(given, str) or not COMPONENT_NAME.fullmatch(given):
                raise DiffRLError(f"{given!r} is not a valid {label(kind)} name: "
                                  "names are lowercase snake_case (e.g. 'squashed_gaussian')")
        if not (callable(target) or isinstance(target, str) and ":" in target):
            raise DiffRLError(f"{label(kind)} {name!r} must be registered with a class "
                              f"or a 'module:Class' string, got {target!r}")

    def _commit_envs(self) -> None:
        """Register the staged env claims with gymnasium: one claimant each, or an ambiguity that refuses to make.

        An id that gymnasium already has from outside the plugins (its own, or a user's) is
        taken, unless the claim has the same entry point (a package that registered itself).
        """
        import gymnasium  # light: gymnasium does not import torch

        staged, self._staged_envs = self._staged_envs, []
        by_id: dict[str, dict[str, Registration]] = {}
        for registration in staged:  # one claim per plugin: its hook's over its import-time one
            claims = by_id.setdefault(registration.name, {})
            if registration.provenance.plugin not in claims or not _on_import(registration):
                claims[registration.provenance.plugin] = registration
        registry = self.registries["envs"]
        for env_id, claims in by_id.items():
            existing = gymnasium.registry.get(env_id)
            outside = existing is not None and not registry.claimants(env_id) and env_id not in self._import_claimed
            for registration in claims.values():
                owner = registration.provenance
                try:
                    if outside and existing is not None and existing.entry_point != registration.target:
                        raise DuplicateNameError("envs", env_id, f"gymnasium's registry (entry point "
                                                 f"{existing.entry_point!r})", owner.describe())
                    registry.add(registration)
                except DiffRLError as exc:
                    self._fail(owner.plugin, str(exc))
                    continue
                self.plugins[owner.plugin].components["envs"].append(env_id)
            owners = registry.claimants(env_id)
            if len(owners) > 1:  # ambiguous: gymnasium.make names both instead of making either
                refuse = functools.partial(_refuse_ambiguous_env, env_id, tuple(r.provenance for r in owners))
                gymnasium.registry.pop(env_id, None)  # re-registering would only warn
                gymnasium.register(env_id, entry_point=refuse)
            elif owners and not _on_import(owners[0]):
                current = gymnasium.registry.get(env_id)
                if current is None or current.entry_point != owners[0].target:
                    gymnasium.registry.pop(env_id, None)
                    gymnasium.register(env_id, entry_point=owners[0].target, **owners[0].options)

    def _fail(self, name: str, reason: str) -> None:
        self.errors.append(PluginFailure(name, reason))

    # -- queries -----------------------------------------------------------------------------

    def registry(self, kind: str) -> Registry:
        return self.registries[kind]

    def conflicts(self) -> list[dict[str, Any]]:
        """Names claimed by more than one plugin (ambiguous: neither is used)."""
        return [
            {"kind": kind, "name": name, "plugins": [r.provenance.plugin for r in claims],
             "owners": [r.provenance.as_dict() for r in claims]}
            for kind, registry in self.registries.items()
            for name, claims in registry.ambiguous().items()
        ]

    def report(self) -> dict[str, Any]:
        """What ``diffrl plugins --json`` prints."""
        return {
            "plugins": [info.as_dict() for info in self.plugins.values()],
            "errors": [failure.as_dict() for failure in self.errors],
            "conflicts": self.conflicts(),
            "disabled": [plugin.as_dict() for plugin in self.disabled],
            "warnings": [warning.as_dict() for warning in self.warnings],
        }

    def raise_for(self, plugin: str) -> None:
        """Raise the recorded failure of ``plugin``, if any (for tools that need it loaded)."""
        for failure in self.errors:
            if failure.name == plugin:
                raise PluginLoadError(failure.name, failure.error)


class _GymRegistryGuard:
    """What one plugin did to gymnasium's registry while it was imported and its hooks ran.

    Ids it added are its claims; an id it replaced or removed that was there before (one of
    gymnasium's own, or a user's) is restored and fails the plugin; when the plugin fails,
    every change is undone.
    """

    def __init__(self, plugin: str) -> None:
        import gymnasium

        self.plugin = plugin
        self.registry = gymnasium.registry
        self.before = dict(self.registry)
        self.ok = False

    def changes(self, other_plugins: set[str]) -> tuple[dict[str, Any], list[str]]:
        """The plugin's claims (ids it added, or re-registered after another plugin's import) and its faults.

        An id that was there before the plugin (gymnasium's own, or a user's) and that it replaced
        or removed is restored, and described as a fault.

        :param other_plugins: ids other plugins registered on import in this load (a clash, not a fault)
        """
        claims = {env_id: spec for env_id, spec in self.registry.items() if self.before.get(env_id) is not spec}
        problems = []
        for env_id, spec in self.before.items():
            now = self.registry.get(env_id)
            if now is spec or (now is not None and env_id in other_plugins):
                continue
            claims.pop(env_id, None)
            change = ("removed it" if now is None else
                      f"replaced it with entry point {now.entry_point!r}")
            problems.append(f"gymnasium env id {env_id!r} (entry point {spec.entry_point!r}) was registered before "
                            f"the plugin loaded, and the plugin {change} while it was imported")
            self.registry[env_id] = spec
        return claims, problems

    def restore(self) -> None:
        for env_id in list(self.registry):
            if env_id not in self.before:
                del self.registry[env_id]
        self.registry.update(self.before)


def _on_import(registration: Registration) -> bool:
    """Whether the plugin registered the env id with gymnasium itself, while it was imported."""
    return bool(registration.options.get("registered_on_import"))


def _refuse_ambiguous_env(env_id: str, owners: tuple[Provenance, ...], **kwargs: Any) -> Any:
    """The gymnasium entry point of an env id two plugins claim: making it names both."""
    raise AmbiguousNameError("envs", env_id, owners)


def _validate_env_id(env_id: Any) -> None:
    from gymnasium.envs.registration import parse_env_id

    if not isinstance(env_id, str) or not env_id or any(c.isspace() for c in env_id):
        raise DiffRLError(f"env id {env_id!r} is malformed: env ids have no whitespace (e.g. 'mylab/Maze-v0')")
    try:
        namespace, _, _ = parse_env_id(env_id)
    except Exception as exc:
        raise DiffRLError(f"env id {env_id!r} is malformed: {exc}") from None
    if namespace is None:
        raise DiffRLError(f"env id {env_id!r} has no namespace: plugins register ids such as "
                          f"'yourplugin/{env_id}' so they cannot shadow gymnasium's own")


#: ``name [extras] (specifiers) ; marker`` of a ``Requires-Dist`` line
_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*\(?\s*([^;()]*?)\s*\)?\s*(?:;.*)?")
_SIMPLE_SPECIFIER = re.compile(r"\s*(==|!=|>=|<=|>|<|~=)\s*(\d+(?:\.\d+)*)\s*")


def _core_requirement_problem(ep: Any) -> str | None:
    """Why the plugin's declared range of diffrl-core excludes this one (None: it fits, or declares none)."""
    dist = getattr(ep, "dist", None)
    try:
        requires = getattr(dist, "requires", None) or []
    except Exception:  # unreadable metadata: the import will tell
        return None
    for line in requires:
        match = _REQUIREMENT.fullmatch(line)
        if not match or _canonical(match[1]) != CORE_DISTRIBUTION or not match[2]:
            continue
        if not _version_in(match[2], CORE_VERSION):
            return (f"requires {CORE_DISTRIBUTION}{match[2]} (its plugin API), but {CORE_DISTRIBUTION} "
                    f"{CORE_VERSION} is installed: install a release of the plugin made for it")
    return None


def _version_in(specifiers: str, version: str) -> bool:
    """Whether ``version`` satisfies ``specifiers`` (e.g. ``">=0.1,<0.2"``).

    Plain release numbers are compared here, because importing ``packaging`` would add a
    sixth to ``diffrl plugins``' start-up; anything else (wildcards, pre-releases) goes to
    ``packaging``.
    """
    release = _release(version)
    checks = []
    for item in specifiers.split(","):
        match = _SIMPLE_SPECIFIER.fullmatch(item)
        if release is None or match is None:
            from packaging.specifiers import SpecifierSet

            return SpecifierSet(specifiers).contains(version, prereleases=True)
        checks.append((match[1], _release(match[2])))
    for op, bound in checks:
        assert release is not None and bound is not None
        width = max(len(release), len(bound))
        ours, theirs = release + (0,) * (width - len(release)), bound + (0,) * (width - len(bound))
        if op == "~=":
            prefix = bound[:-1] if len(bound) > 1 else bound
            if not (ours >= theirs and release[: len(prefix)] == prefix):
                return False
        elif not {"==": ours == theirs, "!=": ours != theirs, ">=": ours >= theirs, "<=": ours <= theirs,
                  ">": ours > theirs, "<": ours < theirs}[op]:
            return False
    return True


def _release(version: str) -> tuple[int, ...] | None:
    return tuple(int(part) for part in version.split(".")) if re.fullmatch(r"\d+(\.\d+)*", version) else None


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

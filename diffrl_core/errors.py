"""The one error hierarchy of diffrl.

Every error a user can act on is a :class:`DiffRLError`; the CLI catches it once and
exits with code 2 and the message, without a traceback. Messages name the thing, where it
came from (plugin, distribution, config key) and what would be valid.
"""

from __future__ import annotations

import difflib
import signal
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from diffrl_core.kinds import label as kind_label

if TYPE_CHECKING:
    from diffrl_core.registry import Provenance


#: Exit codes of a command stopped by a signal (the shell's 128 + signal number); a DiffRLError exits 2
EXIT_CODES: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}


class DiffRLError(Exception):
    """Base class of every error diffrl raises for a user to act on."""


class PluginLoadError(DiffRLError):
    """A plugin could not be imported, registered or called."""

    def __init__(self, plugin: str, reason: str) -> None:
        self.plugin = plugin
        self.reason = reason
        super().__init__(f"plugin {plugin!r}: {reason}")


class DuplicateNameError(DiffRLError):
    """A name (component or env id) was registered twice; the message names both owners."""

    def __init__(self, kind: str, name: str, owner: str, intruder: str) -> None:
        self.kind = kind
        self.name = name
        self.owner = owner
        self.intruder = intruder
        super().__init__(
            f"{kind_label(kind)} {name!r} from {intruder} is already registered by "
            f"{owner}; {intruder}'s {name!r} was not registered (rename it, or block one plugin "
            f"with DIFFRL_DISABLE_PLUGINS)"
        )


class AmbiguousNameError(DiffRLError):
    """A name (component or env id) claimed by more than one plugin: neither claim is used."""

    def __init__(self, kind: str, name: str, owners: Sequence[Provenance], where: str | None = None) -> None:
        self.kind = kind
        self.name = name
        self.owners = list(owners)
        plugins = [owner.plugin for owner in self.owners]
        message = f"{kind_label(kind)} {name!r}"
        if where:
            message += f" (in {where})"
        owners_text = " and ".join(owner.describe() for owner in self.owners)
        message += f" is ambiguous: it is registered by {owners_text}, so neither is used."
        if kind == "envs":  # "x:ns/Env-v0" is gymnasium's module prefix, so env ids are chosen by disabling
            message += " Choose one by disabling the other plugin"
        else:
            message += (f" Choose one with the qualified name {' or '.join(repr(f'{p}:{name}') for p in plugins)},"
                        " or disable the other plugin")
        message += f" ({' or '.join(f'DIFFRL_DISABLE_PLUGINS={p}' for p in plugins)}, or uninstall it)."
        super().__init__(message)


class UnknownNameError(DiffRLError):
    """A name that no loaded plugin registered.

    :param failures: plugins that failed to load (``PluginFailure``-like: ``.name``, ``.error``),
        mentioned because one of them may have provided the name
    :param note: one more sentence for the message
    """

    def __init__(self, kind: str, name: str, known: Iterable[str], where: str | None = None,
                 failures: Iterable[Any] = (), note: str | None = None) -> None:
        self.kind = kind
        self.name = name
        known = sorted(known)
        message = f"unknown {kind_label(kind)} {_shorten(repr(name), 200)}"
        if where:
            message += f" (in {where})"
        if note:
            message += f": {note}."
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5) if len(name) < 1000 else []
        if close:
            message += f"; did you mean {', '.join(repr(c) for c in close)}?"
        elif 0 < len(known) <= 12:
            message += f"; registered: {', '.join(known)}."
        failures = list(failures)
        if failures:
            message += (f" {len(failures)} plugin(s) failed to load and may have provided it: "
                        + "; ".join(f"{f.name!r}: {_shorten(f.error)}" for f in failures) + ".")
        if kind == "envs":
            message += (
                " Run `diffrl list envs` for the plugins' envs, "
                "`python -c 'import gymnasium; gymnasium.pprint_registry()'` for all."
            )
        else:
            message += f" Run `diffrl list {kind}` to see all of them with their plugins."
        super().__init__(message)


def _shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class MissingComponentError(UnknownNameError):
    """A saved model names a component whose plugin is not installed (or not loaded).

    :param plugin: the plugin the model was saved with (it loads only from that one)
    :param others: plugins that register the same name now (they are not used in its place)
    """

    def __init__(self, kind: str, name: str, known: Iterable[str], distribution: str | None,
                 plugin: str | None = None, others: Sequence[str] = ()) -> None:
        super().__init__(kind, name, [] if others else known, where="the saved model")
        message = self.args[0]
        if distribution:
            message += (f" The model was saved with {name!r} from the distribution {distribution!r}"
                        + (f" (plugin {plugin!r})" if plugin else "")
                        + f": install it (pip install {distribution}) or check that "
                        "DIFFRL_LOAD_PLUGINS / DIFFRL_DISABLE_PLUGINS do not exclude it.")
        if others:
            message += (f" {' and '.join(others)} registers {name!r} too, but a model loads its components "
                        "only from the plugins it was trained with.")
        self.args = (message,)


class IncompatibleComponentsError(DiffRLError):
    """Components (or a component and the env / algorithm) that cannot work together."""


class ConfigError(DiffRLError):
    """A config file or mapping that is not valid."""



class ComponentError(DiffRLError):
    """A component's own code failed (its constructor raised, or it raised while training): names it and its plugin."""


class DivergenceError(DiffRLError):
    """Training produced a non-finite value (NaN or infinity); the message names where it came from.

    :param source: what produced it: ``head 'gaussian' (plugin 'gaussian' ...)``, ``env 'Pendulum-v1'``, ...
    :param what: the value: ``observation``, ``reward``, ``action``, ``value of loss term 'bc'``, ``gradient of ...``
    :param num_timesteps: the env step at which it was found
    :param detail: what else was found (e.g. which of its inputs were finite)
    """

    def __init__(self, source: str, what: str, num_timesteps: int, detail: str = "") -> None:
        self.source = source
        self.what = what
        self.num_timesteps = num_timesteps
        message = f"training diverged at step {num_timesteps}: {source} produced a non-finite {what}"
        super().__init__(message + (f" ({detail})" if detail else ""))


def message_of(exc: BaseException, limit: int = 400) -> str:
    """An exception's message for an error paragraph: one line, at most about ``limit`` characters."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else f"{text[: limit - 40]}... ({len(text)} characters)"


class ModelFileError(DiffRLError):
    """A model, checkpoint or replay-buffer file that cannot be loaded: truncated, corrupt, incomplete,
    altered (a checksum mismatch), too large, or holding something that would need code to load.

    :param path: the file
    :param problem: what is wrong with it, and what would work instead
    """

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"cannot load {self.path!r}: {problem}")


class ModelSaveError(DiffRLError):
    """A model holds something that diffrl's model format cannot store without code (a function, an
    unlisted class): nothing is written."""

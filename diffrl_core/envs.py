"""Import this module to make the envs of every installed diffrl plugin known to plain gymnasium.

Plugins declare their env ids through the ``register_envs`` hook, and those ids reach
gymnasium's registry only when the plugins are loaded (:func:`diffrl_core.load_plugins`).
``import diffrl_core`` alone loads nothing, by design: it stays light. So in a fresh
interpreter ``gymnasium.make("acme/Target-v0")`` raises ``NamespaceNotFound`` although the
plugin is installed. What tools built on plain gymnasium can be asked to do is import a
module; importing this one loads the plugins:

.. code-block:: python

    import gymnasium

    import diffrl_core.envs  # noqa: F401

    env = gymnasium.make("acme/Target-v0")

    # or with no import statement: gymnasium imports the module named before the colon
    env = gymnasium.make("diffrl_core.envs:acme/Target-v0")

RL Baselines3 Zoo does the same with ``--gym-packages diffrl_core.envs``.

Importing this module imports neither torch, stable-baselines3 nor any env module: plugins
register string entry points, imported by :func:`gymnasium.make`. ``DIFFRL_LOAD_PLUGINS``
and ``DIFFRL_DISABLE_PLUGINS`` apply as everywhere else. A plugin that fails to load is
reported with one :class:`PluginLoadWarning` per plugin; the other plugins' envs are
registered all the same.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from types import FrameType

from diffrl_core.plugins import PluginHost, load_plugins

__all__ = ["PluginLoadWarning", "registered"]


class PluginLoadWarning(UserWarning):
    """A diffrl plugin did not load (or not completely): envs it declares may be missing from gymnasium."""


def registered() -> list[str]:
    """The env ids that the loaded plugins registered with gymnasium.

    :return: the ids, sorted (e.g. ``["acme/Target-v0", "diffrl/PointMassReach-v0"]``)
    """
    return load_plugins().registry("envs").names()


def _importer() -> FrameType:
    """The frame of the code importing this module: the first one outside it and importlib.

    That is the ``import diffrl_core.envs`` line, or :func:`gymnasium.make` for a ``"module:id"``
    id (which goes through :func:`importlib.import_module`, a frame that ``stacklevel`` would count).
    """
    frame = sys._getframe(1)
    while frame.f_back is not None and (frame.f_code.co_filename in (__file__, importlib.__file__)
                                        or frame.f_code.co_filename.startswith("<frozen importlib")):
        frame = frame.f_back
    return frame


def _warn_failures(host: PluginHost) -> None:
    """One :class:`PluginLoadWarning` per plugin with recorded failures, naming it and the reasons."""
    reasons: dict[str, list[str]] = {}
    for failure in host.errors:
        reasons.setdefault(failure.name, []).append(failure.error)
    frame = _importer()
    for name, errors in reasons.items():
        warnings.warn_explicit(
            f"diffrl plugin {name!r} failed to load: {'; '.join(errors)}; envs it declares may be missing "
            "from gymnasium's registry (`diffrl plugins` lists what loaded)",
            PluginLoadWarning,
            frame.f_code.co_filename,
            frame.f_lineno,
            module=frame.f_globals.get("__name__"),
            registry=frame.f_globals.setdefault("__warningregistry__", {}),
        )


_warn_failures(load_plugins())

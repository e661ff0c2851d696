"""The hook specifications a diffrl plugin implements.

Each hook receives one argument, ``register``, a callback bound to the calling plugin so
that every name is recorded with its provenance. Hooks only fill registries: they are
called once, when plugins load, never in the training loop.

A plugin is a module (or any object) with functions decorated with
:data:`diffrl_core.hookimpl`, declared in its distribution's ``pyproject.toml``::

    [project.entry-points.diffrl]
    my_plugin = "my_plugin_package.plugin"
"""

from __future__ import annotations

from typing import Any, Protocol

import pluggy

PROJECT_NAME = "diffrl"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class RegisterEnv(Protocol):
    """The ``register`` callback of :func:`register_envs`."""

    def __call__(self, env_id: str, entry_point: str, **kwargs: Any) -> None: ...


class RegisterComponent(Protocol):
    """The ``register`` callback of the component hooks.

    ``aliases`` are former names that keep resolving to ``name`` (so that configs and saved
    models written before a rename still work); they are listed, never shown as components.
    """

    def __call__(self, name: str, component: type | str, aliases: tuple[str, ...] = ()) -> None: ...


@hookspec
def register_envs(register: RegisterEnv) -> None:
    """Register gymnasium environments.

    ``register(env_id, entry_point, **kwargs)`` forwards to :func:`gymnasium.register`.
    ``env_id`` needs a namespace (``diffrl/`` is the project's own; use your own, e.g.
    ``mylab/Maze-v0``); ``entry_point`` must be a ``"module:Class"`` string, so nothing
    is imported until :func:`gymnasium.make`; ``kwargs`` are gymnasium's register kwargs
    (``max_episode_steps``, ``kwargs``, ``reward_threshold``...). An id already taken by
    another plugin or by gymnasium is reported as an error, never shadowed.

    Example::

        @hookimpl
        def register_envs(register):
            register("mylab/Maze-v0", entry_point="mylab.maze:MazeEnv", max_episode_steps=200)

    :param register: callback that records the env id for the calling plugin
    """


@hookspec
def register_actor_heads(register: RegisterComponent) -> None:
    """Register actor heads by name.

    An actor head turns the actor's latent features into an action distribution (or a
    deterministic action): a subclass of :class:`diffrl_core.components.ActorHead`.
    ``component`` is the class or, to keep listing plugins free of torch imports, a
    ``"module:Class"`` string resolved when a model is composed.

    Example::

        @hookimpl
        def register_actor_heads(register):
            register("beta", "my_plugin.heads:BetaHead")

    :param register: callback ``register(name, component)``; ``name`` is lowercase snake_case
    """


@hookspec
def register_loss_terms(register: RegisterComponent) -> None:
    """Register actor loss terms by name.

    A loss term is a subclass of :class:`diffrl_core.components.LossTerm`: it receives the
    :class:`diffrl_core.components.ActorLossContext` of one gradient step and returns a
    scalar loss (and values to log). The actor loss is the weighted sum of the configured
    terms, in config order.

    Example::

        @hookimpl
        def register_loss_terms(register):
            register("l2_action", "my_plugin.losses:L2ActionPenalty")

    :param register: callback ``register(name, component)``; ``name`` is lowercase snake_case
    """


@hookspec
def register_postprocessors(register: RegisterComponent) -> None:
    """Register action post-processors by name.

    A post-processor (a subclass of :class:`diffrl_core.components.PostProcessor`) maps the
    head's raw output to the normalized action in ``[-1, 1]`` that the critic learns on and
    the replay buffer stores; the env receives it rescaled to the action space bounds.

    Example::

        @hookimpl
        def register_postprocessors(register):
            register("soft_clip", "my_plugin.post:SoftClip")

    :param register: callback ``register(name, component)``; ``name`` is lowercase snake_case
    """

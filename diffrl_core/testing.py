"""Helpers for a plugin's own tests.

A plugin distribution's tests usually need three things, all here:

- :func:`check_plugin` / :func:`check_component` / :func:`check_composition`: the
  conformance check. It composes a model that uses the component (choosing partner
  components that fit it: SAC or TD3; PPO, or A2C, for on-policy loss terms and discrete heads),
  trains it briefly, checks what the component declares against what it does (log-prob,
  bounds, stochasticity, gradients reaching the actor, log-probs of given actions), checks that
  ``predict`` returns in-bounds actions for one and for a batch of observations, saves the
  model and loads it **in a fresh Python process** through the registries, where the
  deterministic actions must be the same. It raises :class:`ConformanceError` (an
  ``AssertionError``) naming the component and what went wrong.
- :func:`registered_plugin` and :func:`disabled_plugins`: add a plugin object (e.g. a module
  not installed yet) to the process-wide registries for the duration of a ``with`` block, or
  take installed plugins away (to test what users without them see).
- :func:`check_gradients`: the gradient check of :mod:`diffrl_core.gradcheck`, for loss
  terms with a hand-written backward pass.

Example (a plugin's ``tests/test_conformance.py``)::

    from diffrl_core.testing import check_plugin

    def test_every_component_of_the_plugin_conforms():
        check_plugin("my_plugin")      # the entry-point name

Importing this module does not import torch or stable-baselines3; the checks import them
when they run.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from gymnasium import spaces

from diffrl_core.config import (
    DEFAULT_HEADS,
    DEFAULT_LOSSES,
    DEFAULT_POSTPROCESSOR,
    ON_POLICY_ALGOS,
    ON_POLICY_UNBOUNDED_POSTPROCESSOR,
)
from diffrl_core.conformance import FALSE_ALARM_RATE, PROPERTIES, ConformanceError, UncheckedWarning, fail
from diffrl_core.errors import DiffRLError, PluginLoadError
from diffrl_core.gradcheck import GradcheckResult, check_gradients
from diffrl_core.kinds import ACTOR_HEADS, COMPONENT_KINDS, KINDS, LOSS_TERMS, POSTPROCESSORS
from diffrl_core.plugins import DISABLE_ENV_VAR, PluginHost, _env_list, default_host, use_host

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

__all__ = [
    "FALSE_ALARM_RATE",
    "PROPERTIES",
    "ConformanceError",
    "ConformanceReport",
    "UncheckedWarning",
    "GradcheckResult",
    "TINY",
    "TINY_ON_POLICY",
    "check_component",
    "check_composition",
    "check_compositions",
    "check_gradients",
    "check_plugin",
    "conformance_config",
    "disabled_plugins",
    "registered_plugin",
]

#: What the conformance checks train under SAC and TD3: small networks, a short warm-up, a small buffer.
TINY: dict[str, Any] = {
    "policy": {"net_arch": [16, 16]},
    "algo_kwargs": {"learning_starts": 50, "batch_size": 16, "buffer_size": 1_000},
}

#: What they train under PPO and A2C (by algo): small networks, short rollouts (several updates in 200 steps).
TINY_ON_POLICY: dict[str, dict[str, Any]] = {
    "ppo": {"policy": {"net_arch": [16, 16]}, "algo_kwargs": {"n_steps": 32, "batch_size": 16, "n_epochs": 2}},
    "a2c": {"policy": {"net_arch": [16, 16]}, "algo_kwargs": {"n_steps": 16}},
}

#: The default env of the checks (a 1-D bounded action space, cheap to step).
DEFAULT_ENV = "Pendulum-v1"
#: The default env of a discrete head (a Discrete action space).
DEFAULT_DISCRETE_ENV = "CartPole-v1"

#: an env of each kind of discrete action space (``ActorHead.action_space_kind``), for the checks of heads
#: that act in one: gymnasium's CartPole, and stable-baselines3's identity envs (registered when first needed)
DISCRETE_ENVS = {
    "discrete": DEFAULT_DISCRETE_ENV,
    "multi_discrete": "diffrl_testing/MultiDiscreteIdentity-v0",
    "multi_binary": "diffrl_testing/MultiBinaryIdentity-v0",
}
_IDENTITY_ENVS = {
    DISCRETE_ENVS["multi_discrete"]: "stable_baselines3.common.envs:IdentityEnvMultiDiscrete",
    DISCRETE_ENVS["multi_binary"]: "stable_baselines3.common.envs:IdentityEnvMultiBinary",
}


def discrete_env(kind: str) -> str:
    """The env id the checks train a head of ``action_space_kind`` ``kind`` on (registered with gymnasium)."""
    import gymnasium as gym

    env_id = DISCRETE_ENVS[kind]
    if env_id in _IDENTITY_ENVS and env_id not in gym.registry:
        gym.register(env_id, entry_point=_IDENTITY_ENVS[env_id], kwargs={"dim": 3, "ep_length": 50})
    return env_id

#: Plugins registered by :func:`registered_plugin` right now: name -> import path, so the
#: fresh process of a check registers them too.
_TEMPORARY: dict[str, str | None] = {}


@dataclass
class ConformanceReport:
    """What a conformance check did, for a composition that passed.

    :param label: a short description of the composition
    :param config: the config that was composed (plain data)
    :param steps: environment steps trained
    :param n_updates: gradient steps taken
    :param observations: the observations the predictions were made on
    :param actions: the deterministic env actions for ``observations`` (before saving)
    :param reloaded: whether the saved model was loaded and compared in a fresh process
    :param unchecked: properties that could not be checked for this composition, and why
        (each also raised as a :class:`~diffrl_core.conformance.UncheckedWarning`)
    """

    label: str
    config: dict[str, Any]
    steps: int
    n_updates: int
    observations: list[Any] = field(repr=False)
    actions: list[Any] = field(repr=False)
    reloaded: bool = False
    unchecked: list[str] = field(default_factory=list)


# -- plugins for the duration of a test ---------------------------------------------------------


@contextmanager
def registered_plugin(plugin: object, name: str, host: PluginHost | None = None) -> Iterator[PluginHost]:
    """Register ``plugin`` (a module or any object with hook implementations) for a ``with`` block.

    The plugin's names are added to the process-wide registries (``default_host()``) and
    removed again on exit, with the env ids it registered. A plugin that fails to register
    (a bad hook, a name already taken) raises :class:`~diffrl_core.errors.PluginLoadError`
    and leaves nothing behind. Conformance checks run while the block is open register a
    module plugin in their fresh process too (it must be importable from ``sys.path``).

    :param plugin: the plugin object, e.g. ``importlib.import_module("my_plugin.plugin")``
    :param name: the plugin's name (what an entry-point name would be)
    :param host: the plugin host (default: the process-wide one)
    """
    import gymnasium

    host = host or default_host()
    errors_before = len(host.errors)
    registered = host.register_plugin(plugin, name)
    new_errors = host.errors[errors_before:]
    if new_errors:
        del host.errors[errors_before:]
        if registered:
            _forget(host, name, gymnasium)
        raise PluginLoadError(name, "; ".join(failure.error for failure in new_errors))
    _TEMPORARY[name] = _import_path(plugin)
    try:
        yield host
    finally:
        _TEMPORARY.pop(name, None)
        _forget(host, name, gymnasium)


def _forget(host: PluginHost, name: str, gymnasium: Any) -> None:
    env_ids = [r.name for r in host.registry("envs") if r.provenance.plugin == name]
    host.unregister_plugin(name)
    for env_id in env_ids:
        gymnasium.registry.pop(env_id, None)


def _import_path(plugin: object) -> str | None:
    """``"module"`` or ``"module:Qual.Name"`` if ``plugin`` can be imported again, else None."""
    if isinstance(plugin, type(sys)):
        return plugin.__name__
    module, qualname = getattr(plugin, "__module__", None), getattr(plugin, "__qualname__", None)
    if module and qualname and "<locals>" not in qualname and module != "__main__":
        return f"{module}:{qualname}"
    return None


@contextmanager
def disabled_plugins(*names: str) -> Iterator[PluginHost]:
    """Make the process-wide host one without the installed plugins ``names`` for a ``with`` block.

    As ``DIFFRL_DISABLE_PLUGINS`` does for a new process: the block sees the registries a user
    sees without those plugins (e.g. to check the error when a saved model needs one of them).
    The previous host is restored on exit.
    """
    disable = sorted({*(_env_list(DISABLE_ENV_VAR) or []), *names})
    with use_host(PluginHost().load(disable=disable)) as host:
        yield host


# -- choosing partners for a component ---------------------------------------------------------


def conformance_config(
    kind: str,
    name: str,
    kwargs: Mapping[str, Any] | None = None,
    env: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    host: PluginHost | None = None,
) -> dict[str, Any]:
    """A small valid config that uses component ``name`` of ``kind``, with partners chosen to fit.

    - an actor head: SAC with SAC's default loss term (``sac_entropy``, or ``q_value`` if no plugin
      provides it) when the head has a log-prob, TD3 with ``q_value`` otherwise; the pass-through
      ``identity`` after a bounded head, ``tanh`` after an unbounded one. A discrete head
      (``action_space_kind`` other than ``"box"``): PPO with its own term ``ppo_clip`` on
      :func:`discrete_env` of its kind (``CartPole-v1`` for Discrete, SB3's identity envs otherwise),
      with ``identity`` (the env takes the head's action as it is);
    - a loss term: after the algorithm's own term, with the first head the term accepts
      (``check_compatible``) of TD3's and SAC's default heads (``deterministic``,
      ``squashed_gaussian``), then the others by name: under TD3 if the term ``requires``
      neither a log-prob nor ``alpha``, else under SAC with a head that has a log-prob. An
      ``on_policy`` term: under PPO (after ``ppo_clip``), or A2C (after ``policy_gradient``) if
      it refuses PPO, with the first head in the same order that ``evaluates_actions`` and that
      both terms accept; ``identity`` after a bounded head, ``clip_to_bounds`` after an unbounded
      one (PPO's and A2C's own defaults), on ``CartPole-v1`` for a discrete head;
    - a post-processor: the first head, in the same order, that it accepts (discrete heads
      take none);
    - an env id: TD3 with its default components on that env.

    The result is merged over :data:`TINY` (SAC, TD3) or :data:`TINY_ON_POLICY` (PPO, A2C), and
    ``overrides`` over that.

    :param kind: ``"actor_heads"``, ``"loss_terms"``, ``"postprocessors"`` or ``"envs"``
    :param name: the registered name (or env id)
    :param kwargs: the component's kwargs (``head_kwargs``, a loss term's ``kwargs``, ``postprocess_kwargs``,
        or for an env ``env_kwargs``)
    :param env: the env to train on (default ``Pendulum-v1``, :func:`discrete_env` with a discrete head; for
        ``kind="envs"``, ``name``)
    :param overrides: merged into the result last (recursively), e.g. ``{"algo_kwargs": {...}}``
    """
    host = host or default_host()
    kwargs = dict(kwargs or {})
    if kind not in KINDS:
        raise DiffRLError(f"unknown component kind {kind!r}: {', '.join(KINDS)}")
    registry = host.registry(kind)
    registry.get(name, where="the conformance check")  # unknown names: the registry's error, with suggestions
    names = {k.name: set(host.registry(k.name).names()) for k in COMPONENT_KINDS}
    heads, terms = host.registry(ACTOR_HEADS.name), host.registry(LOSS_TERMS.name)
    # SAC's own loss when its plugin is installed, else the critic's value alone
    sac_loss = DEFAULT_LOSSES["sac"] if DEFAULT_LOSSES["sac"] in names["loss_terms"] else DEFAULT_LOSSES["td3"]
    loss_of = {**DEFAULT_LOSSES, "sac": sac_loss}
    # partners are tried in this order: the algorithms' own heads, then the others by name
    own_heads = [h for h in (DEFAULT_HEADS["td3"], DEFAULT_HEADS["sac"]) if h in names["actor_heads"]]
    head_order = own_heads + sorted(names["actor_heads"] - set(own_heads))

    def discrete(head: Any) -> bool:
        return bool(head.action_space_kind != "box")

    def postprocess_for(head: Any, algo: str) -> str:
        if head.bounded or discrete(head):
            return DEFAULT_POSTPROCESSOR
        return ON_POLICY_UNBOUNDED_POSTPROCESSOR if algo in ON_POLICY_ALGOS else "tanh"

    policy: dict[str, Any]
    if kind == ACTOR_HEADS.name:
        head = registry.resolve(name)
        algo = "ppo" if discrete(head) else "sac" if head.has_log_prob else "td3"
        policy = {"head": name, "head_kwargs": kwargs, "losses": [{"name": loss_of[algo]}],
                  "postprocess": postprocess_for(head, algo)}
        if discrete(head):
            env = env or discrete_env(head.action_space_kind)
    elif kind == LOSS_TERMS.name:
        term = registry.resolve(name)
        if term.on_policy:
            pairs = [(algo, h) for algo in ON_POLICY_ALGOS for h in head_order if heads.resolve(h).evaluates_actions]
        else:  # SAC and TD3 act in continuous action spaces only
            continuous = [h for h in head_order if not discrete(heads.resolve(h))]
            pairs = [("td3", h) for h in continuous if not {"alpha", "log_prob"} & set(term.requires)]
            pairs += [("sac", h) for h in continuous if heads.resolve(h).has_log_prob]

        def trains(algo: str, head_name: str) -> bool:
            """Both the term and the algorithm's own term (where registered) can train the head under ``algo``."""
            partners = [term]
            if loss_of[algo] in names["loss_terms"]:
                partners.append(terms.resolve(loss_of[algo]))
            return all(t.check_compatible(heads.resolve(head_name), algo) is None for t in partners)

        pair = next(((algo, h) for algo, h in pairs if trains(algo, h)), None)
        if pair is None:
            if term.on_policy:
                hint = f"ppo or a2c (a head that evaluates_actions such as {DEFAULT_HEADS['ppo']!r}"
            else:
                hint = f"sac or td3 (a head with a log-prob such as {DEFAULT_HEADS['sac']!r}"
            raise DiffRLError(f"loss term {name!r} can train none of the registered heads ({', '.join(head_order)}) "
                              f"under {hint} is in diffrl-plugin-gaussian)")
        algo, head_name = pair
        base = loss_of[algo]
        losses = [{"name": name, "kwargs": kwargs}]
        if name != base:
            losses.insert(0, {"name": base})
        head = heads.resolve(head_name)
        policy = {"head": head_name, "losses": losses, "postprocess": postprocess_for(head, algo)}
        if discrete(head):
            env = env or discrete_env(head.action_space_kind)
    elif kind == POSTPROCESSORS.name:
        post = registry.resolve(name)
        post_order = [h for h in head_order if not discrete(heads.resolve(h))]  # a discrete head takes none
        accepted = next((h for h in post_order if post.check_head(heads.resolve(h)) is None), None)
        if accepted is None:
            raise DiffRLError(f"post-processor {name!r} accepts none of the registered heads ({', '.join(post_order)})")
        head = heads.resolve(accepted)
        algo = "sac" if head.has_log_prob and accepted != DEFAULT_HEADS["td3"] else "td3"
        policy = {"head": accepted, "losses": [{"name": loss_of[algo]}],
                  "postprocess": name, "postprocess_kwargs": kwargs}
    else:
        env = name
        algo = "td3"
        policy = {"head": DEFAULT_HEADS["td3"], "losses": [{"name": DEFAULT_LOSSES["td3"]}],
                  "postprocess": DEFAULT_POSTPROCESSOR}
    config: dict[str, Any] = {"env": env or DEFAULT_ENV, "algo": algo, "policy": policy, "seed": 0}
    if kind == "envs" and kwargs:
        config["env_kwargs"] = kwargs
    # the small settings of the algorithm that is trained in the end (overrides may name another)
    return _merge(_merge(_tiny((overrides or {}).get("algo", algo)), config), overrides or {})


def _tiny(algo: str) -> dict[str, Any]:
    """The small settings the checks train ``algo`` with (:data:`TINY` or :data:`TINY_ON_POLICY`)."""
    return TINY_ON_POLICY.get(algo, TINY)


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# -- the checks ------------------------------------------------------------------------------


def check_component(
    kind: str,
    name: str,
    kwargs: Mapping[str, Any] | None = None,
    env: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    steps: int = 200,
    fresh_process: bool = True,
) -> ConformanceReport:
    """Run one component through compose, a short training, predict, save and a fresh-process load.

    See :func:`conformance_config` for how partners are chosen and :func:`check_compositions`
    for what is checked.

    :param kind: ``"actor_heads"``, ``"loss_terms"``, ``"postprocessors"`` or ``"envs"``
    :param name: the registered name (or env id)
    :param kwargs: the component's kwargs
    :param env: the env to train on (default ``Pendulum-v1``, ``CartPole-v1`` for a discrete head)
    :param overrides: merged into the config last
    :param steps: env steps to train (SAC, TD3: the first 50 are random warm-up; PPO, A2C: rollouts of
        ``n_steps``, 32 or 16, each followed by an update)
    :param fresh_process: load the saved model in a new Python process and compare
    :raises ConformanceError: naming the component and the failed expectation
    """
    if kind == "envs" and not _check_env(name, kwargs):
        raise ConformanceError(f"env {name!r} passes gymnasium's env checker, but its action space is not a 1-D Box "
                               "with finite bounds, so no composed policy can act in it")
    config = conformance_config(kind, name, kwargs, env, overrides)
    return check_compositions([config], steps=steps, fresh_process=fresh_process)[0]


def check_composition(config: Mapping[str, Any], steps: int = 200, fresh_process: bool = True) -> ConformanceReport:
    """:func:`check_compositions` for one config (merged over :data:`TINY` or :data:`TINY_ON_POLICY`)."""
    return check_compositions([config], steps=steps, fresh_process=fresh_process)[0]


def check_plugin(
    name: str,
    overrides: Mapping[str, Any] | None = None,
    kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    steps: int = 200,
    fresh_process: bool = True,
) -> list[ConformanceReport]:
    """Check every component the loaded plugin ``name`` registered (one fresh process for all).

    :param name: the plugin's name (entry-point name, or the name given to :func:`registered_plugin`)
    :param overrides: merged into every config
    :param kwargs: component name -> its kwargs, for components that need some
    :param steps: env steps to train per component
    :param fresh_process: load the saved models in a new Python process and compare
    """
    host = default_host()
    if name not in host.plugins:
        host.raise_for(name)
        raise DiffRLError(f"no plugin named {name!r} is loaded (loaded: {', '.join(sorted(host.plugins))})")
    kwargs = kwargs or {}
    configs = []
    for kind, names in host.plugins[name].components.items():
        for component in names:
            if kind == "envs" and not _check_env(component, kwargs.get(component)):
                continue  # not an action space the composed policies act in: gymnasium's checks only
            configs.append(conformance_config(kind, component, kwargs.get(component), overrides=overrides, host=host))
    if not any(host.plugins[name].components.values()):
        raise ConformanceError(f"plugin {name!r} registered no components")
    return check_compositions(configs, steps=steps, fresh_process=fresh_process) if configs else []


def _check_env(env_id: str, env_kwargs: Mapping[str, Any] | None = None) -> bool:
    """gymnasium's env checker on ``env_id``; whether the composed policies can act in it."""
    import gymnasium
    from gymnasium.utils.env_checker import check_env

    from diffrl_core.components import ActorHead

    env = gymnasium.make(env_id, **dict(env_kwargs or {}))
    try:
        check_env(env.unwrapped, skip_render_check=True)
    except Exception as exc:
        raise ConformanceError(f"env {env_id!r} fails gymnasium's env checker: {type(exc).__name__}: {exc}") from exc
    finally:
        env.close()
    return ActorHead.check_action_space(env.action_space) is None


def check_compositions(
    configs: Sequence[Mapping[str, Any]], steps: int = 200, fresh_process: bool = True
) -> list[ConformanceReport]:
    """Compose, train, predict, save and reload each config; raise on the first failure.

    For each config (merged over :data:`TINY`, or :data:`TINY_ON_POLICY` for PPO and A2C):

    1. ``make_model``, then ``learn(steps)``: gradient steps happen, every loss term logs a
       finite ``train/loss/<name>``, and the actor loss reaches the head (its parameters change);
    2. the head keeps its word on the observations of a short random rollout: actions of
       shape ``(batch, action_dim)`` (``(batch,)`` indices below ``action_dim`` for a discrete
       head), ``bounded`` heads return raw actions in ``[-1, 1]``, ``stochastic`` heads sample
       different actions, (e) deterministic actions are reproducible; a head that
       ``evaluates_actions`` gives the log-prob of given actions that ``act()`` and ``sample()``
       give for their own (``[evaluate_actions]``). Under SAC and TD3, whose actor loss
       differentiates through ``sample()``, also: ``has_log_prob`` heads return a finite
       log-prob of shape ``(batch,)`` from ``sample()`` (and others None),
       ``sample().actions`` are reparameterized; and its math (:mod:`diffrl_core.conformance`):
       (a) the log-prob is a normalized density of what ``sample()`` draws, (b) its gradient is
       that of the reparameterized sample, (f) ``forward(deterministic=False)`` and ``sample()``
       draw from the same distribution; and gSDE for a head that ``supports_sde``;
    3. the post-processor (not after a discrete head, whose action the env takes as it is): (d)
       normalized actions in ``[-1, 1]`` for raw inputs across a wide range, with and without
       ``explore``; (e) no randomness without ``explore``; its ``log_abs_det_jacobian`` (if
       ``bijective``) is that of ``forward``; it is the identity on ``[-1, 1]`` if it says so
       (``identity_when_bounded``); and (c) every loss term sends gradient to the actor's
       parameters, in the context training builds (a replay batch; PPO and A2C: a minibatch of
       the rollout buffer);
    4. ``predict`` returns actions of the action space's shape and dtype within its bounds (a
       Discrete space: integers it contains), for one observation and for a batch,
       deterministic or not;
    5. ``model.save``, then (``fresh_process``) ``diffrl_core.load_model`` in a new Python
       process gives the same deterministic actions.

    torch runs on one thread meanwhile (the networks are tiny; the previous setting is restored).

    :raises ConformanceError: naming the composition and the failed expectation
    """
    import numpy as np

    from diffrl_core.compose import make_model
    from diffrl_core.config import parse_config

    reports: list[ConformanceReport] = []
    with _one_thread(), tempfile.TemporaryDirectory(prefix="diffrl-conformance-") as tmp:
        saved: list[tuple[str, list[Any], list[Any]]] = []
        for i, raw in enumerate(configs):
            config = _merge(_tiny(raw.get("algo", "sac")), raw)  # "sac": a config's default algo
            parsed = parse_config(config)
            label = (f"{parsed.algo} {parsed.env} head={parsed.head} losses={[s.name for s in parsed.losses]} "
                     f"postprocess={parsed.policy.postprocess}")
            try:
                model = make_model(parsed)
            except DiffRLError as exc:
                raise ConformanceError(f"{label}: composing failed: {exc}") from exc
            # the components composed: a head or post-processor left unset is PPO's and A2C's default for the env
            composition = cast(Any, model).composition
            label = (f"{parsed.algo} {parsed.env} head={composition.head.name} "
                     f"losses={[s.name for s in parsed.losses]} postprocess={composition.postprocessor.name}")
            _train_and_check(model, parsed, steps, label)
            obs = _observations(parsed)
            unchecked = _check_components(model, parsed, obs, label)
            _check_loss_terms(model, parsed, label)
            actions = _check_predict(model, obs, label)
            path = str(Path(tmp) / f"model_{i}.zip")
            model.save(path)
            env = model.get_env()
            assert env is not None, "make_model made the env"
            env.close()
            saved.append((path, obs.tolist(), actions.tolist()))
            reports.append(
                ConformanceReport(label, config, steps, int(model._n_updates), obs.tolist(), actions.tolist(),
                                  unchecked=unchecked)
            )
        if fresh_process:
            reloaded = _load_in_fresh_process([(path, obs) for path, obs, _ in saved])
            for report, (_, _, expected), got in zip(reports, saved, reloaded, strict=True):
                if not np.allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-6):
                    raise ConformanceError(
                        f"{report.label}: the model loaded in a fresh process acts differently "
                        f"(deterministic actions {got} != {expected} before saving): does the component "
                        "keep state outside its parameters, or draw random numbers when deterministic?"
                    )
                report.reloaded = True
    return reports


@contextmanager
def _one_thread() -> Iterator[None]:
    """torch on one thread for the block: with networks this small, more threads only wait on each other."""
    import torch as th

    threads = th.get_num_threads()
    th.set_num_threads(1)
    try:
        yield
    finally:
        th.set_num_threads(threads)


def _on_policy(config: Any) -> bool:
    return config.algo in ON_POLICY_ALGOS


def _actor_parts(model: BaseAlgorithm, config: Any) -> tuple[Any, Any, Any]:
    """The head, the post-processor and ``obs -> latent`` of the model's actor (PPO's and A2C's: of its policy)."""
    if _on_policy(config):
        policy = cast(Any, model).policy
        return policy.head, policy.postprocessor, policy._actor_latent
    actor = cast(Any, model).actor
    return actor.head, actor.postprocessor, actor.latent


def _train_and_check(model: BaseAlgorithm, config: Any, steps: int, label: str) -> None:
    import math

    import torch as th

    head, _, _ = _actor_parts(model, config)
    before = [p.detach().clone() for p in head.parameters()]
    try:
        # a huge log_interval: the logger keeps the last values instead of dumping them
        model.learn(steps, log_interval=10**9)
    except Exception as exc:
        raise ConformanceError(f"{label}: training failed: {type(exc).__name__}: {exc}") from exc
    if model._n_updates == 0:
        too_high = "n_steps" if _on_policy(config) else "learning_starts"
        raise ConformanceError(f"{label}: no gradient step in {steps} steps ({too_high} too high?)")
    logged = model.logger.name_to_value
    for spec in config.losses:
        key = f"train/loss/{spec.name}"
        if key not in logged:
            raise ConformanceError(f"{label}: loss term {spec.name!r} logged no {key!r}")
        if not math.isfinite(logged[key]):
            raise ConformanceError(f"{label}: loss term {spec.name!r} is not finite ({logged[key]})")
    after = list(head.parameters())
    if before and all(th.equal(b, a.detach()) for b, a in zip(before, after, strict=True)):
        raise ConformanceError(
            f"{label}: the head's parameters did not change in training: the actor loss does not reach the "
            "head (a detached sample? a post-processor without gradient?)"
        )


def _observations(config: Any, n: int = 5) -> Any:
    """Observations of a short random rollout of the config's env (seeded)."""
    import numpy as np

    from diffrl_core.compose import make_registered_env

    env = make_registered_env(config.env, config.env_kwargs)
    try:
        env.action_space.seed(0)
        obs, _ = env.reset(seed=0)
        out = [obs]
        while len(out) < n:
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                obs, _ = env.reset()
            out.append(obs)
    finally:
        env.close()
    return np.asarray(out, dtype=np.float32)


def _check_predict(model: BaseAlgorithm, obs: Any, label: str) -> Any:
    import numpy as np

    space = model.action_space
    discrete = not isinstance(space, spaces.Box)  # Discrete, MultiDiscrete, MultiBinary
    space_shape: tuple[int, ...] = space.shape or ()  # a Discrete space's is ()
    if not discrete:
        box = cast(spaces.Box, space)
        low, high = box.low, box.high
        tol = 1e-5 * np.maximum(1.0, high - low)
    for deterministic in (True, False):
        single, _ = model.predict(obs[0], deterministic=deterministic)
        batch, _ = model.predict(obs, deterministic=deterministic)
        cases = (("one observation", single, space_shape), ("a batch", batch, (len(obs), *space_shape)))
        for what, actions, shape in cases:
            where = f"{label}: predict(deterministic={deterministic}) on {what}"
            if actions.shape != shape:
                raise ConformanceError(f"{where} returned shape {actions.shape}, expected {shape}")
            if discrete:
                # SB3's Bernoulli samples are floats of 0 and 1: integer values, of whatever dtype
                if not (np.issubdtype(actions.dtype, np.integer) or np.array_equal(actions, np.round(actions))):
                    raise ConformanceError(f"{where} returned {actions.tolist()}, expected integer actions")
                rows = actions.reshape(-1, *space_shape)  # one action per row
                if not all(space.contains(action.astype(space.dtype)) for action in rows):
                    raise ConformanceError(f"{where} returned actions outside {space}: {actions.tolist()}")
                continue
            if actions.dtype != space.dtype:
                raise ConformanceError(f"{where} returned dtype {actions.dtype}, expected {space.dtype}")
            if not np.all(np.isfinite(actions)):
                raise ConformanceError(f"{where} returned non-finite actions {actions}")
            if np.any(actions < low - tol) or np.any(actions > high + tol):
                raise ConformanceError(
                    f"{where} returned actions outside [{low.tolist()}, {high.tolist()}]: {actions.tolist()}"
                )
    first, _ = model.predict(obs, deterministic=True)
    again, _ = model.predict(obs, deterministic=True)
    if not np.array_equal(first, again):
        raise ConformanceError(f"{label}: predict(deterministic=True) is not repeatable: {first} then {again}")
    return first


def _check_components(model: BaseAlgorithm, config: Any, obs: Any, label: str) -> list[str]:
    """The head's and the post-processor's declarations and math (:mod:`diffrl_core.conformance`).

    The checks of ``sample()`` (its log-prob, reparameterization, distribution, gSDE) run under
    SAC and TD3, whose actor loss differentiates through it; PPO and A2C never call it, and
    instead take the head's log-prob of given actions (``[evaluate_actions]``, checked for
    every head that declares it, whatever the algorithm).

    :return: the properties that could not be checked
    """
    import numpy as np
    import torch as th

    from diffrl_core import conformance

    unchecked: list[str] = []
    off_policy = not _on_policy(config)
    head, post, latent_of = _actor_parts(model, config)
    discrete = head.action_space_kind != "box"
    composition = cast(Any, model).composition
    name = f"{label}: actor head {composition.head.name!r} ({type(head).__name__})"
    if getattr(head, "use_sde", False):
        # gSDE's exploration weights keep the graph of their last draw, which training's backward freed
        head.reset_noise()
    with th.no_grad():
        latent = latent_of(th.as_tensor(np.repeat(obs, 20, axis=0), device=model.device))
        raw = {det: head(latent, deterministic=det) for det in (True, False)}
        sample = head.sample(latent) if off_policy else None
    # a Discrete head's raw action is one index per row; the others' one value per action dimension
    kind = head.action_space_kind
    expected = (latent.shape[0],) if kind == "discrete" else (latent.shape[0], head.action_dim)
    space = model.action_space
    for det, actions in raw.items():
        if tuple(actions.shape) != expected:
            raise fail(name, "declarations", f"forward(deterministic={det}) returned shape {tuple(actions.shape)}, "
                                             f"expected {expected}")
        rows = actions.detach().cpu().numpy().reshape(latent.shape[0], *(space.shape or ()))
        if discrete and not all(space.contains(row.astype(space.dtype)) and np.allclose(row, np.round(row))
                                for row in rows):
            raise fail(name, "declarations", f"forward(deterministic={det}) must return actions of {space} "
                                             f"(integer values), got {rows[:4].tolist()}...")
    if sample is not None and tuple(sample.actions.shape) != tuple(raw[True].shape):
        raise fail(name, "declarations", f"sample().actions has shape {tuple(sample.actions.shape)}, expected "
                                         f"{tuple(raw[True].shape)}")
    if head.bounded:
        drawn = [("forward(deterministic=True)", raw[True]), ("forward()", raw[False])]
        if sample is not None:
            drawn.append(("sample()", sample.actions))
        for what, actions in drawn:
            if actions.abs().max() > 1.0 + 1e-6:
                raise fail(name, "declarations", f"it declares bounded = True but {what} returned raw actions "
                                                 "outside [-1, 1]")
    if sample is not None:
        _check_reparameterized(head, latent, name)
        if head.has_log_prob:
            lp = sample.log_prob
            if lp is None or tuple(lp.shape) != (latent.shape[0],) or not bool(th.isfinite(lp).all()):
                got = None if lp is None else (tuple(lp.shape),
                                               "finite" if bool(th.isfinite(lp).all()) else "not finite")
                raise fail(name, "declarations", f"it declares has_log_prob = True: sample().log_prob must be finite "
                                                 f"with shape ({latent.shape[0]},), got {got}")
        elif sample.log_prob is not None:
            raise fail(name, "declarations", "it declares has_log_prob = False but sample() returned a log-prob")
    conformance.check_deterministic(lambda: head(latent, deterministic=True), name, "forward(deterministic=True)")
    sde = getattr(head, "use_sde", False)
    if sde and off_policy:  # the noise is fixed between reset_noise() calls: property [sde] checks it instead
        unchecked += [f"{name}: {PROPERTIES[p]} (gSDE: its samples share one noise draw; see [sde])"
                      for p in ("same_distribution", "density", "log_prob_gradient")]
    if head.stochastic and not sde:
        with th.no_grad():
            again = head(latent, deterministic=False)
        if th.equal(again, raw[False]):
            raise fail(name, "declarations", "it declares stochastic = True but two samples are identical")
        if off_policy:
            conformance.check_same_distribution(head, latent, name)
            if head.has_log_prob:
                if head.exact_log_prob:
                    conformance.check_density(head, latent, name)
                else:
                    unchecked.append(conformance.warn_unchecked(
                        name, "density", "the head declares its log-prob an estimate (exact_log_prob = False)"))
                if not conformance.check_log_prob_gradient(head, latent, name):
                    unchecked.append(f"{name}: {PROPERTIES['log_prob_gradient']} (implicit reparameterization)")
    elif not head.stochastic:
        compared = [("forward(deterministic=False)", raw[False])]
        if off_policy:
            with th.no_grad():
                compared.append(("sample().actions", head.sample(latent).actions))
        for what, actions in compared:
            if not th.allclose(actions, raw[True], rtol=1e-5, atol=1e-6):
                raise fail(name, "same_distribution", f"it declares stochastic = False but {what} differs from "
                                                      "forward(deterministic=True)")
    if head.evaluates_actions:
        conformance.check_evaluate_actions(head, latent, name)

    if type(head).supports_sde:
        _check_sde(composition.head, latent, head.action_dim, name)

    if discrete:  # the env takes the head's index as it is: no post-processor runs
        return unchecked
    post_name = f"{label}: post-processor {composition.postprocessor.name!r} ({type(post).__name__})"
    conformance.check_postprocessor(post, head.action_dim, post_name)
    emitted = [raw[False]] if sample is None else [raw[False], sample.actions]
    with th.no_grad():  # and on what this head actually emits
        for explore in (False, True):
            for actions in emitted:
                out = post(actions, explore=explore)
                normalized = bool(th.isfinite(out).all()) and out.abs().max() <= 1.0 + 1e-6
                if tuple(out.shape) != tuple(actions.shape) or not normalized:
                    raise fail(post_name, "bounds", f"forward(explore={explore}) must return finite normalized "
                                                    "actions in [-1, 1] of the input's shape for the head's actions")
    return unchecked


def _check_sde(component: Any, latent: Any, action_dim: int, name: str) -> None:
    """Property ``sde``: built as SAC builds it for ``use_sde``, the head samples, resets and keeps its noise."""
    import inspect

    import torch as th

    from diffrl_core.sb3.policies import ComposedActor

    # SAC's gSDE options, those the head takes (PPO's and A2C's are the same without clip_mean)
    parameters = inspect.signature(component.cls).parameters
    options = {key: value for key, value in ComposedActor.SDE_DEFAULTS.items() if key in parameters}
    try:
        head = component.build(latent.shape[1], action_dim, use_sde=True, **options)
        with th.no_grad():
            head.reset_noise(latent.shape[0])
            first, again = head(latent), head(latent)
            sample = head.sample(latent)
            std = head.get_std()
            head.reset_noise(latent.shape[0])
            other = head(latent)
            mode = head(latent, deterministic=True)
    except Exception as exc:
        raise fail(name, "sde", f"with use_sde=True and {options}: {type(exc).__name__}: {exc}") from exc
    if tuple(first.shape) != (latent.shape[0], action_dim) or tuple(mode.shape) != tuple(first.shape):
        raise fail(name, "sde", f"forward() returned shape {tuple(first.shape)}, "
                                f"expected {(latent.shape[0], action_dim)}")
    if not th.equal(first, again):
        raise fail(name, "sde", "two forward() calls without reset_noise() in between returned different actions")
    if th.equal(first, other):
        raise fail(name, "sde", "forward() returned the same actions after reset_noise() drew new noise")
    if head.bounded and max(float(t.abs().max()) for t in (first, other, mode, sample.actions)) > 1.0 + 1e-6:
        raise fail(name, "sde", "it declares bounded = True but returned raw actions outside [-1, 1] with gSDE")
    if head.has_log_prob and (sample.log_prob is None or tuple(sample.log_prob.shape) != (latent.shape[0],)
                              or not bool(th.isfinite(sample.log_prob).all())):
        raise fail(name, "sde", f"sample().log_prob must be finite with shape ({latent.shape[0]},) with gSDE")
    if not (bool(th.isfinite(std).all()) and bool((std > 0).all())):
        raise fail(name, "sde", "get_std() must be positive and finite")


def _check_loss_terms(model: BaseAlgorithm, config: Any, label: str) -> None:
    """Property (c) for each loss term, on a replay-buffer batch (PPO, A2C: a rollout minibatch), with the context
    training builds."""
    import torch as th

    from diffrl_core import conformance
    from diffrl_core.components import ActorLossContext, OnPolicyLossContext

    algo = cast(Any, model)
    ctx: ActorLossContext | OnPolicyLossContext
    if _on_policy(config):
        policy = algo.policy
        with _seeded_rng():
            batch = next(iter(algo.rollout_buffer.get(32)))
        actions = batch.actions
        if isinstance(model.action_space, spaces.Discrete):  # as train() does: indices, not floats
            actions = actions.long().flatten()
        values, evaluation = policy.evaluate(batch.observations, actions)
        advantages = batch.advantages
        if algo.normalize_advantage and len(advantages) > 1:  # as train() does
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        clip_range = float(algo.clip_range(1.0)) if config.algo == "ppo" else None
        ctx = OnPolicyLossContext(batch, evaluation, advantages, values.flatten(), clip_range, config.algo)
        # the actor's share of the policy: a term that reached only the value network would train no actor
        modules = [policy.pi_features_extractor, policy.mlp_extractor.policy_net, policy.head]
        parameters = list({id(p): p for m in modules for p in m.parameters() if p.requires_grad}.values())
    else:
        actor = algo.actor
        if actor.use_sde:  # new exploration weights, as train() draws before each gradient step
            actor.reset_noise()
        with _seeded_rng():
            replay = algo.replay_buffer.sample(32, env=algo._vec_normalize_env)
            ctx = algo.loss_context(replay)  # what train() builds: the sample, the head, the progress
        parameters = [p for p in actor.parameters() if p.requires_grad]
    for name, _, term in algo._loss_terms:
        with th.enable_grad():
            term_name = f"{label}: loss term {name!r} ({type(term).__name__})"
            conformance.check_loss_gradient(term, ctx, parameters, term_name)


@contextmanager
def _seeded_rng(seed: int = 0) -> Iterator[None]:
    import numpy as np

    from diffrl_core.conformance import seeded

    state = np.random.get_state()
    np.random.seed(seed)
    try:
        with seeded(seed):
            yield
    finally:
        np.random.set_state(state)


def _check_reparameterized(head: Any, latent: Any, name: str) -> None:
    """The actor loss differentiates through ``sample().actions``: they must depend on the head's parameters."""
    import torch as th

    parameters = [p for p in head.parameters() if p.requires_grad]
    if not parameters:
        return
    with th.enable_grad():
        actions = head.sample(latent.detach()).actions
        grads = th.autograd.grad(actions.sum(), parameters, allow_unused=True) if actions.requires_grad else []
    if not any(g is not None and bool(g.abs().sum() > 0) for g in grads):
        raise ConformanceError(
            f"{name}: sample().actions do not depend differentiably on the head's parameters, so the critic's "
            "gradient cannot reach the head: sample with rsample() (the reparameterization trick), not sample()"
        )


_LOAD_SCRIPT = """
import importlib, json, sys
import numpy as np
import diffrl_core
host = diffrl_core.load_plugins()
for name, path in json.loads(sys.argv[1]).items():
    module, _, qualname = path.partition(":")
    obj = importlib.import_module(module)
    for part in filter(None, qualname.split(".")):
        obj = getattr(obj, part)
    if not host.register_plugin(obj, name):
        raise SystemExit(f"cannot register the temporary plugin {name!r}: {host.errors[-1].error}")
out = []
for path, obs in json.loads(sys.argv[2]):
    model = diffrl_core.load_model(path)
    out.append(model.predict(np.asarray(obs, dtype=np.float32), deterministic=True)[0].tolist())
print("RESULT " + json.dumps(out))
"""


def _load_in_fresh_process(jobs: list[tuple[str, list[Any]]]) -> list[Any]:
    missing = [name for name, path in _TEMPORARY.items() if path is None]
    if missing:
        raise DiffRLError(
            f"plugin(s) {', '.join(map(repr, missing))} were registered with registered_plugin() from an object that a "
            "new process cannot import (define the hooks in a module), or pass fresh_process=False"
        )
    env = {"OMP_NUM_THREADS": "1", **os.environ}
    inherited = [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []
    env["PYTHONPATH"] = os.pathsep.join([p for p in sys.path if p] + inherited)
    result = subprocess.run(
        [sys.executable, "-c", _LOAD_SCRIPT, json.dumps(_TEMPORARY), json.dumps(jobs)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    line = next((line for line in result.stdout.splitlines() if line.startswith("RESULT ")), None)
    if result.returncode != 0 or line is None:
        raise ConformanceError(f"loading the saved model(s) in a fresh process failed (exit {result.returncode}):\n"
                               f"{result.stderr.strip()[-3000:]}")
    return json.loads(line.removeprefix("RESULT "))

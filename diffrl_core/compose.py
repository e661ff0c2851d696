"""The one place where names become objects: config -> components -> stable-baselines3 model.

Everything a composition needs is resolved and checked here, before any network is built:
unknown names, heads that cannot act in the env's action space, loss terms that need what
the head or the algorithm does not offer, post-processors that do not fit the head. The
model then stores names, kwargs and provenance (never classes), and :func:`load_model`
rebuilds it through the registries.
"""

from __future__ import annotations

import inspect
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from os import PathLike
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from diffrl_core.components import ActorHead, LossTerm, PostProcessor
from diffrl_core.config import Config, parse_config
from diffrl_core.errors import (
    ConfigError,
    DiffRLError,
    IncompatibleComponentsError,
    MissingComponentError,
    UnknownNameError,
)
from diffrl_core.plugins import PluginHost, load_plugins
from diffrl_core.registry import Registration
from diffrl_core.sb3.algorithms import ALGORITHMS
from diffrl_core.sb3.policies import ComposedSACPolicy, ComposedTD3Policy

POLICIES = {"sac": ComposedSACPolicy, "td3": ComposedTD3Policy}

#: algo_kwargs that the config sets elsewhere (key -> where)
_RESERVED_ALGO_KWARGS = {
    "policy": "policy.head / policy.losses / policy.postprocess",
    "env": "env",
    "policy_kwargs": "policy",
    "seed": "seed",
    "action_noise": "action_noise",
    "losses": "policy.losses",
}


@dataclass(frozen=True)
class Components:
    """The resolved classes of a composition and where each came from."""

    head: type[ActorHead]
    postprocessor: type[PostProcessor]
    loss_terms: list[type[LossTerm]]
    provenance: dict[str, dict[str, dict[str, Any]]]


def make_registered_env(env_id: str, env_kwargs: Mapping[str, Any] | None = None, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` after loading the plugins, so it also works in a fresh process.

    stable-baselines3's ``SubprocVecEnv`` starts its workers with forkserver: they do not
    inherit the parent's registrations, so each worker loads the plugins itself.
    """
    load_plugins()
    return gym.make(env_id, **dict(env_kwargs or {}), **kwargs)


def _make_worker_env(env_id: str, env_kwargs: Mapping[str, Any] | None = None, **kwargs: Any) -> gym.Env:
    """:func:`make_registered_env` in a ``SubprocVecEnv`` worker that leaves Ctrl-C to the trainer.

    Ctrl-C sends SIGINT to the whole process group: a worker stopped by it would break the
    pipe before the training process could save its work. (SIGTERM keeps its default:
    multiprocessing stops leftover workers with it at exit.)
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return make_registered_env(env_id, env_kwargs, **kwargs)


def make_env(config: Config) -> VecEnv:
    """The vectorized env of a config (``env``, ``env_kwargs``, ``n_envs``, ``vec_env``)."""
    host = load_plugins()
    check_env_id(config.env, host)
    subproc = config.vec_env == "subproc"
    return make_vec_env(
        partial(_make_worker_env if subproc else make_registered_env, config.env, dict(config.env_kwargs)),
        n_envs=config.n_envs,
        vec_env_cls=SubprocVecEnv if subproc else DummyVecEnv,
    )


def check_env_id(env_id: str, host: PluginHost) -> None:
    if ":" in env_id or env_id in gym.registry:  # "module:ns/Env-v0" imports its module first
        return
    raise UnknownNameError("envs", env_id, gym.registry.keys(), where="env")


def resolve_components(config: Config, host: PluginHost | None = None) -> Components:
    """Resolve the config's names and check that the components work together.

    :raises UnknownNameError: for a name no plugin registered (with the closest names)
    :raises IncompatibleComponentsError: naming both components and why
    """
    host = host or load_plugins()
    head_reg = host.registry("actor_heads").get(config.head, where="policy.head")
    post_reg = host.registry("postprocessors").get(config.policy.postprocess, where="policy.postprocess")
    loss_regs = [
        host.registry("loss_terms").get(spec.name, where=f"policy.losses[{i}].name")
        for i, spec in enumerate(config.losses)
    ]
    head = host.registry("actor_heads").resolve(config.head)
    postprocessor = host.registry("postprocessors").resolve(config.policy.postprocess)
    loss_terms = [host.registry("loss_terms").resolve(spec.name) for spec in config.losses]

    _expect_subclass(head, ActorHead, head_reg)
    _expect_subclass(postprocessor, PostProcessor, post_reg)
    for loss, reg in zip(loss_terms, loss_regs):
        _expect_subclass(loss, LossTerm, reg)
    _check_kwargs(head, head_reg, config.policy.head_kwargs, "policy.head_kwargs", fixed=2)
    _check_kwargs(postprocessor, post_reg, config.policy.postprocess_kwargs, "policy.postprocess_kwargs", fixed=1)
    for i, (spec, loss, reg) in enumerate(zip(config.losses, loss_terms, loss_regs)):
        _check_kwargs(loss, reg, spec.kwargs, f"policy.losses[{i}].kwargs", fixed=0)

    if config.algo == "sac" and not head.has_log_prob:
        raise IncompatibleComponentsError(
            f"algo 'sac' cannot train head {config.head!r} ({head_reg.provenance.describe()}): SAC's soft "
            "Q-target and entropy tuning need a head with a log-prob. Use algo 'td3' for it, or a stochastic "
            "head such as 'squashed_gaussian'."
        )
    reason = postprocessor.check_head(head)
    if reason:
        raise IncompatibleComponentsError(
            f"post-processor {config.policy.postprocess!r} ({post_reg.provenance.describe()}) cannot follow head "
            f"{config.head!r} ({head_reg.provenance.describe()}): it {reason}. "
            f"Unbounded heads need a post-processor such as 'tanh' or 'clip'."
        )
    for i, (spec, loss, reg) in enumerate(zip(config.losses, loss_terms, loss_regs)):
        reason = loss.check_compatible(head, config.algo)
        if reason:
            raise IncompatibleComponentsError(
                f"loss term {spec.name!r} (policy.losses[{i}], {reg.provenance.describe()}) cannot train head "
                f"{config.head!r} ({head_reg.provenance.describe()}) under algo {config.algo!r}: it {reason}."
            )

    provenance = {
        "actor_heads": {config.head: _provenance(head_reg)},
        "postprocessors": {config.policy.postprocess: _provenance(post_reg)},
        "loss_terms": {reg.name: _provenance(reg) for reg in loss_regs},
    }
    return Components(head, postprocessor, loss_terms, provenance)


def make_model(config: Mapping[str, Any] | str | PathLike[str] | Config, env: gym.Env | VecEnv | None = None) -> BaseAlgorithm:
    """Compose a model from a config; see :func:`diffrl_core.make_model`."""
    config = parse_config(config)
    host = load_plugins()
    components = resolve_components(config, host)
    if env is None:
        env = make_env(config)
    reason = components.head.check_action_space(env.action_space)
    if reason:
        raise IncompatibleComponentsError(f"head {config.head!r} cannot act in env {config.env!r}: it {reason}")

    algo_class = ALGORITHMS[config.algo]
    algo_kwargs = _algo_kwargs(config, algo_class, env)
    policy = config.policy
    net_arch: Any = policy.net_arch if isinstance(policy.net_arch, list) else dict(policy.net_arch)
    model = algo_class(
        POLICIES[config.algo],
        env,
        losses=[spec.model_dump() for spec in config.losses],
        policy_kwargs=dict(
            net_arch=net_arch,
            activation_fn=policy.activation_fn,
            head=config.head,
            head_kwargs=dict(policy.head_kwargs),
            postprocess=policy.postprocess,
            postprocess_kwargs=dict(policy.postprocess_kwargs),
            n_critics=policy.n_critics,
        ),
        seed=config.seed,
        **algo_kwargs,
    )
    # Saved with the model as plain JSON: which distribution provided each component
    model.diffrl_components = {"algo": config.algo, **components.provenance}
    return model


def _algo_kwargs(config: Config, algo_class: type, env: gym.Env | VecEnv) -> dict[str, Any]:
    # the keywords of stable-baselines3's own class (SAC / TD3), which the composed one extends
    sb3_class = next(base for base in algo_class.__mro__ if base.__module__.startswith("stable_baselines3"))
    accepted = set(inspect.signature(sb3_class.__init__).parameters) - {"self"}
    kwargs: dict[str, Any] = {}
    for key, value in config.algo_kwargs.items():
        if key in _RESERVED_ALGO_KWARGS:
            raise ConfigError(f"algo_kwargs.{key}: set it with the config key {_RESERVED_ALGO_KWARGS[key]!r} instead")
        if key not in accepted:
            valid = ", ".join(sorted(accepted - set(_RESERVED_ALGO_KWARGS) - {"_init_setup_model"}))
            raise ConfigError(
                f"algo_kwargs.{key}: not a keyword argument of stable-baselines3's {config.algo.upper()}; valid: {valid}"
            )
        if key == "use_sde" and value:
            raise ConfigError("algo_kwargs.use_sde: gSDE is not supported by composed actors (the head samples)")
        kwargs[key] = tuple(value) if isinstance(value, list) and key == "train_freq" else value
    if config.action_noise is not None:
        n_actions = int(np.prod(env.action_space.shape))
        noise_class = NormalActionNoise if config.action_noise.type == "normal" else OrnsteinUhlenbeckActionNoise
        kwargs["action_noise"] = noise_class(
            mean=np.zeros(n_actions), sigma=config.action_noise.sigma * np.ones(n_actions)
        )
    return kwargs


def _expect_subclass(component: Any, base: type, registration: Registration) -> None:
    if not (isinstance(component, type) and issubclass(component, base)):
        raise IncompatibleComponentsError(
            f"{registration.kind[:-1].replace('_', ' ')} {registration.name!r} of "
            f"{registration.provenance.describe()} is {component!r}, not a subclass of "
            f"diffrl_core.components.{base.__name__}"
        )


def _check_kwargs(component: type, registration: Registration, kwargs: Mapping[str, Any], key: str, fixed: int) -> None:
    """Config kwargs must fit the component's constructor (after its ``fixed`` positional arguments)."""
    signature = inspect.signature(component)
    try:
        signature.bind(*range(fixed), **kwargs)
    except TypeError as exc:
        accepted = [name for name in list(signature.parameters)[fixed:]
                    if signature.parameters[name].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
                    or signature.parameters[name].kind is inspect.Parameter.KEYWORD_ONLY]
        raise ConfigError(
            f"{key}: {registration.kind[:-1].replace('_', ' ')} {registration.name!r} "
            f"({registration.provenance.describe()}) does not take these kwargs ({exc}); "
            f"it accepts: {', '.join(accepted) or 'none'}"
        ) from None


def _provenance(registration: Registration) -> dict[str, Any]:
    p = registration.provenance
    return {"plugin": p.plugin, "distribution": p.distribution, "version": p.version, "builtin": p.builtin}


# -- loading -----------------------------------------------------------------------------------


def read_saved_components(path: str | PathLike[str]) -> tuple[Path, dict[str, Any]]:
    """The component names and provenance a saved model holds, read as JSON (nothing unpickled)."""
    path = Path(path)
    if not path.exists() and path.with_suffix(".zip").exists():
        path = path.with_suffix(".zip")
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
    except FileNotFoundError:
        raise DiffRLError(f"no saved model at {str(path)!r}") from None
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise DiffRLError(f"{str(path)!r} is not a model saved by stable-baselines3 ({exc})") from None
    components = data.get("diffrl_components")
    if not isinstance(components, dict):
        raise DiffRLError(f"{str(path)!r} was not saved by diffrl (it names no components); load it with stable-baselines3")
    components["policy_kwargs"] = data.get("policy_kwargs", {})
    components["losses"] = data.get("losses", [])
    return path, components


def load_model(path: str | PathLike[str], env: gym.Env | VecEnv | None = None, **kwargs: Any) -> BaseAlgorithm:
    """Load a model saved by ``model.save(path)``; see :func:`diffrl_core.load_model`."""
    path, saved = read_saved_components(path)
    host = load_plugins()
    policy_kwargs = saved["policy_kwargs"]
    wanted = [("actor_heads", policy_kwargs.get("head")), ("postprocessors", policy_kwargs.get("postprocess"))]
    wanted += [("loss_terms", spec["name"]) for spec in saved["losses"]]
    for kind, name in wanted:
        if name not in host.registry(kind):
            distribution = saved.get(kind, {}).get(name, {}).get("distribution")
            raise MissingComponentError(kind, name, host.registry(kind).names(), distribution)
    algo = saved["algo"]
    try:
        return ALGORITHMS[algo].load(path, env=env, custom_objects={"policy_class": POLICIES[algo]}, **kwargs)
    except ValueError as exc:
        if "spaces do not match" in str(exc):
            raise IncompatibleComponentsError(f"cannot load {str(path)!r} onto this env: {exc}") from None
        raise

"""Config -> stable-baselines3 model, and back from a saved model.

:func:`make_model` takes a config through :mod:`diffrl_core.resolve` (names -> classes,
compatibility checks, once) and builds the composed SAC/TD3 from the resolved
:class:`~diffrl_core.resolve.Composition`; :func:`load_model` reads a saved model's names as
JSON, resolves them the same way and hands the composition to stable-baselines3's ``load()``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping
from functools import partial
from os import PathLike
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import gymnasium as gym
import numpy as np
from pydantic_core import PydanticSerializationError
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.preprocessing import get_action_dim, is_image_space
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from diffrl_core.config import ON_POLICY_ALGOS, Config, parse_config
from diffrl_core.errors import ConfigError, DiffRLError, IncompatibleComponentsError, ModelFileError, message_of
from diffrl_core.model_file import (
    MAX_MANIFEST_BYTES,
    SavedModel,
    build_model,
    is_model_file,
    open_archive,
    read_entry,
    read_model_file,
)
from diffrl_core.plugins import default_host
from diffrl_core.resolve import (
    check_action_space,
    check_env_id,
    check_names,
    default_composition,
    resolve_composition,
    resolve_saved,
)
from diffrl_core.runs import resolved_config
from diffrl_core.sb3.algorithms import ALGORITHMS, REPLAY_BUFFERS
from diffrl_core.sb3.policies import POLICIES, policy_alias
from diffrl_core.sb3_zip import RUNTIME_STATE, read_sb3_zip
from diffrl_core.strict_yaml import shorten
from diffrl_core.threads import use_threads

if TYPE_CHECKING:
    from diffrl_core.plugins import PluginHost

def make_registered_env(env_id: str, env_kwargs: Mapping[str, Any] | None = None, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` after loading the plugins, so it also works in a fresh process.

    stable-baselines3's ``SubprocVecEnv`` starts its workers with forkserver: they do not
    inherit the parent's registrations, so each worker loads the plugins itself.
    """
    default_host()
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


def make_env(config: Config, host: PluginHost | None = None) -> VecEnv:
    """The vectorized env of a config (``env``, ``env_kwargs``, ``n_envs``, ``vec_env``).

    :param host: the plugin host whose envs are registered (default: the process-wide one)
    """
    host = host or default_host()  # loading the plugins registers their env ids with gymnasium
    check_env_id(config.env, host)
    subproc = config.vec_env == "subproc"
    if subproc:  # a worker's constructor error would only break its pipe: make one env here first
        _try_env(config, host, lambda: make_registered_env(config.env, dict(config.env_kwargs))).close()
    return _try_env(config, host, lambda: make_vec_env(
        partial(_make_worker_env if subproc else make_registered_env, config.env, dict(config.env_kwargs)),
        n_envs=config.n_envs,
        vec_env_cls=SubprocVecEnv if subproc else DummyVecEnv,
    ))


_T = TypeVar("_T")


def _env_owner(env: str, host: PluginHost) -> str:
    """`` (plugin 'envs' from diffrl-envs 0.1.0)`` for a plugin's env id, else ``""``."""
    registry, env_id = host.registry("envs"), env.rpartition(":")[2]
    return f" ({registry.get(env_id).provenance.describe()})" if env_id in registry else ""


def _try_env(config: Config, host: PluginHost, make: Callable[[], _T]) -> _T:
    """``make()``, with an env constructor's refusal of ``env_kwargs`` as a :class:`ConfigError` naming the env."""
    try:
        return make()
    except DiffRLError:
        raise
    except Exception as exc:  # any env's constructor, e.g. ZeroDivisionError for a time step of 0, MemoryError
        where = "env_kwargs" if config.env_kwargs else "env"
        raise ConfigError(
            f"{where}: env {config.env!r}{_env_owner(config.env, host)} could not be made with env_kwargs "
            f"{shorten(dict(config.env_kwargs))}: {type(exc).__name__}: {message_of(exc)}"
        ) from exc


def make_model(
    config: Mapping[str, Any] | str | PathLike[str] | Config,
    env: gym.Env | VecEnv | None = None,
    host: PluginHost | None = None,
) -> BaseAlgorithm:
    """Compose a model from a config; see :func:`diffrl_core.make_model`.

    :param host: the plugin host that resolves the names (default: the process-wide one)
    """
    config = parse_config(config)
    use_threads(config.threads)  # before anything runs on torch: one thread unless the config or environment says
    host = host or default_host()
    # names and compatibility before an env is made, unless the default head depends on its action space (PPO/A2C)
    head_from_env = config.policy.head is None and config.algo in ON_POLICY_ALGOS
    if not head_from_env:
        composition = resolve_composition(config, host)
    else:
        check_names(config, host)
    if env is None:
        env = make_env(config, host)
    if head_from_env:
        composition = resolve_composition(config, host, env.action_space)
    check_action_space(composition, env.action_space, config.env)

    env_text = f"env {config.env!r}" + _env_owner(config.env, host)
    _check_replay_buffer(config, env, env_text)
    _check_features_extractor(config, env.observation_space, env_text)
    # the observation space picks stable-baselines3's policy alias, as its users pick it
    alias = policy_alias(env.observation_space)
    kwargs = algo_kwargs_of(config, env)
    try:
        model = ALGORITHMS[config.algo](
            alias, env, composition=composition, policy_kwargs=policy_kwargs(config), seed=config.seed, **kwargs
        )
    except DiffRLError:
        raise
    except (ValueError, TypeError, AssertionError, MemoryError, RuntimeError) as exc:
        # stable-baselines3 (or torch) refused a combination the config schema cannot see,
        # e.g. a replay buffer larger than memory, NatureCNN on a flat observation, an optimizer kwarg
        raise ConfigError(
            f"stable-baselines3's {config.algo.upper()} ({alias}) cannot be built from this config on {env_text} "
            f"(algo_kwargs {shorten(config.algo_kwargs)}, policy {shorten(_set_policy_keys(config))}): "
            f"{type(exc).__name__}: {message_of(exc)}"
        ) from exc
    model.env_text = env_text
    try:  # saved in the model's manifest; a config given from Python may hold objects (a schedule) JSON cannot
        model.diffrl_config = resolved_config(config)  # type: ignore[union-attr]
    except PydanticSerializationError:
        model.diffrl_config = None  # type: ignore[union-attr]
    return model


def policy_kwargs(config: Config) -> dict[str, Any]:
    """stable-baselines3's ``policy_kwargs`` of a config, as plain data (names, not classes).

    Keys the config leaves unset are left out, so that stable-baselines3's defaults apply
    (e.g. ``net_arch`` ``[256, 256]`` for SAC, ``[400, 300]`` for TD3, ``{pi: [64, 64], vf: [64, 64]}``
    for PPO and A2C; the activation; the policy alias's features extractor; A2C's RMSprop). The
    composed policies look the names up in their tables.
    """
    policy = config.policy
    kwargs: dict[str, Any] = dict(normalize_images=policy.normalize_images)
    for key in ("activation_fn", "n_critics", "share_features_extractor", "ortho_init"):
        if getattr(policy, key) is not None:
            kwargs[key] = getattr(policy, key)
    if policy.net_arch is not None:
        kwargs["net_arch"] = list(policy.net_arch) if isinstance(policy.net_arch, list) else dict(policy.net_arch)
    if policy.features_extractor is not None:
        kwargs["features_extractor_class"] = policy.features_extractor
    if policy.features_extractor_kwargs:
        kwargs["features_extractor_kwargs"] = dict(policy.features_extractor_kwargs)
    if policy.optimizer is not None:
        kwargs["optimizer_class"] = policy.optimizer
    if policy.optimizer_kwargs:
        kwargs["optimizer_kwargs"] = dict(policy.optimizer_kwargs)
    return kwargs


def _set_policy_keys(config: Config) -> dict[str, Any]:
    """The network keys of the config's ``policy`` section that it sets, for messages."""
    keys = ("net_arch", "features_extractor", "features_extractor_kwargs", "share_features_extractor",
            "optimizer", "optimizer_kwargs")
    return {key: getattr(config.policy, key) for key in keys if key in config.policy.model_fields_set}


#: features extractor -> (the observations it takes, whether ``space`` is such)
_EXTRACTOR_INPUTS: dict[str, tuple[str, Callable[[gym.Space], bool]]] = {
    "nature_cnn": ("image observations (a uint8 Box of shape (H, W, C) or (C, H, W))",
                   lambda space: is_image_space(space, check_channels=False)),
    "combined": ("Dict observations", lambda space: isinstance(space, gym.spaces.Dict)),
    "flatten": ("observations that are not a Dict", lambda space: not isinstance(space, gym.spaces.Dict)),
}


def _check_features_extractor(config: Config, space: gym.Space, env_text: str) -> None:
    """A features extractor named for the wrong kind of observations, refused naming the config key."""
    name = config.policy.features_extractor
    if name is not None and not _EXTRACTOR_INPUTS[name][1](space):
        raise ConfigError(
            f"policy.features_extractor: {name!r} takes {_EXTRACTOR_INPUTS[name][0]}; {env_text} has "
            f"{shorten(space)}. Leave it unset for the one stable-baselines3 picks for these observations"
        )


#: what stable-baselines3's HerReplayBuffer needs of a goal-conditioned env's observations
_GOAL_KEYS = ("observation", "achieved_goal", "desired_goal")


def _check_replay_buffer(config: Config, env: gym.Env | VecEnv, env_text: str) -> None:
    """HER needs a goal-conditioned env: refused with what is missing, before stable-baselines3 asserts."""
    if config.algo_kwargs.get("replay_buffer_class") != "HerReplayBuffer":
        return
    space = env.observation_space
    missing = [key for key in _GOAL_KEYS if not isinstance(space, gym.spaces.Dict) or key not in space.spaces]
    has_compute_reward = (env.has_attr if isinstance(env, VecEnv) else env.has_wrapper_attr)("compute_reward")
    if missing or not has_compute_reward:
        what = f"Dict observations with {', '.join(map(repr, _GOAL_KEYS))} and a compute_reward method"
        has = f"observations {space}" + ("" if has_compute_reward else " and no compute_reward")
        raise ConfigError(
            f"algo_kwargs.replay_buffer_class: HerReplayBuffer needs a goal-conditioned env ({what}); "
            f"{env_text} has {shorten(has)}"
        )


def algo_kwargs_of(config: Config, env: gym.Env | VecEnv) -> dict[str, Any]:
    """stable-baselines3's algorithm keyword arguments of a config (classes and noise objects built)."""
    # the config checked every key and value (diffrl_core.algo_kwargs); YAML has lists, SB3 wants a tuple
    kwargs = dict(config.algo_kwargs)
    if isinstance(kwargs.get("train_freq"), list):
        kwargs["train_freq"] = tuple(kwargs["train_freq"])
    if "replay_buffer_class" in kwargs:  # a name from a table, never an import path
        kwargs["replay_buffer_class"] = REPLAY_BUFFERS[kwargs["replay_buffer_class"]]
    if config.action_noise is not None:
        n_actions = get_action_dim(env.action_space)
        noise_class = NormalActionNoise if config.action_noise.type == "normal" else OrnsteinUhlenbeckActionNoise
        kwargs["action_noise"] = noise_class(
            mean=np.zeros(n_actions), sigma=config.action_noise.sigma * np.ones(n_actions)
        )
    return kwargs


# -- loading -----------------------------------------------------------------------------------


def read_saved_model(path: str | PathLike[str] | IO[bytes], env: gym.Env | VecEnv | None = None,
                     overrides: Mapping[str, Any] | None = None) -> SavedModel:
    """What a saved model holds, checked, without running anything from the file.

    diffrl's format (:mod:`diffrl_core.model_file`) is read as it is; a stable-baselines3 zip
    (diffrl's own before that format, or stable-baselines3's) is read without unpickling
    (:mod:`diffrl_core.sb3_zip`): its pickled entries are rebuilt from ``env``'s spaces,
    ``overrides`` or its readable fields, or left out and listed in ``skipped``.

    :raises ModelFileError: when the file is missing, damaged, or cannot be read without code
    """
    source: Path | IO[bytes] = path if not isinstance(path, (str, PathLike)) else Path(path)
    if isinstance(source, Path) and not source.exists() and source.with_suffix(".zip").exists():
        source = source.with_suffix(".zip")
    path = source if isinstance(source, Path) else Path(getattr(source, "name", "<file object>"))
    with open_archive(source, path) as archive:
        if is_model_file(archive):
            return read_model_file(path, archive)
        if "data" in archive.namelist():
            spaces = None if env is None else (env.observation_space, env.action_space)
            return read_sb3_zip(path, archive, spaces, overrides or {})
    raise ModelFileError(path, "it is neither a diffrl model (no manifest.json) nor a stable-baselines3 zip (no data)")


#: stable-baselines3 ``load()`` arguments that are not saved attributes
_LOAD_ARGUMENTS = ("device", "force_reset")


def load_model(
    path: str | PathLike[str] | IO[bytes], env: gym.Env | VecEnv | None = None, host: PluginHost | None = None,
    trust_pickle: bool = False, **kwargs: Any
) -> BaseAlgorithm:
    """Load a model saved by ``model.save(path)``; see :func:`diffrl_core.load_model`.

    :param host: the plugin host that resolves the names (default: the process-wide one)
    :param trust_pickle: load a stable-baselines3 zip with stable-baselines3's own ``load``, which
        unpickles its entries: only for a file you trust as you would trust code (a model that
        stable-baselines3 itself saved comes back as its own class, e.g. ``SAC``)
    """
    host = host or default_host()
    if trust_pickle:
        return _load_pickled(path, env, host, **kwargs)
    kwargs.pop("print_system_info", None)
    custom_objects = kwargs.pop("custom_objects", None) or {}
    saved = read_saved_model(path, env, {**custom_objects, **kwargs})
    # as in stable-baselines3: custom objects replace saved entries, and only those
    saved.data.update({key: value for key, value in custom_objects.items() if key in saved.data})
    algo = _ALGO_OF_CLASS.get(saved.algo_class)
    if algo is None or saved.components.get("algo", algo) != algo:
        raise ModelFileError(saved.path, f"it holds a {saved.algo_class!r} model; diffrl loads "
                                         f"{', '.join(_ALGO_OF_CLASS)}")
    if saved.components:
        composition = resolve_saved(saved.components, host)
    else:  # stable-baselines3's own model: the composition that is its policy
        ent_coef = saved.data.get("ent_coef", 0.0) if algo in ON_POLICY_ALGOS else 0.0
        composition = default_composition(algo, host, saved.data["action_space"], ent_coef)
        saved.components = composition.to_saved()
    policy_class = saved.data.get("policy_class")
    if not (isinstance(policy_class, type) and issubclass(policy_class, tuple(POLICIES[algo].values()))):
        raise ModelFileError(saved.path, f"it names the policy {shorten(policy_class)}, not one of diffrl's "
                                         f"{algo.upper()} policies ({', '.join(POLICIES[algo])}) or a subclass")
    unread = [entry for entry in saved.skipped if not entry.startswith(RUNTIME_STATE)]  # the next learn() resets those
    if unread:
        warnings.warn(f"{str(saved.path)!r} is a stable-baselines3 zip; entries that only unpickling could read "
                      f"were not read: {'; '.join(unread)}. Pass them to load_model as keyword arguments "
                      "to set them", stacklevel=2)
    if env is not None:  # the checks make_model runs (the composition's were run by resolve_saved)
        check_action_space(composition, env.action_space, _env_id(env))
    build_kwargs = {key: kwargs.pop(key) for key in _LOAD_ARGUMENTS if key in kwargs}
    try:
        model = build_model(ALGORITHMS[algo], saved, env=env, composition=composition, **build_kwargs, **kwargs)
    except ValueError as exc:
        if "spaces do not match" in str(exc):
            raise IncompatibleComponentsError(f"cannot load {str(saved.path)!r} onto this env: {exc}") from None
        raise
    check_action_space(composition, model.action_space, f"of the saved model {str(saved.path)!r}")
    return model


_ALGO_OF_CLASS = {cls.__name__: algo for algo, cls in ALGORITHMS.items()}


def _load_pickled(path: str | PathLike[str] | IO[bytes], env: gym.Env | VecEnv | None, host: PluginHost,
                  **kwargs: Any) -> BaseAlgorithm:
    """stable-baselines3's own ``load``, which runs the pickles in the file (``trust_pickle=True``)."""
    if not isinstance(path, (str, PathLike)):
        raise DiffRLError("trust_pickle=True loads from a path, not from a file object")
    path = Path(path)
    if not path.exists() and path.with_suffix(".zip").exists():
        path = path.with_suffix(".zip")
    with open_archive(path) as archive:
        if is_model_file(archive):  # nothing to trust: diffrl's format holds no pickle
            kwargs.pop("custom_objects", None)
            return load_model(path, env=env, host=host, **kwargs)
        data = json.loads(read_entry(archive, path, "data", MAX_MANIFEST_BYTES))
    saved = data.get("diffrl_components") or {}
    if not saved:  # stable-baselines3's own model: its own class loads it
        stock = next(cls for cls in ALGORITHMS[_pickled_algo(data, path)].__mro__ if cls.__module__.startswith(
            "stable_baselines3."))
        return stock.load(path, env=env, **kwargs)  # type: ignore[attr-defined]
    algo = saved["algo"]
    composition = resolve_saved(saved, host)
    custom_objects = dict(kwargs.pop("custom_objects", None) or {})
    alias = saved.get("policy", "MlpPolicy")
    if saved and alias is not None and alias in POLICIES[algo]:
        custom_objects["policy_class"] = POLICIES[algo][alias]
    # stable-baselines3's own load (the composed classes' load() goes through load_model, which unpickles nothing)
    return BaseAlgorithm.load.__func__(  # type: ignore[attr-defined]
        ALGORITHMS[algo], path, env=env, custom_objects=custom_objects, composition=composition, **kwargs
    )


def _pickled_algo(data: Mapping[str, Any], path: Path) -> str:
    module = str(data.get("policy_class", {}).get("__module__", ""))
    for algo in ("sac", "td3"):
        if f".{algo}." in module:
            return algo
    if module.endswith("common.policies"):
        return "ppo" if "clip_range" in data else "a2c"
    raise ModelFileError(path, f"its policy comes from {module or 'an unknown module'}; diffrl loads SAC, TD3, "
                               "PPO and A2C models")


def _env_id(env: gym.Env | VecEnv) -> str:
    spec = env.get_attr("spec")[0] if isinstance(env, VecEnv) else env.spec
    return spec.id if spec is not None else type(env).__name__

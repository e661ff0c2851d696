"""diffrl: a plugin registry of gymnasium envs and stable-baselines3 policy components.

Importing this package loads no plugin and imports neither torch nor stable-baselines3;
:func:`make_model` and :func:`load_model` import them when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from diffrl_core._version import __version__ as __version__
from diffrl_core.errors import (
    AmbiguousNameError,
    ComponentError,
    ConfigError,
    DiffRLError,
    DivergenceError,
    DuplicateNameError,
    IncompatibleComponentsError,
    MissingComponentError,
    ModelFileError,
    ModelSaveError,
    PluginLoadError,
    UnknownNameError,
)
from diffrl_core.hookspecs import hookimpl
from diffrl_core.plugins import load_plugins

if TYPE_CHECKING:
    from collections.abc import Mapping
    from os import PathLike

    import gymnasium as gym
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.vec_env import VecEnv

    from diffrl_core.plugins import PluginHost


__all__ = [
    "AmbiguousNameError",
    "ComponentError",
    "ConfigError",
    "DiffRLError",
    "DivergenceError",
    "DuplicateNameError",
    "IncompatibleComponentsError",
    "MissingComponentError",
    "ModelFileError",
    "ModelSaveError",
    "PluginLoadError",
    "UnknownNameError",
    "allow_classes",
    "hookimpl",
    "load_model",
    "load_plugins",
    "make_model",
]


def make_model(
    config: Mapping[str, Any] | str | PathLike[str],
    env: gym.Env | VecEnv | None = None,
    host: PluginHost | None = None,
) -> BaseAlgorithm:
    """Compose a stable-baselines3 model from the component names of a config.

    :param config: a config mapping, or the path of a YAML config file
    :param env: the env to train on; by default made from the config's ``env``, ``env_kwargs``
        and ``n_envs``
    :param host: the plugin host whose registries resolve the names (default: the process-wide
        one, :func:`load_plugins`)
    :return: a :class:`~stable_baselines3.common.base_class.BaseAlgorithm`, ready to ``learn()``

    It also sets the number of threads torch computes with in this process: the config's
    ``threads``, else one unless ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` is set
    (:mod:`diffrl_core.threads` says why).
    """
    from diffrl_core.compose import make_model as _make_model

    return _make_model(config, env=env, host=host)


def load_model(
    path: str | PathLike[str], env: gym.Env | VecEnv | None = None, host: PluginHost | None = None,
    trust_pickle: bool = False, **kwargs: Any
) -> BaseAlgorithm:
    """Load a model saved with ``model.save(path)``, rebuilding its components by name; nothing in the file runs.

    The file is diffrl's (a JSON manifest and safetensors), or a stable-baselines3 zip, read
    without unpickling (``docs/model-format.md``). A damaged, altered or incomplete file raises
    :class:`ModelFileError`.

    :param path: the saved ``.zip``
    :param env: an env with the same spaces, to continue training on
    :param host: the plugin host whose registries resolve the names (default: the process-wide one)
    :param trust_pickle: load a stable-baselines3 zip with stable-baselines3's own ``load``, which runs
        whatever its pickles hold: only for files you trust as you trust code
    :param kwargs: as stable-baselines3's ``load`` takes them (``device``, ``force_reset``, ``custom_objects``,
        attributes to set, e.g. ``train_freq`` for a stable-baselines3 zip that holds it only pickled)
    """
    from diffrl_core.compose import load_model as _load_model

    return _load_model(path, env=env, host=host, trust_pickle=trust_pickle, **kwargs)


def allow_classes(*classes: type) -> None:
    """Let model files name these classes (e.g. your own features extractor in ``policy_kwargs``).

    A model file names classes, and loading looks each name up among the allowed ones (never
    imports it): call this before saving and before loading, as with torch's
    ``torch.serialization.add_safe_globals``.
    """
    from diffrl_core.model_data import allow_classes as _allow_classes

    _allow_classes(*classes)

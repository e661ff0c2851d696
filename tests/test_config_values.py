"""Every config value is checked when the config is read: ranges, types, algo_kwargs per algorithm.

stable-baselines3 checks few of its arguments; each value here trained silently into nonsense
(or failed deep inside ``learn()``) before the config schema knew its range.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from diffrl_core.config import Config, parse_config
from diffrl_core.errors import ConfigError

BASE: dict[str, Any] = {"env": "Pendulum-v1", "algo": "sac"}


def _with(path: str, value: Any, algo: str = "sac") -> dict[str, Any]:
    config: dict[str, Any] = {**BASE, "algo": algo, "policy": {}, "algo_kwargs": {}}
    *parents, last = path.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return config


INVALID = [
    ("algo_kwargs.learning_rate", 0, "greater than 0"),
    ("algo_kwargs.learning_rate", -1, "greater than 0"),
    ("algo_kwargs.learning_rate", math.nan, "finite number"),
    ("algo_kwargs.learning_rate", math.inf, "finite number"),
    ("algo_kwargs.learning_rate", True, "valid number"),
    ("algo_kwargs.learning_rate", "1e-3", "valid number"),
    ("algo_kwargs.buffer_size", 0, "greater than or equal to 1"),
    ("algo_kwargs.buffer_size", -1, "greater than or equal to 1"),
    ("algo_kwargs.buffer_size", 1000.5, "valid integer"),
    ("algo_kwargs.batch_size", 0, "greater than or equal to 1"),
    ("algo_kwargs.batch_size", True, "valid integer"),
    ("algo_kwargs.learning_starts", -5, "greater than or equal to 0"),
    ("algo_kwargs.gamma", -1, "greater than or equal to 0"),
    ("algo_kwargs.gamma", 2.5, "less than or equal to 1"),
    ("algo_kwargs.tau", -1, "greater than 0"),
    ("algo_kwargs.tau", 2.5, "less than or equal to 1"),
    ("algo_kwargs.tau", 0, "greater than 0"),
    ("algo_kwargs.ent_coef", -1, "positive number"),
    ("algo_kwargs.ent_coef", 0, "positive number"),
    ("algo_kwargs.ent_coef", "auto_-1", "auto_<positive initial value>"),
    ("algo_kwargs.ent_coef", "automatic", "auto_<positive initial value>"),
    ("algo_kwargs.train_freq", 0, "integer >= 1"),
    ("algo_kwargs.train_freq", [1, "epoch"], "'step'"),
    ("algo_kwargs.gradient_steps", -2, "or -1"),
    ("algo_kwargs.target_update_interval", 0, "greater than or equal to 1"),
    ("algo_kwargs.use_sde", "yes", "valid boolean"),
    ("algo_kwargs.device", "gpu", "'cuda'"),
    ("algo_kwargs.verbose", 7, "less than or equal to 2"),
    ("algo_kwargs.policy_kwargs", {}, "set it with the config section 'policy'"),
    ("algo_kwargs.replay_buffer_class", "stable_baselines3.HerReplayBuffer", "'HerReplayBuffer'"),
    ("algo_kwargs.replay_buffer_kwargs", [1], "valid dictionary"),
    ("policy.features_extractor", "my_module:MyCNN", "'nature_cnn'"),
    ("policy.optimizer", "torch.optim.Adam", "'adamw'"),
    ("policy.share_features_extractor", "yes", "valid boolean"),
    ("algo_kwargs.policy_delay", 2, "not a keyword argument of stable-baselines3's SAC"),
    ("seed", -1, "greater than or equal to 0"),
    ("seed", 2**32, "less than or equal to 4294967295"),
    ("seed", 1.5, "valid integer"),
    ("seed", True, "valid integer"),
    ("n_envs", 0, "greater than or equal to 1"),
    ("n_envs", 10**6, "less than or equal to 1024"),
    ("total_timesteps", "1:30", "valid integer"),
    ("total_timesteps", 0, "greater than or equal to 1"),
    ("policy.net_arch", [0], "greater than or equal to 1"),
    ("policy.net_arch", [-64, 64], "greater than or equal to 1"),
    ("policy.net_arch", [10**9], "less than or equal to 65536"),
    ("policy.net_arch", [True], "valid integer"),
    ("policy.n_critics", 0, "greater than or equal to 1"),
    ("policy.raw_log_prob", "yes", "valid boolean"),
    ("policy.raw_log_prob", 1, "valid boolean"),
    ("eval.n_episodes", 0, "greater than or equal to 1"),
    ("eval.deterministic", "on", "valid boolean"),
    ("checkpoint.freq", -1, "greater than or equal to 0"),
    ("action_noise.sigma", -0.1, "greater than or equal to 0"),
    ("action_noise.sigma", math.nan, "finite number"),
]


@pytest.mark.parametrize(("path", "value", "expected"), INVALID, ids=[f"{p}={v!r}" for p, v, _ in INVALID])
def test_invalid_value_is_refused_naming_the_key(path: str, value: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_with(path, value))
    message = str(info.value)
    assert f"  {path}: " in message and expected in message, message


@pytest.mark.parametrize(
    ("path", "value", "algo"),
    [
        ("algo_kwargs.learning_rate", 1e-3, "sac"),
        ("algo_kwargs.learning_rate", 1, "sac"),  # an integer is a number
        ("algo_kwargs.buffer_size", 1_000_000, "sac"),
        ("algo_kwargs.learning_starts", 0, "sac"),
        ("algo_kwargs.gamma", 1, "sac"),
        ("algo_kwargs.gamma", 0.0, "sac"),
        ("algo_kwargs.tau", 1.0, "sac"),
        ("algo_kwargs.ent_coef", "auto", "sac"),
        ("algo_kwargs.ent_coef", "auto_0.1", "sac"),
        ("algo_kwargs.ent_coef", 0.2, "sac"),
        ("algo_kwargs.target_entropy", -2.0, "sac"),
        ("algo_kwargs.train_freq", [1, "episode"], "sac"),
        ("algo_kwargs.gradient_steps", -1, "sac"),
        ("algo_kwargs.gradient_steps", 0, "sac"),  # collect without training
        ("algo_kwargs.device", "cuda:1", "sac"),
        ("algo_kwargs.use_sde", False, "sac"),
        ("algo_kwargs.use_sde", True, "sac"),
        ("algo_kwargs.replay_buffer_class", "HerReplayBuffer", "td3"),
        ("algo_kwargs.replay_buffer_kwargs", {"handle_timeout_termination": False}, "sac"),
        ("policy.features_extractor", "nature_cnn", "sac"),
        ("policy.optimizer", "adamw", "td3"),
        ("algo_kwargs.policy_delay", 3, "td3"),
        ("algo_kwargs.target_policy_noise", 0.0, "td3"),
        ("seed", 2**32 - 1, "sac"),
        ("seed", None, "sac"),
        ("policy.net_arch", {"pi": [64], "qf": [400, 300]}, "td3"),
        ("policy.net_arch", [], "sac"),
    ],
)
def test_valid_value_is_kept(path: str, value: Any, algo: str) -> None:
    config = parse_config(_with(path, value, algo))
    node: Any = config
    for part in path.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    assert node == value


def test_every_error_is_listed_at_once() -> None:
    config = _with("algo_kwargs.learning_rate", -1)
    config["algo_kwargs"]["gamma"] = 2.0
    config["seed"] = -3
    with pytest.raises(ConfigError) as info:
        parse_config(config)
    lines = str(info.value).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == ["seed", "algo_kwargs.learning_rate", "algo_kwargs.gamma"]


def test_a_config_built_in_python_checks_algo_kwargs_too() -> None:
    with pytest.raises(ValueError, match="algo_kwargs.gamma: Input should be less than or equal to 1"):
        Config(env="Pendulum-v1", algo_kwargs={"gamma": 2.5})


def test_a_huge_value_is_shortened_in_the_message() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_with("algo_kwargs.learning_rate", "x" * 5_000_000))
    assert len(str(info.value)) < 1000

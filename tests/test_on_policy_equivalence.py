"""The compositions that mirror stable-baselines3's PPO and A2C ``MlpPolicy`` train to the same parameters."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch as th
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.env_util import make_vec_env

from diffrl_core import make_model
from diffrl_core.sb3.on_policy import ComposedA2C, ComposedPPO

pytestmark = pytest.mark.slow  # trains stable-baselines3 and diffrl side by side

N_ENVS, N_STEPS, CYCLES = 2, 64, 4  # 4 rollout/update cycles
HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    "ppo": dict(n_steps=N_STEPS, batch_size=32, n_epochs=3),
    "a2c": dict(n_steps=N_STEPS),
}
SB3 = {"ppo": PPO, "a2c": A2C}
TOLERANCE = 1e-6


def _parameters(policy: th.nn.Module) -> dict[str, np.ndarray]:
    # the composed policy's head holds what SB3's policy holds as action_net and log_std
    return {name.removeprefix("head."): p.detach().numpy().copy() for name, p in policy.named_parameters()}


def max_abs_difference(stock: th.nn.Module, composed: th.nn.Module) -> float:
    a, b = _parameters(stock), _parameters(composed)
    assert a.keys() == b.keys()
    assert all(a[key].shape == b[key].shape for key in a)
    return max(float(np.max(np.abs(a[key] - b[key]))) for key in a)


def _stock(algo: str, env_id: str, ent_coef: float) -> Any:
    model = SB3[algo]("MlpPolicy", make_vec_env(env_id, n_envs=N_ENVS), ent_coef=ent_coef, seed=0,
                      **HYPERPARAMETERS[algo])
    return model.learn(N_ENVS * N_STEPS * CYCLES)


@pytest.mark.parametrize("ent_coef", [0.0, 0.01])
@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_the_default_composition_trains_to_stable_baselines3s_parameters(algo: str, env_id: str,
                                                                        ent_coef: float) -> None:
    """A config that names no components is SB3's policy: after 4 cycles the parameters agree to 1e-6."""
    stock = _stock(algo, env_id, ent_coef)
    config = {"env": env_id, "algo": algo, "n_envs": N_ENVS, "seed": 0,
              "algo_kwargs": {**HYPERPARAMETERS[algo], "ent_coef": ent_coef}}
    composed = make_model(config)
    expected_head = "categorical" if env_id == "CartPole-v1" else "diag_gaussian"
    assert composed.composition.head.name == expected_head
    assert [(t.name, t.weight) for t in composed.composition.loss_terms] == [
        ("ppo_clip" if algo == "ppo" else "policy_gradient", 1.0), ("entropy_bonus", ent_coef)]
    # the same initial weights, then the same updates
    assert max_abs_difference(SB3[algo]("MlpPolicy", make_vec_env(env_id, n_envs=N_ENVS), seed=0,
                                        **HYPERPARAMETERS[algo]).policy, composed.policy) == 0.0
    composed.learn(N_ENVS * N_STEPS * CYCLES)
    assert composed._n_updates == stock._n_updates >= (CYCLES if algo == "a2c" else 3 * CYCLES)
    assert max_abs_difference(stock.policy, composed.policy) <= TOLERANCE


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_stable_baselines3s_own_entry_point_builds_the_same_policy(algo: str) -> None:
    """``ComposedPPO("MlpPolicy", env, ent_coef=...)`` is SB3's PPO with the entropy term weighted by ent_coef."""
    stock = _stock(algo, "Pendulum-v1", 0.01)
    cls = ComposedPPO if algo == "ppo" else ComposedA2C
    composed = cls("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=N_ENVS), ent_coef=0.01, seed=0,
                   **HYPERPARAMETERS[algo])
    composed.learn(N_ENVS * N_STEPS * CYCLES)
    assert max_abs_difference(stock.policy, composed.policy) <= TOLERANCE


def test_the_rollout_buffer_holds_the_raw_action_and_the_env_the_clipped_one() -> None:
    """As in SB3: the buffer stores the unclipped Gaussian sample; the env gets it clipped to its bounds."""
    model = make_model({"env": "Pendulum-v1", "algo": "ppo", "seed": 0,
                        "policy": {"head_kwargs": {"log_std_init": 1.5}},
                        "algo_kwargs": {"n_steps": 64, "batch_size": 32, "n_epochs": 1}})
    seen: list[np.ndarray] = []
    original_step = model.env.step

    def step(actions: np.ndarray) -> Any:
        seen.append(np.array(actions))
        return original_step(actions)

    model.env.step = step
    model.learn(64)
    stored = model.rollout_buffer.actions.reshape(-1)
    sent = np.concatenate(seen).reshape(-1)
    assert np.abs(stored).max() > 2.0  # std e^1.5: samples beyond Pendulum's bound of 2
    np.testing.assert_allclose(sent, np.clip(stored, -2.0, 2.0), atol=1e-6)
    # the stored log-prob is the head's log-prob of the stored (raw) action
    obs = th.as_tensor(model.rollout_buffer.observations.reshape(64, -1))
    _, evaluation = model.policy.evaluate(obs, th.as_tensor(model.rollout_buffer.actions.reshape(64, 1)))
    assert evaluation.log_prob.shape == (64,)


@pytest.mark.parametrize("env_class", ["IdentityEnvMultiDiscrete", "IdentityEnvMultiBinary"])
@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_multi_discrete_and_multi_binary_actions_train_to_stable_baselines3s_parameters(algo: str,
                                                                                       env_class: str) -> None:
    """``multi_categorical`` and ``bernoulli`` are SB3's MultiCategorical and Bernoulli distributions.

    One env: SB3's identity envs draw their states from an unseeded action space in every env but the first.
    """
    from stable_baselines3.common import envs

    def make() -> Any:
        return make_vec_env(lambda: getattr(envs, env_class)(dim=3), n_envs=1)

    kwargs = {**HYPERPARAMETERS[algo], "ent_coef": 0.01, "seed": 0}
    stock = SB3[algo]("MlpPolicy", make(), **kwargs).learn(N_STEPS * CYCLES)
    composed = (ComposedPPO if algo == "ppo" else ComposedA2C)("MlpPolicy", make(), **kwargs)
    assert composed.composition.head.name == ("multi_categorical" if "Discrete" in env_class else "bernoulli")
    composed.learn(N_STEPS * CYCLES)
    assert max_abs_difference(stock.policy, composed.policy) <= TOLERANCE


def test_a_head_that_cannot_act_in_the_space_is_refused_by_sb3s_entry_point_too() -> None:
    from stable_baselines3.common.envs import IdentityEnvMultiBinary

    from diffrl_core.config import parse_config
    from diffrl_core.errors import IncompatibleComponentsError
    from diffrl_core.plugins import load_plugins
    from diffrl_core.resolve import resolve_composition

    composition = resolve_composition(parse_config({"env": "Pendulum-v1", "algo": "ppo"}), load_plugins())
    with pytest.raises(IncompatibleComponentsError, match=r"head 'diag_gaussian'.*cannot act in.*MultiBinary"):
        ComposedPPO("MlpPolicy", make_vec_env(lambda: IdentityEnvMultiBinary(dim=3)), composition=composition)


@pytest.mark.parametrize("policy_kwargs", [
    {"log_std_init": -1.0},  # SB3's Gaussian, a policy kwarg the composed head takes
    {"use_sde": True, "log_std_init": -2.0},
    {"use_sde": True, "log_std_init": -1.0, "use_expln": True, "full_std": False},
], ids=["log_std_init", "gsde", "gsde-expln"])
@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_gsde_and_sb3s_gaussian_policy_kwargs_train_to_stable_baselines3s_parameters(
        algo: str, policy_kwargs: dict[str, Any]) -> None:
    """``diag_gaussian`` under gSDE is SB3's PPO/A2C gSDE policy (StateDependentNoiseDistribution)."""
    policy_kwargs = dict(policy_kwargs)
    use_sde = policy_kwargs.pop("use_sde", False)
    kwargs = {**HYPERPARAMETERS[algo], "ent_coef": 0.01, "seed": 0, "use_sde": use_sde, "policy_kwargs": policy_kwargs}
    if use_sde:
        kwargs["sde_sample_freq"] = 4
    stock = SB3[algo]("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=N_ENVS), **kwargs)
    stock.learn(N_ENVS * N_STEPS * CYCLES)
    composed = (ComposedPPO if algo == "ppo" else ComposedA2C)("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=N_ENVS),
                                                              **kwargs)
    composed.learn(N_ENVS * N_STEPS * CYCLES)
    assert max_abs_difference(stock.policy, composed.policy) <= TOLERANCE


def test_gsde_from_a_config_explores_with_noise_fixed_between_resets() -> None:
    model = make_model({"env": "Pendulum-v1", "algo": "ppo", "seed": 0, "policy": {"head_kwargs": {"log_std_init": -1}},
                        "algo_kwargs": {"use_sde": True, "sde_sample_freq": 4, "n_steps": 64, "batch_size": 32}})
    assert model.use_sde and model.policy.head.use_sde
    model.learn(128)
    obs = np.zeros((1, 3), dtype=np.float32)
    model.policy.reset_noise(1)
    first, second = (model.predict(obs, deterministic=False)[0] for _ in range(2))
    np.testing.assert_array_equal(first, second)
    model.policy.reset_noise(1)
    assert not np.array_equal(model.predict(obs, deterministic=False)[0], first)

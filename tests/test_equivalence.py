"""The compositions that mirror stable-baselines3's SAC and TD3 train to the same parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.noise import NormalActionNoise

from diffrl_core import make_model

pytestmark = pytest.mark.slow  # trains stable-baselines3 and diffrl side by side

STEPS = 600  # learning_starts + 500 gradient steps (train_freq 1, gradient_steps 1)
HYPERPARAMETERS = dict(learning_starts=100, batch_size=64, buffer_size=10_000)
NET_ARCH = [64, 64]


def flat_parameters(module: th.nn.Module) -> list[np.ndarray]:
    return [p.detach().cpu().numpy().copy() for p in module.parameters()]


def max_abs_difference(a: th.nn.Module, b: th.nn.Module) -> float:
    pa, pb = flat_parameters(a), flat_parameters(b)
    assert [p.shape for p in pa] == [p.shape for p in pb]
    return max(float(np.max(np.abs(x - y))) for x, y in zip(pa, pb, strict=True))


@pytest.mark.parametrize("ent_coef", ["auto", 0.2])
def test_squashed_gaussian_sac_entropy_equals_sb3_sac(ent_coef) -> None:
    reference = SAC(
        "MlpPolicy",
        make_vec_env("Pendulum-v1"),
        policy_kwargs=dict(net_arch=NET_ARCH),
        ent_coef=ent_coef,
        seed=0,
        **HYPERPARAMETERS,
    )
    reference.learn(STEPS)
    composed = make_model(
        {
            "env": "Pendulum-v1",
            "algo": "sac",
            "policy": {
                "net_arch": NET_ARCH,
                "head": "squashed_gaussian",
                "losses": [{"name": "sac_entropy", "weight": 1.0}],
                "postprocess": "identity",
            },
            "algo_kwargs": dict(HYPERPARAMETERS, ent_coef=ent_coef),
            "seed": 0,
        },
        env=make_vec_env("Pendulum-v1"),
    )
    composed.learn(STEPS)
    assert composed._n_updates == reference._n_updates >= 500
    assert max_abs_difference(composed.actor, reference.actor) == 0.0
    assert max_abs_difference(composed.critic, reference.critic) == 0.0
    assert max_abs_difference(composed.critic_target, reference.critic_target) == 0.0
    if ent_coef == "auto":
        assert abs(composed.log_ent_coef.item() - reference.log_ent_coef.item()) == 0.0
    # and the parameters did move: equality is not two untrained models
    untrained = SAC("MlpPolicy", make_vec_env("Pendulum-v1"), policy_kwargs=dict(net_arch=NET_ARCH), seed=0)
    assert max_abs_difference(composed.actor, untrained.actor) > 1e-3


def sac_config(head: str, postprocess: str, ent_coef: str | float = "auto") -> dict:
    return {
        "env": "Pendulum-v1",
        "algo": "sac",
        "policy": {"net_arch": NET_ARCH, "head": head, "losses": [{"name": "sac_entropy"}], "postprocess": postprocess},
        "algo_kwargs": dict(HYPERPARAMETERS, ent_coef=ent_coef),
        "seed": 0,
    }


def test_gaussian_then_tanh_is_sacs_squashed_gaussian() -> None:
    """The tanh post-processor's log-abs-det-Jacobian makes an unsquashed head + tanh SAC's squashed actor."""
    squashed = make_model(sac_config("squashed_gaussian", "identity"), env=make_vec_env("Pendulum-v1"))
    squashed.learn(STEPS)
    composed = make_model(sac_config("gaussian", "tanh"), env=make_vec_env("Pendulum-v1"))
    composed.learn(STEPS)
    assert composed._n_updates == squashed._n_updates >= 500
    assert max_abs_difference(composed.actor, squashed.actor) == 0.0
    assert max_abs_difference(composed.critic, squashed.critic) == 0.0
    assert abs(composed.log_ent_coef.item() - squashed.log_ent_coef.item()) == 0.0


def test_deterministic_q_value_equals_sb3_td3() -> None:
    noise = dict(mean=np.zeros(1), sigma=0.1 * np.ones(1))
    reference = TD3(
        "MlpPolicy",
        make_vec_env("Pendulum-v1"),
        policy_kwargs=dict(net_arch=NET_ARCH),
        action_noise=NormalActionNoise(**noise),
        seed=0,
        **HYPERPARAMETERS,
    )
    reference.learn(STEPS)
    composed = make_model(
        {
            "env": "Pendulum-v1",
            "algo": "td3",
            "policy": {
                "net_arch": NET_ARCH, "head": "deterministic", "losses": [{"name": "q_value"}],
                "postprocess": "identity",
            },
            "action_noise": {"type": "normal", "sigma": 0.1},
            "algo_kwargs": HYPERPARAMETERS,
            "seed": 0,
        },
        env=make_vec_env("Pendulum-v1"),
    )
    composed.learn(STEPS)
    assert composed._n_updates == reference._n_updates >= 500
    assert max_abs_difference(composed.actor, reference.actor) == 0.0
    assert max_abs_difference(composed.actor_target, reference.actor_target) == 0.0
    assert max_abs_difference(composed.critic, reference.critic) == 0.0


def test_squashed_gaussian_with_gsde_equals_sb3_sac_with_gsde() -> None:
    """gSDE from the config: the head builds SB3's state-dependent noise, and trains to SB3's parameters."""
    sde = dict(use_sde=True, sde_sample_freq=4)
    reference = SAC("MlpPolicy", make_vec_env("Pendulum-v1"), policy_kwargs=dict(net_arch=NET_ARCH), seed=0,
                    **HYPERPARAMETERS, **sde)
    reference.learn(STEPS)
    composed = make_model(
        {**sac_config("squashed_gaussian", "identity"), "algo_kwargs": dict(HYPERPARAMETERS, **sde)},
        env=make_vec_env("Pendulum-v1"),
    )
    composed.learn(STEPS)
    assert composed._n_updates == reference._n_updates >= 500
    # SB3's actor holds gSDE's log-std matrix itself (listed first); the composed actor's head holds it
    ours = dict(composed.actor.named_parameters())
    for name, parameter in reference.actor.named_parameters():
        mine = ours[name] if name in ours else ours[f"head.{name}"]
        assert float((mine - parameter).detach().abs().max()) == 0.0, name
    assert max_abs_difference(composed.critic, reference.critic) == 0.0
    assert abs(composed.log_ent_coef.item() - reference.log_ent_coef.item()) == 0.0
    assert th.equal(composed.actor.get_std(), reference.actor.get_std())


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_default_networks_train_to_sb3s_bits(algo) -> None:
    """At stable-baselines3's default sizes (256/400-300 units, batch 256: other matrix-product kernels than the
    small networks above) the faster update still gives every parameter SB3's bits."""
    stock_class, policy = {"sac": (SAC, {"head": "squashed_gaussian", "losses": [{"name": "sac_entropy"}]}),
                           "td3": (TD3, {"head": "deterministic", "losses": [{"name": "q_value"}]})}[algo]
    reference = stock_class("MlpPolicy", make_vec_env("Pendulum-v1"), learning_starts=100, seed=0)
    reference.learn(300)
    composed = make_model({"env": "Pendulum-v1", "algo": algo, "seed": 0, "algo_kwargs": {"learning_starts": 100},
                           "policy": {**policy, "postprocess": "identity"}}, env=make_vec_env("Pendulum-v1"))
    composed.learn(300)
    assert composed._n_updates == reference._n_updates >= 200
    for network in ("actor", "critic", "critic_target", *(["actor_target"] if algo == "td3" else [])):
        assert max_abs_difference(getattr(composed, network), getattr(reference, network)) == 0.0, network

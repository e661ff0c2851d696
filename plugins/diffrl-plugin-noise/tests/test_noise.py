"""The noise post-processors: conformance, and the replay buffer holds exactly what the env received."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv

from diffrl_core import MissingComponentError, load_model, make_model
from diffrl_core.testing import check_plugin, disabled_plugins
from diffrl_plugin_noise.postprocessors import GaussianNoise, OUNoise

BOX = spaces.Box(-2.0, 2.0, (3,), dtype=np.float32)


class RecordActions(gym.Wrapper):
    """Keeps every action the env receives."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.actions: list[np.ndarray] = []

    def step(self, action):
        self.actions.append(np.array(action, dtype=np.float32).copy())
        return super().step(action)


@pytest.mark.slow
def test_the_plugin_passes_the_conformance_checks() -> None:
    reports = check_plugin("noise", kwargs={"gaussian_noise": {"sigma": 0.2}, "ou_noise": {"sigma": 0.2}})
    assert sorted(r.config["policy"]["postprocess"] for r in reports) == ["gaussian_noise", "ou_noise"]


@pytest.mark.parametrize(
    "post,kwargs", [("gaussian_noise", {"sigma": 0.1}), ("ou_noise", {"sigma": 0.1, "theta": 0.15})]
)
def test_the_buffer_stores_the_noisy_action_the_env_received(post: str, kwargs: dict) -> None:
    recorder = RecordActions(gym.make("Pendulum-v1"))
    env = DummyVecEnv([lambda: recorder])
    config = {
        "env": "Pendulum-v1",
        "algo": "td3",
        "policy": {"net_arch": [8], "head": "deterministic", "postprocess": post, "postprocess_kwargs": kwargs},
        # the head acts from the first step (no warm-up) and is never updated, so its
        # deterministic action can be recomputed afterwards
        "algo_kwargs": {"learning_starts": 0, "gradient_steps": 0, "buffer_size": 1000},
        "seed": 1,
    }
    model = make_model(config, env=env)
    model.learn(300)
    n = len(recorder.actions)
    assert n == 300
    buffer_actions = model.replay_buffer.actions[:n, 0]
    env_actions = np.stack(recorder.actions)
    # the buffer holds the normalized version of exactly what the env got
    np.testing.assert_allclose(model.policy.unscale_action(buffer_actions), env_actions, rtol=0, atol=1e-5)
    assert np.all(np.abs(buffer_actions) <= 1.0)
    # ... and that is the policy's action plus noise, not the noiseless action
    observations = model.replay_buffer.observations[:n, 0]
    noiseless = model.policy.scale_action(model.predict(observations, deterministic=True)[0])
    noise = (buffer_actions - noiseless)[np.abs(noiseless[:, 0]) < 0.7, 0]  # away from the clipping
    assert 0.03 < noise.std() < 0.3
    lag1 = np.corrcoef(noise[:-1], noise[1:])[0, 1]
    if post == "gaussian_noise":
        assert abs(lag1) < 0.3  # independent per step
    else:
        assert lag1 > 0.8  # Ornstein-Uhlenbeck: correlated in time


def test_without_explore_it_is_clip() -> None:
    raw = th.tensor([[-3.0, 0.5, 1.5]])
    for post in (GaussianNoise(BOX, sigma=0.5), OUNoise(BOX, sigma=0.5)):
        assert th.equal(post(raw), th.tensor([[-1.0, 0.5, 1.0]]))
        assert post(raw, explore=True).abs().max() <= 1.0


def test_gradients_pass_where_the_action_is_not_clipped() -> None:
    raw = th.tensor([[0.2, -0.4, 2.0]], requires_grad=True)
    GaussianNoise(BOX)(raw).sum().backward()
    assert raw.grad.tolist() == [[1.0, 1.0, 0.0]]


def test_the_ou_state_is_per_row_never_saved_and_resets() -> None:
    post = OUNoise(BOX, sigma=1.0, theta=0.0, dt=1.0)  # a random walk: the state keeps growing
    assert dict(post.state_dict()) == {}
    post(th.zeros(4, 3), explore=True)
    assert post.state.shape == (4, 3)
    assert dict(post.state_dict()) == {}
    post(th.zeros(1, 3), explore=True)  # another batch size: a new process
    assert post.state.shape == (1, 3)
    post.reset()
    assert post.state is None


def test_bad_kwargs_are_refused() -> None:
    with pytest.raises(ValueError):
        GaussianNoise(BOX, sigma=-1.0)
    with pytest.raises(ValueError):
        OUNoise(BOX, dt=0.0)


def test_loading_without_the_plugin_names_the_post_processor_and_the_distribution(tmp_path: Path) -> None:
    model = make_model({"env": "Pendulum-v1", "algo": "td3", "policy": {"net_arch": [8], "postprocess": "ou_noise"}})
    model.save(tmp_path / "model")
    with disabled_plugins("noise"), pytest.raises(MissingComponentError) as excinfo:
        load_model(tmp_path / "model")
    assert "post-processor 'ou_noise'" in str(excinfo.value) and "diffrl-plugin-noise" in str(excinfo.value)

"""diffrl/PointMassGoal-v0: goal-conditioned Dict observation, sparse reward, HER compatibility."""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np
import pytest

import diffrl_envs  # noqa: F401  (registers the ids)

ENV_ID = "diffrl/PointMassGoal-v0"


def _make(**kwargs):
    return gymnasium.make(ENV_ID, **kwargs)


def test_registration_and_spaces():
    assert gymnasium.registry[ENV_ID].max_episode_steps == 50
    env = _make()
    space = env.observation_space
    assert isinstance(space, gymnasium.spaces.Dict)
    assert set(space.spaces) == {"observation", "achieved_goal", "desired_goal"}
    assert {key: box.shape for key, box in space.spaces.items()} == {
        "observation": (4,),
        "achieved_goal": (2,),
        "desired_goal": (2,),
    }
    assert all(box.dtype == np.float32 for box in space.spaces.values())
    assert env.unwrapped.distance_threshold == 0.05
    obs, _ = env.reset(seed=3)
    base = env.unwrapped
    np.testing.assert_array_equal(obs["achieved_goal"], obs["observation"][:2])
    np.testing.assert_array_equal(obs["achieved_goal"], base.data.qpos[:2].astype(np.float32))
    np.testing.assert_array_equal(obs["desired_goal"], base.goal.astype(np.float32))
    np.testing.assert_array_equal(obs["observation"][2:], 0.0)  # starts at rest


def test_episode_is_truncated_after_50_steps():
    env = _make()
    env.reset(seed=0)
    for step in range(1, 51):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert not terminated
        assert truncated == (step == 50)


def test_compute_reward_vectorised_equals_per_sample():
    env = _make(distance_threshold=0.1).unwrapped
    rng = np.random.default_rng(0)
    achieved = rng.uniform(-0.3, 0.3, size=(500, 2)).astype(np.float32)
    # Half of the desired goals close to the achieved ones, so both reward values occur.
    desired = np.where(
        rng.random((500, 1)) < 0.5, achieved + rng.normal(0, 0.08, size=(500, 2)), rng.uniform(-0.3, 0.3, (500, 2))
    ).astype(np.float32)
    infos = np.array([{"is_success": False}] * 500)
    batch = env.compute_reward(achieved, desired, infos)
    assert batch.shape == (500,) and batch.dtype == np.float32
    singles = np.array([env.compute_reward(a, d, {}) for a, d in zip(achieved, desired, strict=True)])
    assert all(np.ndim(value) == 0 for value in singles)
    np.testing.assert_array_equal(batch, singles)
    distance = np.linalg.norm(achieved.astype(np.float64) - desired, axis=-1)
    np.testing.assert_array_equal(batch, np.where(distance > 0.1, -1.0, 0.0))
    assert 50 < np.sum(batch == 0.0) < 450
    # info may be a list of dicts (HerReplayBuffer passes one per transition) or None.
    np.testing.assert_array_equal(env.compute_reward(achieved, desired, list(infos)), batch)
    np.testing.assert_array_equal(env.compute_reward(achieved[:1], desired[:1], None), batch[:1])


def test_sparse_reward_values_and_success():
    env = _make()
    base = env.unwrapped
    obs, _ = env.reset(seed=1)
    # Put the goal on the mass: 0 reward and success while it stays at rest there.
    base.goal = base.data.qpos[:2].copy()
    obs, reward, _, _, info = env.step(np.zeros(2, dtype=np.float32))
    assert reward == 0.0 and info["is_success"] is True
    np.testing.assert_allclose(obs["desired_goal"], obs["achieved_goal"], atol=1e-6)
    # A goal 0.06 m away (> 0.05 m threshold): -1, no success; 0.04 m away: 0, success.
    for offset, expected in ((0.06, -1.0), (0.04, 0.0)):
        base.goal = base.data.qpos[:2] + np.array([offset, 0.0])
        _, reward, _, _, info = env.step(np.zeros(2, dtype=np.float32))
        assert reward == expected and info["is_success"] == (expected == 0.0)
        assert info["distance"] == pytest.approx(offset, abs=1e-6)


def test_step_reward_is_compute_reward_of_the_observation():
    env = _make()
    env.action_space.seed(0)
    obs, _ = env.reset(seed=2)
    seen = set()
    base = env.unwrapped
    for step in range(150):
        if step % 3 == 0:  # a crude PD controller towards the goal, so that successes occur too
            action = np.clip(10.0 * (base.goal - base.data.qpos[:2]) - 0.5 * base.data.qvel[:2], -1, 1)
        else:
            action = env.action_space.sample()
        obs, reward, _, truncated, info = env.step(action)
        assert isinstance(reward, float) and reward in (0.0, -1.0)
        assert reward == base.compute_reward(obs["achieved_goal"], obs["desired_goal"], info)
        assert info["is_success"] == (reward == 0.0)
        seen.add(reward)
        if truncated:
            obs, _ = env.reset()
    assert seen == {0.0, -1.0}


def test_her_replay_buffer_relabels_with_compute_reward():
    from stable_baselines3 import HerReplayBuffer
    from stable_baselines3.common.vec_env import DummyVecEnv

    np.random.seed(0)  # HerReplayBuffer samples with NumPy's global generator
    venv = DummyVecEnv([lambda: _make()])
    venv.seed(0)
    venv.action_space.seed(0)
    buffer = HerReplayBuffer(
        2000, venv.observation_space, venv.action_space, env=venv, n_sampled_goal=4, goal_selection_strategy="future"
    )
    obs = venv.reset()
    for _ in range(120):  # two full episodes and a bit
        action = np.array([venv.action_space.sample()])
        next_obs, reward, done, infos = venv.step(action)
        buffer.add(obs, next_obs, action, reward, done, infos)
        obs = next_obs
    samples = buffer.sample(256)
    env = venv.envs[0].unwrapped
    expected = env.compute_reward(
        samples.next_observations["achieved_goal"].numpy(), samples.observations["desired_goal"].numpy(), None
    )
    np.testing.assert_array_equal(samples.rewards.numpy().ravel(), expected)
    # With 4 relabelled goals per real one, most goals were replaced by achieved ones: some
    # relabelled transitions are successes although random actions almost never reach the goal.
    assert np.any(samples.rewards.numpy() == 0.0)
    venv.close()


def test_sac_with_her_runs():
    from stable_baselines3 import SAC, HerReplayBuffer

    env = _make()
    model = SAC(
        "MultiInputPolicy",
        env,
        replay_buffer_class=HerReplayBuffer,
        replay_buffer_kwargs=dict(n_sampled_goal=4, goal_selection_strategy="future"),
        learning_starts=100,
        batch_size=32,
        buffer_size=1000,
        policy_kwargs=dict(net_arch=[32, 32]),
        seed=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model.learn(300)
    assert model.num_timesteps == 300
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(action)

"""Closed-form checks of diffrl/QuadraticBandit-v0."""

from __future__ import annotations

import math

import gymnasium
import numpy as np
import pytest

import diffrl_envs  # noqa: F401  (registers the ids)


def _make(**kwargs):
    return gymnasium.make("diffrl/QuadraticBandit-v0", **kwargs)


def test_one_step_episode_and_optimal_action_gives_max_reward():
    env = _make(action_dim=3, context_dim=4, k=2.5)
    for seed in range(20):
        obs, info = env.reset(seed=seed)
        a_star = info["optimal_action"]
        assert a_star.shape == (3,) and a_star.dtype == np.float32
        np.testing.assert_allclose(a_star, env.unwrapped.target_matrix @ obs, rtol=1e-5, atol=1e-6)
        assert env.action_space.contains(a_star)
        _, reward, terminated, truncated, step_info = env.step(a_star)
        assert reward == 0.0
        # The env itself never truncates; the TimeLimit(1) wrapper from max_episode_steps=1
        # also flags truncated=True on that step, which SB3 ignores when terminated is True.
        assert terminated
        np.testing.assert_array_equal(step_info["optimal_action"], a_star)
        # Any other action is strictly worse, and the reward is -k ||a - a*||^2.
        other = a_star + np.float32(0.1)
        env.reset(seed=seed)
        _, reward, _, _, _ = env.step(other)
        expected = -2.5 * float(np.sum((other.astype(np.float64) - a_star.astype(np.float64)) ** 2))
        assert reward == pytest.approx(expected) and reward < 0


def test_unwrapped_env_terminates_without_truncation():
    env = _make().unwrapped
    env.reset(seed=0)
    _, _, terminated, truncated, _ = env.step(env.action_space.sample())
    assert terminated and not truncated


def test_target_stays_inside_bounds_with_margin():
    env = _make().unwrapped
    contexts = np.array(np.meshgrid(*[[-1.0, 1.0]] * env.context_dim)).reshape(env.context_dim, -1).T
    a_star = env.optimal_action(contexts)
    assert np.all(np.abs(a_star) <= 1.0 + 1e-6)
    assert np.all(env.action_space.high - 1.0 >= 2.0)


@pytest.mark.parametrize("alpha,k", [(0.1, 1.0), (0.5, 1.0), (0.2, 3.0)])
def test_optimal_std_matches_numeric_maximum(alpha, k):
    env = _make(k=k, action_dim=2).unwrapped
    d = env.action_dim
    rng = np.random.default_rng(0)
    context = rng.uniform(-1, 1, size=env.context_dim).astype(np.float32)
    a_star = env.optimal_action(context)
    noise = rng.standard_normal((20000, d))  # common random numbers across the grid

    def objective(std: float) -> float:
        actions = a_star + std * noise
        expected_reward = np.mean([env.reward(a, a_star) for a in actions[:2000]])
        # Exact: E[r] = -k d s^2 for N(a*, s^2 I); the Monte-Carlo estimate must agree.
        exact_reward = -k * d * std**2
        assert expected_reward == pytest.approx(exact_reward, rel=0.1)
        entropy = d * (0.5 * math.log(2 * math.pi * math.e) + math.log(std))
        return exact_reward + alpha * entropy

    std_star = env.optimal_std(alpha)
    assert std_star == pytest.approx(math.sqrt(alpha / (2 * k)))
    grid = np.linspace(0.2 * std_star, 3.0 * std_star, 281)
    values = np.array([-k * d * s**2 + alpha * d * (0.5 * math.log(2 * math.pi * math.e) + math.log(s)) for s in grid])
    assert grid[np.argmax(values)] == pytest.approx(std_star, rel=0.02)
    assert max(values) <= env.optimal_objective(alpha) + 1e-12
    assert env.optimal_objective(alpha) == pytest.approx(objective(std_star), rel=1e-9)
    # Monte-Carlo check of the reward part on a few grid points.
    for s in (0.5 * std_star, 2.0 * std_star):
        objective(s)


def test_optimal_objective_beats_shifted_policy_numerically():
    """E[r] + alpha H by sampling: the mean a* beats a shifted mean at the optimal std."""
    env = _make().unwrapped
    alpha = 0.3
    std = env.optimal_std(alpha)
    obs, info = env.reset(seed=1)
    a_star = info["optimal_action"].astype(np.float64)
    noise = np.random.default_rng(1).standard_normal((5000, env.action_dim))
    centred = np.mean([env.reward(a, a_star) for a in a_star + std * noise])
    shifted = np.mean([env.reward(a, a_star) for a in a_star + 0.2 + std * noise])
    assert centred > shifted
    entropy = env.action_dim * (0.5 * math.log(2 * math.pi * math.e) + math.log(std))
    assert centred + alpha * entropy == pytest.approx(env.optimal_objective(alpha), abs=0.02)


def test_actions_are_clipped_to_bounds():
    env = _make(action_low=-1.0, action_high=1.0)
    _, info = env.reset(seed=0)
    a_star = info["optimal_action"]
    _, reward_far, *_ = env.step(np.full(2, 100.0, dtype=np.float32))
    env.reset(seed=0)
    _, reward_edge, *_ = env.step(np.ones(2, dtype=np.float32))
    assert reward_far == reward_edge == pytest.approx(-float(np.sum((1.0 - a_star.astype(np.float64)) ** 2)))

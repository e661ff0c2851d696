"""Closed-form checks of diffrl/TwoPeakBandit-v0: the maximum-entropy optimum is the two-peak mixture."""

from __future__ import annotations

import math

import gymnasium
import numpy as np
import pytest

import diffrl_envs  # noqa: F401  (registers the ids)


def _env(**kwargs):
    return gymnasium.make("diffrl/TwoPeakBandit-v0", **kwargs).unwrapped


def test_both_peaks_are_optimal_and_the_valley_is_not():
    env = _env()
    obs, info = env.reset(seed=0)
    assert obs.tolist() == [0.0] and info["optimal_actions"].tolist() == [[0.5], [-0.5]]
    rewards = {}
    for action in (0.5, -0.5, 0.0, 0.25, 1.0):
        env.reset()
        _, rewards[action], terminated, truncated, step_info = env.step(np.array([action], dtype=np.float32))
        assert terminated and not truncated
    assert rewards[0.5] == rewards[-0.5] == pytest.approx(0.0, abs=1e-7)
    assert rewards[0.0] == pytest.approx(math.log(2.0) - 18.0 * 0.25)  # both bowls at distance 0.5
    assert rewards[0.25] < rewards[0.5] and rewards[1.0] < rewards[0.5]
    env.reset()
    assert env.step(np.array([-0.4], dtype=np.float32))[4]["nearest_peak"] == 1
    # the peaks are the maxima: a fine grid finds nothing better
    grid = np.linspace(-1.0, 1.0, 20001)[:, None]
    best = grid[np.argmax(env.reward(grid)), 0]
    assert abs(abs(best) - 0.5) <= 1e-4


def test_actions_outside_the_bounds_are_clipped():
    env = _env()
    env.reset(seed=0)
    assert env.step(np.array([5.0], dtype=np.float32))[1] == pytest.approx(float(env.reward(np.array([1.0]))))


@pytest.mark.parametrize("action_dim", [1, 2])
def test_the_mixture_is_normalized_and_reaches_the_closed_form_objective(action_dim):
    env = _env(action_dim=action_dim, temperature=0.7)
    grid_1d = np.linspace(-1.0, 1.0, 801)
    step = grid_1d[1] - grid_1d[0]
    grid = np.stack(np.meshgrid(*[grid_1d] * action_dim, indexing="ij"), axis=-1).reshape(-1, action_dim)
    density = env.optimal_density(grid)
    mass = density.sum() * step**action_dim
    assert mass == pytest.approx(1.0, abs=0.005)  # 0.13% lies outside the bounds per dimension
    # E[r] + tau H at the mixture, by quadrature, against tau * (log 2 + d/2 log(pi / k))
    objective = (density * (env.reward(grid) - env.temperature * np.log(density))).sum() * step**action_dim
    assert objective == pytest.approx(env.optimal_objective(), abs=0.02)


def test_no_gaussian_does_better_than_the_mixture():
    """E[r] + tau H over 1-D Gaussians N(mu, s^2) (by quadrature) stays below the mixture's value, by about tau log 2.

    The quadrature runs past the bounds with the env's clipped reward, and counts the Gaussian's whole entropy:
    that favours wide Gaussians, and still none comes near the mixture."""
    env = _env()
    grid = np.linspace(-8.0, 8.0, 16001)[:, None]
    step = grid[1, 0] - grid[0, 0]
    rewards = env.reward(grid)
    best = -np.inf
    for mu in np.linspace(-0.8, 0.8, 33):
        for s in np.geomspace(0.05, 1.5, 40):
            density = np.exp(-((grid[:, 0] - mu) ** 2) / (2 * s**2)) / math.sqrt(2 * math.pi * s**2)
            entropy = 0.5 * math.log(2 * math.pi * math.e * s**2)
            best = max(best, (density * rewards).sum() * step + env.temperature * entropy)
    gap = env.optimal_objective() - best
    assert 0.55 * env.temperature < gap <= env.temperature * (math.log(2.0) + 0.01)  # measured: 0.63


def test_sampling_the_optimum_gives_half_the_mass_at_each_peak():
    env = _env()
    actions = env.sample_optimal(20_000, np.random.default_rng(0))
    assert actions.shape == (20_000, 1) and actions.dtype == np.float32
    near_plus = np.abs(actions[:, 0] - 0.5) < 3 * env.optimal_std
    near_minus = np.abs(actions[:, 0] + 0.5) < 3 * env.optimal_std
    assert near_plus.mean() == pytest.approx(0.5, abs=0.02) and near_minus.mean() == pytest.approx(0.5, abs=0.02)
    assert actions.std() == pytest.approx(math.sqrt(0.25 + env.optimal_std**2), rel=0.02)


@pytest.mark.parametrize("kwargs", [{"peak": 1.0}, {"peak": 0.0}, {"k": 0.0}, {"temperature": -1.0},
                                    {"action_dim": 0}])
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        _env(**kwargs)


def test_render_marks_the_last_action():
    env = gymnasium.make("diffrl/TwoPeakBandit-v0", render_mode="rgb_array").unwrapped
    env.reset(seed=0)
    before = env.render()
    env.step(np.array([0.5], dtype=np.float32))
    after = env.render()
    assert before.shape == after.shape == (128, 128, 3) and before.dtype == np.uint8
    red = (after[:, :, 0] == 220) & (after[:, :, 1] == 30)
    assert red[:, 95].all() and not red[:, 10].any()  # a = 0.5 is column 95 of 128

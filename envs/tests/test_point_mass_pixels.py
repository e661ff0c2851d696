"""diffrl/PointMassPixels-v0: the PointMassReach task seen through a NumPy-drawn image."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

import diffrl_envs  # noqa: F401  (registers the ids)

ENV_ID = "diffrl/PointMassPixels-v0"


def _make(**kwargs):
    return gymnasium.make(ENV_ID, **kwargs)


def _centroid_metres(channel: np.ndarray, extent: float = 0.4) -> np.ndarray:
    """Intensity-weighted centre of one channel, as (x, y) in metres."""
    size = channel.shape[0]
    weights = channel.astype(np.float64)
    rows, cols = np.indices(channel.shape)
    row = np.sum(rows * weights) / weights.sum()
    col = np.sum(cols * weights) / weights.sum()
    metres_per_pixel = 2 * extent / size
    return np.array([-extent + (col + 0.5) * metres_per_pixel, extent - (row + 0.5) * metres_per_pixel])


def test_space_is_an_sb3_image_space():
    from stable_baselines3.common.preprocessing import is_image_space

    assert gymnasium.registry[ENV_ID].max_episode_steps == 100
    env = _make()
    space = env.observation_space
    assert space.shape == (36, 36, 3) and space.dtype == np.uint8
    assert np.all(space.low == 0) and np.all(space.high == 255)
    assert is_image_space(space, check_channels=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (36, 36, 3) and obs.dtype == np.uint8 and space.contains(obs)
    assert _make(size=64).observation_space.shape == (64, 64, 3)
    with pytest.raises(ValueError):
        _make(size=4)


def test_discs_show_goal_and_mass_positions():
    env = _make()
    base = env.unwrapped
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        # Readable to a small fraction of a pixel (2.2 cm): the anti-aliased edges carry sub-pixel offsets.
        np.testing.assert_allclose(_centroid_metres(obs[..., 0]), base.goal, atol=0.002)
        np.testing.assert_allclose(_centroid_metres(obs[..., 1]), base.data.qpos[:2], atol=0.002)
        # At rest after the reset, the trail disc coincides with the mass disc.
        np.testing.assert_array_equal(obs[..., 2], obs[..., 1])
        # A disc of radius 0.08 m = 3.6 px: its total coverage is its area, pi * 3.6^2 = 40.7 pixels.
        assert obs[..., 1].max() == 255
        assert obs[..., 1].sum() / 255 == pytest.approx(np.pi * (0.08 / (0.8 / 36)) ** 2, abs=0.5)


def test_image_changes_when_the_mass_moves_and_trail_shows_previous_position():
    env = _make()
    base = env.unwrapped
    obs, _ = env.reset(seed=3)
    goal_channel = obs[..., 0].copy()
    for _ in range(4):  # accelerate towards +x, +y
        previous = base.data.qpos[:2].copy()
        new_obs, *_ = env.step(np.array([1.0, 1.0], dtype=np.float32))
        np.testing.assert_array_equal(new_obs[..., 0], goal_channel)  # the goal does not move
        assert not np.array_equal(new_obs[..., 1], obs[..., 1])
        np.testing.assert_allclose(_centroid_metres(new_obs[..., 1]), base.data.qpos[:2], atol=0.002)
        np.testing.assert_allclose(_centroid_metres(new_obs[..., 2]), previous, atol=0.002)
        obs = new_obs
    # Moving: the displacement over the last step is visible as a green-minus-blue offset.
    shift = _centroid_metres(obs[..., 1]) - _centroid_metres(obs[..., 2])
    np.testing.assert_allclose(shift, base.data.qpos[:2] - previous, atol=0.003)
    assert np.all(shift > 0.01)


def test_same_task_as_point_mass_reach():
    pixels, reach = _make(), gymnasium.make("diffrl/PointMassReach-v0")
    _, info_p = pixels.reset(seed=11)
    _, info_r = reach.reset(seed=11)
    assert info_p == info_r
    actions = np.random.default_rng(0).uniform(-1, 1, size=(100, 2)).astype(np.float32)
    for action in actions:
        _, reward_p, term_p, trunc_p, info_p = pixels.step(action)
        _, reward_r, term_r, trunc_r, info_r = reach.step(action)
        assert (reward_p, term_p, trunc_p, info_p) == (reward_r, term_r, trunc_r, info_r)
    assert trunc_p


def test_seeded_reset_is_deterministic():
    env = _make()
    first, _ = env.reset(seed=5)
    env.step(env.action_space.sample())
    again, _ = env.reset(seed=5)
    other, _ = env.reset(seed=6)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_render_is_the_enlarged_observation():
    env = _make(render_mode="rgb_array", render_scale=4)
    env.reset(seed=0)
    obs, *_ = env.step(np.array([0.5, -0.5], dtype=np.float32))
    image = env.render()
    assert image.shape == (144, 144, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[::4, ::4], obs)
    no_render = _make()
    no_render.reset(seed=0)
    assert no_render.render() is None


def test_cnn_policy_runs_on_transposed_images():
    from stable_baselines3 import SAC
    from stable_baselines3.common.vec_env import VecTransposeImage

    model = SAC(
        "CnnPolicy",
        _make(),
        buffer_size=200,
        batch_size=8,
        learning_starts=50,
        policy_kwargs=dict(features_extractor_kwargs=dict(features_dim=16), net_arch=[16]),
        seed=0,
    )
    assert isinstance(model.get_env(), VecTransposeImage)
    assert model.get_env().observation_space.shape == (3, 36, 36)
    model.learn(80)
    obs, _ = _make().reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (2,)


def test_discs_are_not_cut_at_the_walls():
    env = _make()
    env.reset(seed=0)
    for _ in range(40):  # push the mass into the (+x, -y) corner, against both joint limits
        obs, *_ = env.step(np.array([1.0, -1.0], dtype=np.float32))
    assert np.all(np.abs(env.unwrapped.data.qpos[:2]) > 0.29)
    full_disc = np.pi * (0.08 / (0.8 / 36)) ** 2
    assert obs[..., 1].sum() / 255 == pytest.approx(full_disc, abs=0.5)
    np.testing.assert_allclose(_centroid_metres(obs[..., 1]), env.unwrapped.data.qpos[:2], atol=0.002)

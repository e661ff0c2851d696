"""API, SB3-compatibility, determinism, lazy-import and rendering tests for every diffrl env."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings

import gymnasium
import numpy as np
import pytest

import diffrl_envs
from diffrl_envs._specs import ENV_IDS, SPECS

MODULES = {spec["id"]: spec["entry_point"].split(":")[0] for spec in SPECS}
MAKE_IDS = {env_id: f"diffrl_envs:{env_id}" for env_id in ENV_IDS}
# Envs whose render() goes through mujoco.Renderer (OpenGL); the others draw with NumPy or pygame.
GL_RENDER_IDS = ["diffrl/PointMassReach-v0", "diffrl/PointMassGoal-v0"]

# Envs whose observation is the same at every reset by design (nothing in them depends on the seed).
CONSTANT_START_IDS = {"diffrl/TwoPeakBandit-v0"}

# Known, harmless checker warnings, per env id (regex on the message).
HARMLESS_WARNINGS: dict[str, list[str]] = {
    # The bandit's action bounds are deliberately wider than [-1, 1] (default [-3, 3]) so that
    # the closed-form max-entropy Gaussian N(a*, alpha/(2k)) is not truncated by the bounds.
    "diffrl/QuadraticBandit-v0": [r"symmetric and normalized (Box action )?space"],
}


def _problem_warnings(env_id: str, caught: list[warnings.WarningMessage]) -> list[str]:
    import re

    allowed = HARMLESS_WARNINGS.get(env_id, [])
    return [
        f"{w.category.__name__}: {w.message}"
        for w in caught
        if not any(re.search(pattern, str(w.message)) for pattern in allowed)
    ]


def _leaves(space: gymnasium.spaces.Space, obs) -> list[tuple[gymnasium.spaces.Box, np.ndarray]]:
    """``(Box, array)`` pairs of a Box or a (flat) Dict observation; the arrays may carry a leading batch axis."""
    if isinstance(space, gymnasium.spaces.Dict):
        assert isinstance(obs, dict) and set(obs) == set(space.spaces)
        return [(space.spaces[key], np.asarray(obs[key])) for key in space.spaces]
    return [(space, np.asarray(obs))]


def _check_batch(space: gymnasium.spaces.Space, obs, n_envs: int) -> None:
    """A VecEnv observation: every leaf has the space's dtype (float32, or uint8 for images) and shape."""
    from stable_baselines3.common.preprocessing import is_image_space

    for box, value in _leaves(space, obs):
        assert value.dtype == box.dtype
        assert value.dtype == (np.uint8 if is_image_space(box) else np.float32)
        assert value.shape == (n_envs, *box.shape)
        assert np.all(np.isfinite(value))
    for i in range(n_envs):
        single = {key: value[i] for key, value in obs.items()} if isinstance(obs, dict) else obs[i]
        assert space.contains(single)


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("MUJOCO_GL", "egl")
    env["PYGAME_HIDE_SUPPORT_PROMPT"] = "1"
    return env


def _run_python(code: str, timeout: float = 120) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_subprocess_env(),
    )
    assert proc.returncode == 0, f"subprocess failed:\nSTDOUT:\n{proc.stdout}\nSTDERR:\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_specs_are_registered():
    assert len(set(ENV_IDS)) == len(ENV_IDS) == len(SPECS)
    for spec in SPECS:
        registered = gymnasium.registry[spec["id"]]
        assert registered.entry_point == spec["entry_point"]
        assert isinstance(spec["entry_point"], str) and ":" in spec["entry_point"]
        assert registered.max_episode_steps == spec["max_episode_steps"]
    assert gymnasium.registry["diffrl/QuadraticBandit-v0"].max_episode_steps == 1


def test_register_all_is_idempotent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gymnasium warns when an id is overridden
        diffrl_envs.register_all()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_env_checker(env_id):
    from gymnasium.utils.env_checker import check_env

    env = gymnasium.make(MAKE_IDS[env_id])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    env.close()
    assert not _problem_warnings(env_id, caught)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_sb3_env_checker(env_id):
    from stable_baselines3.common.env_checker import check_env

    env = gymnasium.make(MAKE_IDS[env_id])
    # SB3's checker calls ``env.compute_reward`` on the env it is given, and gymnasium >= 1.0
    # wrappers (TimeLimit, ...) no longer forward attributes: check goal envs unwrapped.
    checked = env.unwrapped if hasattr(env.unwrapped, "compute_reward") else env
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(checked, warn=True)
    env.close()
    assert not _problem_warnings(env_id, caught)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_random_rollout_has_no_nan(env_id):
    from stable_baselines3.common.vec_env import DummyVecEnv, VecCheckNan

    venv = VecCheckNan(DummyVecEnv([lambda: gymnasium.make(MAKE_IDS[env_id])] * 2), raise_exception=True)
    venv.seed(0)
    venv.action_space.seed(0)
    obs = venv.reset()
    space = venv.observation_space
    _check_batch(space, obs, 2)
    for _ in range(300):
        obs, rewards, dones, infos = venv.step(np.stack([venv.action_space.sample() for _ in range(2)]))
        _check_batch(space, obs, 2)
        assert np.all(np.isfinite(rewards))
    venv.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_same_trajectory(env_id):
    def rollout(seed: int):
        env = gymnasium.make(MAKE_IDS[env_id])
        env.action_space.seed(123)

        def flat(obs):  # Box and Dict observations alike, as one 1-D array
            return gymnasium.spaces.flatten(env.observation_space, obs)

        obs, _ = env.reset(seed=seed)
        trajectory = [flat(obs)]
        rewards = []
        for _ in range(150):
            obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            trajectory.append(flat(obs))
            rewards.append(reward)
            if terminated or truncated:
                obs, _ = env.reset()
                trajectory.append(flat(obs))
        env.close()
        return np.stack(trajectory), np.array(rewards)

    obs_a, rew_a = rollout(7)
    obs_b, rew_b = rollout(7)
    obs_c, _ = rollout(8)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rew_a, rew_b)
    if env_id not in CONSTANT_START_IDS:
        assert not np.array_equal(obs_a[0], obs_c[0])


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_make_in_fresh_process_is_lazy_and_torch_free(env_id):
    result = _run_python(
        f"""
        import json, sys
        import diffrl_envs
        heavy = ["torch", "mujoco", "Box2D", "pygame", {MODULES[env_id]!r}]
        before = [m for m in heavy if m in sys.modules]
        import gymnasium
        env = gymnasium.make({MAKE_IDS[env_id]!r})
        env.reset(seed=0)
        for _ in range(5):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()
        print(json.dumps({{
            "before": before,
            "module_loaded_after_make": {MODULES[env_id]!r} in sys.modules,
            "torch_after": "torch" in sys.modules,
        }}))
        """
    )
    assert result["before"] == []
    assert result["module_loaded_after_make"]
    assert not result["torch_after"]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_subproc_vec_env(env_id):
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import SubprocVecEnv

    venv = make_vec_env(MAKE_IDS[env_id], n_envs=2, seed=0, vec_env_cls=SubprocVecEnv)
    try:
        obs = venv.reset()
        _check_batch(venv.observation_space, obs, 2)
        for _ in range(10):
            obs, rewards, dones, infos = venv.step(np.stack([venv.action_space.sample() for _ in range(2)]))
        _check_batch(venv.observation_space, obs, 2)
        assert rewards.shape == (2,)
    finally:
        venv.close()


def _check_image(img) -> None:
    assert isinstance(img, np.ndarray)
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 1, "rendered image is a single colour"


@pytest.mark.parametrize("env_id", [e for e in ENV_IDS if e not in GL_RENDER_IDS])
def test_render_rgb_array(env_id):
    env = gymnasium.make(MAKE_IDS[env_id], render_mode="rgb_array")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    _check_image(env.render())
    env.close()


@pytest.mark.parametrize("env_id", GL_RENDER_IDS)
def test_render_rgb_array_mujoco(env_id):
    # Rendered in a fresh process with MUJOCO_GL=egl (set by _subprocess_env) so the backend
    # choice does not depend on whether some other test imported mujoco first.
    result = _run_python(
        f"""
        import json
        import gymnasium, numpy as np
        env = gymnasium.make({MAKE_IDS[env_id]!r}, render_mode="rgb_array", width=96, height=64)
        env.reset(seed=0)
        env.step(env.action_space.sample())
        img = env.render()
        env.close()
        print(json.dumps({{"shape": list(img.shape), "dtype": str(img.dtype),
                          "colours": int(len(np.unique(img.reshape(-1, 3), axis=0)))}}))
        """
    )
    assert result["shape"] == [64, 96, 3]
    assert result["dtype"] == "uint8"
    assert result["colours"] > 1

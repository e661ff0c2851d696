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
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, warn=True)
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
    for _ in range(300):
        obs, rewards, dones, infos = venv.step(np.stack([venv.action_space.sample() for _ in range(2)]))
        assert obs.dtype == np.float32
        assert all(space.contains(o) for o in obs)
        assert np.all(np.isfinite(rewards))
    venv.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_same_trajectory(env_id):
    def rollout(seed: int):
        env = gymnasium.make(MAKE_IDS[env_id])
        env.action_space.seed(123)
        obs, _ = env.reset(seed=seed)
        trajectory = [obs]
        rewards = []
        for _ in range(150):
            obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            trajectory.append(obs)
            rewards.append(reward)
            if terminated or truncated:
                obs, _ = env.reset()
                trajectory.append(obs)
        env.close()
        return np.stack(trajectory), np.array(rewards)

    obs_a, rew_a = rollout(7)
    obs_b, rew_b = rollout(7)
    obs_c, _ = rollout(8)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rew_a, rew_b)
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
        assert obs.shape == (2, *venv.observation_space.shape)
        for _ in range(10):
            obs, rewards, dones, infos = venv.step(np.stack([venv.action_space.sample() for _ in range(2)]))
        assert obs.dtype == np.float32 and rewards.shape == (2,)
    finally:
        venv.close()


def _check_image(img) -> None:
    assert isinstance(img, np.ndarray)
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 1, "rendered image is a single colour"


@pytest.mark.parametrize("env_id", [e for e in ENV_IDS if "PointMass" not in e])
def test_render_rgb_array(env_id):
    env = gymnasium.make(MAKE_IDS[env_id], render_mode="rgb_array")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    _check_image(env.render())
    env.close()


def test_render_rgb_array_mujoco():
    # Rendered in a fresh process with MUJOCO_GL=egl (set by _subprocess_env) so the backend
    # choice does not depend on whether some other test imported mujoco first.
    result = _run_python(
        """
        import json
        import gymnasium, numpy as np
        env = gymnasium.make("diffrl_envs:diffrl/PointMassReach-v0", render_mode="rgb_array", width=96, height=64)
        env.reset(seed=0)
        env.step(env.action_space.sample())
        img = env.render()
        env.close()
        print(json.dumps({"shape": list(img.shape), "dtype": str(img.dtype),
                          "colours": int(len(np.unique(img.reshape(-1, 3), axis=0)))}))
        """
    )
    assert result["shape"] == [64, 96, 3]
    assert result["dtype"] == "uint8"
    assert result["colours"] > 1

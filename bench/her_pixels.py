"""Do the HER (Dict observations) and pixel (image observations) examples learn? Records the figures.

Trains ``examples/point_mass_goal_her.yaml`` (SAC + ``HerReplayBuffer`` on
``diffrl/PointMassGoal-v0``, MultiInputPolicy picked by the observation space) and
``examples/point_mass_pixels_sac.yaml`` (SAC from 36x36 RGB frames, CnnPolicy with SB3's
``VecTransposeImage``) with ``diffrl_core.make_model``, and evaluates the deterministic policy
over 20 episodes before and after training, next to a uniformly random policy: the mean return
and, for the goal env, the success rate. One torch thread.
Run: ``python bench/her_pixels.py [--seeds 0 1] [--steps N]``.
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th

import diffrl_core
from diffrl_core.config import load_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CONFIGS = ("point_mass_goal_her.yaml", "point_mass_pixels_sac.yaml")
EPISODES = 20


def rollouts(env_id: str, act: Any, episodes: int = EPISODES) -> tuple[float, float]:
    """Mean return and success rate (``info["is_success"]`` at the episode's end; NaN without one)."""
    env = gym.make(env_id)
    env.action_space.seed(0)
    returns, successes = [], []
    for episode in range(episodes):
        obs, info = env.reset(seed=1000 + episode)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(act(obs, env))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
        successes.append(float(info["is_success"]) if "is_success" in info else np.nan)
    env.close()
    return float(np.mean(returns)), float(np.mean(successes))


def deterministic(model: Any, obs: Any, env: gym.Env) -> np.ndarray:
    return model.predict(obs, deterministic=True)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=None, help="override the examples' total_timesteps")
    args = parser.parse_args()
    th.set_num_threads(1)
    diffrl_core.load_plugins()  # registers the plugin envs with gymnasium
    rows = []
    for name in CONFIGS:
        config = load_config(EXAMPLES / name)
        steps = args.steps or config.total_timesteps
        random = rollouts(config.env, lambda obs, env: env.action_space.sample())
        for seed in args.seeds:
            model = diffrl_core.make_model(config.model_copy(update={"seed": seed}))
            policy = partial(deterministic, model)
            before = rollouts(config.env, policy)
            start = time.process_time()
            model.learn(steps)
            seconds = time.process_time() - start
            after = rollouts(config.env, policy)
            rows.append((name, seed, steps, random, before, after, 1000 * seconds / steps))
            model.get_env().close()
    print("| example | seed | steps | random: return, success | untrained | trained | CPU s / 1000 steps |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, seed, steps, random, before, after, per_1000 in rows:
        cells = [f"{r:.1f}" + ("" if np.isnan(s) else f", {s:.2f}") for r, s in (random, before, after)]
        print(f"| `{name}` | {seed} | {steps} | " + " | ".join(cells) + f" | {per_1000:.1f} |")


if __name__ == "__main__":
    main()

"""Does a composition from the contract learn each env of diffrl-envs? Records the returns.

For each env: the deterministic policy's mean return over 20 episodes before training and
after ``--steps`` steps of SAC (``squashed_gaussian`` + ``sac_entropy`` + ``identity``), next
to a uniformly random policy. Run: ``python bench/learn_envs.py [--steps 5000]``.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
from stable_baselines3.common.evaluation import evaluate_policy

import diffrl_core

ENVS = {
    "diffrl/QuadraticBandit-v0": dict(steps=3000, algo_kwargs={"learning_starts": 200, "learning_rate": 1e-3}),
    "diffrl/PointMassReach-v0": dict(steps=6000, algo_kwargs={"learning_starts": 500, "learning_rate": 1e-3}),
    "diffrl/CartPoleBalance-v0": dict(steps=6000, algo_kwargs={"learning_starts": 500, "learning_rate": 1e-3}),
}


def random_return(env_id: str, episodes: int = 20) -> float:
    env = gym.make(env_id)
    env.action_space.seed(0)
    returns = []
    for episode in range(episodes):
        env.reset(seed=episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=None, help="override the per-env step budget")
    args = parser.parse_args()
    diffrl_core.load_plugins()
    rows = []
    for env_id, settings in ENVS.items():
        steps = args.steps or settings["steps"]
        model = diffrl_core.make_model(
            {"env": env_id, "algo": "sac", "policy": {"head": "squashed_gaussian", "losses": [{"name": "sac_entropy"}]},
             "algo_kwargs": settings["algo_kwargs"], "seed": 0}
        )
        eval_env = gym.make(env_id)
        before, _ = evaluate_policy(model, eval_env, n_eval_episodes=20, deterministic=True)
        start = time.perf_counter()
        model.learn(steps)
        elapsed = time.perf_counter() - start
        after, after_std = evaluate_policy(model, eval_env, n_eval_episodes=20, deterministic=True)
        rows.append((env_id, steps, random_return(env_id), before, after, after_std, elapsed))
        print(rows[-1], flush=True)
    print("\n| env | steps | random policy | before training | after training | wall s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for env_id, steps, rand, before, after, after_std, elapsed in rows:
        print(f"| {env_id} | {steps} | {rand:.2f} | {before:.2f} | {after:.2f} ± {after_std:.2f} | {elapsed:.0f} |")


if __name__ == "__main__":
    main()

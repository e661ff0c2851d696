"""Learning benchmark: PPO on Pendulum-v1 (bounded torque) with three ways to respect the action bounds.

- ``diag_gaussian`` + ``clip_to_bounds``: stable-baselines3's PPO ``MlpPolicy`` (a Gaussian in the
  env's units, clipped to the bounds for the env only; the default composition);
- ``squashed_gaussian`` + ``identity``: a tanh-squashed Gaussian (log-prob with the tanh correction,
  entropy estimated from the log-prob);
- ``beta`` + ``identity`` (diffrl-plugin-beta): a Beta distribution on the bounds.

Each is trained by the same PPO (the RL Baselines3 Zoo hyperparameters for Pendulum-v1 without
gSDE: 4 envs, n_steps 1024, gamma 0.9, gae_lambda 0.95, 10 epochs, learning rate 1e-3) for the
same number of steps and seeds; every ``--eval-every`` steps and at the end the deterministic
policy is evaluated on 10 episodes of a separately seeded env. Prints a markdown table of the final
mean returns and the mean learning curve. Not part of the test run (one CPU core per run).

    python bench/ppo_bounded_actions.py --steps 102400 --eval-every 20480   # 3 seeds, as in the README
"""

from __future__ import annotations

from typing import Any

from beta_vs_gaussian import run_benchmark

PPO_PENDULUM: dict[str, Any] = {
    "env": "Pendulum-v1",
    "algo": "ppo",
    "n_envs": 4,
    "algo_kwargs": {"n_steps": 1024, "gamma": 0.9, "gae_lambda": 0.95, "n_epochs": 10, "learning_rate": 1.0e-3,
                    "clip_range": 0.2},
}

CONFIGS: dict[str, dict[str, Any]] = {
    "diag_gaussian + clip_to_bounds (SB3's PPO)": {},
    "squashed_gaussian + identity": {"policy": {"head": "squashed_gaussian"}},
    "beta + identity": {"policy": {"head": "beta"}},
}


if __name__ == "__main__":
    run_benchmark(CONFIGS, PPO_PENDULUM, __doc__.splitlines()[0])

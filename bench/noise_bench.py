"""Learning benchmark: exploration noise from diffrl-plugin-noise against stable-baselines3's action noise.

TD3 on Pendulum-v1 (``deterministic`` head, ``q_value`` loss, gamma 0.98, learning_rate
1e-3, 1,000 warm-up steps), four ways of exploring, same steps and seeds:

- ``identity`` + ``action_noise: {type: normal, sigma: 0.1}``: stable-baselines3's TD3 noise (baseline)
- ``gaussian_noise`` (sigma 0.1): the same noise, added by the post-processor
- ``ou_noise`` (sigma 0.1, theta 0.15, dt 0.01): Ornstein-Uhlenbeck noise by the post-processor
- ``identity`` without noise: how much exploration noise matters here

Prints the final mean return of 10 deterministic episodes per run, in a markdown table.
Not part of the test run.

    python bench/noise_bench.py                             # 3 seeds x 20,000 steps
    python bench/noise_bench.py --seeds 0 1 --steps 8000    # a reduced budget
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from beta_vs_gaussian import run_benchmark  # noqa: E402  (the shared runner)

TD3_PENDULUM: dict[str, Any] = {
    "env": "Pendulum-v1",
    "algo": "td3",
    "policy": {"net_arch": [256, 256], "head": "deterministic", "losses": [{"name": "q_value"}]},
    "algo_kwargs": {"learning_rate": 1.0e-3, "gamma": 0.98, "buffer_size": 100_000, "learning_starts": 1_000},
}

CONFIGS: dict[str, dict[str, Any]] = {
    "identity + SB3 action_noise 0.1 (baseline)": {"policy": {"postprocess": "identity"},
                                                   "action_noise": {"type": "normal", "sigma": 0.1}},
    "gaussian_noise 0.1": {"policy": {"postprocess": "gaussian_noise", "postprocess_kwargs": {"sigma": 0.1}}},
    "ou_noise 0.1": {"policy": {"postprocess": "ou_noise", "postprocess_kwargs": {"sigma": 0.1}}},
    "identity, no noise": {"policy": {"postprocess": "identity"}},
}

if __name__ == "__main__":
    run_benchmark(CONFIGS, TD3_PENDULUM, __doc__.splitlines()[0])

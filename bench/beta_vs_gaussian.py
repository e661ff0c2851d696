"""Learning benchmark: the ``beta`` head (diffrl-plugin-beta) against ``squashed_gaussian`` on Pendulum-v1.

Both are trained by SAC (``sac_entropy`` loss, ``identity`` post-processor, the
hyperparameters of ``examples/pendulum_sac.yaml``) for the same number of steps and seeds;
every ``--eval-every`` steps and at the end the deterministic policy is evaluated on 10
episodes of a separately seeded env. Prints a markdown table of the final mean returns and
the mean learning curve. Not part of the test run: about 1-3 minutes per 10,000 steps and
run on one CPU core.

    python bench/beta_vs_gaussian.py                            # 3 seeds x 20,000 steps
    python bench/beta_vs_gaussian.py --seeds 0 1 --steps 8000   # a reduced budget

The runner (:func:`run_benchmark`) is shared with ``bench/noise_bench.py``.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from typing import Any

SAC_PENDULUM: dict[str, Any] = {
    "env": "Pendulum-v1",
    "algo": "sac",
    "policy": {"net_arch": [256, 256], "losses": [{"name": "sac_entropy"}], "postprocess": "identity"},
    "algo_kwargs": {"learning_rate": 1.0e-3, "buffer_size": 100_000, "learning_starts": 100, "batch_size": 256},
}

CONFIGS: dict[str, dict[str, Any]] = {
    "squashed_gaussian (baseline)": {"policy": {"head": "squashed_gaussian"}},
    "beta": {"policy": {"head": "beta"}},
}


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``extra``, recursively for mappings."""
    out = copy.deepcopy(dict(base))
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) else value
    return out


def _run(label: str, config: dict[str, Any], seed: int, steps: int, eval_every: int, episodes: int) -> dict[str, Any]:
    import gymnasium as gym
    import torch as th
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor

    import diffrl_core

    th.set_num_threads(1)
    start = time.monotonic()
    model = diffrl_core.make_model({**config, "seed": seed, "total_timesteps": steps})
    eval_env = Monitor(gym.make(config["env"]))
    eval_env.reset(seed=seed + 10_000)
    curve: list[tuple[int, float]] = []
    while model.num_timesteps < steps:
        chunk = min(eval_every, steps - model.num_timesteps)
        model.learn(chunk, reset_num_timesteps=False)
        mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=episodes, deterministic=True)
        curve.append((model.num_timesteps, float(mean)))
    return {"label": label, "seed": seed, "final": curve[-1][1], "curve": curve, "wall_s": time.monotonic() - start}


def run_benchmark(configs: Mapping[str, Mapping[str, Any]], base: Mapping[str, Any], description: str) -> None:
    """Parse the command line, train every config x seed (``--jobs`` at a time) and print the tables."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--eval-every", type=int, default=2_000)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=max(1, min(4, (os.cpu_count() or 2))))
    parser.add_argument("--net-arch", type=int, nargs="+", help="override policy.net_arch (default: 256 256)")
    args = parser.parse_args()

    jobs = []
    for label, extra in configs.items():
        config = merge(base, extra)
        if args.net_arch:
            config["policy"]["net_arch"] = args.net_arch
        jobs += [(label, config, seed, args.steps, args.eval_every, args.episodes) for seed in args.seeds]
    print(f"{len(jobs)} runs: {len(configs)} configs x seeds {args.seeds}, {args.steps} steps each, "
          f"{args.jobs} at a time", flush=True)
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(_run, *job) for job in jobs]
        results = []
        for future in futures:
            result = future.result()
            print(f"[done] {result['label']} seed {result['seed']}: final mean return {result['final']:.1f} "
                  f"({result['wall_s']:.0f} s)", flush=True)
            results.append(result)

    print(f"\nPendulum-v1, {args.steps} steps, final mean return of {args.episodes} deterministic episodes\n")
    print("| config | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean | std |")
    print("| --- | " + " | ".join("---" for _ in args.seeds) + " | --- | --- |")
    for label in configs:
        finals = [r["final"] for r in results if r["label"] == label]
        std = statistics.stdev(finals) if len(finals) > 1 else 0.0
        cells = " | ".join(f"{f:.1f}" for f in finals)
        print(f"| {label} | {cells} | {statistics.mean(finals):.1f} | {std:.1f} |")

    steps = [step for step, _ in results[0]["curve"]]
    print("\nmean return across seeds during training\n")
    print("| config | " + " | ".join(str(s) for s in steps) + " |")
    print("| --- | " + " | ".join("---" for _ in steps) + " |")
    for label in configs:
        curves = [r["curve"] for r in results if r["label"] == label]
        cells = " | ".join(f"{statistics.mean(c[i][1] for c in curves):.0f}" for i in range(len(steps)))
        print(f"| {label} | {cells} |")


if __name__ == "__main__":
    run_benchmark(CONFIGS, SAC_PENDULUM, __doc__.splitlines()[0])

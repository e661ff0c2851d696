"""Wall-time cost of composing SAC from names, against stable-baselines3's own SAC.

Runs ``stable_baselines3.SAC`` and the equivalent composition (``squashed_gaussian`` +
``sac_entropy`` + ``identity``) alternately on Pendulum-v1 for the same number of steps
and the same hyperparameters (SB3's defaults), and prints the ratio of the median wall
times. The composition should cost at most 3% more.

Run: ``python bench/sac_overhead.py [--steps 2000] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env

from diffrl_core import make_model


def timed_learn(model, steps: int) -> tuple[float, float]:
    """Wall time and this process's CPU time (less sensitive to other load on the machine)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    model.learn(steps)
    return time.perf_counter() - start, time.process_time() - start_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--learning-starts", type=int, default=100)
    args = parser.parse_args()
    th.set_num_threads(1)  # one thread for both: the comparison is about Python overhead

    config = {
        "env": "Pendulum-v1",
        "algo": "sac",
        "policy": {"head": "squashed_gaussian", "losses": [{"name": "sac_entropy"}], "postprocess": "identity"},
        "algo_kwargs": {"learning_starts": args.learning_starts},
        "seed": 0,
    }
    times: dict[str, list[float]] = {"stable_baselines3.SAC": [], "diffrl composition": []}
    cpu_times: dict[str, list[float]] = {name: [] for name in times}
    for rep in range(args.repeat):
        order = ["stable_baselines3.SAC", "diffrl composition"]
        if rep % 2:
            order.reverse()
        for name in order:
            if name == "stable_baselines3.SAC":
                model = SAC("MlpPolicy", make_vec_env("Pendulum-v1"), learning_starts=args.learning_starts, seed=0)
            else:
                model = make_model(config, env=make_vec_env("Pendulum-v1"))
            wall, cpu = timed_learn(model, args.steps)
            times[name].append(wall)
            cpu_times[name].append(cpu)
            print(
                f"rep {rep} {name:<24} {wall:7.2f} s wall, {cpu:7.2f} s CPU ({args.steps / wall:.1f} steps/s)",
                flush=True,
            )

    sb3 = statistics.median(times["stable_baselines3.SAC"])
    composed = statistics.median(times["diffrl composition"])
    print(f"\nmedian wall time: SB3 {sb3:.2f} s, diffrl {composed:.2f} s, ratio diffrl/SB3 = {composed / sb3:.3f}")
    sb3_cpu = statistics.median(cpu_times["stable_baselines3.SAC"])
    composed_cpu = statistics.median(cpu_times["diffrl composition"])
    print(
        f"median CPU time:  SB3 {sb3_cpu:.2f} s, diffrl {composed_cpu:.2f} s, "
        f"ratio diffrl/SB3 = {composed_cpu / sb3_cpu:.3f}"
    )


if __name__ == "__main__":
    main()

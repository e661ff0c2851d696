"""Wall-time cost of composing SAC from names, against stable-baselines3's own SAC.

Trains ``stable_baselines3.SAC``, the equivalent composition (``squashed_gaussian`` +
``sac_entropy`` + ``identity``) and the same composition with its divergence checks switched
off, on Pendulum-v1 with the same hyperparameters (SB3's defaults). The three models take
turns in chunks of ``--chunk`` steps (the order reversed every round), so that the machine's
drift over minutes (frequency, other load) falls on all three alike; whole runs one after
the other gave ratios anywhere between 0.99 and 1.10 on the same code. Prints the ratios of
the summed CPU and wall times. The composition should cost at most 3% more than SB3, and
the checks at most 2%.

Run: ``OMP_NUM_THREADS=1 python bench/sac_overhead.py [--steps 3000] [--chunk 100]``.
"""

from __future__ import annotations

import argparse
import time

import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env

from diffrl_core import make_model


def without_checks(model: BaseAlgorithm) -> BaseAlgorithm:
    """The composed model with its divergence checks removed (gradient hooks, replay-buffer checks)."""
    for optimizer in (model.actor.optimizer, model.critic.optimizer, model.ent_coef_optimizer):
        if optimizer is not None:
            optimizer._optimizer_step_pre_hooks.clear()
    model._store_transition = lambda *args: SAC._store_transition(model, *args)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3000, help="env steps per model, after the warm-up")
    parser.add_argument("--chunk", type=int, default=100, help="steps per turn")
    parser.add_argument("--learning-starts", type=int, default=100)
    args = parser.parse_args()
    th.set_num_threads(1)  # one thread for all: the comparison is about Python overhead

    config = {
        "env": "Pendulum-v1",
        "algo": "sac",
        "policy": {"head": "squashed_gaussian", "losses": [{"name": "sac_entropy"}], "postprocess": "identity"},
        "algo_kwargs": {"learning_starts": args.learning_starts},
        "seed": 0,
    }
    models = {
        "stable_baselines3.SAC": SAC("MlpPolicy", make_vec_env("Pendulum-v1"), learning_starts=args.learning_starts,
                                     seed=0),
        "diffrl composition": make_model(config, env=make_vec_env("Pendulum-v1")),
        "diffrl without checks": without_checks(make_model(config, env=make_vec_env("Pendulum-v1"))),
    }
    for model in models.values():  # past learning_starts: every step below trains
        model.learn(args.learning_starts + args.chunk)
    wall = dict.fromkeys(models, 0.0)
    cpu = dict.fromkeys(models, 0.0)
    names = list(models)
    for turn in range(args.steps // args.chunk):
        for name in names if turn % 2 == 0 else reversed(names):
            start, start_cpu = time.perf_counter(), time.process_time()
            models[name].learn(args.chunk, reset_num_timesteps=False)
            wall[name] += time.perf_counter() - start
            cpu[name] += time.process_time() - start_cpu
    for name in names:
        print(f"{name:<24} {wall[name]:7.2f} s wall, {cpu[name]:7.2f} s CPU ({args.steps / wall[name]:.1f} steps/s)")
    sb3, composed, unchecked = names
    print(f"\nratio diffrl/SB3:           {wall[composed] / wall[sb3]:.3f} wall, {cpu[composed] / cpu[sb3]:.3f} CPU")
    print(f"ratio checks on/off:        {wall[composed] / wall[unchecked]:.3f} wall, "
          f"{cpu[composed] / cpu[unchecked]:.3f} CPU")
    print(f"ratio diffrl unchecked/SB3: {wall[unchecked] / wall[sb3]:.3f} wall, {cpu[unchecked] / cpu[sb3]:.3f} CPU")


if __name__ == "__main__":
    main()

"""CPU time per gradient step of the composed SAC and TD3 updates, against stable-baselines3's.

For each algorithm, builds stable-baselines3's model and diffrl's equivalent composition
(``squashed_gaussian`` + ``sac_entropy`` for SAC, ``deterministic`` + ``q_value`` for TD3) with
SB3's default networks and hyperparameters on Pendulum-v1, fills both replay buffers with the
same transitions, then times ``--steps`` gradient steps on each in turn, ``--reps`` times,
alternating which goes first, so that the machine's drift falls on both alike. The steps are
taken as ``learn()`` takes them with SB3's defaults (``train_freq=1``, ``gradient_steps=1``):
one ``train(gradient_steps=1)`` call each, unless ``--per-call N`` groups them. Prints the
median CPU time per gradient step of each and the ratio SB3/diffrl (above 1: diffrl is
faster), as the ratio of the medians and as the median of each repetition's ratio (the two
timed back to back; on a shared virtual machine this one moves least between runs). One
torch thread: the comparison is about the work each update does.

Only ``train()`` is timed (sampling the replay buffer, the critic, actor and entropy
coefficient steps, the target updates, the divergence checks, the logs); collecting
transitions is the same code in both.

Run: ``python bench/update_speed.py [--algos sac td3] [--steps 200] [--reps 15] [--per-call 1]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch as th
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env

from diffrl_core import make_model

COMPOSITIONS = {
    "sac": (SAC, {"head": "squashed_gaussian", "losses": [{"name": "sac_entropy"}], "postprocess": "identity"}),
    "td3": (TD3, {"head": "deterministic", "losses": [{"name": "q_value"}], "postprocess": "identity"}),
}


def build(algo: str, learning_starts: int, filled: int) -> dict[str, BaseAlgorithm]:
    """SB3's model and diffrl's, their replay buffers holding the same ``filled`` transitions."""
    sb3_class, policy = COMPOSITIONS[algo]
    sb3 = sb3_class("MlpPolicy", make_vec_env("Pendulum-v1"), learning_starts=learning_starts, seed=0)
    config = {"env": "Pendulum-v1", "algo": algo, "policy": policy, "seed": 0,
              "algo_kwargs": {"learning_starts": learning_starts}}
    composed = make_model(config, env=make_vec_env("Pendulum-v1"))
    sb3.learn(filled)  # trains past learning_starts: the networks and optimizers are warm
    composed.learn(1)  # sets up its logger; its buffer then gets SB3's transitions
    for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
        getattr(composed.replay_buffer, name)[:] = getattr(sb3.replay_buffer, name)
    composed.replay_buffer.pos, composed.replay_buffer.full = sb3.replay_buffer.pos, sb3.replay_buffer.full
    return {"stable-baselines3": sb3, "diffrl": composed}


def time_updates(models: dict[str, BaseAlgorithm], steps: int, reps: int, per_call: int) -> dict[str, list[float]]:
    """CPU seconds per gradient step of each model, one entry per repetition (alternating order)."""
    per_step: dict[str, list[float]] = {name: [] for name in models}
    names = list(models)
    for model in models.values():  # warm-up
        model.train(gradient_steps=10, batch_size=model.batch_size)
    for rep in range(reps):
        for name in names if rep % 2 == 0 else reversed(names):
            model = models[name]
            start = time.process_time()
            for _ in range(steps // per_call):
                model.train(gradient_steps=per_call, batch_size=model.batch_size)
            per_step[name].append((time.process_time() - start) / (steps // per_call * per_call))
    return per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", choices=sorted(COMPOSITIONS), default=sorted(COMPOSITIONS))
    parser.add_argument("--steps", type=int, default=200, help="gradient steps per timed repetition")
    parser.add_argument("--per-call", type=int, default=1, help="gradient steps per train() call")
    parser.add_argument("--reps", type=int, default=15, help="timed calls per model")
    parser.add_argument("--filled", type=int, default=2000, help="transitions in the replay buffers")
    args = parser.parse_args()
    th.set_num_threads(1)

    print(f"torch {th.__version__}, 1 thread; {args.reps} alternating repetitions of {args.steps} gradient steps, "
          f"{args.per_call} per train() call")
    for algo in args.algos:
        models = build(algo, learning_starts=100, filled=args.filled)
        per_step = time_updates(models, args.steps, args.reps, args.per_call)
        medians = {name: statistics.median(times) for name, times in per_step.items()}
        for name, median in medians.items():
            spread = (min(per_step[name]) * 1e3, max(per_step[name]) * 1e3)
            print(f"{algo.upper():<4} {name:<18} {median * 1e3:6.3f} ms CPU per gradient step "
                  f"(median; range {spread[0]:.3f}-{spread[1]:.3f})")
        # each repetition times both back to back: the ratio within it is free of the machine's slower drift
        paired = statistics.median(sb3 / ours for sb3, ours in zip(per_step["stable-baselines3"], per_step["diffrl"],
                                                                    strict=True))
        print(f"{algo.upper():<4} speed-up SB3/diffrl: {medians['stable-baselines3'] / medians['diffrl']:.3f}x "
              f"(ratio of the medians), {paired:.3f}x (median of the {args.reps} paired ratios)\n")


if __name__ == "__main__":
    main()

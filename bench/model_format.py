"""File sizes and save / load times of diffrl's model files against stable-baselines3's zips.

For SAC and TD3 on Pendulum-v1 and PPO on CartPole-v1 at stable-baselines3's default network
sizes, builds stable-baselines3's model and the equivalent diffrl composition, trains both a
few steps (so that the optimizers hold their state), then saves and loads each ``--reps``
times, alternating which goes first. Prints the file sizes, the median save and load times and
the ratios diffrl / stable-baselines3 (below 1: diffrl is smaller or faster). Then the same
for a replay buffer of ``--buffer-size`` with ``--filled`` transitions and a full one
(stable-baselines3's pickle against diffrl's safetensors file). One torch thread.

Run: ``python bench/model_format.py [--reps 15] [--buffer-size 1000000] [--filled 10000]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch as th
from stable_baselines3 import PPO, SAC, TD3
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.save_util import load_from_pkl, save_to_pkl

from diffrl_core import load_model, make_model
from diffrl_core.buffer_file import load_replay_buffer, save_replay_buffer

CASES = {
    "sac": (SAC, "Pendulum-v1", {"learning_starts": 100}),
    "td3": (TD3, "Pendulum-v1", {"learning_starts": 100}),
    "ppo": (PPO, "CartPole-v1", {"n_steps": 128, "batch_size": 64}),
}


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def bench_models(reps: int, folder: Path) -> None:
    print(f"{'model':6} {'SB3 bytes':>11} {'diffrl bytes':>12} {'size':>6} {'SB3 save':>9} {'diffrl save':>11} "
          f"{'save':>6} {'SB3 load':>9} {'diffrl load':>11} {'load':>6}")
    for algo, (stock_class, env_id, kwargs) in CASES.items():
        stock = stock_class("MlpPolicy", env_id, seed=0, **kwargs)
        ours = make_model({"env": env_id, "algo": algo, "seed": 0, "algo_kwargs": kwargs})
        for model in (stock, ours):
            model.learn(200)
        sb3_path, our_path = folder / f"{algo}_sb3.zip", folder / f"{algo}_diffrl.zip"
        times: dict[str, list[float]] = {key: [] for key in ("sb3_save", "our_save", "sb3_load", "our_load")}
        for rep in range(reps):
            order = [("sb3", stock, sb3_path), ("our", ours, our_path)]
            for label, model, path in order if rep % 2 == 0 else order[::-1]:
                times[f"{label}_save"].append(timed(partial(model.save, path)))
                load = partial(stock_class.load, path) if label == "sb3" else partial(load_model, path)
                times[f"{label}_load"].append(timed(load))
        median = {key: statistics.median(values) * 1e3 for key, values in times.items()}
        sb3_bytes, our_bytes = sb3_path.stat().st_size, our_path.stat().st_size
        save_ratio, load_ratio = median["our_save"] / median["sb3_save"], median["our_load"] / median["sb3_load"]
        print(f"{algo:6} {sb3_bytes:>11} {our_bytes:>12} {our_bytes / sb3_bytes:>6.3f} "
              f"{median['sb3_save']:>7.1f}ms {median['our_save']:>9.1f}ms {save_ratio:>6.3f} "
              f"{median['sb3_load']:>7.1f}ms {median['our_load']:>9.1f}ms {load_ratio:>6.3f}")


def bench_buffers(reps: int, buffer_size: int, filled: int, folder: Path) -> None:
    from gymnasium import spaces

    observation_space = spaces.Box(-1, 1, (3,), np.float32)
    action_space = spaces.Box(-1, 1, (1,), np.float32)
    print(f"\nreplay buffer of {buffer_size} (Pendulum's shapes)")
    print(f"{'filled':>9} {'pickle bytes':>13} {'diffrl bytes':>13} {'size':>7} {'pickle save':>12} "
          f"{'diffrl save':>12} {'pickle load':>12} {'diffrl load':>12}")
    rng = np.random.default_rng(0)
    for rows in (filled, buffer_size):
        buffer = ReplayBuffer(buffer_size, observation_space, action_space)
        chunk = 10_000
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            buffer.observations[buffer.pos:buffer.pos + n, 0] = rng.random((n, 3), dtype=np.float32)
            buffer.next_observations[buffer.pos:buffer.pos + n, 0] = rng.random((n, 3), dtype=np.float32)
            buffer.actions[buffer.pos:buffer.pos + n, 0] = rng.random((n, 1), dtype=np.float32)
            buffer.rewards[buffer.pos:buffer.pos + n] = rng.random((n, 1), dtype=np.float32)
            buffer.pos += n
            if buffer.pos == buffer_size:
                buffer.full, buffer.pos = True, 0
        pkl, ours = folder / "buffer.pkl", folder / "buffer.safetensors"
        times: dict[str, list[float]] = {key: [] for key in ("pkl_save", "our_save", "pkl_load", "our_load")}
        fresh = ReplayBuffer(buffer_size, observation_space, action_space)
        for _ in range(reps):
            times["pkl_save"].append(timed(partial(save_to_pkl, pkl, buffer)))
            times["our_save"].append(timed(partial(save_replay_buffer, buffer, ours)))
            times["pkl_load"].append(timed(partial(load_from_pkl, pkl)))
            times["our_load"].append(timed(partial(load_replay_buffer, fresh, ours)))
        median = {key: statistics.median(values) * 1e3 for key, values in times.items()}
        pkl_bytes, our_bytes = pkl.stat().st_size, ours.stat().st_size
        print(f"{rows:>9} {pkl_bytes:>13} {our_bytes:>13} {our_bytes / pkl_bytes:>7.3f} {median['pkl_save']:>10.1f}ms "
              f"{median['our_save']:>10.1f}ms {median['pkl_load']:>10.1f}ms {median['our_load']:>10.1f}ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--buffer-size", type=int, default=1_000_000)
    parser.add_argument("--filled", type=int, default=10_000)
    args = parser.parse_args()
    th.set_num_threads(1)
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as folder:
        bench_models(args.reps, Path(folder))
        bench_buffers(max(3, args.reps // 3), args.buffer_size, args.filled, Path(folder))
    print(f"\ntorch {th.__version__}, {os.cpu_count()} cores")


if __name__ == "__main__":
    main()

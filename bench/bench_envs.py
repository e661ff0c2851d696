"""Steps per second of the diffrl envs next to a gymnasium built-in env of the same engine.

Every env is created with ``gymnasium.make`` (so both sides carry the same default
wrappers: PassiveEnvChecker, OrderEnforcing, TimeLimit), driven with uniformly random
actions (pre-drawn, so sampling is not timed) and reset whenever an episode ends (the reset
time is included).  The pairs are timed in alternating order, ``--repeats`` times, and the
median steps/s is reported together with the ratio diffrl / built-in.

    python bench/bench_envs.py [--steps 20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

# Render-free benchmark, but mujoco still picks a GL backend at import: use a headless one.
os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium  # noqa: E402
import numpy as np  # noqa: E402

import diffrl_envs  # noqa: E402,F401  (registers the diffrl ids)

# (engine, diffrl env id, built-in env id, built-in make kwargs)
PAIRS: list[tuple[str, str, str, dict]] = [
    ("numpy", "diffrl/QuadraticBandit-v0", "Pendulum-v1", {}),
    ("mujoco", "diffrl/PointMassReach-v0", "Reacher-v5", {}),
    ("mujoco", "diffrl/PointMassReach-v0", "InvertedPendulum-v5", {}),
    ("box2d", "diffrl/CartPoleBalance-v0", "LunarLander-v3", {"continuous": True}),
]


def steps_per_second(env_id: str, kwargs: dict, n_steps: int, seed: int) -> float:
    env = gymnasium.make(env_id, **kwargs)
    space = env.action_space
    rng = np.random.default_rng(seed)
    actions = rng.uniform(space.low, space.high, size=(n_steps, *space.shape)).astype(space.dtype)
    env.reset(seed=seed)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return n_steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20_000, help="steps per measurement")
    parser.add_argument("--repeats", type=int, default=5, help="alternating repetitions per pair")
    args = parser.parse_args()

    results: dict[str, list[float]] = {}
    missing: dict[str, str] = {}
    for _engine, ours, builtin, builtin_kwargs in PAIRS:
        try:  # gymnasium's MuJoCo envs need the gymnasium[mujoco] extra (imageio), Box2D ones box2d
            gymnasium.make(builtin, **builtin_kwargs).close()
        except (ImportError, gymnasium.error.DependencyNotInstalled) as exc:
            missing[builtin] = f"{type(exc).__name__}: {exc}"
            results[ours] = [steps_per_second(ours, {}, args.steps, seed=rep) for rep in range(args.repeats)]
            continue
        for rep in range(args.repeats):
            # Alternate which env goes first so drift (thermal, caches) hits both sides alike.
            order = [(ours, {}), (builtin, builtin_kwargs)]
            if rep % 2:
                order.reverse()
            for env_id, kwargs in order:
                results.setdefault(env_id, []).append(steps_per_second(env_id, kwargs, args.steps, seed=rep))

    median = {env_id: statistics.median(values) for env_id, values in results.items()}
    median.update({env_id: float("nan") for env_id in missing})
    header = f"{'engine':<7} {'env':<28} {'steps/s':>10}   {'built-in':<27} {'steps/s':>10} {'ratio':>6}"
    print(f"{args.steps} random-action steps per run, median of {args.repeats} alternating runs")
    print(header)
    print("-" * len(header))
    for engine, ours, builtin, builtin_kwargs in PAIRS:
        label = builtin + ("(continuous)" if builtin_kwargs.get("continuous") else "")
        print(
            f"{engine:<7} {ours:<28} {median[ours]:>10,.0f}   {label:<27} {median[builtin]:>10,.0f} "
            f"{median[ours] / median[builtin]:>6.2f}"
        )
    for builtin, reason in missing.items():
        print(f"built-in {builtin} unavailable ({reason})")


if __name__ == "__main__":
    main()

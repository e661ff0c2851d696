"""Runs per hour of ``diffrl sweep`` with 2 local workers against 1, on the same sweep.

The sweep is the README's main job (``examples/pendulum_sac.yaml``: SAC on Pendulum-v1, default
networks) for ``--steps`` env steps, over a grid of two learning rates and ``--seeds`` seeds, run as
a user runs it: ``diffrl sweep SWEEP.yaml --workers N`` in a fresh sweep folder. The two settings
alternate (1, 2, 1, 2, ...) ``--repeats`` times, so that a slow spell of the machine hits both.
Each run trains on one torch thread (diffrl's default); ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` are
removed so that the default applies. Prints each wall time, the runs per hour and the ratio
2 workers / 1 worker (issue 18 asks for at least 1.8 on this 2-core machine).

Run: ``python bench/sweep_workers.py [--steps 2000] [--seeds 2] [--repeats 2]`` (about 4 minutes on 2 cores
with the defaults; nothing else should run meanwhile). On the project's 2-core machine (2026-11-25): 1 worker
78.0 / 79.6 s, 2 workers 42.9 / 41.7 s, median 183 against 340 runs per hour, ratio 1.86x.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from diffrl_core.threads import THREAD_VARIABLES

CONFIG = Path(__file__).resolve().parents[1] / "examples" / "pendulum_sac.yaml"


def run_sweep(sweep_file: Path, workers: int, workdir: Path) -> tuple[float, int]:
    """Wall seconds of one ``diffrl sweep`` in a new sweep folder, and the runs it finished."""
    env = {name: value for name, value in os.environ.items() if name not in THREAD_VARIABLES}
    sweep_dir = Path(tempfile.mkdtemp(dir=workdir)) / "sweep"
    command = [str(Path(sys.executable).with_name("diffrl")), "sweep", str(sweep_file), "--sweep-dir", str(sweep_dir),
               "--workers", str(workers)]
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"diffrl sweep failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    trials = json.loads((sweep_dir / "index.json").read_text())["trials"]
    return seconds, sum(entry["status"] == "done" for entry in trials.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000, help="env steps per run")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per learning rate (runs = 2 x seeds)")
    parser.add_argument("--repeats", type=int, default=2, help="sweeps per worker count, alternating")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        sweep_file = Path(workdir) / "bench_sweep.yaml"
        sweep_file.write_text(json.dumps({  # JSON is YAML
            "config": str(CONFIG),
            "set": {"total_timesteps": args.steps, "eval.freq": args.steps, "eval.n_episodes": 2,
                    "checkpoint.freq": args.steps},
            "grid": {"algo_kwargs.learning_rate": [0.001, 0.0003]},
            "seeds": args.seeds,
        }))
        print(f"{os.cpu_count()} CPUs; sweep of {2 * args.seeds} runs of {CONFIG.name} x {args.steps} steps")
        times: dict[int, list[float]] = {1: [], 2: []}
        for repeat in range(args.repeats):
            for workers in (1, 2):
                seconds, done = run_sweep(sweep_file, workers, Path(workdir))
                times[workers].append(seconds)
                print(f"  repeat {repeat}: {workers} worker(s): {seconds:6.1f} s, {done} runs done "
                      f"({3600 * done / seconds:.0f} runs/hour)", flush=True)
        runs = 2 * args.seeds
        per_hour = {workers: 3600 * runs / statistics.median(values) for workers, values in times.items()}
        print(f"median: 1 worker {per_hour[1]:.0f} runs/hour, 2 workers {per_hour[2]:.0f} runs/hour, "
              f"ratio {per_hour[2] / per_hour[1]:.2f}x")


if __name__ == "__main__":
    main()

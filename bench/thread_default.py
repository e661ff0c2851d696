"""Two seeds side by side against one run alone, with diffrl's default thread count and with torch's.

Runs ``diffrl train examples/pendulum_sac.yaml`` (the README's main job) for ``--steps`` env
steps as a new user would, in a fresh process each: once alone, then two seeds at the same
time, first with nothing set (diffrl's default: one torch thread per run), then with
``--threads`` equal to the number of CPUs (torch's own default, what runs used before). The
environment's ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` are removed so that the defaults
apply. Prints each wall time and the ratio side-by-side / alone; with the default it should
be at most 1.2 on a machine with two free cores.

Run: ``python bench/thread_default.py [--steps 1500] [--no-torch-default]`` (about nine minutes
on 2 cores, most of it the two runs side by side with torch's default; one minute without them).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from diffrl_core.threads import THREAD_VARIABLES

CONFIG = Path(__file__).resolve().parents[1] / "examples" / "pendulum_sac.yaml"


def train_side_by_side(seeds: list[int], steps: int, threads: int | None, workdir: Path) -> float:
    """Wall seconds until ``diffrl train`` has finished for every seed, all started at once."""
    env = {name: value for name, value in os.environ.items() if name not in THREAD_VARIABLES}
    commands = []
    for seed in seeds:
        run_dir = Path(tempfile.mkdtemp(dir=workdir)) / "run"
        command = [str(Path(sys.executable).with_name("diffrl")), "train", str(CONFIG), "--run-dir", str(run_dir),
                   "--set", f"total_timesteps={steps}", "--set", f"seed={seed}"]
        commands.append(command + (["--threads", str(threads)] if threads else []))
    start = time.perf_counter()
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for command in commands]
    for process in processes:
        _, stderr = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"diffrl train failed ({process.returncode}):\n{stderr}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1500, help="env steps per run")
    parser.add_argument("--no-torch-default", action="store_true",
                        help="skip the runs with torch's default (two side by side took 7 minutes on 2 cores)")
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    print(f"{cpus} CPUs; diffrl train {CONFIG.name} for {args.steps} steps per run")
    with tempfile.TemporaryDirectory() as workdir:
        settings = [("diffrl default (1 thread)", None), (f"torch default ({cpus} threads)", cpus)]
        for label, threads in settings[:1] if args.no_torch_default else settings:
            alone = train_side_by_side([0], args.steps, threads, Path(workdir))
            pair = train_side_by_side([0, 1], args.steps, threads, Path(workdir))
            print(f"{label:<28} one run alone {alone:6.1f} s, two side by side {pair:6.1f} s: "
                  f"ratio {pair / alone:.2f}", flush=True)


if __name__ == "__main__":
    main()

"""Learning benchmark: the Pendulum examples, 3 seeds each, through the ``diffrl`` command.

Trains ``examples/pendulum_sac.yaml`` and ``examples/pendulum_td3.yaml`` with seeds 0, 1, 2
(``diffrl train CONFIG --set seed=S --run-dir ...``), records each run's final evaluation
(``results.json``: mean return of 10 deterministic episodes) in a markdown table, and draws
the learning curves with ``diffrl plot``. Not part of the test run; it takes a while
(20,000 steps per run; about 5-10 minutes per run on one CPU core).

    python bench/pendulum_seeds.py                       # full benchmark, 2 runs at a time
    python bench/pendulum_seeds.py --steps 2000 --jobs 6 # a quick check that it all works

Runs that already finished are kept (delete the folder to redo one); interrupted runs are
resumed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DIFFRL = [sys.executable, "-m", "diffrl_core.cli"]


def train(config: Path, seed: int, run: Path, steps: int | None, threads: int) -> dict:
    """Train (or resume, or skip) one run; return its results and wall time."""
    status_file = run / "status.json"
    status = json.loads(status_file.read_text()).get("status") if status_file.exists() else None
    extra = ["--set", f"total_timesteps={steps}"] if steps else []
    if status == "finished":
        print(f"[skip] {run} already finished", flush=True)
    else:
        if status is None:
            command = [*DIFFRL, "train", str(config), "--set", f"seed={seed}", *extra, "--run-dir", str(run)]
        else:
            command = [*DIFFRL, "train", "--resume", str(run), *extra]
        command += ["--threads", str(threads)]
        print(f"[start] {' '.join(command[2:])}", flush=True)
        start = time.monotonic()
        log = run.parent / f"{run.name}.log"
        with log.open("w") as out:
            code = subprocess.call(
                command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": str(threads)}
            )
        if code != 0:
            raise SystemExit(f"{' '.join(command)} exited with {code}; see {log}")
        print(f"[done] {run} in {time.monotonic() - start:.0f} s", flush=True)
    results = json.loads((run / "results.json").read_text())
    status = json.loads(status_file.read_text())
    duration = dt.datetime.fromisoformat(status["updated_at"]) - dt.datetime.fromisoformat(status["started_at"])
    return {"config": config.stem, "seed": seed, "run": str(run), "run_s": duration.total_seconds(), **results}


def table(rows: list[dict]) -> str:
    import statistics

    seeds = " | ".join(f"seed {r}" for r in sorted({row["seed"] for row in rows}))
    lines = [
        f"| config | {seeds} | mean +/- std over seeds |",
    ]
    lines.append("|" + " --- |" * (lines[0].count("|") - 1))
    for config in sorted({row["config"] for row in rows}):
        mine = sorted((row for row in rows if row["config"] == config), key=lambda row: row["seed"])
        finals = [row["mean_return"] for row in mine]
        spread = statistics.pstdev(finals) if len(finals) > 1 else 0.0
        cells = [f"{row['mean_return']:.1f} +/- {row['std_return']:.1f}" for row in mine]
        lines.append(f"| `{config}` | {' | '.join(cells)} | **{statistics.mean(finals):.1f} +/- {spread:.1f}** |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--configs", nargs="+", type=Path,
        default=[REPO / "examples" / "pendulum_sac.yaml", REPO / "examples" / "pendulum_td3.yaml"],
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="override total_timesteps (default: the configs')")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument(
        "--out", type=Path, default=REPO / "bench" / "runs" / "pendulum", help="folder of the run folders"
    )
    parser.add_argument(
        "--table", type=Path, default=REPO / "docs" / "bench_pendulum.md", help="markdown report to write"
    )
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "img" / "pendulum_learning_curves.png")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(config, seed, args.out / f"{config.stem}-seed{seed}") for config in args.configs for seed in args.seeds]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(lambda job: train(*job, args.steps, args.threads), jobs))
    minutes = sorted(row["run_s"] / 60 for row in rows)

    subprocess.run(
        [*DIFFRL, "plot", *(str(run) for _, _, run in jobs), "-o", str(args.plot),
         "--title", "Pendulum-v1: eval return, mean +/- std over seeds"],
        check=True,
    )
    steps = rows[0]["num_timesteps"]
    report = "\n".join([
        f"# Pendulum-v1 benchmark ({steps} steps, seeds {', '.join(map(str, args.seeds))})",
        "",
        f"Generated by `python bench/pendulum_seeds.py` on {dt.date.today()}; each run took {minutes[0]:.0f} to "
        f"{minutes[-1]:.0f} min ({args.jobs} run(s) at a time, {args.threads} torch thread(s) each, CPU). "
        f"Final evaluation of each run: mean +/- std return over "
        f"{rows[0]['n_episodes']} deterministic episodes, at step {steps}. "
        "RL Baselines3 Zoo's reference for SAC at 20k steps is about -157.",
        "",
        table(rows),
        "",
        f"![learning curves]({os.path.relpath(args.plot, args.table.parent)})",
        "",
    ])
    args.table.parent.mkdir(parents=True, exist_ok=True)
    args.table.write_text(report)
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    print(report)


if __name__ == "__main__":
    main()

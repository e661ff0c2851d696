"""Learning benchmark of the ``diffusion`` head (diffrl-plugin-diffusion) against SAC's and TD3's own heads.

Four methods, at equal env steps and seeds, on Pendulum-v1, diffrl/PointMassReach-v0 and Hopper-v5:

- ``sac_gaussian``: SAC, ``squashed_gaussian`` + ``sac_entropy`` (stable-baselines3's SAC);
- ``td3_deterministic``: TD3, ``deterministic`` + ``q_value``, Gaussian exploration noise (sigma 0.1,
  as ``examples/pendulum_td3.yaml``) (stable-baselines3's TD3);
- ``sac_diffusion``: SAC, ``diffusion`` + ``sac_entropy`` (the chain's log-density estimate in SAC's loss);
- ``td3_diffusion``: TD3, ``diffusion`` + ``diffusion_bc`` + ``eta`` x ``q_value`` with ``normalize: true``
  (Diffusion-QL's actor loss, online; ``--eta``, default 1.0). No action noise: the chain samples.

Within an env every method has the same ``net_arch`` and the same shared hyperparameters (learning
rate, batch size 256, buffer, warm-up steps, gamma, one gradient step per env step), those of the
example configs (``examples/pendulum_sac.yaml``, ``examples/point_mass_reach_sac.yaml``) and, for
Hopper-v5, RL Baselines3 Zoo's SAC/TD3 settings (learning rate 3e-4, 10,000 warm-up steps); TD3's
own settings are stable-baselines3's defaults (``policy_delay`` 2, target noise 0.2 clipped at 0.5);
the diffusion head has its defaults (8 denoising steps, noise network 64 x 64). Each run is evaluated
every tenth of its budget and at its end on 10 deterministic episodes (the config's ``eval``), saves a
checkpoint (with its replay buffer) every fifth of its budget, and writes no TensorBoard events.

**How it runs.** For each env the script writes the four configs and a sweep file under
``--out/<env>/<budget>/`` and runs ``diffrl sweep`` on them (``--workers`` runs at a time, one torch
thread each): an interrupted benchmark continues where it stopped when the same command is run
again (finished runs are kept, interrupted ones resume from their last checkpoint, and adding
``--seeds`` runs only the new ones). Then ``diffrl compare --json`` on the sweep folder gives each
method's final scores, their IQM with its 95% stratified bootstrap interval (rliable) and the
probability that a run of the method beats a run of ``sac_gaussian``; the script prints one markdown
table per env (also written to ``results.md`` in the env's budget folder, and all of them to
``--out/results.md``; the IQM learning curves and performance profiles are in the budget folder's
``compare/``). The wall time per run is the median of the sweep index's ``seconds`` of the method's
finished runs (a resumed run counts its last session only).

**Budgets.** Pendulum-v1 and PointMassReach 20,000 env steps, Hopper-v5 70,000 (``--steps ENV=N``).
A run takes one gradient step per env step after its warm-up. Measured with ``--step-time`` on
Hopper-v5 on this project's 2-core machine (one torch thread, 2026-11-25), a gradient step takes
9.2 ms for ``sac_gaussian``, 6.3 ms for ``td3_deterministic``, 17.7 ms for ``sac_diffusion`` (1.9x)
and 11.0 ms for ``td3_diffusion``; acting takes 0.14 ms (0.5 ms with the diffusion chain's 8
noise-network calls), and a ``--quick`` Hopper run of ``sac_diffusion`` went at about 18.5 ms per
training env step in all. The Hopper budget is the longest at which the slowest method's 3 seeds
take about an hour of CPU: 1,200 s per run, less ~60 s of start-up, the warm-up (10,000 random
steps, ~5 s) and evaluations (at most 11 x 10 episodes x 1,000 steps x 0.5 ms), leaves ~1,140 s
for 1,140 / 0.0185 = ~61,600 training steps: 70,000 env steps in all. The other methods' 3 seeds
take 21 (``td3_deterministic``) to 38 (``td3_diffusion``) minutes of CPU there. The whole default
benchmark (3 envs x 4 methods x 3 seeds) is about 2.5 CPU-hours of Hopper-v5 and 0.8 each of
Pendulum-v1 and PointMassReach: about 2 hours of wall time with 2 workers on 2 idle cores.

**Wall time per gradient step** (``--step-time``, one process, about 30 s per env): for each env
and method the model is composed with the benchmark's config, its replay buffer is filled with
``--fill`` (500) env steps, and ``model.train(gradient_steps=200, batch_size=256)`` is timed with
``time.perf_counter`` (after an untimed warm-up call), the methods alternating over 3 rounds; the
median is reported, with its ratio to ``sac_gaussian``. TD3's methods run with their configs' own
``policy_delay`` (2: the actor and the target networks are updated on every second gradient step
only), so their time per gradient step is the mean over critic-only and critic + actor steps.
Also timed: ``model.predict`` of one observation (the action a rollout step takes).

Run (not part of the test run)::

    python bench/diffusion_benchmark.py                                  # everything, resumable (hours)
    python bench/diffusion_benchmark.py --envs Pendulum-v1 --workers 2   # one env (~25 minutes on 2 cores)
    python bench/diffusion_benchmark.py --steps Hopper-v5=100000 --seeds 0 1 2 3 4
    python bench/diffusion_benchmark.py --quick --envs Pendulum-v1 --workers 1   # smoke test (~2 minutes)
    python bench/diffusion_benchmark.py --step-time                      # time per gradient step (~2 minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

METHODS = ("sac_gaussian", "td3_deterministic", "sac_diffusion", "td3_diffusion")
BASELINE = "sac_gaussian"

#: per env: the default budget and the settings every method shares
ENVS: dict[str, dict[str, Any]] = {
    "Pendulum-v1": {  # examples/pendulum_sac.yaml
        "steps": 20_000,
        "net_arch": [256, 256],
        "algo_kwargs": {"learning_rate": 1.0e-3, "buffer_size": 100_000, "learning_starts": 100},
    },
    "diffrl/PointMassReach-v0": {  # examples/point_mass_reach_sac.yaml
        "steps": 20_000,
        "net_arch": [256, 256],
        "algo_kwargs": {"learning_rate": 1.0e-3, "buffer_size": 100_000, "learning_starts": 500},
    },
    "Hopper-v5": {  # RL Baselines3 Zoo's SAC and TD3 on Hopper: stable-baselines3's defaults, 10,000 warm-up steps
        "steps": 70_000,
        "net_arch": [256, 256],
        "algo_kwargs": {"learning_rate": 3.0e-4, "buffer_size": 1_000_000, "learning_starts": 10_000},
    },
}
ALIASES = {"pendulum": "Pendulum-v1", "pointmassreach": "diffrl/PointMassReach-v0", "point_mass_reach":
           "diffrl/PointMassReach-v0", "hopper": "Hopper-v5"}
SHARED_ALGO_KWARGS: dict[str, Any] = {"batch_size": 256, "gamma": 0.99, "train_freq": 1, "gradient_steps": 1}

QUICK_STEPS = 1_500
DEFAULT_REPS = 50_000  # diffrl compare's (rliable's) default


def env_id(name: str) -> str:
    """An env id of :data:`ENVS`, from the id itself or an alias (``pendulum``, ``point_mass_reach``, ``hopper``)."""
    if name in ENVS:
        return name
    key = name.lower().replace("-", "_").removeprefix("diffrl/")
    for candidate in (key, key.replace("_", ""), key.split("_v")[0], key.split("_v")[0].replace("_", "")):
        if candidate in ALIASES:
            return ALIASES[candidate]
    raise argparse.ArgumentTypeError(f"unknown env {name!r}: one of {', '.join(ENVS)}")


def method_config(method: str, env: str, steps: int, eta: float, quick: bool = False,
                  learning_starts: int | None = None) -> dict[str, Any]:
    """The complete config of ``method`` on ``env`` for ``steps`` env steps (seed left to the sweep)."""
    spec = ENVS[env]
    algo_kwargs = {**spec["algo_kwargs"], **SHARED_ALGO_KWARGS}
    if learning_starts is not None:
        algo_kwargs["learning_starts"] = learning_starts
    elif quick:  # a smoke budget shorter than the warm-up would train nothing
        algo_kwargs["learning_starts"] = min(algo_kwargs["learning_starts"], steps // 3)
    algo = method.split("_", 1)[0]
    policy: dict[str, Any] = {"net_arch": list(spec["net_arch"]), "postprocess": "identity"}
    if method == "sac_gaussian":
        policy |= {"head": "squashed_gaussian", "losses": [{"name": "sac_entropy", "weight": 1.0}]}
    elif method == "td3_deterministic":
        policy |= {"head": "deterministic", "losses": [{"name": "q_value", "weight": 1.0}]}
    elif method == "sac_diffusion":
        policy |= {"head": "diffusion", "losses": [{"name": "sac_entropy", "weight": 1.0}]}
    elif method == "td3_diffusion":
        policy |= {"head": "diffusion", "losses": [{"name": "diffusion_bc", "weight": 1.0},
                                                    {"name": "q_value", "weight": eta, "kwargs": {"normalize": True}}]}
    else:
        raise ValueError(f"unknown method {method!r}")
    config: dict[str, Any] = {"env": env, "algo": algo, "policy": policy, "algo_kwargs": algo_kwargs}
    if method == "td3_deterministic":
        config["action_noise"] = {"type": "normal", "sigma": 0.1}
    eval_freq = max(1, steps // (3 if quick else 10))
    config |= {
        "total_timesteps": steps,
        "seed": 0,
        "threads": 1,
        "eval": {"freq": eval_freq, "n_episodes": 2 if quick else 10, "deterministic": True, "final": True},
        "checkpoint": {"freq": max(1, steps // 5), "keep": 1},  # what an interrupted run resumes from
        "logging": {"tensorboard": False},
    }
    return config


def budget_folder(out: Path, env: str, steps: int, eta: float, quick: bool) -> Path:
    """``OUT/<env>/<steps>steps[-eta<eta>][-quick]``: a changed budget or eta is a new sweep, not a clash."""
    tag = f"{steps}steps" + ("" if eta == 1.0 else f"-eta{eta:g}") + ("-quick" if quick else "")
    return out / env.replace("/", "_") / tag


def write_sweep(folder: Path, env: str, steps: int, seeds: list[int], eta: float, quick: bool) -> Path:
    """The four method configs and the sweep file naming them; rewritten identically on every invocation."""
    configs = folder / "method_configs"
    configs.mkdir(parents=True, exist_ok=True)
    for method in METHODS:
        text = json.dumps(method_config(method, env, steps, eta, quick), indent=2)  # JSON is YAML
        header = f"# {method} on {env}, written by bench/diffusion_benchmark.py"
        (configs / f"{method}.yaml").write_text(f"{header}\n{text}\n")
    sweep_file = folder / "sweep.yaml"
    sweep = {"config": [f"method_configs/{method}.yaml" for method in METHODS], "seeds": seeds}
    sweep_file.write_text(f"# written by bench/diffusion_benchmark.py\n{json.dumps(sweep, indent=2)}\n")
    return sweep_file


def diffrl_command() -> list[str]:
    """The ``diffrl`` executable of this Python environment."""
    beside = Path(sys.executable).with_name("diffrl")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("diffrl")
    if found:
        return [found]
    return [sys.executable, "-c", "from diffrl_core.cli import main; main()"]


def run_sweep(sweep_file: Path, sweep_dir: Path, workers: int) -> int:
    """``diffrl sweep``, its progress lines passed through; its exit status (1: some run failed)."""
    command = [*diffrl_command(), "sweep", str(sweep_file), "--sweep-dir", str(sweep_dir), "--workers", str(workers)]
    print("$ " + " ".join(command), flush=True)
    # In its own session, so that a Ctrl-C reaches it once, from us, as SIGTERM (which a shell never leaves ignored,
    # unlike SIGINT in a background job): it stops its runs, each saving a checkpoint, and exits 143.
    process = subprocess.Popen(command, start_new_session=True)

    def forward(_signum: int, _frame: Any) -> None:
        process.send_signal(signal.SIGTERM)

    previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        returncode = process.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if returncode in (130, 143):
        raise SystemExit(f"diffrl sweep interrupted ({returncode}): run the same command again to continue")
    if returncode == 2:
        raise SystemExit(f"diffrl sweep refused {sweep_file} (exit 2, see above)")
    return returncode


def run_compare(sweep_dir: Path, figures: Path, reps: int) -> dict[str, Any]:
    """``diffrl compare SWEEP_DIR --json``'s report (its notes and warnings go to our stderr on failure only)."""
    figures.mkdir(parents=True, exist_ok=True)
    command = [*diffrl_command(), "compare", str(sweep_dir), "--json", "--reps", str(reps), "-o", str(figures)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"diffrl compare failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def method_of(run_path: str) -> str:
    """The method of a sweep run folder ``.../runs/<method>-seed<N>``."""
    return Path(run_path).name.rsplit("-seed", 1)[0]


def _fmt(value: float) -> str:
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def results_table(env: str, steps: int, report: dict[str, Any], index: dict[str, Any]) -> str:
    """The markdown table of one env: per method its seeds, mean +- std, IQM [95% CI], P(> baseline), wall time."""
    groups: dict[str, dict[str, Any]] = {}
    for group in report["groups"]:
        methods = {method_of(run) for run in group["runs"]}
        if len(methods) != 1:
            raise SystemExit(f"diffrl compare grouped runs of several methods together: {sorted(methods)}")
        groups[methods.pop()] = group
    beats: dict[str, tuple[float, list[float]]] = {}
    for item in report["probability_of_improvement"]:
        x, y = groups_label(groups, item["x"]), groups_label(groups, item["y"])
        if y == BASELINE and x is not None:
            beats[x] = (item["probability"], item["ci"])
        elif x == BASELINE and y is not None:  # P(y > x) = 1 - P(x > y)
            low, high = item["ci"]
            beats[y] = (1.0 - item["probability"], [1.0 - high, 1.0 - low])
    trials = index.get("trials", {})
    lines = [
        f"**{env}**, {steps:,} env steps, final return (mean of {report_episodes(report)} deterministic episodes)",
        "",
        "| method | seeds | final return mean ± std | IQM [95% CI] | P(> sac_gaussian) [95% CI] | wall min per run |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for method in METHODS:
        group = groups.get(method)
        if group is None:
            lines.append(f"| {method} | 0 | no finished run | | | |")
            continue
        scores = group["scores"]
        std = statistics.stdev(scores) if len(scores) > 1 else 0.0
        iqm_low, iqm_high = group["iqm_ci"]
        if method in beats:
            probability, (low, high) = beats[method]
            beat = f"{probability:.2f} [{low:.2f}, {high:.2f}]"
        else:
            beat = "—"
        seconds = [entry["seconds"] for name, entry in trials.items()
                   if method_of(name) == method and entry.get("status") == "done" and entry.get("seconds")]
        wall = f"{statistics.median(seconds) / 60:.1f}" if seconds else "—"
        spread = f" ± {_fmt(std)}" if len(scores) > 1 else " (1 seed)"
        lines.append(f"| {method} | {len(scores)} | {_fmt(statistics.mean(scores))}{spread} | "
                     f"{_fmt(group['iqm'])} [{_fmt(iqm_low)}, {_fmt(iqm_high)}] | {beat} | {wall} |")
    return "\n".join(lines)


def groups_label(groups: dict[str, dict[str, Any]], label: str) -> str | None:
    """The method of the compare group labelled ``label``."""
    return next((method for method, group in groups.items() if group["label"] == label), None)


def report_episodes(report: dict[str, Any]) -> str:
    """How many episodes a run's final evaluation has (read from one run's config)."""
    for group in report["groups"]:
        for run in group["runs"]:
            try:
                import yaml

                config = yaml.safe_load((Path(run) / "config.yaml").read_text())
                return str(config["eval"]["n_episodes"])
            except Exception:  # noqa: BLE001 - only a caption
                continue
    return "the"


def benchmark(args: argparse.Namespace) -> None:
    """Run (or continue) the sweep of every env, then print and write the tables."""
    seeds = [0] if args.quick and not args.seeds_given else args.seeds
    tables: list[str] = []
    failures: list[str] = []
    started = time.perf_counter()
    for env in args.envs:
        steps = args.steps.get(env, QUICK_STEPS if args.quick else ENVS[env]["steps"])
        folder = budget_folder(args.out, env, steps, args.eta, args.quick)
        sweep_file = write_sweep(folder, env, steps, seeds, args.eta, args.quick)
        sweep_dir = folder / "sweep"
        print(f"\n## {env}: {len(METHODS)} methods x seeds {seeds} x {steps:,} steps in {sweep_dir}", flush=True)
        if run_sweep(sweep_file, sweep_dir, args.workers) != 0:
            failures.append(f"{env}: some runs failed (see {sweep_dir / 'index.json'} and {sweep_dir / 'logs'})")
        index = json.loads((sweep_dir / "index.json").read_text())
        report = run_compare(sweep_dir, folder / "compare", args.reps)
        table = results_table(env, steps, report, index)
        tables.append(table)
        (folder / "results.md").write_text(table + "\n")
        print("\n" + table + "\n", flush=True)
    minutes = (time.perf_counter() - started) / 60
    text = "\n\n".join(tables)
    footer = (f"\nIQM: the mean of the middle 50% of the seeds' scores, with its 95% stratified bootstrap interval "
              f"(rliable, {args.reps} resamples); std over seeds (n - 1); P(> sac_gaussian): the probability that a "
              f"run of the method scores higher than a run of sac_gaussian (ties count 1/2). With fewer than 5 seeds "
              f"the intervals are not trustworthy (Agarwal et al., 2021). td3_diffusion: eta = {args.eta:g}. Wall min "
              f"per run: the median over the method's finished runs (a resumed run: its last session).")
    print("\n# results\n\n" + text + "\n" + footer)
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / ("results-quick.md" if args.quick else "results.md")
    results_file.write_text(text + "\n" + footer + "\n")
    print(f"\nwrote {results_file} ({minutes:.1f} min)")
    if failures:
        raise SystemExit("\n".join(failures))


def step_time(args: argparse.Namespace) -> None:
    """Wall time per gradient step of each method, relative to sac_gaussian, in this process on one thread."""
    import numpy as np
    import torch as th

    import diffrl_core

    th.set_num_threads(1)
    for env in args.envs:
        started = time.perf_counter()
        models: dict[str, Any] = {}
        for method in METHODS:
            config = method_config(method, env, args.fill, args.eta, learning_starts=args.fill)
            config["eval"] = {"freq": 0, "n_episodes": 1, "final": False}
            model: Any = diffrl_core.make_model(config)  # an off-policy model: it has train()
            model.learn(args.fill)  # the warm-up steps fill the buffer: no gradient step yet
            model.train(gradient_steps=20, batch_size=256)  # untimed warm-up
            models[method] = model
        train: dict[str, list[float]] = {method: [] for method in METHODS}
        act: dict[str, list[float]] = {method: [] for method in METHODS}
        obs = models[BASELINE].env.reset()
        for round_ in range(args.rounds):
            order = METHODS[round_ % len(METHODS):] + METHODS[:round_ % len(METHODS)]
            for method in order:
                model = models[method]
                start = time.perf_counter()
                model.train(gradient_steps=args.gradient_steps, batch_size=256)
                train[method].append((time.perf_counter() - start) / args.gradient_steps)
                start = time.perf_counter()
                for _ in range(args.gradient_steps):
                    model.predict(obs, deterministic=False)
                act[method].append((time.perf_counter() - start) / args.gradient_steps)
        base = statistics.median(train[BASELINE])
        delays = {method: getattr(model, "policy_delay", None) for method, model in models.items()}
        print(f"\n**{env}**: wall time per gradient step (batch 256, one torch thread, median of {args.rounds} "
              f"rounds of {args.gradient_steps} steps; torch {th.__version__}, numpy {np.__version__})\n")
        print("| method | ms per gradient step | ratio to sac_gaussian | ms per action (predict) |")
        print("| --- | --- | --- | --- |")
        for method in METHODS:
            ms = 1000 * statistics.median(train[method])
            note = f" (policy_delay {delays[method]})" if delays[method] else ""
            print(f"| {method}{note} | {ms:.2f} | {statistics.median(train[method]) / base:.2f} | "
                  f"{1000 * statistics.median(act[method]):.2f} |")
        print(f"\n({time.perf_counter() - started:.0f} s)", flush=True)


def parse_steps(items: list[str]) -> dict[str, int]:
    """``ENV=N`` items (env ids or aliases) as a mapping."""
    steps: dict[str, int] = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        if not sep or not value.replace("_", "").isdigit() or int(value) < 1:
            raise SystemExit(f"--steps takes ENV=N with N a positive number of env steps, got {item!r}")
        try:
            steps[env_id(name)] = int(value)
        except argparse.ArgumentTypeError as exc:
            raise SystemExit(f"--steps {item}: {exc}") from None
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", type=env_id, nargs="+", default=list(ENVS),
                        help=f"envs (ids or aliases pendulum, point_mass_reach, hopper; default: {', '.join(ENVS)})")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds of every method (default: 0 1 2)")
    defaults = ", ".join(f"{env}={spec['steps']}" for env, spec in ENVS.items())
    parser.add_argument("--steps", nargs="+", action="extend", default=[], metavar="ENV=N",
                        help=f"env steps per run of an env (default: {defaults}; --quick: {QUICK_STEPS})")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="runs at once (default: the CPUs)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench_diffusion",
                        help="where the configs, sweeps and tables go (default: runs/bench_diffusion, ignored by git)")
    parser.add_argument("--eta", type=float, default=1.0, help="td3_diffusion's weight of q_value (Diffusion-QL's eta)")
    parser.add_argument("--reps", type=int, default=None,
                        help=f"bootstrap resamples of the intervals (default: {DEFAULT_REPS}; --quick: 2000)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke budget: {QUICK_STEPS} steps per run, seed 0, 2 episodes per evaluation")
    parser.add_argument("--step-time", action="store_true",
                        help="instead of training: time a gradient step of each method (one process, ~30 s per env)")
    parser.add_argument("--fill", type=int, default=500, help="--step-time: env steps in the buffer (default 500)")
    parser.add_argument("--gradient-steps", type=int, default=200, help="--step-time: steps per timed call")
    parser.add_argument("--rounds", type=int, default=3, help="--step-time: timed calls per method, alternating")
    args = parser.parse_args()
    args.envs = list(dict.fromkeys(args.envs))
    args.seeds_given = args.seeds is not None
    args.seeds = args.seeds if args.seeds is not None else [0, 1, 2]
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        raise SystemExit("--seeds must be distinct non-negative integers")
    args.steps = parse_steps(args.steps)
    args.reps = args.reps or (2_000 if args.quick else DEFAULT_REPS)
    if args.workers < 1:
        raise SystemExit("--workers must be at least 1")
    if args.step_time:
        step_time(args)
    else:
        benchmark(args)


if __name__ == "__main__":
    main()

"""``diffrl train``: compose a model from a config, train it, and leave a run folder behind."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command()
@click.argument("config", required=False, type=click.Path(path_type=Path))
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config key, e.g. --set algo_kwargs.learning_rate=1e-3 or --set 'policy.losses[0].weight=0.5'. "
    "The value is read as YAML (numbers, booleans, lists); repeatable.",
)
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The run folder to create (default: runs/<config name>-<date>-<time>). It must not exist, or be empty.",
)
@click.option(
    "--resume",
    "resume",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="RUN_DIR",
    help="Continue an interrupted run from its latest checkpoint (with --set, only total_timesteps, threads, eval.*, "
    "checkpoint.* and logging.* may change).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="Threads torch computes with: the config's `threads` (default 1, unless OMP_NUM_THREADS or "
    "MKL_NUM_THREADS is set).",
)
@click.option(
    "--trust-pickle",
    is_flag=True,
    help="With --resume, on a run made before diffrl's own model format: load its stable-baselines3 zip and "
    "pickled replay buffer with stable-baselines3's loaders, which run any code the files hold. Only for runs "
    "you made yourself (docs/model-format.md).",
)
def train(
    config: Path | None, overrides: tuple[str, ...], run_dir: Path | None, resume: Path | None, threads: int | None,
    trust_pickle: bool,
) -> None:
    """Train the policy that CONFIG composes, into a new run folder.

    The run folder holds the resolved config (with the versions of diffrl-core and of every
    plugin used), checkpoints, CSV and TensorBoard logs, evaluations and the final model.zip.
    On a terminal a progress bar is shown; otherwise one plain line every 5% of the run.

    Ctrl-C (SIGINT) or SIGTERM stops after the current step, saves a checkpoint (with the
    replay buffer) and exits with 130 or 143; a second signal stops at once. Continue with
    `diffrl train --resume RUN_DIR`.
    """
    if resume is not None and (config is not None or run_dir is not None):
        raise click.UsageError("--resume RUN_DIR takes neither a CONFIG nor --run-dir: the run folder holds its config")
    if resume is None and config is None:
        raise click.UsageError("missing CONFIG (a YAML file), or --resume RUN_DIR")
    if trust_pickle and resume is None:
        raise click.UsageError("--trust-pickle goes with --resume RUN_DIR (a new run writes no pickle)")
    from diffrl_core import runs
    from diffrl_core.plugins import load_plugins

    # config errors, unknown names and a taken run folder are reported before the (slow) torch
    # import, and before any folder is created
    bar = sys.stdout.isatty()
    if threads is not None:
        overrides = (*overrides, f"threads={threads}")
    if resume is not None:
        plan = runs.plan_resume(resume, overrides)
        host = load_plugins()
        from diffrl_core import training  # imports torch

        code = training.resume_run(plan, bar, host, trust_pickle=trust_pickle)
    else:
        from diffrl_core.config import load_config
        from diffrl_core.resolve import check_names

        assert config is not None
        checked = load_config(config, overrides)
        host = load_plugins()
        check_names(checked, host)
        if run_dir is not None:
            runs.check_new_run_dir(run_dir)
        target = run_dir or runs.default_run_dir(config)
        from diffrl_core import training  # imports torch

        code = training.start_run(checked, target, config.stem, bar, host)
    if code:
        sys.exit(code)


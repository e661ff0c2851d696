"""``diffrl train``: compose a model from a config, train it, and leave a run folder behind."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

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
    help="Continue an interrupted run from its latest checkpoint (with --set, only total_timesteps, eval.*, "
    "checkpoint.* and logging.* may change).",
)
@click.option("--threads", type=click.IntRange(min=1), help="Threads torch may use (default: torch's choice). 1 is often fastest for small networks.")
def train(config: Path | None, overrides: tuple[str, ...], run_dir: Path | None, resume: Path | None, threads: int | None) -> None:
    """Train the policy that CONFIG composes, into a new run folder.

    The run folder holds the resolved config (with the versions of diffrl-core and of every
    plugin used), checkpoints, CSV and TensorBoard logs, evaluations and the final model.zip.
    On a terminal a progress bar is shown; otherwise one plain line every 5% of the run.

    Ctrl-C (SIGINT) or SIGTERM stops after the current step, saves a checkpoint (with the
    replay buffer) and exits with 130 or 143; a second signal stops at once. Continue with
    `diffrl train --resume RUN_DIR`.
    """
    from diffrl_core.errors import ConfigError

    if resume is not None:
        if config is not None or run_dir is not None:
            raise click.UsageError("--resume RUN_DIR takes neither a CONFIG nor --run-dir: the run folder holds its config")
    elif config is None:
        raise click.UsageError("missing CONFIG (a YAML file), or --resume RUN_DIR")
    elif not config.is_file():
        # checked before anything heavy is imported, and before any folder is created
        raise ConfigError(
            f"config file {str(config)!r} does not exist" if not config.exists() else
            f"{str(config)!r} is not a file" + (f" (to continue a run: diffrl train --resume {config})" if config.is_dir() else "")
        )
    bar = sys.stdout.isatty()
    if resume is not None:
        from diffrl_core import runs

        runs.plan_resume(resume, overrides)  # errors before the (slow) torch import
    else:
        # config errors, unknown names and a taken run folder are reported before the (slow) torch import
        from diffrl_core import runs

        _, checked = runs.load_config(config, overrides)
        _check_names(checked)
        if run_dir is not None:
            runs.check_new_run_dir(run_dir)
    from diffrl_core import training

    if threads:
        import torch as th

        th.set_num_threads(threads)
    code = training.resume_run(resume, overrides, bar) if resume is not None else training.start_run(config, overrides, run_dir, bar)
    if code:
        sys.exit(code)


def _check_names(config: Any) -> None:
    """Unknown component names and env ids, found without importing torch (composition checks the rest)."""
    import gymnasium as gym

    from diffrl_core.errors import UnknownNameError
    from diffrl_core.plugins import load_plugins

    host = load_plugins()
    host.registry("actor_heads").get(config.head, where="policy.head")
    host.registry("postprocessors").get(config.policy.postprocess, where="policy.postprocess")
    for i, spec in enumerate(config.losses):
        host.registry("loss_terms").get(spec.name, where=f"policy.losses[{i}].name")
    if ":" not in config.env and config.env not in gym.registry:
        raise UnknownNameError("envs", config.env, gym.registry.keys(), where="env")

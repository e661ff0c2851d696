"""``diffrl eval``: the mean and std of a trained model's returns, and a video of one episode."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click


@click.command("eval")
@click.argument("target", metavar="RUN_DIR_OR_MODEL", type=click.Path(path_type=Path))
@click.option("--episodes", "-n", default=10, show_default=True, type=click.IntRange(min=1), help="Episodes to run.")
@click.option(
    "--deterministic/--stochastic", default=True, show_default=True, help="Act with the mean action, or sample."
)
@click.option(
    "--video",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write one episode to this GIF (or .mp4 with imageio-ffmpeg).",
)
@click.option(
    "--env",
    "env_id",
    help="The env to evaluate on (default: the run's env; required for a model outside a run folder).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the evaluation env.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (returns, lengths, mean, std).")
@click.option("--threads", type=click.IntRange(min=1),
              help="Threads torch computes with (default 1, unless OMP_NUM_THREADS or MKL_NUM_THREADS is set).")
@click.option("--trust-pickle", is_flag=True,
              help="Load a stable-baselines3 zip with stable-baselines3's own loader, which runs any code the file "
              "holds. Only for files you trust as you trust code (docs/model-format.md); without it, such a zip "
              "is read without unpickling.")
def evaluate(
    target: Path, episodes: int, deterministic: bool, video: Path | None, env_id: str | None, seed: int, as_json: bool,
    threads: int | None, trust_pickle: bool,
) -> None:
    """Evaluate a run's final model (or its latest checkpoint), or a saved model .zip.

    Prints the mean and standard deviation of the episode returns. With --video, one more
    episode is rendered (envs with rgb_array rendering; MuJoCo uses MUJOCO_GL=egl unless set).
    """
    if video is not None:
        os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is imported
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame envs draw offscreen, no window
    from diffrl_core.commands.plugins import json_stdout
    from diffrl_core.evaluation import evaluate_target, format_return
    from diffrl_core.plugins import load_plugins
    from diffrl_core.threads import use_threads

    use_threads(threads)
    report = (lambda message: None) if as_json else click.echo
    with json_stdout(as_json):  # plugins' and envs' prints must not break the JSON
        result = evaluate_target(target, episodes, deterministic, env_id, seed, video, report, host=load_plugins(),
                                 trust_pickle=trust_pickle)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        mean, std = format_return(result["mean_return"]), format_return(result["std_return"])
        click.echo(f"mean return {mean} +/- {std} over {episodes} episode(s)")

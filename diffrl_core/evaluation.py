"""Evaluating a trained model: ``diffrl eval``, and the evaluation envs of ``diffrl train``.

:func:`evaluate_target` finds the model to evaluate (a run's final model or latest
checkpoint, or a saved ``.zip``), runs it for some episodes and optionally renders one into
a video. This module imports torch and stable-baselines3: import it only where it is used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv

from diffrl_core import runs
from diffrl_core.compose import load_model, make_env, make_registered_env
from diffrl_core.config import Config, parse_config
from diffrl_core.errors import DiffRLError
from diffrl_core.model_file import in_model_format, manifest_of
from diffrl_core.plugins import PluginHost, load_plugins
from diffrl_core.resolve import check_env_id


def format_return(value: float) -> str:
    """A return for humans: two decimals, more when it is small (a bandit's returns are near 0).

    :param value: a return (or its standard deviation)
    """
    return f"{value:.2f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"


def mean_std(returns: Sequence[float]) -> tuple[float, float]:
    """The mean and standard deviation of some returns."""
    return float(np.mean(returns)), float(np.std(returns))


def make_eval_env(config: Config, seed: int | None, host: PluginHost | None = None) -> VecEnv:
    """One env of the config's kind (never a subprocess), wrapped in a ``Monitor``.

    :param config: the config whose env (and env kwargs) to make
    :param seed: the env's seed, or None to leave it unseeded
    :param host: the plugin host (default: the process-wide one)
    """
    env = make_env(config.model_copy(update={"n_envs": 1, "vec_env": "dummy"}), host=host)
    if seed is not None:
        env.seed(seed)
    return env


def evaluate(model: BaseAlgorithm, env: VecEnv, n_episodes: int, deterministic: bool) -> tuple[list[float], list[int]]:
    """The return and length of each of ``n_episodes`` episodes.

    :param model: the model that acts
    :param env: the env it acts in (one env)
    :param n_episodes: how many episodes
    :param deterministic: act with the mean action, or sample
    """
    returns, lengths = evaluate_policy(
        model, env, n_eval_episodes=n_episodes, deterministic=deterministic, return_episode_rewards=True, warn=False
    )
    return [float(r) for r in returns], [int(n) for n in lengths]  # type: ignore[union-attr]


def locate_model(target: Path) -> tuple[Path, Config | None, str]:
    """The model to evaluate for ``diffrl eval TARGET``, and the run config when there is one.

    :param target: a run folder (its final model, or its latest checkpoint), or a saved model ``.zip``
    :return: ``(model path, config or None, a description)``
    :raises DiffRLError: when ``target`` does not exist, or is a run folder with no model yet
    """
    if target.is_dir():
        run = runs.open_run(target)
        config = run.read_config()
        if run.model_file.exists() and run.read_status().get("status") == "finished":
            return run.model_file, config, f"{run.model_file}"
        model_path, _, steps = run.resume_point()
        state = run.read_status().get("status")
        return model_path, config, f"{model_path} (checkpoint at step {steps}; the run is {state})"
    if not target.exists():
        raise DiffRLError(f"{str(target)!r} does not exist (expected a run folder or a saved model .zip)")
    for parent in (target.parent, target.parent.parent):
        if (parent / runs.STATUS_FILE).exists() and (parent / runs.CONFIG_FILE).exists():
            return target, runs.RunDir(parent).read_config(), str(target)
    # a model on its own: the config its manifest holds (models in stable-baselines3's zip format have none)
    saved = manifest_of(target)["config"] if in_model_format(target) else None
    return target, None if saved is None else parse_config(saved, source=f"the manifest of {target}"), str(target)


def eval_config(config: Config | None, env_id: str | None) -> Config:
    """The config to evaluate with: the run's config, with ``--env`` (when given) as its env.

    :param config: the run's config, or None for a model outside a run folder
    :param env_id: the ``--env`` option, or None
    :raises DiffRLError: when neither names an env
    """
    if env_id is not None:
        base = {"env": env_id} if config is None else {**runs.resolved_config(config), "env": env_id}
        return parse_config(base)
    if config is None:
        raise DiffRLError("the model is not in a run folder, so its env is unknown: pass --env ENV_ID")
    return config


def record_video(model: BaseAlgorithm, config: Config, path: Path, deterministic: bool, seed: int | None,
                 max_frames: int = 1000, fps: int | None = None, host: PluginHost | None = None) -> int:
    """Render one episode with ``render_mode="rgb_array"`` into a GIF (or a format imageio can write).

    :param model: the model that acts
    :param config: the config whose env is rendered
    :param path: the video file (``.gif``, or e.g. ``.mp4`` with imageio)
    :param deterministic: act with the mean action, or sample
    :param seed: the env's reset seed
    :param max_frames: stop the episode after this many frames
    :param fps: frames per second (default: the env's ``render_fps``, or 30)
    :param host: the plugin host whose envs are registered (default: the process-wide one)
    :return: the number of frames
    """
    host = host or load_plugins()  # loading the plugins registers their env ids with gymnasium
    check_env_id(config.env, host)
    env = make_registered_env(config.env, config.env_kwargs, render_mode="rgb_array")
    try:
        modes = env.metadata.get("render_modes", [])
        if "rgb_array" not in modes:
            raise DiffRLError(
                f"env {config.env!r} does not render rgb_array frames (its render modes: {modes}); no video"
            )
        obs, _ = env.reset(seed=seed)
        frames = [env.render()]
        done = False
        while not done and len(frames) < max_frames:
            action, _ = model.predict(obs, deterministic=deterministic)
            obs, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
            frames.append(env.render())
        fps = fps or int(env.metadata.get("render_fps") or 30)
    finally:
        env.close()
    images = [np.asarray(frame, dtype=np.uint8) for frame in frames if frame is not None]
    if not images:
        raise DiffRLError(f"env {config.env!r} rendered no frames")
    write_video(images, path, fps)
    return len(images)


def write_video(frames: list[np.ndarray], path: Path, fps: int) -> None:
    """Write RGB frames to a GIF (Pillow), or to another format with imageio.

    :param frames: ``(height, width, 3)`` uint8 arrays
    :param path: the video file; its suffix picks the format
    :param fps: frames per second
    :raises DiffRLError: when the format cannot be written
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        from PIL import Image

        # a fast palette per frame: PIL's default (median cut) takes seconds per hundred frames
        images = [Image.fromarray(frame).quantize(256, method=Image.Quantize.FASTOCTREE) for frame in frames]
        with runs.atomic_path(path) as tmp:
            duration = max(20, round(1000 / fps))
            images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)
        return
    try:
        import imageio.v2 as imageio
    except ImportError:
        raise DiffRLError(
            f"cannot write {path.suffix!r} videos without imageio (pip install imageio imageio-ffmpeg); use a .gif path"
        ) from None
    try:
        with runs.atomic_path(path) as tmp:
            imageio.mimwrite(tmp, list[Any](frames), fps=fps)  # its stubs want a list of array-likes
    except Exception as exc:  # imageio's backends raise many kinds of errors for a missing codec
        raise DiffRLError(f"cannot write the video {str(path)!r}: {exc}; a .gif path always works") from None


def evaluate_target(
    target: Path,
    episodes: int,
    deterministic: bool,
    env_id: str | None,
    seed: int | None,
    video: Path | None,
    report: Callable[[str], None],
    host: PluginHost | None = None,
    trust_pickle: bool = False,
) -> dict[str, Any]:
    """``diffrl eval``: returns of ``episodes`` episodes (and a video of one).

    :param target: a run folder or a saved model ``.zip`` (see :func:`locate_model`)
    :param episodes: how many episodes to evaluate
    :param deterministic: act with the mean action, or sample
    :param env_id: evaluate on this env instead of the run's
    :param seed: the evaluation env's seed
    :param video: also render one episode into this file
    :param report: called with each line for the user
    :param host: the plugin host (default: the process-wide one)
    :param trust_pickle: load a stable-baselines3 zip with its own (unpickling) loader
    :return: the model, env, returns, lengths, their mean and std, ... (what ``--json`` prints)
    """
    model_path, run_config, description = locate_model(target)
    config = eval_config(run_config, env_id)
    host = host or load_plugins()
    # the run's env is missing: name the distribution the run had it from
    check_env_id(config.env, host, versions=run_config.versions if run_config is not None and env_id is None else None)
    env = make_eval_env(config, seed, host=host)
    model = load_model(model_path, env=env, host=host, trust_pickle=trust_pickle)
    returns, lengths = evaluate(model, env, episodes, deterministic)
    mean, std = mean_std(returns)
    result = {
        "model": str(model_path),
        "env": config.env,
        "episodes": episodes,
        "deterministic": deterministic,
        "mean_return": mean,
        "std_return": std,
        "returns": returns,
        "lengths": lengths,
        "num_timesteps": int(model.num_timesteps),
    }
    report(f"model: {description}")
    report(f"env: {config.env}; {episodes} episode(s), {'deterministic' if deterministic else 'stochastic'} actions")
    if video is not None:
        n = record_video(model, config, video, deterministic, seed, host=host)
        result["video"] = str(video)
        report(f"video: {video} ({n} frames)")
    return result

"""Training a composed model into a run folder, and evaluating one.

The ``diffrl train`` / ``diffrl eval`` commands call :func:`start_run`, :func:`resume_run`
and :func:`evaluate`; the run folder's files are described in :mod:`diffrl_core.runs`.
This module imports torch and stable-baselines3: import it only where it is used.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import KVWriter, Logger, TensorBoardOutputFormat, filter_excluded_keys
from stable_baselines3.common.vec_env import VecEnv

from diffrl_core import runs
from diffrl_core.compose import load_model, make_env, make_model
from diffrl_core.config import Config, parse_config
from diffrl_core.errors import DiffRLError
from diffrl_core.plugins import load_plugins

#: Offset of the evaluation env's seed from the training seed (the envs must not share episodes).
EVAL_SEED_OFFSET = 10_000


# -- output ------------------------------------------------------------------------------------


class Console:
    """Messages for the user: a progress bar on a terminal, plain lines otherwise.

    :param bar: draw a tqdm progress bar (when stdout is a terminal)
    """

    def __init__(self, bar: bool) -> None:
        self.bar = bar
        self._tqdm: Any = None

    def start(self, total: int, initial: int) -> None:
        if self.bar:
            from tqdm import tqdm

            self._tqdm = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, smoothing=0.05)

    def advance(self, n: int, **postfix: str) -> None:
        if self._tqdm is not None:
            self._tqdm.update(n)
            if postfix:
                self._tqdm.set_postfix(postfix, refresh=False)

    def print(self, message: str, err: bool = False) -> None:
        stream = sys.stderr if err else sys.stdout
        if self._tqdm is not None:
            self._tqdm.write(message, file=stream)
        else:
            print(message, file=stream, flush=True)

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None


# -- logging -----------------------------------------------------------------------------------


class AppendingCSVFormat(KVWriter):
    """stable-baselines3's CSV log, continued (not overwritten) when a run is resumed.

    One column per logged key; a key that appears later adds a column (the file is rewritten
    once, with empty cells in the earlier rows).

    :param path: the CSV file
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.keys: list[str] = []
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open(newline="") as file:
                self.keys = next(csv.reader(file), [])

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0) -> None:
        values = {
            key: value
            for key, value in filter_excluded_keys(key_values, key_excluded, "csv").items()
            if isinstance(value, (int, float, str, np.number, np.bool_))
        }
        new = sorted(values.keys() - set(self.keys))
        if new or not self.path.exists():
            rows: list[list[str]] = []
            if self.path.exists():
                with self.path.open(newline="") as file:
                    rows = list(csv.reader(file))[1:]
            self.keys += new
            with runs.atomic_path(self.path) as tmp, tmp.open("w", newline="") as file:
                writer = csv.writer(file)
                writer.writerow(self.keys)
                writer.writerows(row + [""] * (len(self.keys) - len(row)) for row in rows)
        with self.path.open("a", newline="") as file:
            csv.writer(file).writerow(["" if values.get(key) is None else _cell(values[key]) for key in self.keys])

    def close(self) -> None:
        pass


def _cell(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, np.generic):
        return str(value.item())
    return str(value)


def make_logger(run: runs.RunDir, config: Config) -> Logger:
    """stable-baselines3's logger writing every logged value to ``RUN_DIR/logs``."""
    formats: list[KVWriter] = []
    if config.logging.csv:
        formats.append(AppendingCSVFormat(run.logs / "progress.csv"))
    if config.logging.tensorboard:
        formats.append(TensorBoardOutputFormat(str(run.logs)))
    return Logger(folder=str(run.logs), output_formats=formats)


# -- evaluation --------------------------------------------------------------------------------


def make_eval_env(config: Config, seed: int | None) -> VecEnv:
    """One env of the config's kind (never a subprocess), wrapped in a ``Monitor``."""
    env = make_env(config.model_copy(update={"n_envs": 1, "vec_env": "dummy"}))
    if seed is not None:
        env.seed(seed)
    return env


def evaluate(model: BaseAlgorithm, env: VecEnv, n_episodes: int, deterministic: bool) -> tuple[list[float], list[int]]:
    """The return and length of ``n_episodes`` episodes."""
    returns, lengths = evaluate_policy(model, env, n_eval_episodes=n_episodes, deterministic=deterministic, return_episode_rewards=True, warn=False)
    return [float(r) for r in returns], [int(n) for n in lengths]  # type: ignore[union-attr]


class Evaluations:
    """``RUN_DIR/evaluations.npz`` in stable-baselines3's ``EvalCallback`` format, kept across resumes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.timesteps: list[int] = []
        self.results: list[list[float]] = []
        self.ep_lengths: list[list[int]] = []
        if path.exists():
            with np.load(path) as data:
                self.timesteps = [int(t) for t in data["timesteps"]]
                self.results = [list(map(float, r)) for r in data["results"]]
                self.ep_lengths = [list(map(int, n)) for n in data["ep_lengths"]]

    def add(self, num_timesteps: int, returns: list[float], lengths: list[int]) -> None:
        # a resumed run re-evaluates from its checkpoint: drop evaluations made after it
        keep = [i for i, t in enumerate(self.timesteps) if t < num_timesteps]
        self.timesteps = [self.timesteps[i] for i in keep] + [num_timesteps]
        self.results = [self.results[i] for i in keep] + [returns]
        self.ep_lengths = [self.ep_lengths[i] for i in keep] + [lengths]
        width = max(len(r) for r in self.results)
        pad = lambda rows, fill: np.array([list(r) + [fill] * (width - len(r)) for r in rows])  # noqa: E731
        with runs.atomic_path(self.path) as tmp, tmp.open("wb") as file:
            np.savez(file, timesteps=np.array(self.timesteps), results=pad(self.results, np.nan), ep_lengths=pad(self.ep_lengths, 0))


def fmt(value: float) -> str:
    """A return for humans: two decimals, more when it is small (a bandit's returns are near 0)."""
    return f"{value:.2f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"


def _summary(returns: Sequence[float]) -> tuple[float, float]:
    return float(np.mean(returns)), float(np.std(returns))


# -- callbacks ---------------------------------------------------------------------------------


class _Periodic(BaseCallback):
    """Calls :meth:`fire` each time ``num_timesteps`` reaches a multiple of ``freq`` (resume-safe)."""

    def __init__(self, freq: int) -> None:
        super().__init__()
        self.freq = freq
        self._next = math.inf

    def _on_training_start(self) -> None:
        self._next = (self.num_timesteps // self.freq + 1) * self.freq if self.freq > 0 else math.inf

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next = (self.num_timesteps // self.freq + 1) * self.freq
            self.fire()
        return True

    def fire(self) -> None:
        raise NotImplementedError


class Checkpointer(_Periodic):
    """Saves ``checkpoints/model_<steps>.zip`` (+ the replay buffer) and points ``status.json`` to it."""

    def __init__(self, run: runs.RunDir, config: Config, console: Console) -> None:
        super().__init__(config.checkpoint.freq)
        self.run = run
        self.options = config.checkpoint
        self.console = console

    def fire(self) -> None:
        path = self.save(self.model)
        self.console.print(f"checkpoint: {path} (step {self.model.num_timesteps})")

    def save(self, model: BaseAlgorithm, model_path: Path | None = None) -> Path:
        steps = model.num_timesteps
        model_path = model_path or self.run.checkpoint_file(steps)
        with runs.atomic_path(model_path) as tmp:
            model.save(tmp)
        buffer_path = None
        if self.options.save_replay_buffer and getattr(model, "replay_buffer", None) is not None:
            buffer_path = self.run.replay_buffer_file(steps)
            with runs.atomic_path(buffer_path) as tmp:
                model.save_replay_buffer(tmp)  # type: ignore[attr-defined]
        self.run.update_status(
            num_timesteps=steps,
            checkpoint=self.run.relative(model_path),
            checkpoint_timesteps=steps,
            replay_buffer=self.run.relative(buffer_path),
        )
        # only the buffer of the checkpoint the status points to is kept (buffers are large)
        for old in self.run.checkpoints.glob("replay_buffer_*.pkl"):
            if old != buffer_path:
                old.unlink(missing_ok=True)
        if self.options.keep:
            for _, old in self.run.model_checkpoints()[: -self.options.keep]:
                if old != model_path:
                    old.unlink(missing_ok=True)
        return model_path


class Evaluator(_Periodic):
    """Evaluates every ``eval.freq`` steps on a separate env; logs ``eval/*`` and keeps ``evaluations.npz``."""

    def __init__(self, run: runs.RunDir, config: Config, env: VecEnv, console: Console) -> None:
        super().__init__(config.eval.freq)
        self.options = config.eval
        self.env = env
        self.console = console
        self.evaluations = Evaluations(run.evaluations_file)
        self.last: tuple[float, float] | None = None

    def fire(self) -> None:
        self.evaluate_now()

    def evaluate_now(self) -> tuple[float, float]:
        model = self.model
        returns, lengths = evaluate(model, self.env, self.options.n_episodes, self.options.deterministic)
        self.evaluations.add(model.num_timesteps, returns, lengths)
        mean, std = _summary(returns)
        self.last = (mean, std)
        model.logger.record("eval/mean_reward", mean)
        model.logger.record("eval/std_reward", std)
        model.logger.record("eval/mean_ep_length", float(np.mean(lengths)))
        model.logger.record("time/total_timesteps", model.num_timesteps, exclude="tensorboard")
        model.logger.dump(model.num_timesteps)
        self.console.print(f"eval at step {model.num_timesteps}: return {fmt(mean)} +/- {fmt(std)} ({len(returns)} episodes)")
        return mean, std


class Progress(BaseCallback):
    """A progress bar (terminal) or one plain line every ``print_freq`` steps; stops on a signal."""

    def __init__(self, config: Config, console: Console, stop: runs.StopSignals, evaluator: Evaluator | None) -> None:
        super().__init__()
        self.total = config.total_timesteps
        self.print_freq = config.logging.print_freq or max(1, config.total_timesteps // 20)
        self.console = console
        self.stop = stop
        self.evaluator = evaluator
        self._start_steps = 0
        self._start_time = 0.0
        self._shown = 0

    def _on_training_start(self) -> None:
        self._start_steps = self._shown = self.num_timesteps
        self._start_time = time.monotonic()
        self._next_line = (self.num_timesteps // self.print_freq + 1) * self.print_freq
        self.console.start(self.total, self.num_timesteps)

    def _episode_return(self) -> float | None:
        buffer = self.model.ep_info_buffer
        return float(np.mean([info["r"] for info in buffer])) if buffer else None

    def _on_step(self) -> bool:
        steps = self.num_timesteps
        if self.console.bar:
            if steps - self._shown >= 10 or steps >= self.total:
                ep_return = self._episode_return()
                postfix = {"return": f"{ep_return:.1f}"} if ep_return is not None else {}
                if self.evaluator is not None and self.evaluator.last is not None:
                    postfix["eval"] = f"{self.evaluator.last[0]:.1f}"
                self.console.advance(steps - self._shown, **postfix)
                self._shown = steps
        elif steps >= self._next_line:
            self._next_line = (steps // self.print_freq + 1) * self.print_freq
            elapsed = time.monotonic() - self._start_time
            fps = (steps - self._start_steps) / elapsed if elapsed > 0 else 0.0
            ep_return = self._episode_return()
            text = f"step {steps}/{self.total} ({100 * steps / self.total:.0f}%)"
            text += f"  ep_return {fmt(ep_return)}" if ep_return is not None else ""
            text += f"  fps {fps:.0f}  elapsed {elapsed:.0f}s"
            self.console.print(text)
        return not self.stop.requested

    def _on_training_end(self) -> None:
        self.console.close()


# -- train / resume ----------------------------------------------------------------------------


def _env_provenance(env_id: str) -> dict[str, Any] | None:
    registry = load_plugins().registry("envs")
    if env_id not in registry:
        return None
    p = registry.get(env_id).provenance
    return {"plugin": p.plugin, "distribution": p.distribution, "version": p.version, "builtin": p.builtin}


def start_run(config_path: Path, overrides: Sequence[str], run_dir: Path | None, bar: bool) -> int:
    """``diffrl train CONFIG``: validate and compose first, then create the run folder and train.

    :return: the exit code (0, or 130 / 143 when interrupted)
    """
    _, config = runs.load_config(config_path, overrides)
    target = run_dir or runs.default_run_dir(config_path)
    runs.check_new_run_dir(target)
    env = make_env(config)
    try:
        model = make_model(config, env=env)
        eval_env = _eval_env(config)
    except BaseException:
        env.close()
        raise
    versions = runs.collect_versions(model.diffrl_components, _env_provenance(config.env))
    status = {
        "status": "created",
        "name": config_path.stem,
        "env": config.env,
        "algo": config.algo,
        "seed": config.seed,
        "num_timesteps": 0,
        "total_timesteps": config.total_timesteps,
        "checkpoint": None,
        "replay_buffer": None,
        "sessions": 0,
    }
    run = runs.create_run_dir(target, runs.resolved_config(config, versions), status)
    console = Console(bar)
    console.print(f"run folder: {run.path}")
    console.print(f"training {config.algo} on {config.env} for {config.total_timesteps} steps")
    return _train(model, config, run, eval_env, console, resumed=False)


def resume_run(run_dir: Path, overrides: Sequence[str], bar: bool) -> int:
    """``diffrl train --resume RUN_DIR``: continue from the latest checkpoint, step counter intact."""
    plan = runs.plan_resume(run_dir, overrides)
    run, config, saved, model_path, buffer_path = plan.run, plan.config, plan.saved, plan.model, plan.replay_buffer
    env = make_env(config)
    try:
        model = load_model(model_path, env=env)
        if buffer_path is not None:
            model.load_replay_buffer(buffer_path)  # type: ignore[attr-defined]
        eval_env = _eval_env(config)
    except BaseException:
        env.close()
        raise
    if config.seed is not None:  # a different but reproducible stream from here on
        model.set_random_seed(config.seed + model.num_timesteps)
    if config != saved:
        runs.write_text(run.config_file, runs.dump_yaml(runs.resolved_config(config, saved.versions)))
        run.update_status(total_timesteps=config.total_timesteps)
    console = Console(bar)
    console.print(
        f"resuming {run.path} from {run.relative(model_path)} at step {model.num_timesteps} of {config.total_timesteps}"
        f" ({'with' if buffer_path else 'without'} its replay buffer)"
    )
    return _train(model, config, run, eval_env, console, resumed=True)


def _eval_env(config: Config) -> VecEnv | None:
    if config.eval.freq == 0 and not config.eval.final:
        return None
    return make_eval_env(config, None if config.seed is None else config.seed + EVAL_SEED_OFFSET)


def _train(model: BaseAlgorithm, config: Config, run: runs.RunDir, eval_env: VecEnv | None, console: Console, resumed: bool) -> int:
    logger = make_logger(run, config)
    model.set_logger(logger)
    checkpointer = Checkpointer(run, config, console)
    evaluator = Evaluator(run, config, eval_env, console) if eval_env is not None else None
    with runs.StopSignals() as stop:
        progress = Progress(config, console, stop, evaluator)
        callbacks = [c for c in (checkpointer, evaluator, progress) if c is not None]
        status = run.read_status()
        run.update_status(status="running", pid=os.getpid(), sessions=int(status.get("sessions", 0)) + 1, error=None)
        try:
            model.learn(
                total_timesteps=config.total_timesteps - model.num_timesteps,
                callback=callbacks,
                log_interval=config.logging.log_interval,
                reset_num_timesteps=not resumed,
            )
            if stop.requested and model.num_timesteps < config.total_timesteps:
                path = checkpointer.save(model)
                run.update_status(status="interrupted", signal=stop.name, pid=None)
                console.print(
                    f"interrupted by {stop.name} at step {model.num_timesteps}: checkpoint {path}\n"
                    f"continue with: diffrl train --resume {run.path}",
                    err=True,
                )
                return runs.EXIT_CODES[stop.signum]  # type: ignore[index]
            _finish(model, config, run, checkpointer, evaluator, console)
            return 0
        except KeyboardInterrupt:
            # a second signal: stop at once, the last complete checkpoint stays the resume point
            status = run.update_status(status="interrupted", signal=stop.name or "SIGINT", pid=None)
            console.print(
                f"stopped at once; the last checkpoint is {status.get('checkpoint')} (step {status.get('checkpoint_timesteps', 0)})",
                err=True,
            )
            return runs.EXIT_CODES.get(stop.signum, 130)  # type: ignore[arg-type]
        except BaseException as exc:
            run.update_status(status="failed", pid=None, error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            console.close()
            logger.close()
            for env in (model.get_env(), eval_env):
                if env is not None:
                    env.close()


def _finish(model: BaseAlgorithm, config: Config, run: runs.RunDir, checkpointer: Checkpointer,
            evaluator: Evaluator | None, console: Console) -> None:
    if evaluator is not None and config.eval.final and (
        not evaluator.evaluations.timesteps or evaluator.evaluations.timesteps[-1] != model.num_timesteps
    ):
        evaluator.evaluate_now()
    checkpointer.save(model, run.model_file)
    results: dict[str, Any] = {"num_timesteps": model.num_timesteps}
    if evaluator is not None and evaluator.evaluations.timesteps:
        ev = evaluator.evaluations
        returns = [r for r in ev.results[-1] if not math.isnan(r)]
        mean, std = _summary(returns)
        results.update(
            eval_timesteps=ev.timesteps[-1],
            mean_return=mean,
            std_return=std,
            n_episodes=len(returns),
            deterministic=config.eval.deterministic,
            returns=returns,
            lengths=ev.ep_lengths[-1][: len(returns)],
        )
    runs.write_json(run.results_file, results)
    run.update_status(status="finished", pid=None)
    line = f"finished {model.num_timesteps} steps; model: {run.model_file}"
    if "mean_return" in results:
        line += f"; final eval return {fmt(results['mean_return'])} +/- {fmt(results['std_return'])}"
    console.print(line)


# -- diffrl eval -------------------------------------------------------------------------------


def locate_model(target: Path, env_id: str | None) -> tuple[Path, Config | None, str]:
    """The model to evaluate for ``diffrl eval TARGET``, and the run config when there is one.

    :return: ``(model path, config or None, a description)``
    """
    if target.is_dir():
        run = runs.open_run(target)
        config = run.read_config()
        if run.model_file.exists() and run.read_status().get("status") == "finished":
            return run.model_file, config, f"{run.model_file}"
        model_path, _, steps = run.resume_point()
        return model_path, config, f"{model_path} (checkpoint at step {steps}; the run is {run.read_status().get('status')})"
    if not target.exists():
        raise DiffRLError(f"{str(target)!r} does not exist (expected a run folder or a saved model .zip)")
    for parent in (target.parent, target.parent.parent):
        if (parent / runs.STATUS_FILE).exists() and (parent / runs.CONFIG_FILE).exists():
            return target, runs.RunDir(parent).read_config(), str(target)
    return target, None, str(target)


def eval_config(config: Config | None, env_id: str | None) -> Config:
    if env_id is not None:
        base = {"env": env_id} if config is None else {**runs.resolved_config(config), "env": env_id}
        return parse_config(base)
    if config is None:
        raise DiffRLError("the model is not in a run folder, so its env is unknown: pass --env ENV_ID")
    return config


def record_video(model: BaseAlgorithm, config: Config, path: Path, deterministic: bool, seed: int | None,
                 max_frames: int = 1000, fps: int | None = None) -> int:
    """Render one episode with ``render_mode="rgb_array"`` into a GIF (or a format imageio can write).

    :return: the number of frames
    """
    from diffrl_core.compose import check_env_id, make_registered_env

    check_env_id(config.env, load_plugins())
    env = make_registered_env(config.env, config.env_kwargs, render_mode="rgb_array")
    try:
        modes = env.metadata.get("render_modes", [])
        if "rgb_array" not in modes:
            raise DiffRLError(f"env {config.env!r} does not render rgb_array frames (its render modes: {modes}); no video")
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
    frames = [np.asarray(f, dtype=np.uint8) for f in frames if f is not None]
    if not frames:
        raise DiffRLError(f"env {config.env!r} rendered no frames")
    write_video(frames, path, fps)
    return len(frames)


def write_video(frames: list[np.ndarray], path: Path, fps: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        from PIL import Image

        # a fast palette per frame: PIL's default (median cut) takes seconds per hundred frames
        images = [Image.fromarray(frame).quantize(256, method=Image.Quantize.FASTOCTREE) for frame in frames]
        with runs.atomic_path(path) as tmp:
            images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=max(20, round(1000 / fps)), loop=0)
        return
    try:
        import imageio.v2 as imageio
    except ImportError:
        raise DiffRLError(f"cannot write {path.suffix!r} videos without imageio (pip install imageio imageio-ffmpeg); use a .gif path") from None
    try:
        with runs.atomic_path(path) as tmp:
            imageio.mimwrite(tmp, frames, fps=fps)
    except Exception as exc:  # imageio's backends raise many kinds of errors for a missing codec
        raise DiffRLError(f"cannot write the video {str(path)!r}: {exc}; a .gif path always works") from None


def evaluate_target(target: Path, episodes: int, deterministic: bool, env_id: str | None, seed: int | None,
                    video: Path | None, report: Callable[[str], None]) -> dict[str, Any]:
    """``diffrl eval``: returns of ``episodes`` episodes (and a video of one)."""
    model_path, run_config, description = locate_model(target, env_id)
    config = eval_config(run_config, env_id)
    env = make_eval_env(config, seed)
    model = load_model(model_path, env=env)
    returns, lengths = evaluate(model, env, episodes, deterministic)
    mean, std = _summary(returns)
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
        n = record_video(model, config, video, deterministic, seed)
        result["video"] = str(video)
        report(f"video: {video} ({n} frames)")
    return result

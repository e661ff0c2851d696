"""What ``diffrl train`` does while ``learn()`` runs: stable-baselines3 callbacks, output and logs.

- :class:`Checkpointer` saves ``checkpoints/model_<steps>.zip`` (+ the replay buffer),
- :class:`Evaluator` evaluates on a separate env and keeps ``evaluations.npz`` (:class:`Evaluations`),
- :class:`ProgressAndStop` shows the progress and ends ``learn()`` when a signal asks to stop,
- :class:`TrainingOutput` writes the messages for the user (a progress bar on a terminal),
- :func:`make_logger` logs every value to ``RUN_DIR/logs`` (:class:`AppendingCSVFormat`, TensorBoard).

This module imports torch and stable-baselines3: import it only where it is used.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter, Logger, TensorBoardOutputFormat, filter_excluded_keys
from stable_baselines3.common.vec_env import VecEnv

from diffrl_core import runs
from diffrl_core.config import Config
from diffrl_core.errors import DivergenceError
from diffrl_core.evaluation import evaluate, format_return, mean_std
from diffrl_core.model_file import read_evaluations
from diffrl_core.sb3.divergence import nonfinite_parameters

if TYPE_CHECKING:
    from diffrl_core.training import StopSignals


# -- output ------------------------------------------------------------------------------------


class TrainingOutput:
    """Messages for the user during training: a progress bar on a terminal, plain lines otherwise.

    :param bar: draw a tqdm progress bar (when stdout is a terminal)
    """

    def __init__(self, bar: bool) -> None:
        self.bar = bar
        self._tqdm: Any = None

    def start(self, total: int, initial: int) -> None:
        """Open the progress bar (when there is one) at ``initial`` of ``total`` steps."""
        if self.bar:
            from tqdm import tqdm

            self._tqdm = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, smoothing=0.05)

    def advance(self, n: int, **postfix: str) -> None:
        """Move the progress bar ``n`` steps on, showing ``postfix`` (e.g. the return) beside it."""
        if self._tqdm is not None:
            self._tqdm.update(n)
            if postfix:
                self._tqdm.set_postfix(postfix, refresh=False)

    def print(self, message: str, err: bool = False) -> None:
        """Print a line (to stderr when ``err``) without breaking the progress bar."""
        stream = sys.stderr if err else sys.stdout
        if self._tqdm is not None:
            self._tqdm.write(message, file=stream)
        else:
            print(message, file=stream, flush=True)

    def close(self) -> None:
        """Close the progress bar (when there is one)."""
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
    """stable-baselines3's logger writing every logged value to ``RUN_DIR/logs``.

    :param run: the run folder
    :param config: its config (``logging.csv`` and ``logging.tensorboard`` pick the formats)
    """
    formats: list[KVWriter] = []
    if config.logging.csv:
        formats.append(AppendingCSVFormat(run.logs / "progress.csv"))
    if config.logging.tensorboard:
        formats.append(TensorBoardOutputFormat(str(run.logs)))
    return Logger(folder=str(run.logs), output_formats=formats)


class Evaluations:
    """``RUN_DIR/evaluations.npz`` in stable-baselines3's ``EvalCallback`` format, kept across resumes.

    :param path: the ``.npz`` file (read when it exists)
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.timesteps: list[int] = []
        self.results: list[list[float]] = []
        self.ep_lengths: list[list[int]] = []
        if path.exists():
            data = read_evaluations(path)
            self.timesteps = [int(t) for t in data["timesteps"]]
            self.results = [list(map(float, r)) for r in data["results"]]
            self.ep_lengths = [list(map(int, n)) for n in data["ep_lengths"]]

    def add(self, num_timesteps: int, returns: list[float], lengths: list[int]) -> None:
        """Record one evaluation (dropping any made later, by a run resumed from an earlier checkpoint) and save."""
        keep = [i for i, t in enumerate(self.timesteps) if t < num_timesteps]
        self.timesteps = [self.timesteps[i] for i in keep] + [num_timesteps]
        self.results = [self.results[i] for i in keep] + [returns]
        self.ep_lengths = [self.ep_lengths[i] for i in keep] + [lengths]
        width = max(len(r) for r in self.results)
        pad = lambda rows, fill: np.array([list(r) + [fill] * (width - len(r)) for r in rows])  # noqa: E731
        with runs.atomic_path(self.path) as tmp, tmp.open("wb") as file:
            np.savez(
                file,
                timesteps=np.array(self.timesteps),
                results=pad(self.results, np.nan),
                ep_lengths=pad(self.ep_lengths, 0),
            )


# -- callbacks ---------------------------------------------------------------------------------


class _Periodic(BaseCallback):
    """Calls :meth:`on_period` each time ``num_timesteps`` reaches a multiple of ``freq`` (resume-safe).

    :param freq: the period in steps; 0 never calls it
    """

    def __init__(self, freq: int) -> None:
        super().__init__()
        self.freq = freq
        self._next = math.inf

    def _on_training_start(self) -> None:
        self._next = (self.num_timesteps // self.freq + 1) * self.freq if self.freq > 0 else math.inf

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next = (self.num_timesteps // self.freq + 1) * self.freq
            self.on_period()
        return True

    def on_period(self) -> None:
        """What to do every ``freq`` steps."""
        raise NotImplementedError


class Checkpointer(_Periodic):
    """Saves ``checkpoints/model_<steps>.zip`` (+ the replay buffer) and points ``status.json`` to it.

    :param run: the run folder
    :param config: its config (``checkpoint.*``)
    :param output: where to tell the user about each checkpoint
    """

    def __init__(self, run: runs.RunDir, config: Config, output: TrainingOutput) -> None:
        super().__init__(config.checkpoint.freq)
        self.run = run
        self.options = config.checkpoint
        self.output = output

    def on_period(self) -> None:
        path = self.save(self.model)
        self.output.print(f"checkpoint: {path} (step {self.model.num_timesteps})")

    def save(self, model: BaseAlgorithm, model_path: Path | None = None) -> Path:
        """Save ``model`` (and its replay buffer) and point ``status.json`` to it.

        :param model: the model
        :param model_path: where (default: ``checkpoints/model_<steps>.zip``)
        :return: the model's path
        """
        steps = model.num_timesteps
        broken = nonfinite_parameters({"actor": getattr(model, "actor", None), "critic": getattr(model, "critic", None),
                                       "policy": model.policy})
        if broken:  # never save what would overwrite a finite checkpoint with NaN weights
            raise DivergenceError(f"the update of the {broken[0]}", "weights", steps, "found when saving a checkpoint")
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
        for old in self.run.checkpoints.glob("replay_buffer_*"):
            if old != buffer_path and old.suffix in (runs.REPLAY_BUFFER_SUFFIX, ".pkl"):
                old.unlink(missing_ok=True)
        if self.options.keep:
            for _, old in self.run.model_checkpoints()[: -self.options.keep]:
                if old != model_path:
                    old.unlink(missing_ok=True)
        return model_path


class Evaluator(_Periodic):
    """Evaluates every ``eval.freq`` steps on a separate env; logs ``eval/*`` and keeps ``evaluations.npz``.

    :param run: the run folder
    :param config: its config (``eval.*``)
    :param env: the evaluation env
    :param output: where to tell the user about each evaluation
    """

    def __init__(self, run: runs.RunDir, config: Config, env: VecEnv, output: TrainingOutput) -> None:
        super().__init__(config.eval.freq)
        self.options = config.eval
        self.env = env
        self.output = output
        self.evaluations = Evaluations(run.evaluations_file)
        self.last: tuple[float, float] | None = None

    def on_period(self) -> None:
        self.evaluate_now()

    def evaluate_now(self) -> tuple[float, float]:
        """Evaluate the model now; log and record the result.

        :return: the mean and std of the returns
        """
        model = self.model
        returns, lengths = evaluate(model, self.env, self.options.n_episodes, self.options.deterministic)
        self.evaluations.add(model.num_timesteps, returns, lengths)
        mean, std = mean_std(returns)
        self.last = (mean, std)
        model.logger.record("eval/mean_reward", mean)
        model.logger.record("eval/std_reward", std)
        model.logger.record("eval/mean_ep_length", float(np.mean(lengths)))
        model.logger.record("time/total_timesteps", model.num_timesteps, exclude="tensorboard")
        model.logger.dump(model.num_timesteps)
        self.output.print(
            f"eval at step {model.num_timesteps}: return {format_return(mean)} +/- {format_return(std)}"
            f" ({len(returns)} episodes)"
        )
        return mean, std


class ProgressAndStop(BaseCallback):
    """Shows the progress, and ends ``learn()`` after the step in which a stop signal came.

    The progress is a bar (on a terminal) or one plain line every ``logging.print_freq`` steps.

    :param config: the run's config
    :param output: where the progress goes
    :param stop: the stop request, checked at every step
    :param evaluator: its latest evaluation is shown beside the bar (optional)
    """

    def __init__(self, config: Config, output: TrainingOutput, stop: StopSignals, evaluator: Evaluator | None) -> None:
        super().__init__()
        self.total = config.total_timesteps
        self.print_freq = config.logging.print_freq or max(1, config.total_timesteps // 20)
        self.output = output
        self.stop = stop
        self.evaluator = evaluator
        self._start_steps = 0
        self._start_time = 0.0
        self._shown = 0

    def _on_training_start(self) -> None:
        self._start_steps = self._shown = self.num_timesteps
        self._start_time = time.monotonic()
        self._next_line = (self.num_timesteps // self.print_freq + 1) * self.print_freq
        self.output.start(self.total, self.num_timesteps)

    def _episode_return(self) -> float | None:
        buffer = self.model.ep_info_buffer
        return float(np.mean([info["r"] for info in buffer])) if buffer else None

    def _on_step(self) -> bool:
        steps = self.num_timesteps
        if self.output.bar:
            if steps - self._shown >= 10 or steps >= self.total:
                ep_return = self._episode_return()
                postfix = {"return": f"{ep_return:.1f}"} if ep_return is not None else {}
                if self.evaluator is not None and self.evaluator.last is not None:
                    postfix["eval"] = f"{self.evaluator.last[0]:.1f}"
                self.output.advance(steps - self._shown, **postfix)
                self._shown = steps
        elif steps >= self._next_line:
            self._next_line = (steps // self.print_freq + 1) * self.print_freq
            elapsed = time.monotonic() - self._start_time
            fps = (steps - self._start_steps) / elapsed if elapsed > 0 else 0.0
            ep_return = self._episode_return()
            text = f"step {steps}/{self.total} ({100 * steps / self.total:.0f}%)"
            text += f"  ep_return {format_return(ep_return)}" if ep_return is not None else ""
            text += f"  fps {fps:.0f}  elapsed {elapsed:.0f}s"
            self.output.print(text)
        return not self.stop.requested

    def _on_training_end(self) -> None:
        self.output.close()

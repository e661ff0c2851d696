"""The life of a run: create its folder, train, stop on a signal, resume, finish.

``diffrl train`` reads and checks the config, then calls :func:`start_run` (or, with
``--resume``, :func:`resume_run`). What happens during ``learn()`` is in
:mod:`diffrl_core.callbacks`; the run folder's files are described in :mod:`diffrl_core.runs`.
This module imports torch and stable-baselines3: import it only where it is used.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from diffrl_core import runs
from diffrl_core.callbacks import Checkpointer, Evaluator, ProgressAndStop, TrainingOutput, make_logger
from diffrl_core.compose import algo_kwargs_of, load_model, make_env, make_model
from diffrl_core.config import ON_POLICY_ALGOS, Config
from diffrl_core.errors import EXIT_CODES, DiffRLError, DivergenceError
from diffrl_core.evaluation import format_return, make_eval_env, mean_std
from diffrl_core.model_file import in_model_format
from diffrl_core.plugins import PluginHost
from diffrl_core.threads import use_threads

#: Offset of the evaluation env's seed from the training seed (the envs must not share episodes).
EVAL_SEED_OFFSET = 10_000



class StopSignals:
    """Turn SIGINT / SIGTERM into a stop request that the training loop checks at each step.

    The first signal sets :attr:`signum`, so that ``learn()`` returns after the current step
    and a checkpoint can be written; a second one raises :class:`KeyboardInterrupt` at once.
    Used as a context manager; the previous handlers are restored on exit.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    @property
    def requested(self) -> bool:
        """Whether a signal asked to stop."""
        return self.signum is not None

    @property
    def name(self) -> str:
        """The signal's name (``"SIGINT"``), or ``""``."""
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def __enter__(self) -> StopSignals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _env_provenance(env_id: str, host: PluginHost) -> dict[str, Any] | None:
    """The plugin whose env class gymnasium makes for ``env_id`` (None: not a plugin's, e.g. gymnasium's own).

    The id's registration is credited only if gymnasium's entry point is still the one the
    plugin registered, so a run never credits a plugin for a class it did not run.
    """
    import gymnasium as gym

    registry = host.registry("envs")
    env_id = env_id.rpartition(":")[2]  # "module:ns/Env-v0" makes ns/Env-v0
    if env_id not in registry or env_id not in gym.registry:
        return None
    registration = registry.get(env_id)
    if gym.registry[env_id].entry_point != registration.target:
        return None
    return registration.provenance.as_dict()


def start_run(config: Config, run_dir: Path, name: str, bar: bool, host: PluginHost) -> int:
    """``diffrl train CONFIG``: compose first, then create the run folder and train.

    :param config: the validated config (``--set`` overrides applied)
    :param run_dir: the run folder to create; it must not exist, or be empty
    :param name: the run's name in ``status.json`` (the config file's stem)
    :param bar: draw a progress bar (stdout is a terminal)
    :param host: the plugin host the components and the env come from
    :return: the exit code (0, or 130 / 143 when interrupted)
    :raises DiffRLError: when the model cannot be composed, or ``run_dir`` is taken
    """
    env = make_env(config, host=host)
    try:
        model = make_model(config, env=env, host=host)
        eval_env = _eval_env(config, host)
    except BaseException:
        env.close()
        raise
    saved = model.diffrl_components  # type: ignore[attr-defined]  # a composed algorithm's
    versions = runs.collect_versions(saved["provenance"], _env_provenance(config.env, host))
    status = {
        "status": "created",
        "pid": os.getpid(),
        "name": name,
        "env": config.env,
        "algo": config.algo,
        "seed": config.seed,
        "num_timesteps": 0,
        "total_timesteps": config.total_timesteps,
        "checkpoint": None,
        "replay_buffer": None,
        "sessions": 0,
    }
    try:
        run = runs.create_run_dir(run_dir, runs.resolved_config(config, versions), status)
    except BaseException:
        for opened in (env, eval_env):
            if opened is not None:
                opened.close()
        raise
    try:
        output = TrainingOutput(bar)
        output.print(f"run folder: {run.path}")
        output.print(f"training {config.algo} on {config.env} for {config.total_timesteps} steps")
        return _train(model, config, run, eval_env, output, resumed=False)
    except BaseException:
        # stopped (Ctrl-C, or SIGTERM as cli.Terminated) or failed before _train set the status to
        # "running": the run has no step and no checkpoint, nothing to keep
        with contextlib.suppress(DiffRLError, OSError):
            if run.read_status().get("status") == "created":
                for opened in (env, eval_env):
                    if opened is not None:
                        opened.close()
                shutil.rmtree(run.path, ignore_errors=True)
        raise


def resume_run(plan: runs.ResumePlan, bar: bool, host: PluginHost, trust_pickle: bool = False) -> int:
    """``diffrl train --resume RUN_DIR``: continue from the latest checkpoint, step counter intact.

    :param plan: what to resume (:func:`diffrl_core.runs.plan_resume`)
    :param bar: draw a progress bar (stdout is a terminal)
    :param host: the plugin host the components and the env come from
    :param trust_pickle: load a checkpoint written by diffrl before its own format (a stable-baselines3 zip, a
        pickled replay buffer) with stable-baselines3's loaders, which run the pickles in them
    :return: the exit code (0, or 130 / 143 when interrupted)
    """
    run, config, saved, model_path, buffer_path = plan.run, plan.config, plan.saved, plan.model, plan.replay_buffer
    use_threads(config.threads)
    output = TrainingOutput(bar)
    if buffer_path is not None and buffer_path.suffix == ".pkl" and not trust_pickle:
        output.print(f"not loading {run.relative(buffer_path)}: it is a pickle (written before diffrl's own format), "
                     "and loading it would run whatever it holds. Pass --trust-pickle to load it")
        buffer_path = None
    env = make_env(config, host=host)
    try:
        kwargs = _changed_algo_kwargs(config, saved)
        if not in_model_format(model_path):
            kwargs = {**_unsaved_in_sb3_zips(config, env), **kwargs}
        model = load_model(model_path, env=env, host=host, trust_pickle=trust_pickle, **kwargs)
        if buffer_path is not None:
            model.load_replay_buffer(buffer_path, trust_pickle=trust_pickle)  # type: ignore[attr-defined]
        eval_env = _eval_env(config, host)
    except BaseException:
        env.close()
        raise
    if config.seed is not None:  # a different but reproducible stream from here on
        model.set_random_seed(config.seed + model.num_timesteps)
    if config != saved:
        runs.write_text(run.config_file, runs.dump_yaml(runs.resolved_config(config, saved.versions)))
        run.update_status(total_timesteps=config.total_timesteps)
    output.print(
        f"resuming {run.path} from {run.relative(model_path)} at step {model.num_timesteps} of {config.total_timesteps}"
        f" ({'with' if buffer_path else 'without'} its replay buffer)"
    )
    return _train(model, config, run, eval_env, output, resumed=True)


def _changed_algo_kwargs(config: Config, saved: Config) -> dict[str, Any]:
    """The algo_kwargs ``--resume --set`` changed (runs.plan_resume allowed only resumable ones), for ``load()``."""
    changed = {key: value for key, value in config.algo_kwargs.items() if saved.algo_kwargs.get(key) != value}
    if isinstance(changed.get("train_freq"), list):
        changed["train_freq"] = tuple(changed["train_freq"])
    return changed


def _unsaved_in_sb3_zips(config: Config, env: VecEnv) -> dict[str, Any]:
    """The settings a checkpoint in stable-baselines3's zip format holds only as pickles, from the run's config.

    diffrl's own format stores them; for a zip written before it they are passed to the loader,
    which uses them instead of the pickles it does not read.
    """
    if config.algo in ON_POLICY_ALGOS:
        return {}
    kwargs = algo_kwargs_of(config, env)
    train_freq = kwargs.get("train_freq", 1)
    return {"train_freq": tuple(train_freq) if isinstance(train_freq, list) else train_freq,
            "action_noise": kwargs.get("action_noise")}


def _eval_env(config: Config, host: PluginHost) -> VecEnv | None:
    if config.eval.freq == 0 and not config.eval.final:
        return None
    return make_eval_env(config, None if config.seed is None else config.seed + EVAL_SEED_OFFSET, host=host)


def _train(model: BaseAlgorithm, config: Config, run: runs.RunDir, eval_env: VecEnv | None, output: TrainingOutput,
           resumed: bool) -> int:
    logger = make_logger(run, config)
    model.set_logger(logger)
    composition = model.composition  # type: ignore[attr-defined]  # a composed algorithm's
    if composition.raw_log_prob:
        output.print(
            f"note: policy.raw_log_prob is set: SAC and the loss terms use head {composition.head.name!r}'s log-prob "
            f"of its raw action, not of the action the critic sees (post-processor "
            f"{composition.postprocessor.name!r} has no Jacobian)"
        )
    checkpointer = Checkpointer(run, config, output)
    evaluator = Evaluator(run, config, eval_env, output) if eval_env is not None else None
    with StopSignals() as stop:
        progress = ProgressAndStop(config, output, stop, evaluator)
        callbacks: list[BaseCallback] = [c for c in (checkpointer, evaluator, progress) if c is not None]
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
                output.print(
                    f"interrupted by {stop.name} at step {model.num_timesteps}: checkpoint {path}\n"
                    f"continue with: diffrl train --resume {run.path}",
                    err=True,
                )
                return EXIT_CODES[stop.signum]  # type: ignore[index]
            _finish(model, config, run, checkpointer, evaluator, output)
            return 0
        except DivergenceError as exc:
            # nothing non-finite is saved: the status keeps pointing to the last finite checkpoint
            status = run.update_status(status="diverged", pid=None, error=str(exc), diverged_at=exc.num_timesteps)
            exc.args = (str(exc) + _after_divergence(run, status),)
            raise
        except KeyboardInterrupt:
            # a second signal: stop at once, the last complete checkpoint stays the resume point
            status = run.update_status(status="interrupted", signal=stop.name or "SIGINT", pid=None)
            output.print(
                f"stopped at once; the last checkpoint is {status.get('checkpoint')}"
                f" (step {status.get('checkpoint_timesteps', 0)})",
                err=True,
            )
            return EXIT_CODES.get(stop.signum or signal.SIGINT, 130)
        except BaseException as exc:
            run.update_status(status="failed", pid=None, error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            output.close()
            logger.close()
            for env in (model.get_env(), eval_env):
                if env is not None:
                    env.close()


def _after_divergence(run: runs.RunDir, status: dict[str, Any]) -> str:
    """What a diverged run has left and how to go on, for the error message."""
    checkpoint = status.get("checkpoint")
    if not checkpoint:
        return (f". Run {run.path} is marked diverged; it had no checkpoint yet: start a new run with a change "
                "(e.g. a lower algo_kwargs.learning_rate)")
    return (f". Run {run.path} is marked diverged; its last checkpoint, {checkpoint} (step "
            f"{status.get('checkpoint_timesteps')}), has finite weights: continue from it with a change, e.g. "
            f"diffrl train --resume {run.path} --set algo_kwargs.learning_rate=...")


def _finish(model: BaseAlgorithm, config: Config, run: runs.RunDir, checkpointer: Checkpointer,
            evaluator: Evaluator | None, output: TrainingOutput) -> None:
    if evaluator is not None and config.eval.final and (
        not evaluator.evaluations.timesteps or evaluator.evaluations.timesteps[-1] != model.num_timesteps
    ):
        evaluator.evaluate_now()
    checkpointer.save(model, run.model_file)
    results: dict[str, Any] = {"num_timesteps": model.num_timesteps}
    if evaluator is not None and evaluator.evaluations.timesteps:
        ev = evaluator.evaluations
        returns = [r for r in ev.results[-1] if not math.isnan(r)]
        mean, std = mean_std(returns)
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
        shown_mean, shown_std = format_return(results["mean_return"]), format_return(results["std_return"])
        line += f"; final eval return {shown_mean} +/- {shown_std}"
    output.print(line)

"""``diffrl sweep`` with ``search:``: an Optuna study whose trials are scored over several seeds.

As in RL Baselines3 Zoo: TPE (or random) sampling, median pruning on the periodic evaluations, a
study in a storage that several ``diffrl sweep`` processes (on several machines) share with the same
``--storage``. Unlike the Zoo, each trial trains every seed of the sweep file, one after the other,
and its value is the mean over the seeds of the final evaluation return (``results.json``).

- **Runs.** Trial ``N`` trains ``<config-stem>-trialN-seedS`` for each seed, ordinary runs of the
  sweep folder (``index.json`` lists them; ``diffrl compare`` reads them). The trial's user attrs
  hold the run names, the sweep folder and the host, so that a study shared by several machines says
  where each trial's runs are.
- **Seeds one after the other.** ``--workers`` trials run at once, each one process at a time: the
  pruner can stop a bad trial after its first seed (the seeds it never trains are the saving), the
  workers spread over more trials (TPE learns from more points), and the reported steps stay
  comparable across trials (below).
- **Pruning.** While a run trains, its ``evaluations.npz`` is polled; each new evaluation is reported
  as ``trial.report(mean return, step)`` with ``step = seed_index * stride + env step``, ``stride``
  a power of ten above the largest ``total_timesteps`` of the search space: the same step is the same
  seed index and env step in every trial, which is what the median pruner compares (it needs the same
  ``eval.freq`` in every trial). Warm-up: the first third of the longest run's steps (the Zoo's
  ``n_evaluations // 3``). A pruned run gets SIGTERM (it saves a checkpoint), its index status is
  ``pruned``, its trial PRUNED; a run at its last evaluation is left to finish, and the trial is
  pruned before its next seed.
- **Choices.** Optuna stores scalar choices (None, bool, int, float, str) as they are; when a param's
  choices include a list or mapping (e.g. ``policy.net_arch``), every choice of it is stored as its
  JSON text (``"[64, 64]"``) and read back with :func:`json.loads`. The user attr ``point`` holds
  the values as the configs got them. Several config files: the config file is one more categorical
  param, ``config``.
- **Counting.** The study is done when it holds ``n_trials`` trials that count: COMPLETE, PRUNED,
  and FAIL with an ``error`` user attr (an invalid sampled config, a failed or diverged run). A trial
  stopped by Ctrl-C / SIGTERM, or left running by a ``diffrl sweep`` that was killed (found on the next
  start: same host and a dead pid, or this sweep folder), is marked FAIL without an error (user attr
  ``interrupted``) and does not count: a rerun samples anew until ``n_trials``. Before asking for a
  trial, this process counts the trials that count or run; as two processes can ask at the same
  moment, a trial numbered after ``n_trials`` such trials is told FAIL at once (user attr ``surplus``)
  and not run, so the study never gets more than ``n_trials`` trials that count. A trial left running
  by a machine that was lost is taken as running until that host runs a sweep again.
- **Samplers** are not seeded: processes sharing a study would sample the same points. TPE is
  multivariate (as in the Zoo) with ``constant_liar`` (trials running at once are not sampled alike).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import socket
import statistics
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from diffrl_core import runs
from diffrl_core.config import Config, parse_config
from diffrl_core.errors import ConfigError, DiffRLError
from diffrl_core.sweeps.folder import DONE, FAILED, SweepFolder
from diffrl_core.sweeps.local import run_trial
from diffrl_core.sweeps.spec import SearchParam, Sweep, Trial, describe_point
from diffrl_core.sweeps.trial import PRUNED, RunningProcesses

if TYPE_CHECKING:
    import optuna

    from diffrl_core.plugins import PluginHost

#: the file of the study's summary in the sweep folder
SEARCH_FILE = "search.json"
#: the default storage: a journal file in the sweep folder
JOURNAL_FILE = "optuna.journal"
#: the Optuna param of the config file, when the sweep file names several
CONFIG_PARAM = "config"
#: how often the main thread wakes up while the trials run (Ctrl-C is handled there)
WAIT_SECONDS = 1.0
#: seconds sqlite waits for another process's write lock (several processes share one file)
SQLITE_TIMEOUT = 60.0
#: tries to open the storage and the study (processes starting together race to create them)
_OPEN_ATTEMPTS = 4

_SCALARS = (type(None), bool, int, float, str)


def import_optuna() -> Any:
    """Optuna, its logging quieted to warnings (this module prints its own progress).

    :raises DiffRLError: when it is not installed
    """
    try:
        import optuna
    except ImportError:
        raise DiffRLError("a sweep file with `search:` needs Optuna: pip install 'diffrl-core[optuna]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def run_search(sweep: Sweep, folder: SweepFolder, workers: int, storage: str | None, host: PluginHost,
               stream: TextIO | None = None, space: SearchSpace | None = None) -> int:
    """Run the Optuna study of ``sweep`` until it holds ``search.n_trials`` trials that count (module docstring).

    :param sweep: the sweep file, with a ``search`` section
    :param folder: the open sweep folder: the runs, the index, ``search.json`` and the default journal
    :param workers: trials that run at once in this process
    :param storage: the Optuna storage URL (``sqlite:///study.db``, ``postgresql://...``, ``journal:///path``),
        or None for a journal file in the sweep folder
    :param host: the plugins, to check the components that each sampled config names
    :param stream: where progress is printed (default stdout)
    :param space: the search space, if the caller checked it already (before creating the sweep folder)
    :return: the exit code: 0, or 1 when some trial of this invocation failed
    :raises ConfigError: when the search space holds an invalid config (before anything runs)
    :raises KeyboardInterrupt: (or the CLI's SIGTERM exception) after the running runs saved their checkpoints
    """
    import_optuna()
    space = space or SearchSpace(sweep, host)
    study = open_study(sweep, folder, storage, space.max_timesteps)
    return Search(sweep, folder, study, space, workers, stream, storage=storage).run()


# -- the search space ---------------------------------------------------------------------------------


def _encoded(param: SearchParam) -> bool:
    """Whether Optuna stores the choices of ``param`` as JSON texts (some choice is a list or mapping)."""
    return param.choices is not None and not all(isinstance(choice, _SCALARS) for choice in param.choices)


class SearchSpace:
    """The searched keys of a sweep file, checked: every corner of the space and every choice is a valid config.

    :param sweep: the sweep file, with a ``search`` section
    :param host: the plugins (component names are checked without importing torch)
    :raises ConfigError: naming the sweep file, the point and the key, before any trial runs
    """

    def __init__(self, sweep: Sweep, host: PluginHost) -> None:
        if sweep.spec.search is None:
            raise ConfigError(f"sweep {sweep.path} has no `search` section")
        self.sweep = sweep
        self.host = host
        self.params: dict[str, SearchParam] = dict(sweep.spec.search.params)
        self.bases = list(sweep.bases)
        if len(self.bases) > 1 and CONFIG_PARAM in self.params:
            raise ConfigError(f"sweep {sweep.path}: with several config files, {CONFIG_PARAM!r} is the searched "
                              "config file; it cannot be a searched key too")
        for key, param in self.params.items():
            where = f"sweep {sweep.path}, search.params.{key}"
            if param.choices is not None and _encoded(param):
                try:
                    json.dumps(param.choices, allow_nan=False)
                except (TypeError, ValueError) as exc:
                    raise ConfigError(f"{where}: a choice is not plain data ({exc})") from None
        #: the largest ``total_timesteps`` of a run in the space
        self.max_timesteps = max(self._check(base, point) for base in self.bases for point in self._corners())
        #: the reported step of seed index ``i`` at env step ``t`` is ``i * stride + t``: a power of ten, so that
        #: steps read well (``100000 + 2000``), above the longest run with room for vectorized envs' last steps
        self.stride = 10 ** len(str(int(self.max_timesteps * 1.25)))

    def _corners(self) -> list[dict[str, Any]]:
        """The points a typo would show in: all lows, all highs, and each choice of each key (others low)."""
        low = {key: _low(param) for key, param in self.params.items()}
        high = {key: _high(param) for key, param in self.params.items()}
        points = [low, high]
        for key, param in self.params.items():
            points += [{**low, key: choice} for choice in param.choices or ()]
        return points

    def _check(self, base: str, point: dict[str, Any]) -> int:
        """Build and check the first seed's run of ``point``; its total_timesteps."""
        trial = self.sweep.trial(base, point, self.sweep.spec.seed_list[0], name="check")
        config = check_trial(trial, self.host, f"{base} in sweep {self.sweep.path} at {describe_point(point)}")
        if not config.eval.final:
            raise ConfigError(f"sweep {self.sweep.path}: a search scores each trial by its final evaluation; "
                              f"{base} at {describe_point(point)} has eval.final: false")
        return int(config.total_timesteps)

    def sample(self, trial: optuna.Trial) -> tuple[str, dict[str, Any]]:
        """The config file and the point ``{dotted key: value}`` of a new trial."""
        base = self.bases[0]
        if len(self.bases) > 1:
            base = trial.suggest_categorical(CONFIG_PARAM, self.bases)
        return base, {key: suggest(trial, key, param) for key, param in self.params.items()}


def suggest(trial: optuna.Trial, key: str, param: SearchParam) -> Any:
    """The value of one searched key (``suggest_int``, ``suggest_float`` or ``suggest_categorical``)."""
    if param.choices is not None:
        if _encoded(param):
            return json.loads(trial.suggest_categorical(key, [json.dumps(choice) for choice in param.choices]))
        return trial.suggest_categorical(key, param.choices)
    assert param.low is not None and param.high is not None  # the spec checked it
    if param.int:
        return trial.suggest_int(key, int(param.low), int(param.high), step=int(param.step or 1), log=param.log)
    return trial.suggest_float(key, param.low, param.high, step=param.step, log=param.log)


def _low(param: SearchParam) -> Any:
    if param.choices is not None:
        return param.choices[0]
    assert param.low is not None
    return int(param.low) if param.int else param.low


def _high(param: SearchParam) -> Any:
    if param.choices is not None:
        return param.choices[-1]
    assert param.low is not None and param.high is not None
    high = param.high
    if param.step is not None:  # the largest value on the grid of steps
        high = param.low + math.floor((param.high - param.low) / param.step) * param.step
    return int(high) if param.int else high


def check_trial(trial: Trial, host: PluginHost, where: str) -> Config:
    """The validated config of ``trial``, its component names checked.

    :raises ConfigError: naming ``where``, the key and what is valid
    """
    from diffrl_core.resolve import check_names

    config = parse_config(trial.config, source=f"config {where}")
    try:
        check_names(config, host)
    except DiffRLError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return config


# -- the study ---------------------------------------------------------------------------------------


def redact(storage: str | None) -> str | None:
    """The storage URL without its password (it is printed and written to ``search.json``)."""
    return None if storage is None else re.sub(r"(//[^/@:]*):[^/@]*@", r"\1:***@", storage)


def make_storage(folder: SweepFolder, storage: str | None) -> Any:
    """The Optuna storage: the sweep folder's journal (None), a journal file (``journal:///path``) or an RDB URL.

    Processes that open a new database at the same moment race to create its tables: the losers try again.

    :raises DiffRLError: when the storage cannot be opened
    """
    import_optuna()
    database = storage.removeprefix("sqlite:///") if storage and storage.startswith("sqlite:///") else None
    if database and database != ":memory:" and not Path(database).parent.is_dir():
        raise DiffRLError(f"cannot open the Optuna storage {storage}: folder {str(Path(database).parent)!r} does "
                          "not exist")
    for attempt in range(_OPEN_ATTEMPTS):
        try:
            return _storage(folder, storage)
        except Exception as exc:  # a malformed URL, a missing database driver, an unreachable server
            if not _transient(exc) or attempt == _OPEN_ATTEMPTS - 1:
                raise DiffRLError(f"cannot open the Optuna storage {_storage_label(folder, storage)}: "
                                  f"{type(exc).__name__}: {exc}") from None
            time.sleep(0.2 + random.random())
    raise AssertionError("unreachable")


def _storage(folder: SweepFolder, storage: str | None) -> Any:
    import optuna

    if storage is None or storage.startswith("journal:"):
        path = folder.path / JOURNAL_FILE if storage is None else Path(_journal_path(storage))
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    # sqlite: several processes write one file; they wait for its lock rather than fail after 5 s
    engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT}} if storage.startswith("sqlite") else None
    return optuna.storages.RDBStorage(storage, engine_kwargs=engine_kwargs)


def _transient(exc: Exception) -> bool:
    """Whether ``exc`` is the database's answer to a race (a table or row created at the same moment, a lock)."""
    try:
        from sqlalchemy.exc import DBAPIError
    except ImportError:
        return False
    return isinstance(exc, DBAPIError) and not isinstance(exc.orig, ImportError)


def _journal_path(storage: str) -> str:
    """``journal:///abs/file`` -> ``/abs/file``; ``journal:rel/file`` -> ``rel/file``."""
    rest = storage.removeprefix("journal:")
    return rest[2:] if rest.startswith("//") else rest


def _storage_label(folder: SweepFolder, storage: str | None) -> str:
    return redact(storage) or f"journal {folder.path / JOURNAL_FILE}"


def open_study(sweep: Sweep, folder: SweepFolder, storage: str | None, max_timesteps: int) -> optuna.Study:
    """Create the study of ``sweep``, or load it (a rerun, or another process sharing ``storage``).

    The samplers are not seeded: processes sharing a study would sample the same points.

    :param max_timesteps: the longest run's ``total_timesteps``: the pruner's warm-up is its first third
    :raises DiffRLError: when the storage fails, holds that study with another direction, or the sweep folder
        holds the runs of another study
    """
    optuna = import_optuna()
    search = sweep.spec.search
    assert search is not None
    name = search.study_name or sweep.name
    label = _storage_label(folder, storage)
    summary = _read_json(folder.path / SEARCH_FILE)
    if summary is not None and (summary.get("study"), summary.get("storage")) != (name, redact(storage)):
        # run names are by trial number: another study's trial 0 would find this one's runs
        raise DiffRLError(
            f"sweep folder {str(folder.path)!r} holds the runs of study {summary.get('study')!r} "
            f"({summary.get('storage') or 'its journal'}), not of {name!r} ({redact(storage) or 'its journal'}); "
            "give this search another --sweep-dir"
        )
    if search.sampler == "tpe":
        with warnings.catch_warnings():  # Optuna 4 calls both experimental; Optuna 5 has them as its defaults
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler: Any = optuna.samplers.TPESampler(n_startup_trials=search.startup_trials, multivariate=True,
                                                      constant_liar=True)
    else:
        sampler = optuna.samplers.RandomSampler()
    pruner: Any = optuna.pruners.NopPruner()
    if search.pruner == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=search.startup_trials, n_warmup_steps=max_timesteps // 3)
    backend = make_storage(folder, storage)
    for attempt in range(_OPEN_ATTEMPTS):
        try:
            study = optuna.create_study(storage=backend, study_name=name, sampler=sampler, pruner=pruner,
                                        direction=search.direction, load_if_exists=True)
            break
        except Exception as exc:  # processes creating the study at the same moment: the losers try again
            if not _transient(exc) or attempt == _OPEN_ATTEMPTS - 1:
                raise DiffRLError(f"cannot open study {name!r} in {label}: {type(exc).__name__}: {exc}") from None
            time.sleep(0.2 + random.random())
    if study.direction.name.lower() != search.direction:
        raise DiffRLError(f"study {name!r} in {label} is to {study.direction.name.lower()}, not to "
                          f"{search.direction}; give this search another search.study_name")
    return study


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# -- the trials --------------------------------------------------------------------------------------


def _counts(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a finished trial counts towards ``n_trials``: a result, not one that was stopped (module docstring)."""
    from optuna.trial import TrialState

    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and "error" in trial.user_attrs)


def _open(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial runs (here or elsewhere) or waits to."""
    from optuna.trial import TrialState

    return trial.state in (TrialState.RUNNING, TrialState.WAITING)


class _Reporter:
    """Reports a trial's evaluations to Optuna as they appear in its runs' ``evaluations.npz``.

    :param trial: the Optuna trial
    :param stride: the step offset of each seed index (see :attr:`SearchSpace.stride`)
    """

    def __init__(self, trial: optuna.Trial, stride: int) -> None:
        self.trial = trial
        self.stride = stride
        self.reported: set[int] = set()
        self._seen: tuple[Path, int, int] | None = None

    def poll(self, run_dir: Path, seed_index: int) -> bool:
        """Report the evaluations not reported yet; whether there was one."""
        from diffrl_core.model_file import read_evaluations

        path = run_dir / "evaluations.npz"
        try:
            stat = path.stat()
        except OSError:
            return False
        if self._seen == (path, stat.st_mtime_ns, stat.st_size):  # rewritten atomically after each evaluation
            return False
        data = read_evaluations(path)
        self._seen = (path, stat.st_mtime_ns, stat.st_size)
        new = False
        for timesteps, results in zip(data["timesteps"], data["results"], strict=True):
            step = seed_index * self.stride + int(timesteps)
            if step not in self.reported:
                self.trial.report(float(statistics.fmean(float(r) for r in results)), step)
                self.reported.add(step)
                new = True
        return new

    def watcher(self, run_dir: Path, seed_index: int, total_timesteps: int) -> Callable[[], bool]:
        """The ``watch`` of a run: True (stop it) when a new evaluation makes the pruner prune the trial.

        A run that is at its end is left to finish: a SIGTERM as it exits would make a finished run fail
        (the trial is then pruned before its next seed).
        """

        def watch() -> bool:
            try:
                if not (self.poll(run_dir, seed_index) and self.trial.should_prune()):
                    return False
                last = max(self.reported) - seed_index * self.stride
                return last < total_timesteps and runs.RunDir(run_dir).read_status().get("status") == "running"
            except Exception:  # a storage hiccup, a file being replaced: the run goes on, the next poll retries
                return False

        return watch


class _Stopped(Exception):
    """The trial was stopped by Ctrl-C / SIGTERM of the sweep (it does not count; a rerun samples anew)."""


class _Failed(Exception):
    """The trial failed: an invalid sampled config, a failed or diverged run (it counts, with its error)."""


class _Pruned(Exception):
    """The pruner stopped the trial (the message says where)."""


class Search:
    """Runs the trials of a study, ``workers`` at once, until it holds ``n_trials`` trials that count.

    :param sweep: the sweep file, with a ``search`` section
    :param folder: the open sweep folder
    :param study: the study (:func:`open_study`; tests give an in-memory one)
    :param space: the checked search space
    :param workers: trials that run at once in this process (threads, each waiting on one run's process)
    :param stream: where progress is printed (default stdout)
    :param storage: the storage URL as given, for ``search.json`` and messages (None: the sweep folder's journal)
    """

    def __init__(self, sweep: Sweep, folder: SweepFolder, study: optuna.Study, space: SearchSpace, workers: int,
                 stream: TextIO | None = None, storage: str | None = None) -> None:
        assert sweep.spec.search is not None
        self.sweep = sweep
        self.folder = folder
        self.study = study
        self.space = space
        self.workers = max(1, workers)
        self.stream = stream
        self.storage = storage
        self.n_trials = sweep.spec.search.n_trials
        self.owner = {"host": socket.gethostname(), "pid": os.getpid(), "sweep_dir": str(folder.path.resolve())}
        self.finished: dict[int, str] = {}  # trials this invocation ran: number -> complete | pruned | failed | ...
        self._running = RunningProcesses()
        self._stopping = self._running.stopping
        self._lock = threading.Lock()  # the open trials
        self._ask_lock = threading.Lock()  # one ask (count, ask, sample) at a time: the count stays exact here
        self._output_lock = threading.Lock()  # progress lines and search.json
        self._open: dict[int, optuna.Trial] = {}  # trials of this process not told yet

    # running

    def run(self) -> int:
        """Run trials until the study is full; print the best one and write ``search.json``.

        :return: 0, or 1 when a trial of this invocation failed
        :raises KeyboardInterrupt: (or the CLI's SIGTERM exception) after every running run saved its checkpoint
            and the running trials were marked FAIL (``interrupted``)
        """
        self._fail_stale()
        trials = self.study.get_trials(deepcopy=False)
        counted, running = sum(map(_counts, trials)), sum(map(_open, trials))
        self._echo(f"search {self.sweep.path} -> {self.folder.path}: study {self.study.study_name!r} in "
                   f"{_storage_label(self.folder, self.storage)}, {counted} of {self.n_trials} trials finished"
                   + (f", {running} running elsewhere" if running else ""))
        if counted + running < self.n_trials:
            seeds = len(self.sweep.spec.seed_list)
            workers = min(self.workers, self.n_trials - counted - running)
            self._echo(f"running up to {workers} trial{'s' if workers != 1 else ''} at once, "
                       f"{seeds} seed{'s' if seeds != 1 else ''} each, one after the other")
            self._run_workers(workers)
        self.write_summary()
        self._echo_best()
        failed = [number for number, state in self.finished.items() if state == "failed"]
        if failed:
            self._echo(f"{len(failed)} trial(s) failed (errors above, in {self.folder.index_file} and "
                       f"{self.folder.path / 'logs'}); a rerun samples new trials", err=True)
        return 1 if failed else 0

    def _run_workers(self, workers: int) -> None:
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="diffrl-search")
        pending = {pool.submit(self._work) for _ in range(workers)}
        try:
            while pending:  # the main thread waits in short steps: Ctrl-C and SIGTERM arrive here
                done, pending = wait(pending, timeout=WAIT_SECONDS, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()  # a worker's unexpected error (e.g. the storage) ends the search
        except BaseException:
            self.stop()
            try:
                pool.shutdown(wait=True, cancel_futures=True)  # each worker marks its trial interrupted
            finally:
                self._abandon()  # what a second Ctrl-C left open
                with contextlib.suppress(Exception):
                    self.write_summary()
            raise
        pool.shutdown(wait=True)
        self._abandon()

    def stop(self) -> None:
        """Ask no more trials, and send every running run SIGTERM (once): it checkpoints and exits."""
        self._running.stop()

    def _work(self) -> None:
        """A worker: ask a trial, run it, until the study is full or the search stops."""
        while not self._stopping.is_set():
            asked = self._ask()
            if asked is None:
                return
            self._run_trial(*asked)

    def _ask(self) -> tuple[optuna.Trial, str, dict[str, Any]] | None:
        """A new trial and its sampled config file and point; None when the study is full (or the search stops).

        :raises DiffRLError: when the search space cannot be sampled (it changed in a way Optuna does not allow)
        """
        with self._ask_lock:
            if self._stopping.is_set():
                return None
            trials = self.study.get_trials(deepcopy=False)
            if sum(_counts(t) or _open(t) for t in trials) >= self.n_trials:
                return None
            trial = self.study.ask()
            with self._lock:
                self._open[trial.number] = trial
            for key, value in self.owner.items():
                trial.set_user_attr(key, value)
            # another process may have asked at the same moment: the trials numbered first have the places
            trials = self.study.get_trials(deepcopy=False)
            if sum(t.number < trial.number and (_counts(t) or _open(t)) for t in trials) >= self.n_trials:
                trial.set_user_attr("surplus", True)
                self._tell(trial, "surplus")
                return None
            try:
                base, point = self.space.sample(trial)
            except ValueError as exc:  # the choices of a key changed since earlier trials: so would every trial's
                self._tell(trial, "surplus")
                raise DiffRLError(
                    f"study {self.study.study_name!r} cannot sample the search space of {self.sweep.path}: {exc} (its "
                    "earlier trials had other choices or another kind of range for that key); give the changed "
                    "search another search.study_name and --sweep-dir"
                ) from None
            return trial, base, point

    def _run_trial(self, trial: optuna.Trial, base: str, point: dict[str, Any]) -> None:
        """Train the seeds of ``trial`` one after the other, and tell Optuna how it went."""
        try:
            value = self._train(trial, base, point)
        except _Stopped:
            self._tell(trial, "interrupted")
        except _Pruned as exc:
            self._tell(trial, "pruned", error=str(exc))
        except _Failed as exc:
            self._tell(trial, "failed", error=str(exc))
        except Exception as exc:  # a bug or a storage error: this trial fails, the worker goes on
            self._tell(trial, "failed", error=f"{type(exc).__name__}: {exc}")
        else:
            self._tell(trial, "complete", value=value)

    def _train(self, trial: optuna.Trial, base: str, point: dict[str, Any]) -> float:
        """The mean final return of ``trial``'s seeds.

        :raises _Failed: (invalid config, failed run) _Pruned or _Stopped
        """
        number = trial.number
        stem = Path(base).stem
        trial.set_user_attr("point", point)
        try:
            runs_ = [self.sweep.trial(base, point, seed, name=f"{stem}-trial{number}-seed{seed}")
                     for seed in self.sweep.spec.seed_list]
            trial.set_user_attr("runs", [run.name for run in runs_])
            totals = [check_trial(run, self.space.host, f"{base} in sweep {self.sweep.path}, trial {number}")
                      .total_timesteps for run in runs_]
        except DiffRLError as exc:
            for seed in self.sweep.spec.seed_list:  # listed in the index with the error, as a failed run
                self.folder.record(f"{stem}-trial{number}-seed{seed}", status=FAILED, error=str(exc), base=base,
                                   point=point, seed=seed, optuna_trial=number)
            raise _Failed(str(exc)) from None
        reporter = _Reporter(trial, self.space.stride)
        returns: list[float] = []
        for index, run in enumerate(runs_):
            if self._stopping.is_set():
                raise _Stopped
            if index and trial.should_prune():  # between seeds: the last one's evaluations were reported
                raise _Pruned(f"after seed {self.sweep.spec.seed_list[index - 1]}")
            # one seed at a time: the seeds a pruned trial never trains stay out of the index
            self.folder.adopt(self.sweep, [run])
            self.folder.record(run.name, optuna_trial=number)
            run_dir = self.folder.run_dir(run.name)
            watch = reporter.watcher(run_dir, index, totals[index])
            outcome = run_trial(self.folder, run.name, watch=watch, started=self._running.started)
            with contextlib.suppress(Exception):
                reporter.poll(run_dir, index)  # evaluations written just before the process ended
            if outcome.status == PRUNED:
                raise _Pruned(f"at seed {run.seed}, step {outcome.num_timesteps}")
            if self._stopping.is_set() and outcome.status != DONE:  # e.g. a SIGTERM before train's handlers were set
                raise _Stopped
            if outcome.status != DONE:
                raise _Failed(f"run {run.name} {outcome.status}: {outcome.error or f'exit code {outcome.exit_code}'}")
            if outcome.final_return is None or not math.isfinite(outcome.final_return):
                raise _Failed(f"run {run.name} finished without a final evaluation return ({run_dir / 'results.json'})")
            returns.append(outcome.final_return)
        return statistics.fmean(returns)

    def _tell(self, trial: optuna.Trial, how: str, value: float | None = None, error: str | None = None) -> None:
        """Finish ``trial`` in the study (``how``: complete, pruned, failed, interrupted or surplus) and print it."""
        from optuna.trial import TrialState

        with contextlib.suppress(Exception):  # the storage may be what failed; the state matters more
            if how == "failed":
                trial.set_user_attr("error", str(error)[:4000])
            if how == "interrupted":
                trial.set_user_attr("interrupted", True)
        state = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(how, TrialState.FAIL)
        self.study.tell(trial, value if how == "complete" else None, state=state, skip_if_finished=True)
        with self._lock:
            self._open.pop(trial.number, None)
        if how == "surplus":
            return
        self.finished[trial.number] = how
        params = describe_point(trial.user_attrs.get("point") or trial.params)
        if how == "complete":
            line = f"trial {trial.number} done: {value:.6g} ({params})"
        elif how == "pruned":
            line = f"trial {trial.number} pruned {error} ({params})"
        elif how == "failed":
            line = f"trial {trial.number} failed ({params}): {str(error).strip().splitlines()[0][:300]}"
        else:
            line = f"trial {trial.number} interrupted ({params}): not counted, a rerun samples anew"
        best = self._best()
        if best is not None:
            line += f" | best: trial {best.number}, {best.value:.6g}"
        self._echo(line)
        with contextlib.suppress(Exception):  # a summary is a convenience: never the reason a trial fails
            self.write_summary()

    def _abandon(self) -> None:
        """Mark the trials this process left open FAIL (``interrupted``): a rerun does not wait for them."""
        with self._lock:
            left = list(self._open.values())
        for trial in left:
            with contextlib.suppress(Exception):
                self._tell(trial, "interrupted")

    def _fail_stale(self) -> None:
        """Mark FAIL (``interrupted``) the trials that a killed ``diffrl sweep`` of this host left running: its pid
        is dead, or it ran this sweep folder (whose lock is ours now: that process is gone, even if its pid is reused).
        """
        from optuna.trial import TrialState

        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            attrs = frozen.user_attrs
            if attrs.get("host") != self.owner["host"] or attrs.get("pid") == os.getpid():
                continue  # another machine's trials: only it knows whether they still run
            dead = "pid" in attrs and not runs.pid_alive(attrs["pid"])
            if dead or attrs.get("sweep_dir") == self.owner["sweep_dir"]:
                with contextlib.suppress(Exception):  # finished meanwhile: it is no longer ours to mark
                    # a frozen trial's user attrs are set through the storage (the study has no public way)
                    self.study._storage.set_trial_user_attr(frozen._trial_id, "interrupted", True)
                    self.study.tell(frozen.number, state=TrialState.FAIL, skip_if_finished=True)
                self._echo(f"trial {frozen.number} was left running by a stopped diffrl sweep (pid "
                           f"{attrs.get('pid')}): marked failed, not counted")

    # reporting

    def _best(self) -> optuna.trial.FrozenTrial | None:
        try:
            return self.study.best_trial
        except ValueError:  # no complete trial yet
            return None

    def _echo(self, line: str, err: bool = False) -> None:
        with self._output_lock:
            click.echo(line, file=self.stream, err=err and self.stream is None)

    def _echo_best(self) -> None:
        best = self._best()
        if best is None:
            self._echo("no trial completed yet")
            return
        runs_ = best.user_attrs.get("runs") or []
        where = best.user_attrs.get("sweep_dir")
        here = where == self.owner["sweep_dir"]
        lines = [f"best: trial {best.number}, {best.value:.6g} (the mean final return over "
                 f"{len(runs_) or '?'} seed{'s' if len(runs_) != 1 else ''})"]
        point = best.user_attrs.get("point") or best.params
        lines += [f"  {key}: {json.dumps(value)}" for key, value in point.items()]
        folder = self.folder.path if here else Path(str(where))
        lines.append(f"runs: {folder / 'runs'}/{{{','.join(runs_)}}}" + ("" if here else
                                                                          f" on {best.user_attrs.get('host')}"))
        lines.append(f"summary: {self.folder.path / SEARCH_FILE}")
        self._echo("\n".join(lines))

    def summary(self) -> dict[str, Any]:
        """What ``search.json`` holds: the study, the best trial and every trial of the study (all processes')."""
        trials = self.study.get_trials(deepcopy=False)
        best = self._best()
        return {
            "study": self.study.study_name,
            "storage": redact(self.storage),
            "direction": self.sweep.spec.search.direction if self.sweep.spec.search else None,
            "n_trials": self.n_trials,
            "counted": sum(map(_counts, trials)),
            "best": None if best is None else _describe_trial(best),
            "trials": [_describe_trial(trial) for trial in trials],
            "updated_at": runs.now(),
        }

    def write_summary(self) -> None:
        """Write ``search.json`` in the sweep folder (atomically)."""
        data = self.summary()
        with self._output_lock:
            runs.write_json(self.folder.path / SEARCH_FILE, data)


def _describe_trial(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    attrs = trial.user_attrs
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "counted": _counts(trial),
        "params": trial.params,
        "point": attrs.get("point"),
        "value": trial.value if trial.values else None,
        "runs": attrs.get("runs", []),
        "sweep_dir": attrs.get("sweep_dir"),
        "host": attrs.get("host"),
        "error": attrs.get("error"),
        **{flag: True for flag in ("interrupted", "surplus") if attrs.get(flag)},
    }


__all__ = ["SEARCH_FILE", "Search", "SearchSpace", "import_optuna", "make_storage", "open_study", "run_search",
           "suggest"]

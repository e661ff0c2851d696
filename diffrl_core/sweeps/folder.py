"""The sweep folder: one run folder per trial, the config each was made from, logs, and an index.

::

    sweeps/<sweep-stem>/
      sweep.yaml        the sweep file, as it was first run (a rerun checks that it still matches)
      index.json        every trial: status, final return, error, attempts, times (rewritten atomically)
      configs/<run>.yaml  the complete config of each run
      logs/<run>.log    what ``diffrl train`` printed, every attempt appended
      runs/<run>/       an ordinary run folder (``diffrl eval``, ``plot``, ``compare`` read it)

A rerun reads each run folder's own ``status.json``: finished and diverged runs are kept, interrupted
ones continue from their checkpoint (``diffrl train --resume``), runs without a checkpoint start over.
A lock file keeps two ``diffrl sweep`` processes out of the same folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from diffrl_core import runs
from diffrl_core.errors import ConfigError, DiffRLError
from diffrl_core.sweeps.spec import Sweep, Trial

INDEX_FILE = "index.json"
SPEC_FILE = "sweep.yaml"
LOCK_FILE = ".lock"
INDEX_FORMAT = "diffrl-sweep"
INDEX_VERSION = 1

#: a trial's status in the index
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
DIVERGED, INTERRUPTED = "diverged", "interrupted"
#: sent to a Ray cluster, not known to run yet (Ray starts it when a CPU is free)
SUBMITTED = "submitted"
#: statuses a rerun leaves alone: the run has its result
FINAL = (DONE, DIVERGED)


def default_sweep_dir(sweep_file: str | os.PathLike[str], root: str | os.PathLike[str] = "sweeps") -> Path:
    """``sweeps/<sweep-stem>``: the same folder on every invocation, so that a rerun continues it."""
    return Path(root) / Path(sweep_file).stem


@dataclass(frozen=True)
class RunState:
    """What a trial's run folder holds now: its index status, and how to go on if it is not final."""

    status: str
    resume: bool  # continue from the run's checkpoint (``--resume``) rather than start over
    num_timesteps: int = 0
    final_return: float | None = None
    error: str | None = None


class SweepFolder:
    """A sweep folder, locked by this process while it is open (a context manager)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock_file: IO[str] | None = None
        self._index_lock = threading.Lock()  # local workers record from their threads
        self.index: dict[str, Any] = {}

    # layout

    @property
    def index_file(self) -> Path:
        return self.path / INDEX_FILE

    def config_file(self, name: str) -> Path:
        return self.path / "configs" / f"{name}.yaml"

    def log_file(self, name: str) -> Path:
        return self.path / "logs" / f"{name}.log"

    def run_dir(self, name: str) -> Path:
        return self.path / "runs" / name

    # opening

    def __enter__(self) -> SweepFolder:
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def open(self) -> None:
        """Create the folder if needed, take its lock and read its index.

        :raises DiffRLError: when another process runs this sweep, or the index is not a sweep index
        """
        if self.path.exists() and not self.path.is_dir():
            raise DiffRLError(f"sweep folder {str(self.path)!r} is a file, not a folder")
        for sub in ("configs", "logs", "runs"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        lock = (self.path / LOCK_FILE).open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "?"
            lock.close()
            raise DiffRLError(
                f"sweep folder {str(self.path)!r} is being run by another diffrl sweep (pid {holder}); wait for it, "
                "or stop it first"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        self._lock_file = lock
        self.index = self._read_index()

    def close(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # releases the lock
            self._lock_file = None

    def _read_index(self) -> dict[str, Any]:
        if not self.index_file.exists():
            return {"format": INDEX_FORMAT, "version": INDEX_VERSION, "trials": {}}
        try:
            index = json.loads(self.index_file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DiffRLError(f"cannot read {self.index_file}: {exc}") from None
        is_index = isinstance(index, dict) and index.get("format") == INDEX_FORMAT
        if not is_index or not isinstance(index.get("trials"), dict):
            raise DiffRLError(f"{self.index_file} is not a diffrl sweep index; use another --sweep-dir")
        if index.get("version") != INDEX_VERSION:
            raise DiffRLError(f"{self.index_file} has version {index.get('version')!r}; this diffrl reads version "
                              f"{INDEX_VERSION} (upgrade diffrl-core)")
        return index

    # the sweep's trials

    def adopt(self, sweep: Sweep, trials: Iterable[Trial]) -> None:
        """Write each trial's config (checking that a rerun did not change one) and list it in the index.

        :raises ConfigError: when a trial's config differs from the one its run was made from
        """
        spec_copy = self.path / SPEC_FILE
        if not spec_copy.exists():
            runs.write_text(spec_copy, sweep.path.read_text())
        with self._index_lock:  # the pool's threads record outcomes meanwhile (search mode adopts as it goes)
            self.index["sweep"] = str(sweep.path)
            for trial in trials:
                self._adopt(trial)
            self.write_index()

    def _adopt(self, trial: Trial) -> None:
        text = trial.config_text()
        target = self.config_file(trial.name)
        if target.exists() and target.read_text() != text:
            raise ConfigError(
                f"the config of run {trial.name!r} changed since it was started in {self.path} "
                f"(compare {target} with {trial.base} and the sweep file); give the changed sweep another "
                "--sweep-dir, or remove that run's folder and config to redo it"
            )
        if not target.exists():
            runs.write_text(target, text)
        entry = self.index["trials"].setdefault(trial.name, {"status": PENDING, "attempts": 0})
        entry.update(base=trial.base, point=trial.point, seed=trial.seed, run=f"runs/{trial.name}")
        state = self.state_of(trial.name)
        entry.update(status=state.status, num_timesteps=state.num_timesteps, final_return=state.final_return)
        if state.error:
            entry["error"] = state.error

    def state_of(self, name: str) -> RunState:
        """What ``runs/<name>`` holds: finished, diverged, resumable or nothing to continue from."""
        path = self.run_dir(name)
        if not (path / runs.STATUS_FILE).exists():
            return RunState(PENDING, resume=False)
        run = runs.RunDir(path)
        try:
            status = run.read_status()
        except DiffRLError as exc:
            return RunState(FAILED, resume=False, error=str(exc))
        steps = int(status.get("num_timesteps") or 0)
        if status.get("status") == "finished":
            return RunState(DONE, False, steps, final_return(run))
        if status.get("status") == "diverged":
            return RunState(DIVERGED, False, steps, error=status.get("error"))
        if status.get("status") in ("running", "created") and runs.pid_alive(status.get("pid")):
            raise DiffRLError(f"run {str(path)!r} of the sweep is being trained right now (pid {status.get('pid')}) "
                              "by another process; stop it first")
        try:
            _, _, at = run.resume_point()
        except DiffRLError:
            return RunState(INTERRUPTED if status.get("status") == "interrupted" else FAILED, False, steps,
                            error=status.get("error"))
        resumable = at < int(status.get("total_timesteps") or 0)
        return RunState(INTERRUPTED if status.get("status") == "interrupted" else FAILED, resumable, at,
                        error=status.get("error"))

    def fresh_start(self, name: str) -> None:
        """Remove what a run that cannot be continued left (no checkpoint): it starts over."""
        shutil.rmtree(self.run_dir(name), ignore_errors=True)

    def record(self, name: str, **changes: Any) -> dict[str, Any]:
        """Update one trial's entry and rewrite the index (atomically; safe from worker threads)."""
        with self._index_lock:
            entry = self.index["trials"].setdefault(name, {"status": PENDING, "attempts": 0})
            entry.update(changes)
            self.write_index()
            return dict(entry)

    def write_index(self) -> None:
        self.index["updated_at"] = runs.now()
        runs.write_json(self.index_file, self.index)

    def entries(self) -> dict[str, dict[str, Any]]:
        with self._index_lock:
            return {name: dict(entry) for name, entry in self.index["trials"].items()}


def final_return(run: runs.RunDir) -> float | None:
    """A run's score as ``diffrl compare`` takes it (:func:`diffrl_core.comparison.final_score`), or None when it has
    no evaluation (or its files are damaged: the index says so through the run's status)."""
    from diffrl_core.comparison import final_score  # numpy: not needed to open a sweep folder

    try:
        score = final_score(run)
    except DiffRLError:
        return None
    return None if score is None else score.value

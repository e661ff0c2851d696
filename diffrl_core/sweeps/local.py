"""Running a sweep's trials on this machine: a pool of ``--workers`` ``diffrl train`` processes.

The pool is the standard library's thread pool, each thread waiting on one run's process: nothing
to install or start. Ctrl-C or SIGTERM of the sweep passes one SIGTERM to every running run (each
saves a checkpoint), leaves the trials not yet started alone, and lets the rerun continue them.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from diffrl_core import runs
from diffrl_core.sweeps.folder import FAILED, FINAL, RUNNING, SweepFolder
from diffrl_core.sweeps.trial import Outcome, RunningProcesses, run_training

#: how often the pool refreshes the progress table while it waits (seconds)
REFRESH_SECONDS = 1.0


def run_trial(folder: SweepFolder, name: str, watch: Callable[[], bool] | None = None,
              started: Callable[[subprocess.Popen[bytes]], None] | None = None) -> Outcome:
    """Run (or continue) one trial of the sweep folder on this machine, and record its outcome in the index.

    A trial whose run already finished (or diverged) is not run again. A failure of the run is recorded,
    never raised: one bad trial does not end the sweep.
    """
    state = folder.state_of(name)
    if state.status in FINAL:
        return Outcome(state.status, 0, state.num_timesteps, state.final_return, state.error)
    if not state.resume:
        folder.fresh_start(name)
    attempts = int(folder.entries().get(name, {}).get("attempts", 0)) + 1
    folder.record(name, status=RUNNING, attempts=attempts, started_at=runs.now(), host=socket.gethostname(),
                  error=None, resumed=state.resume)
    start = time.monotonic()
    try:
        outcome = run_training(folder.config_file(name), folder.run_dir(name), folder.log_file(name), state.resume,
                               watch=watch, started=started)
    except Exception as exc:  # e.g. the log cannot be written: this trial fails, the sweep goes on
        outcome = Outcome(FAILED, -1, error=f"{type(exc).__name__}: {exc}")
    folder.record(name, status=outcome.status, num_timesteps=outcome.num_timesteps,
                  final_return=outcome.final_return, error=outcome.error, exit_code=outcome.exit_code,
                  finished_at=runs.now(), seconds=round(time.monotonic() - start, 3))
    return outcome


class LocalPool:
    """Runs trials in ``workers`` processes at once on this machine.

    :param folder: the open sweep folder
    :param workers: how many runs train at the same time (one torch thread each, by default)
    """

    def __init__(self, folder: SweepFolder, workers: int) -> None:
        self.folder = folder
        self.workers = workers
        self.processes = RunningProcesses()

    def _run(self, name: str, watch: Callable[[], bool] | None) -> Outcome | None:
        if self.processes.stopping.is_set():
            return None
        return run_trial(self.folder, name, watch, self.processes.started)

    def run(self, names: Sequence[str], refresh: Callable[[], None] = lambda: None,
            watch: Callable[[str], Callable[[], bool] | None] = lambda name: None) -> list[Outcome | None]:
        """Run the trials ``names`` (in this order, ``workers`` at a time) and return their outcomes.

        :param refresh: called about every :data:`REFRESH_SECONDS` and after each trial (the progress table)
        :param watch: a trial's watcher, by name (see :func:`~diffrl_core.sweeps.trial.run_training`)
        :raises KeyboardInterrupt: (or the CLI's SIGTERM exception) after every running run saved its checkpoint
        """
        pool = ThreadPoolExecutor(max_workers=max(1, self.workers), thread_name_prefix="diffrl-sweep")
        futures = [pool.submit(self._run, name, watch(name)) for name in names]
        try:
            pending = set(futures)
            while pending:
                _, pending = wait(pending, timeout=REFRESH_SECONDS, return_when=FIRST_COMPLETED)
                refresh()
        except BaseException:
            self.stop()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return [future.result() for future in futures]

    def stop(self) -> None:
        """Start no more trials, and send every running one SIGTERM (once): it checkpoints and exits."""
        self.processes.stop()

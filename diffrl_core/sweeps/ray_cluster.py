"""Running a sweep's trials on a Ray cluster: ``diffrl sweep --address ADDR`` (or ``$RAY_ADDRESS``).

Each trial is one Ray task (``num_cpus=1``): Ray places it on a node with a free CPU and, when the
node or the task's worker is lost, starts it again elsewhere (``--retries`` times). Nothing else is
scheduled here. The nodes share no file system with this machine: the task gets the trial's config
(and, to continue an interrupted run, its packed run folder), trains in a scratch folder of the node
(a ``diffrl train`` process, as the local pool runs it) and returns the packed run folder and its log,
which land in the sweep folder as each trial finishes, so a sweep stopped later keeps them.

Requirements: every node of the cluster runs the same Python with diffrl-core, the plugins the
sweep's configs use and their environments installed (``pip install 'diffrl-core[ray]'`` and the
plugins, in the environment ``ray start`` is run from); the sweep itself runs on a node of the
cluster (usually the head: ``ray start --head`` prints the address), or connects through Ray Client
(``ray://HEAD:10001``). Each run trains on one torch thread (the configs' default), in one CPU of Ray.

Ctrl-C or SIGTERM of the sweep cancels its outstanding tasks (their processes are killed, not
checkpointed) and marks those trials interrupted: a rerun starts each of them again from the last
state that reached the sweep folder, its checkpoint from an earlier invocation, or the beginning. A
trial whose task fails even after Ray's retries is recorded failed with the error, and the sweep goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from diffrl_core import runs
from diffrl_core.errors import DiffRLError
from diffrl_core.sweeps.folder import FAILED, FINAL, INTERRUPTED, PENDING, SUBMITTED, SweepFolder
from diffrl_core.sweeps.trial import Outcome, pack_run, run_training, unpack_run

#: how often the progress table is refreshed while the driver waits for results (seconds)
REFRESH_SECONDS = 1.0
#: how long the driver tries to reach the cluster's address before it gives up (seconds); ``ray.init``
#: itself would retry an address nobody listens on for minutes
CONNECT_TIMEOUT = 5.0
#: the scratch folders of the tasks, in a node's temporary folder
SCRATCH_PREFIX = "diffrl-sweep-"
#: the file in a scratch folder that names the worker process using it
_OWNER_FILE = "owner.pid"

_START_CLUSTER = ("start one with `ray start --head` on the head node and `ray start --address HEAD:PORT` on the "
                  "others, then pass the address `ray start --head` prints (or run without --address and "
                  "$RAY_ADDRESS to use the local --workers)")


def run_on_ray(folder: SweepFolder, names: Sequence[str], address: str, refresh: Callable[[], None] = lambda: None,
               retries: int = 3) -> None:
    """Run the trials ``names`` of the open sweep folder on the Ray cluster at ``address``, and record them.

    :param folder: the open sweep folder; each trial's outcome is recorded in its index as it comes in
    :param names: the trials to run (finished or diverged ones are skipped)
    :param address: the cluster's address: ``HOST:PORT`` of its head, ``auto``, or ``ray://HOST:PORT``
    :param refresh: called about every :data:`REFRESH_SECONDS` and after each trial (the progress table)
    :param retries: how often Ray starts a trial again whose node or worker was lost
    :raises DiffRLError: when Ray is not installed, or the cluster cannot be reached
    :raises KeyboardInterrupt: (or the CLI's SIGTERM exception) after the outstanding trials were cancelled
    """
    try:
        import ray
    except ImportError:
        raise DiffRLError("running a sweep on a Ray cluster (--address or $RAY_ADDRESS) needs Ray on this machine "
                          "and every node: pip install 'diffrl-core[ray]'") from None
    _check_reachable(address)
    try:
        ray.init(address=address, ignore_reinit_error=True, logging_level=logging.ERROR, log_to_driver=False)
    except Exception as exc:  # ConnectionError, or whatever Ray says about a cluster it cannot join
        with contextlib.suppress(Exception):
            ray.shutdown()
        reason = str(exc).strip().rstrip(".") or type(exc).__name__
        raise DiffRLError(f"cannot connect to the Ray cluster at {address!r}: {reason}; {_START_CLUSTER}. A cluster "
                          "with token authentication (`ray start` turns it on where ~/.ray/auth_token exists) needs "
                          "RAY_AUTH_MODE=token and its token (~/.ray/auth_token or $RAY_AUTH_TOKEN) here too") from None
    try:
        _RayDriver(ray, folder, retries).run(names, refresh)
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()


def _check_reachable(address: str) -> None:
    """Fail fast, with a clear message, when nothing listens at a ``HOST:PORT`` address.

    (``ray.init`` would retry for minutes, printing connection warnings.) Other addresses (``auto``,
    ``local``) are left to Ray.
    """
    target = address.removeprefix("ray://")
    host, sep, port_text = target.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        return
    host = host.strip("[]")  # [::1]:6379
    try:
        socket.create_connection((host, int(port_text)), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise DiffRLError(f"cannot reach the Ray cluster at {address!r} ({reason}); {_START_CLUSTER}") from None


class _RayDriver:
    """Submits one task per trial, and lands each result in the sweep folder as it completes."""

    def __init__(self, ray: Any, folder: SweepFolder, retries: int) -> None:
        self.ray = ray
        self.folder = folder
        self.retries = retries
        self.pending: dict[Any, str] = {}  # task's result ref -> trial name

    def run(self, names: Sequence[str], refresh: Callable[[], None]) -> None:
        train = self.ray.remote(num_cpus=1, max_retries=self.retries)(_train_on_node)
        try:
            submitted = {name: self._submit(train, name) for name in names}
            # one index write for them all: a sweep may submit thousands of trials
            trials = self.folder.index["trials"]
            for name, changes in submitted.items():
                if changes:
                    trials.setdefault(name, {"status": PENDING, "attempts": 0}).update(changes)
            self.folder.write_index()
            refresh()
            while self.pending:
                ready, _ = self.ray.wait(list(self.pending), num_returns=len(self.pending), timeout=REFRESH_SECONDS)
                for ref in ready:
                    self._gather(ref)
                refresh()
        except BaseException:  # Ctrl-C, SIGTERM (the CLI's Terminated), or a failure of this process
            self._cancel()
            raise

    def _submit(self, train: Any, name: str) -> dict[str, Any] | None:
        """Submit a trial's task; return the changes of its index entry (None: the trial is finished already)."""
        state = self.folder.state_of(name)
        if state.status in FINAL:
            return None
        if not state.resume:
            self.folder.fresh_start(name)
        attempts = int(self.folder.index["trials"].get(name, {}).get("attempts", 0)) + 1  # (entries() copies all)
        changes = {"status": SUBMITTED, "attempts": attempts, "started_at": runs.now(), "host": None, "error": None,
                   "resumed": state.resume}
        try:
            packed = pack_run(self.folder.run_dir(name)) if state.resume else None
            ref = train.remote(name, self.folder.config_file(name).read_text(), packed, state.resume)
        except Exception as exc:  # e.g. the run folder cannot be read: this trial fails, the sweep goes on
            return {**changes, "status": FAILED, "error": f"cannot submit the run to Ray: {type(exc).__name__}: {exc}",
                    "exit_code": -1, "finished_at": runs.now()}
        self.pending[ref] = name
        return changes

    def _gather(self, ref: Any) -> None:
        """Land a completed task: its run folder, its log and its outcome (a failed task: its error)."""
        name = self.pending[ref]  # (left there until it landed: an interrupt meanwhile marks it interrupted)
        try:
            result = self.ray.get(ref)
        except Exception as exc:  # the task failed after Ray's retries: lost nodes, crashed workers, ...
            self.folder.record(name, status=FAILED, error=self._task_error(exc), exit_code=-1,
                               finished_at=runs.now())
            del self.pending[ref]
            return
        changes: dict[str, Any] = {key: result[key] for key in ("host", "node_ip", "ray_node", "started_at", "seconds")}
        try:
            if result["run"] is not None:
                unpack_run(result["run"], self.folder.run_dir(name))
            log_file = self.folder.log_file(name)
            log_file.parent.mkdir(parents=True, exist_ok=True)
            with log_file.open("a", encoding="utf-8") as log:
                log.write(result["log"])
                log.write(f"--- {runs.now()} trained on {result['host']} ({result['node_ip']}, Ray node "
                          f"{result['ray_node'][:12]}) in a scratch folder, saved to {self.folder.run_dir(name)}\n")
        except Exception as exc:  # e.g. this machine's disk is full: this trial fails, the sweep goes on
            changes.update(status=FAILED, error=f"cannot save the run from {result['host']}: "
                           f"{type(exc).__name__}: {exc}", exit_code=result["exit_code"])
        else:
            changes.update(status=result["status"], num_timesteps=result["num_timesteps"],
                           final_return=result["final_return"], error=result["error"], exit_code=result["exit_code"])
        self.folder.record(name, finished_at=runs.now(), **changes)
        del self.pending[ref]

    def _task_error(self, exc: BaseException) -> str:
        cause = getattr(exc, "cause", None)
        if isinstance(exc, self.ray.exceptions.RayTaskError) and isinstance(cause, BaseException):
            return f"on Ray: {type(cause).__name__}: {cause}"
        text = str(exc).strip() or type(exc).__name__
        return f"on Ray, given up after {self.retries} retries: {type(exc).__name__}: {text}"

    def _cancel(self) -> None:
        """Keep the results already in, cancel the other tasks (killing their processes) and mark them interrupted."""
        with contextlib.suppress(Exception):
            ready, _ = self.ray.wait(list(self.pending), num_returns=len(self.pending), timeout=0)
            for ref in ready:
                self._gather(ref)
        trials = self.folder.index["trials"]
        for ref, name in self.pending.items():
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
            trials.setdefault(name, {"status": PENDING, "attempts": 0}).update(status=INTERRUPTED,
                                                                               finished_at=runs.now())
        self.pending.clear()
        with contextlib.suppress(Exception):
            self.folder.write_index()  # once for them all


# -- on the node --------------------------------------------------------------------------------------


def _train_on_node(name: str, config_text: str, packed: bytes | None, resume: bool) -> dict[str, Any]:
    """The Ray task: train one trial in a scratch folder of this node, and return what it left.

    :param name: the trial's name (the run's name in its ``status.json``, as the local pool gives it)
    :param config_text: the trial's complete config
    :param packed: its run folder (:func:`~diffrl_core.sweeps.trial.pack_run`) to continue, or None
    :param resume: continue ``packed`` from its checkpoint (``diffrl train --resume``)
    :return: the outcome's fields, this attempt's log, the packed run folder (or None) and where it ran
    """
    import ray

    _remove_stale_scratch()
    started_at = runs.now()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX) as scratch:
        root = Path(scratch)
        (root / _OWNER_FILE).write_text(str(os.getpid()))
        config_file = root / f"{name}.yaml"
        config_file.write_text(config_text)
        run_dir = root / "run"
        log_file = root / "train.log"
        if packed is not None:
            unpack_run(packed, run_dir)
        try:
            outcome = run_training(config_file, run_dir, log_file, resume)
        except Exception as exc:  # e.g. the log cannot be written
            outcome = Outcome(FAILED, -1, error=f"{type(exc).__name__}: {exc}")
        log = log_file.read_text(encoding="utf-8", errors="replace") if log_file.exists() else ""
        data = pack_run(run_dir) if run_dir.is_dir() else None
    return {
        "status": outcome.status, "exit_code": outcome.exit_code, "num_timesteps": outcome.num_timesteps,
        "final_return": outcome.final_return, "error": outcome.error, "log": log, "run": data,
        "host": socket.gethostname(), "node_ip": ray.util.get_node_ip_address(),
        "ray_node": ray.get_runtime_context().get_node_id(), "started_at": started_at,
        "seconds": round(time.monotonic() - start, 3),
    }


def _remove_stale_scratch() -> None:
    """Remove the scratch folders of tasks whose worker is gone (killed by a cancel or a lost driver)."""
    for path in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*"):
        try:
            owner = int((path / _OWNER_FILE).read_text())
        except (OSError, ValueError):  # not ours, or being created
            continue
        if not runs.pid_alive(owner):  # (this process: a folder an earlier task of this worker left)
            shutil.rmtree(path, ignore_errors=True)

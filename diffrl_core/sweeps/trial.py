"""One run of a sweep: a ``diffrl train`` process (new, or ``--resume``), and what came of it.

Each run is its own process, as a user would start it: its own torch thread(s), its own signal
handling (SIGINT/SIGTERM save a checkpoint), and a crash that cannot take the sweep down. The same
functions serve the local pool and Ray tasks (which run them on a cluster node, in a scratch folder
whose run folder is sent back packed, see :func:`pack_run`).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from diffrl_core import runs
from diffrl_core.errors import DiffRLError
from diffrl_core.sweeps.folder import DIVERGED, DONE, FAILED, INTERRUPTED, final_return

#: how often a running trial's watcher is called (seconds)
POLL_SECONDS = 0.5
#: the status of a trial that its watcher stopped (Optuna's pruner)
PRUNED = "pruned"


@dataclass(frozen=True)
class Outcome:
    """How a trial's process ended, read from its exit code, its run folder and its log."""

    status: str  # done | diverged | failed | interrupted | pruned
    exit_code: int
    num_timesteps: int = 0
    final_return: float | None = None
    error: str | None = None


def train_command(config_file: Path, run_dir: Path, resume: bool) -> list[str]:
    """The ``diffrl train`` command line of a trial (through :mod:`diffrl_core.sweeps.child`)."""
    command = [sys.executable, "-m", "diffrl_core.sweeps.child", str(os.getpid()), "train"]
    if resume:
        return [*command, "--resume", str(run_dir)]
    return [*command, str(config_file), "--run-dir", str(run_dir)]


def start_training(config_file: Path, run_dir: Path, log_file: Path, resume: bool) -> subprocess.Popen[bytes]:
    """Start a trial's ``diffrl train`` process; its output is appended to ``log_file``.

    It gets a session of its own: a Ctrl-C in the sweep's terminal reaches the sweep only, which
    passes one signal on to each run (two would stop a run without its checkpoint).
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        log.write(f"--- {runs.now()} {'resume' if resume else 'start'}\n".encode())
        log.flush()
        return subprocess.Popen(
            train_command(config_file, run_dir, resume), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )


def stop_process(process: subprocess.Popen[bytes], signum: int = signal.SIGTERM) -> None:
    """Send ``signum`` to a trial's process group (its ``subproc`` envs too), once; it saves a checkpoint."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)


class RunningProcesses:
    """The ``diffrl train`` processes of a pool: once it stops, each running one, and any started after, gets one
    SIGTERM (it saves a checkpoint and exits). Pools pass :meth:`started` to :func:`run_training`."""

    def __init__(self) -> None:
        self._processes: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self.stopping = threading.Event()

    def started(self, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._processes = {p for p in self._processes if p.poll() is None} | {process}
            if self.stopping.is_set():  # started just as the pool was stopped
                stop_process(process)

    def stop(self) -> None:
        """Start no more runs, and send each running one SIGTERM, once."""
        with self._lock:
            self.stopping.set()
            for process in self._processes:
                stop_process(process)


def run_training(config_file: Path, run_dir: Path, log_file: Path, resume: bool,
                 watch: Callable[[], bool] | None = None, started: Callable[[subprocess.Popen[bytes]], None] | None
                 = None) -> Outcome:
    """Run a trial to its end, and read its outcome.

    :param config_file: the complete config of the run
    :param run_dir: its run folder (created by ``diffrl train``, or continued with ``resume``)
    :param log_file: where the process's output is appended
    :param resume: continue the run folder from its checkpoint
    :param watch: called every :data:`POLL_SECONDS` while the process runs; True stops it with SIGTERM
        (it saves a checkpoint) and the outcome is ``pruned``
    :param started: called with the process once it runs (the local pool keeps it, to pass signals on)
    """
    process = start_training(config_file, run_dir, log_file, resume)
    if started is not None:
        started(process)
    stopped = False
    while True:
        try:
            code = process.wait(timeout=POLL_SECONDS)
            break
        except subprocess.TimeoutExpired:
            if watch is not None and not stopped and watch():
                stop_process(process)
                stopped = True
        except BaseException:  # Ctrl-C or SIGTERM of the caller: the run checkpoints before the caller goes
            stop_process(process, signal.SIGINT)
            with contextlib.suppress(BaseException):
                process.wait()
            raise
    outcome = read_outcome(run_dir, code, log_file)
    if stopped and outcome.status == INTERRUPTED:
        return Outcome(PRUNED, code, outcome.num_timesteps, None, "stopped early by the pruner")
    return outcome


def read_outcome(run_dir: Path, exit_code: int, log_file: Path | None = None) -> Outcome:
    """What a finished ``diffrl train`` process left: its status, steps, final return and error."""
    status: dict[str, object] = {}
    run = runs.RunDir(run_dir)
    if run.status_file.exists():
        with contextlib.suppress(DiffRLError):
            status = run.read_status()
    steps = _int(status.get("num_timesteps"))
    if status.get("status") == "finished":  # whatever signal came after the final model was saved
        return Outcome(DONE, exit_code, steps, final_return(run))
    if status.get("status") == "diverged":
        return Outcome(DIVERGED, exit_code, steps, error=str(status.get("error") or "diverged"))
    if exit_code in (130, 143) or status.get("status") == "interrupted":
        return Outcome(INTERRUPTED, exit_code, steps, error=None)
    error = status.get("error") if status.get("status") == "failed" else None
    return Outcome(FAILED, exit_code, steps, error=str(error or _error_from_log(log_file, exit_code)))


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


_LOG_TAIL = 64 * 1024


def _error_from_log(log_file: Path | None, exit_code: int) -> str:
    """The error a failed ``diffrl train`` printed: its ``Error:`` paragraph, or a traceback's last line."""
    if exit_code < 0:
        return f"killed by {signal.Signals(-exit_code).name}"
    text = ""
    if log_file is not None and log_file.exists():
        with log_file.open("rb") as file:
            file.seek(max(0, file.seek(0, io.SEEK_END) - _LOG_TAIL))
            text = file.read().decode("utf-8", "replace")
        text = text.rsplit("\n--- ", 1)[-1]  # this attempt's output only
    found = re.search(r"^Error: (.*)", text, re.MULTILINE | re.DOTALL)
    if found:
        return found.group(1).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    last = lines[-1].strip() if lines else "no output"
    return f"exit code {exit_code}: {last}"


# -- moving run folders between machines (Ray) -----------------------------------------------------


def pack_run(run_dir: Path) -> bytes:
    """A run folder as an uncompressed tar archive (models are already compact safetensors)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(run_dir, arcname=".")
    return buffer.getvalue()


def unpack_run(data: bytes, target: Path) -> None:
    """Put a packed run folder at ``target``, replacing what is there, all at once.

    Extracted with tarfile's ``data`` filter: no absolute paths, links out of the folder or devices.
    """
    staging = target.parent / f"{runs.STAGING_PREFIX}{os.getpid()}-{target.name[:64]}-{time.monotonic_ns()}"
    staging.mkdir(parents=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            archive.extractall(staging, filter="data")
        old = None
        if target.exists():
            old = target.parent / f"{runs.STAGING_PREFIX}{os.getpid()}-old-{target.name[:64]}-{time.monotonic_ns()}"
            os.rename(target, old)
        os.rename(staging, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

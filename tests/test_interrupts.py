"""Signals before training starts, and what killed processes leave behind (fault injection).

A Ctrl-C (SIGINT) or SIGTERM at any moment ends a command with 130 / 143, a one-line message and
no traceback, and leaves nothing half-created. Temporary files and staging folders hold their
writer's pid: what a SIGKILLed process left is removed by the next writer, what a live one is
writing stays, and neither is ever taken for a run or a checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import diffrl_core.commands.plugins
import diffrl_core.plugins
from diffrl_core import runs
from diffrl_core.cli import main
from diffrl_core.config import parse_config
from diffrl_core.errors import DiffRLError

# torch's threads fight over 2 cores with the test process and other runs: one is fastest
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

TINY = """\
env: diffrl/QuadraticBandit-v0
algo: td3
policy: {net_arch: [8]}
algo_kwargs: {learning_starts: 10, batch_size: 8, buffer_size: 100}
total_timesteps: 50
seed: 0
eval: {freq: 0, n_episodes: 2}
checkpoint: {freq: 0}
logging: {tensorboard: false}
"""

# `diffrl ARGS...` in a fresh process, with MODULE.ATTR replaced by a function that sends this
# process SIGNAL (a real signal, at a known moment of the start-up) and then waits for it
HOOKED_CLI = """\
import importlib, os, signal, sys, time
signum, target, *args = sys.argv[1:]
module, _, attr = target.rpartition(".")
def hook(*_args, **_kwargs):
    os.kill(os.getpid(), getattr(signal, signum))
    time.sleep(60)
    raise SystemExit("the signal did not stop the command")
setattr(importlib.import_module(module), attr, hook)
from diffrl_core.cli import main
main(args, prog_name="diffrl")
"""


def hooked_diffrl(signum: str, target: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", HOOKED_CLI, signum, target, *args], cwd=cwd, capture_output=True, text=True, env=ENV,
        timeout=300,
    )


def write_config(folder: Path) -> Path:
    config = folder / "bandit.yaml"
    config.write_text(TINY)
    return config


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has ended (and was reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def live_pid() -> Iterator[int]:
    """The pid of another process that is running."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield process.pid
    process.kill()
    process.wait()


# -- signals during start-up ---------------------------------------------------------------------


EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_a_signal_while_loading_plugins_exits_with_128_plus_signal(signum: str, tmp_path: Path) -> None:
    # a real signal in a fresh process (no torch imported yet): click would say "Aborted!" and exit 1
    config = write_config(tmp_path)
    result = hooked_diffrl(
        signum, "diffrl_core.plugins.load_plugins", "train", str(config), "--run-dir", str(tmp_path / "run"),
        cwd=tmp_path,
    )
    assert result.returncode == EXIT_CODES[signum], (result.stdout, result.stderr)
    expected = f"diffrl train: interrupted by {signum} before training started; no run folder was created\n"
    assert result.stderr == expected  # one line, no traceback
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bandit.yaml"]


@pytest.mark.parametrize(
    ("signum", "target"),
    [
        ("SIGINT", "diffrl_core.compose.make_model"),  # torch imported, the env made: it is closed
        ("SIGTERM", "diffrl_core.runs.dump_yaml"),  # the run folder is being staged: it is removed
    ],
    ids=["make_model", "staging"],
)
def test_a_signal_while_composing_or_staging_leaves_nothing(signum: str, target: str, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = hooked_diffrl(signum, target, "train", str(config), cwd=tmp_path)
    assert result.returncode == EXIT_CODES[signum], (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.endswith("no run folder was created\n"), result.stderr
    runs_folder = tmp_path / "runs"
    assert not runs_folder.exists() or not list(runs_folder.iterdir())  # no run folder, no hidden staging folder


def test_a_signal_after_the_run_folder_was_created_leaves_nothing(tmp_path: Path) -> None:
    # between create_run_dir and the training loop's own signal handling (training.StopSignals)
    config = write_config(tmp_path)
    run = tmp_path / "run"
    result = hooked_diffrl("SIGINT", "diffrl_core.callbacks.make_logger", "train", str(config), "--run-dir", str(run),
                           cwd=tmp_path)
    assert result.returncode == 130, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bandit.yaml"]


@pytest.mark.parametrize("command", ["train", "resume", "eval", "plot", "plugins"])
def test_ctrl_c_in_any_command_exits_130_in_process(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    config = write_config(tmp_path)
    args = {
        "train": ["train", str(config), "--run-dir", str(tmp_path / "run")],
        "resume": ["train", "--resume", str(tmp_path / "run")],
        "eval": ["eval", str(tmp_path / "run")],
        "plot": ["plot", str(tmp_path / "run"), "-o", str(tmp_path / "curves.png")],
        "plugins": ["plugins"],
    }[command]
    if command == "resume":
        monkeypatch.setattr(runs, "plan_resume", interrupted)
    elif command == "plot":
        monkeypatch.setattr(runs, "find_runs", interrupted)
    elif command == "plugins":
        monkeypatch.setattr(diffrl_core.commands.plugins, "default_host", interrupted)
    else:
        monkeypatch.setattr(diffrl_core.plugins, "load_plugins", interrupted)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 130, (result.output, result.exception)
    name = "train" if command == "resume" else command
    assert result.stderr.startswith(f"diffrl {name}: interrupted by SIGINT"), result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Aborted" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bandit.yaml"]


def test_sigterm_in_process_exits_143_and_the_handler_is_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def terminated(*args: object, **kwargs: object) -> None:
        # never send SIGTERM to the test process unless the command's handler is in place
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)

    monkeypatch.setattr(diffrl_core.plugins, "load_plugins", terminated)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    config = write_config(tmp_path)
    result = CliRunner().invoke(main, ["train", str(config), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 143, (result.output, result.exception)
    assert result.stderr == "diffrl train: interrupted by SIGTERM before training started; no run folder was created\n"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bandit.yaml"]


def test_an_interrupted_staging_removes_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(data: object) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(runs, "dump_yaml", interrupted)
    with pytest.raises(KeyboardInterrupt):
        runs.create_run_dir(tmp_path / "run", {}, {"status": "created"})
    assert list(tmp_path.iterdir()) == []


# -- leftovers of killed processes ---------------------------------------------------------------


def test_temporary_names_hold_the_writers_pid(tmp_path: Path) -> None:
    with runs.atomic_path(tmp_path / "status.json") as tmp:
        assert tmp.name.startswith(f".tmp-{os.getpid()}-status-") and tmp.suffix == ".json"
        tmp.write_text("{}")
    run = runs.create_run_dir(tmp_path / "run", {}, {"status": "created"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "status.json"]
    assert sorted(p.name for p in run.path.iterdir()) == ["checkpoints", "config.yaml", "logs", "status.json"]


def test_long_names_stay_within_the_file_name_limit(tmp_path: Path) -> None:
    name = "x" * 240  # + the pid and the random part: more than 255 bytes if not shortened
    with runs.atomic_path(tmp_path / f"{name}.png") as tmp:
        tmp.write_bytes(b"png")
    assert (tmp_path / f"{name}.png").read_bytes() == b"png"
    assert runs.create_run_dir(tmp_path / name, {}, {"status": "created"}).status_file.exists()


def make_staging(parent: Path, name: str, extra: str | None = None, age: float = 0.0) -> Path:
    """A staging folder as create_run_dir leaves it when killed before the rename."""
    folder = parent / name
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "logs").mkdir()
    (folder / "config.yaml").write_text("env: Pendulum-v1\n")
    (folder / "status.json").write_text(json.dumps({"status": "created"}))
    if extra:
        (folder / extra).write_text("mine")
    if age:
        then = time.time() - age
        os.utime(folder, (then, then))
    return folder


def test_stale_staging_folders_are_ignored_then_removed(tmp_path: Path, dead_pid: int, live_pid: int) -> None:
    parent = tmp_path / "runs"
    stale = [
        make_staging(parent, f".staging-{dead_pid}-pendulum-20250101-120000-abcd_123"),
        make_staging(parent, ".pendulum-20250101-110000-k2j4h5g6", age=2 * runs.STALE_AFTER),  # no pid, and old
    ]
    kept = [
        make_staging(parent, f".staging-{live_pid}-pendulum-20250101-130000-abcd_123"),  # being written
        make_staging(parent, f".staging-{os.getpid()}-other-abcdefgh"),  # this process's
        make_staging(parent, ".pendulum-20250101-140000-k2j4h5g6"),  # no pid, and recent
        make_staging(parent, f".staging-{dead_pid}-notes-abcdefgh", extra="notes.txt"),  # holds more than a staging
    ]
    # never taken for runs
    with pytest.raises(DiffRLError, match="holds none"):
        runs.find_runs([parent])

    run = runs.create_run_dir(parent / "new", {}, {"status": "created"})
    assert [p.exists() for p in stale] == [False] * len(stale)
    assert [p.exists() for p in kept] == [True] * len(kept)
    assert [found.path for found in runs.find_runs([parent])] == [run.path]
    assert runs.clean_staging(parent) == []


def resumable_run(parent: Path) -> runs.RunDir:
    """A run folder stopped at step 100, with a checkpoint (a stand-in: it is never loaded here)."""
    config = parse_config({"env": "Pendulum-v1", "total_timesteps": 1000})
    run = runs.create_run_dir(parent / "run", runs.resolved_config(config), {"status": "created"})
    run.checkpoint_file(100).write_bytes(b"zip")
    run.update_status(status="running", pid=None, num_timesteps=100, checkpoint="checkpoints/model_100.zip",
                      checkpoint_timesteps=100)
    return run


def leftover(folder: Path, name: str, age: float = 0.0) -> Path:
    path = folder / name
    path.write_bytes(b"partial")
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def test_resume_removes_what_a_killed_run_left(tmp_path: Path, dead_pid: int, live_pid: int) -> None:
    run = resumable_run(tmp_path)
    stale = [
        leftover(run.checkpoints, f".tmp-{dead_pid}-model_200-abcdefgh.zip"),
        leftover(run.checkpoints, f".tmp-{dead_pid}-replay_buffer_200-abcdefgh.pkl"),
        leftover(run.path, f".tmp-{dead_pid}-status-abcdefgh.json"),
        leftover(run.logs, f".tmp-{dead_pid}-progress-abcdefgh.csv"),
        leftover(run.path, ".tmp-evaluations-abcdefgh.npz", age=2 * runs.STALE_AFTER),  # no pid, and old
    ]
    kept = [
        leftover(run.checkpoints, f".tmp-{live_pid}-model_300-abcdefgh.zip"),  # being written
        leftover(run.path, f".tmp-{os.getpid()}-results-abcdefgh.json"),  # this process's
        leftover(run.path, ".tmp-evaluations-hgfedcba.npz"),  # no pid, and recent
        leftover(run.checkpoints, f"notes-{dead_pid}.txt"),  # not a temporary file
    ]
    # never taken for checkpoints
    assert run.model_checkpoints() == [(100, run.checkpoint_file(100))]

    plan = runs.plan_resume(run.path)
    assert plan.num_timesteps == 100 and plan.model == run.checkpoint_file(100)
    assert [p.exists() for p in stale] == [False] * len(stale)
    assert [p.exists() for p in kept] == [True] * len(kept)


def test_a_run_being_trained_is_not_cleaned(tmp_path: Path, live_pid: int) -> None:
    run = resumable_run(tmp_path)
    run.update_status(status="running", pid=live_pid)
    # the trainer's own temporary file: its pid is alive (and resuming is refused anyway)
    writing = leftover(run.checkpoints, f".tmp-{live_pid}-model_200-abcdefgh.zip")
    with pytest.raises(DiffRLError, match="being trained right now"):
        runs.plan_resume(run.path)
    assert writing.exists()


def test_rewriting_a_file_removes_its_stale_temporaries(tmp_path: Path, dead_pid: int, live_pid: int) -> None:
    stale = leftover(tmp_path, f".tmp-{dead_pid}-curves-abcdefgh.png")
    kept = [
        leftover(tmp_path, f".tmp-{live_pid}-curves-abcdefgh.png"),  # being written
        leftover(tmp_path, f".tmp-{dead_pid}-other-abcdefgh.png"),  # another file's: left to its writer
        leftover(tmp_path, f".tmp-{dead_pid}-curves-abcdefgh.svg"),
    ]
    runs.write_text(tmp_path / "curves.png", "png")
    assert not stale.exists()
    assert [p.exists() for p in kept] == [True] * len(kept)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["curves.png"]


def test_plot_skips_runs_without_a_curve_in_a_folder_of_runs(tmp_path: Path) -> None:
    parent = tmp_path / "runs"
    done = runs.create_run_dir(parent / "done", {}, {"status": "finished", "name": "bandit", "env": "Bandit"})
    with done.evaluations_file.open("wb") as file:
        np.savez(file, timesteps=np.array([10, 20]), results=np.array([[1.0, 2.0], [3.0, 4.0]]),
                 ep_lengths=np.array([[1, 1], [1, 1]]))
    # e.g. killed before training started: a status, no logs
    empty = runs.create_run_dir(parent / "empty", {}, {"status": "created", "name": "bandit"})
    make_staging(parent, ".staging-1-hidden-abcdefgh")

    out = tmp_path / "curves.png"
    result = CliRunner().invoke(main, ["plot", str(parent), "-o", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "wrote" in result.stdout and "(1 run(s), 1 curve(s))" in result.stdout
    assert result.stderr == "note: skipped 1 run(s) with no evaluations or logged episode returns yet: empty\n"
    assert out.read_bytes()[:4] == b"\x89PNG"

    # a run named directly is still an error
    result = CliRunner().invoke(main, ["plot", str(empty.path), "-o", str(out)])
    assert result.exit_code == 2 and "has no evaluations and no logged episode returns yet" in result.stderr

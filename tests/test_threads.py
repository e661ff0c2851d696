"""A run computes on one torch thread unless its config or the environment says otherwise.

torch's default (a thread per core) made two seeds side by side on 2 cores take 40x the time
of one run (``bench/thread_default.py``); these check that the default is applied where runs
start (``make_model``, ``diffrl train``, ``--resume``, ``diffrl eval``) and that every way of
asking for another count is honoured.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch as th
from click.testing import CliRunner
from stable_baselines3.common.env_util import make_vec_env

from diffrl_core import make_model, runs
from diffrl_core.cli import main
from diffrl_core.config import parse_config
from diffrl_core.errors import ConfigError
from diffrl_core.threads import DEFAULT_THREADS, THREAD_VARIABLES, threads_for, use_threads

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "pendulum_sac.yaml"
CONFIG = {"env": "Pendulum-v1", "algo": "sac", "algo_kwargs": {"buffer_size": 100},
          "policy": {"head": "squashed_gaussian", "losses": [{"name": "sac_entropy"}], "postprocess": "identity"}}


@pytest.fixture
def torch_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No thread variable in the environment, torch at 2 threads; torch's count restored afterwards."""
    for variable in THREAD_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    before = th.get_num_threads()
    th.set_num_threads(2)
    yield
    th.set_num_threads(before)


def test_the_count_comes_from_the_config_then_the_environment_then_the_default(monkeypatch) -> None:
    for variable in THREAD_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    assert threads_for(None) == DEFAULT_THREADS == 1
    assert threads_for(3) == 3
    for variable in THREAD_VARIABLES:
        monkeypatch.setenv(variable, "2")
        assert threads_for(None) is None  # torch follows the variable itself
        assert threads_for(3) == 3  # an explicit count wins
        monkeypatch.delenv(variable)
    monkeypatch.setenv("OMP_NUM_THREADS", "")  # set but empty: not a count
    assert threads_for(None) == 1


def test_make_model_uses_one_thread_by_default(torch_threads) -> None:
    make_model(CONFIG, env=make_vec_env("Pendulum-v1"))
    assert th.get_num_threads() == 1


def test_make_model_uses_the_configs_threads(torch_threads) -> None:
    th.set_num_threads(1)
    make_model({**CONFIG, "threads": 2}, env=make_vec_env("Pendulum-v1"))
    assert th.get_num_threads() == 2


def test_make_model_leaves_torch_to_omp_num_threads(torch_threads, monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    make_model(CONFIG, env=make_vec_env("Pendulum-v1"))
    assert th.get_num_threads() == 2
    assert use_threads(None) == 2


@pytest.mark.parametrize("threads", [0, -1, 1025, "two", 1.5])
def test_a_bad_count_names_the_key(threads) -> None:
    with pytest.raises(ConfigError, match="threads"):
        parse_config({**CONFIG, "threads": threads})


def test_the_cli_refuses_a_bad_count_with_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["train", str(EXAMPLE), "--threads", "0",
                                       "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and "--threads" in result.output
    config = tmp_path / "bad.yaml"
    config.write_text("env: Pendulum-v1\nthreads: 0\n")
    result = CliRunner().invoke(main, ["train", str(config), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and "threads" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_resume_may_change_the_count(tmp_path: Path) -> None:
    config = parse_config({"env": "Pendulum-v1", "total_timesteps": 1000})
    run = runs.create_run_dir(tmp_path / "run", runs.resolved_config(config), {"status": "created"})
    run.checkpoint_file(100).write_bytes(b"zip")  # a stand-in: never loaded here
    run.update_status(status="running", pid=None, num_timesteps=100, checkpoint="checkpoints/model_100.zip",
                      checkpoint_timesteps=100)
    assert runs.plan_resume(run.path, ["threads=2"]).config.threads == 2


def test_choosing_a_count_does_not_import_torch() -> None:
    code = ("import sys; from diffrl_core.threads import threads_for; threads_for(None); "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)

"""``diffrl sweep`` with ``search:``: an Optuna study, several processes sharing it, pruning, bad search specs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from diffrl_core.cli import main
from diffrl_core.plugins import load_plugins
from diffrl_core.sweeps.folder import SweepFolder
from diffrl_core.sweeps.search import SEARCH_FILE, Search, SearchSpace, _Reporter, open_study, suggest
from diffrl_core.sweeps.spec import SearchParam, load_sweep

optuna = pytest.importorskip("optuna")
TrialState = optuna.trial.TrialState

# a few hundred steps per second on one core
TINY = """\
env: Pendulum-v1
algo: sac
policy:
  net_arch: [32, 32]
algo_kwargs: {learning_starts: 100, buffer_size: 5000, batch_size: 64}
total_timesteps: 300
seed: 0
eval: {freq: 100, n_episodes: 1}
checkpoint: {freq: 0, save_replay_buffer: false}
"""

# torch's threads fight over 2 cores with the test process and other runs: one is fastest
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

LEARNING_RATE = {"low": 1.0e-4, "high": 1.0e-2, "log": True}


def write_sweep(folder: Path, search: dict[str, Any], seeds: int = 1, name: str = "search",
                **overrides: Any) -> Path:
    """A sweep file of the tiny config with ``search`` (``set`` from ``overrides``, dotted keys)."""
    (folder / "tiny.yaml").write_text(TINY)
    sweep = {"config": "tiny.yaml", "seeds": seeds, "search": {"params": {"algo_kwargs.learning_rate": LEARNING_RATE},
                                                              **search}}
    if overrides:
        sweep["set"] = {key.replace("__", "."): value for key, value in overrides.items()}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def invoke(*args: str) -> tuple[Any, str]:
    """``diffrl sweep ARGS`` in this process: the result and what it printed (stdout and stderr)."""
    result = CliRunner().invoke(main, ["sweep", *args])
    return result, result.output


def counted(trials: list[Any]) -> list[Any]:
    """The trials that count towards n_trials (see diffrl_core.sweeps.search)."""
    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (t.state == TrialState.FAIL and "error" in t.user_attrs)]


# -- the search space, without training --------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "fragments"),
    [
        ({"algo_kwargs.learning_rate": {"low": 0.1, "high": 0.01}},
         ["search.params.algo_kwargs.learning_rate", "`low` (0.1) is above `high` (0.01)"]),
        ({"algo_kwargs.learning_rate": {"low": 0.0, "high": 0.01, "log": True}},
         ["search.params.algo_kwargs.learning_rate", "`log: true` needs `low` > 0"]),
        ({"algo_kwargs.learning_rate": {"low": 0.001}}, ["search.params.algo_kwargs.learning_rate", "`high`"]),
        ({"algo_kwargs.learning_rate": {"low": 0.001, "high": 0.01, "choices": [0.1]}},
         ["search.params.algo_kwargs.learning_rate", "`choices` goes alone"]),
        ({"algo_kwargs.learning_rat": LEARNING_RATE},
         ["algo_kwargs.learning_rat", "not a keyword argument", "did you mean 'learning_rate'"]),
        ({"policy.net_arch": {"choices": [[32, 32], "big"]}}, ["policy.net_arch", "big"]),
        ({"algo_kwargs.batch_size": {"low": 32, "high": 256, "int": True, "step": 0.5}},
         ["search.params.algo_kwargs.batch_size", "whole with `int: true`"]),
        ({"policy.head": {"choices": ["squashed_gaussian", "squashed_gausian"]}},
         ["policy.head", "squashed_gausian"]),
    ],
    ids=["low-above-high", "log-zero", "no-high", "choices-and-range", "unknown-key", "bad-list-choice",
         "int-fractional-step", "unknown-component"],
)
def test_bad_search_specs_exit_2_naming_the_key(tmp_path: Path, params: dict[str, Any], fragments: list[str]) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY)
    sweep = tmp_path / "bad.yaml"
    sweep.write_text(yaml.safe_dump({"config": "tiny.yaml", "search": {"n_trials": 2, "params": params}}))
    result, output = invoke(str(sweep), "--sweep-dir", str(tmp_path / "sd"))
    assert result.exit_code == 2, output
    for fragment in fragments:
        assert fragment in output, output
    assert not (tmp_path / "sd" / "runs").exists() or not any((tmp_path / "sd" / "runs").iterdir())


def test_list_choices_go_to_optuna_as_json_text() -> None:
    study = optuna.create_study()
    trial = study.ask()
    value = suggest(trial, "policy.net_arch", SearchParam(choices=[[16], [32, 32], {"pi": [8]}]))
    assert value in ([16], [32, 32], {"pi": [8]})
    assert trial.params["policy.net_arch"] == json.dumps(value)  # JSON-able scalars for Optuna's storages
    assert suggest(trial, "algo_kwargs.batch_size", SearchParam(choices=[64, 128])) in (64, 128)
    assert isinstance(suggest(trial, "n", SearchParam(low=1, high=9, int=True, step=2)), int)


def test_reported_steps_are_comparable_across_seeds(tmp_path: Path) -> None:
    study = optuna.create_study()
    trial = study.ask()
    reporter = _Reporter(trial, stride=1000)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert not reporter.poll(run_dir, 0)  # no evaluation yet
    results = np.array([[-1.0, -3.0], [-5.0, -5.0]])
    np.savez(run_dir / "evaluations.npz", timesteps=np.array([100, 200]), results=results,
             ep_lengths=np.full((2, 2), 200))
    assert reporter.poll(run_dir, 1)
    assert not reporter.poll(run_dir, 1)  # the same file: nothing new
    assert study.trials[0].intermediate_values == {1100: -2.0, 1200: -5.0}


def _fill(study: Any, states: list[Any], **attrs: Any) -> None:
    distribution = optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    for state in states:
        trial = optuna.trial.create_trial(
            state=state, params={"algo_kwargs.learning_rate": 1e-3}, distributions={"algo_kwargs.learning_rate":
                                                                                    distribution},
            value=-100.0 if state == TrialState.COMPLETE else None, user_attrs=attrs)
        study.add_trial(trial)


def test_a_full_study_runs_nothing_and_interrupted_trials_do_not_count(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, {"n_trials": 3})
    target = tmp_path / "sd"
    here = {"sweep_dir": str(target.resolve()), "host": socket.gethostname()}
    with SweepFolder(target) as folder:  # the study as killed sweeps left it in the default journal
        study = open_study(load_sweep(sweep), folder, None, 300)
        _fill(study, [TrialState.COMPLETE], runs=["x"])
        _fill(study, [TrialState.FAIL], interrupted=True)  # Ctrl-C
        _fill(study, [TrialState.RUNNING], **here, pid=os.getpid() + 10**6)  # its sweep was killed (SIGKILL)
        _fill(study, [TrialState.RUNNING], **{**here, "host": "elsewhere"}, pid=1)  # runs on another machine
        _fill(study, [TrialState.FAIL], error="run tiny-trial4-seed0 failed: boom")  # a result
    result, output = invoke(str(sweep), "--sweep-dir", str(target))
    assert result.exit_code == 0, output
    assert "2 of 3 trials finished, 1 running elsewhere" in output
    assert "trial 2 was left running by a stopped diffrl sweep" in output
    assert "best: trial 0, -100" in output
    assert not any((target / "runs").iterdir())
    summary = json.loads((target / SEARCH_FILE).read_text())
    assert [t["state"] for t in summary["trials"]] == ["complete", "fail", "fail", "running", "fail"]
    assert [t["counted"] for t in summary["trials"]] == [True, False, False, False, True]
    assert summary["trials"][2]["interrupted"] and summary["counted"] == 2


def test_another_study_in_the_same_sweep_folder_is_refused(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, {"n_trials": 1})
    target = tmp_path / "sd"
    target.mkdir()
    (target / SEARCH_FILE).write_text(json.dumps({"study": "other", "storage": None}))
    result, output = invoke(str(sweep), "--sweep-dir", str(target), "--storage", f"sqlite:///{tmp_path}/db.sqlite")
    assert result.exit_code == 2, output
    assert "holds the runs of study 'other'" in output and "another --sweep-dir" in output


def test_without_optuna_the_error_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sweep = write_sweep(tmp_path, {"n_trials": 1})
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError
    result, output = invoke(str(sweep), "--sweep-dir", str(tmp_path / "sd"))
    assert result.exit_code == 2, output
    assert "pip install 'diffrl-core[optuna]'" in output


def test_a_sqlite_file_in_a_missing_folder_is_refused_at_once(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, {"n_trials": 1})
    result, output = invoke(str(sweep), "--sweep-dir", str(tmp_path / "sd"), "--storage",
                            f"sqlite:///{tmp_path}/missing/study.db")
    assert result.exit_code == 2, output
    assert "missing' does not exist" in output


# -- training --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_trial_worse_than_the_median_is_pruned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # 1500 steps, evaluated every 100; pruning from step 500 on (the first third): the run is stopped long
    # before its end, so its SIGTERM always comes in time
    sweep = load_sweep(write_sweep(tmp_path, {"n_trials": 2, "startup_trials": 1}, seeds=2, total_timesteps=1500))
    space = SearchSpace(sweep, load_plugins())
    assert (space.max_timesteps, space.stride) == (1500, 10_000)
    distribution = optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    best = optuna.trial.create_trial(  # a startup trial far better than Pendulum's -1000s
        params={"algo_kwargs.learning_rate": 1e-3}, distributions={"algo_kwargs.learning_rate": distribution},
        value=0.0, intermediate_values={step: 0.0 for step in range(100, 1600, 100)})
    start = time.monotonic()
    with SweepFolder(tmp_path / "sd") as folder:
        study = open_study(sweep, folder, None, space.max_timesteps)  # MedianPruner(1 startup trial, warm-up 500)
        study.add_trial(best)
        code = Search(sweep, folder, study, space, workers=1).run()
        entries = folder.entries()
    seconds = time.monotonic() - start
    assert code == 0
    trial = study.trials[1]
    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs["runs"] == ["tiny-trial1-seed0", "tiny-trial1-seed1"]
    assert min(trial.intermediate_values) == 100 and max(trial.intermediate_values) >= 500
    assert list(entries) == ["tiny-trial1-seed0"]  # the second seed never started
    entry = entries["tiny-trial1-seed0"]
    assert entry["status"] == "pruned" and entry["num_timesteps"] < 1500 and entry["optuna_trial"] == 1
    assert seconds < 60


SHARED_RUN = (
    "import sys\n"
    "from diffrl_core.cli import main\n"
    "sys.argv = ['diffrl', *sys.argv[1:]]\n"
    "main()\n"
)


@pytest.mark.slow
def test_two_processes_share_one_study(tmp_path: Path) -> None:
    # Each process asks for its first trial as soon as it opened the study, with 0 or 1 trials taken: the other
    # could only fill the study first by finishing 3 trials (it has one open at a time, --workers 1), each a
    # `diffrl train` process that imports torch: far longer than a `diffrl sweep` start. So each runs one.
    sweep = write_sweep(tmp_path, {"n_trials": 4, "sampler": "random", "pruner": "none"})
    storage = f"sqlite:///{tmp_path}/study.db"
    processes = [
        subprocess.Popen([sys.executable, "-c", SHARED_RUN, "sweep", str(sweep), "--sweep-dir", str(tmp_path / name),
                          "--workers", "1", "--storage", storage], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for name in ("a", "b")
    ]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs

    study = optuna.load_study(study_name="search", storage=storage)
    trials = study.get_trials()
    numbers = [trial.number for trial in trials]
    assert len(numbers) == len(set(numbers))
    assert len(counted(trials)) == 4 and all(t.state == TrialState.COMPLETE for t in counted(trials))
    # two processes asking at the same moment for the last place: the later trial is dropped, never run
    assert all(t.user_attrs.get("surplus") for t in trials if t not in counted(trials))
    ran = {}
    for name in ("a", "b"):
        index = json.loads((tmp_path / name / "index.json").read_text())
        ran[name] = sorted(entry["optuna_trial"] for entry in index["trials"].values())
        assert all(entry["status"] == "done" for entry in index["trials"].values())
        summary = json.loads((tmp_path / name / SEARCH_FILE).read_text())
        assert summary["storage"] == storage and summary["study"] == "search"
    assert ran["a"] and ran["b"], outputs
    assert sorted(ran["a"] + ran["b"]) == sorted(t.number for t in counted(trials))

    # a rerun of a full study runs nothing
    result, output = invoke(str(sweep), "--sweep-dir", str(tmp_path / "a"), "--storage", storage)
    assert result.exit_code == 0, output
    assert "4 of 4 trials finished" in output
    assert len(optuna.load_study(study_name="search", storage=storage).get_trials()) == len(trials)


@pytest.mark.slow
def test_ctrl_c_checkpoints_the_runs_and_a_rerun_samples_anew(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, {"n_trials": 1, "pruner": "none"}, total_timesteps=20_000)
    target = tmp_path / "sd"
    command = [sys.executable, "-c", SHARED_RUN, "sweep", str(sweep), "--sweep-dir", str(target), "--workers", "1"]
    process = subprocess.Popen(command, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    evaluations = target / "runs" / "tiny-trial0-seed0" / "evaluations.npz"
    deadline = time.monotonic() + 120
    while not evaluations.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # training runs (its signal handlers are set): the interrupt must reach it
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 130, output
    assert "trial 0 interrupted" in output
    entry = json.loads((target / "index.json").read_text())["trials"]["tiny-trial0-seed0"]
    assert entry["status"] == "interrupted" and 0 < entry["num_timesteps"] < 20_000
    assert list((target / "runs" / "tiny-trial0-seed0" / "checkpoints").glob("model_*.zip"))
    summary = json.loads((target / SEARCH_FILE).read_text())
    assert summary["counted"] == 0 and summary["trials"][0]["interrupted"]

    sweep.write_text(sweep.read_text().replace("20000", "300"))  # the rerun: a new trial, short this time
    result, output = invoke(str(sweep), "--sweep-dir", str(target))
    assert result.exit_code == 0, output
    assert "0 of 1 trials finished" in output and "trial 1 done" in output
    assert json.loads((target / SEARCH_FILE).read_text())["counted"] == 1

"""``diffrl sweep`` on this machine: grids x seeds into run folders, reruns, interruptions, failures, bad files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from diffrl_core.cli import main
from diffrl_core.errors import ConfigError, DiffRLError
from diffrl_core.sweeps.folder import SweepFolder
from diffrl_core.sweeps.progress import Progress, best_point
from diffrl_core.sweeps.spec import MAX_NAME, load_sweep, run_name

# a few hundred SAC steps per second on one core; a checkpoint every 150 steps so that an interrupted run resumes
TINY = {
    "env": "Pendulum-v1",
    "algo": "sac",
    "policy": {"net_arch": [16, 16]},
    "algo_kwargs": {"learning_starts": 50, "buffer_size": 5000, "batch_size": 32},
    "total_timesteps": 300,
    "seed": 0,
    "eval": {"freq": 150, "n_episodes": 1},
    "checkpoint": {"freq": 150},
}

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def write_sweep(folder: Path, base: dict | None = None, **spec: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.yaml").write_text(yaml.safe_dump(base or TINY, sort_keys=False))
    sweep = {"config": "tiny.yaml", **spec}
    (folder / "sweep.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))
    return folder / "sweep.yaml"


def diffrl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "diffrl_core.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env=ENV, timeout=600)


def index(sweep_dir: Path) -> dict:
    return json.loads((sweep_dir / "index.json").read_text())["trials"]


def status(run: Path) -> dict:
    return json.loads((run / "status.json").read_text())


# -- whole sweeps, as a user runs them ----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_local_sweep_runs_every_point_and_seed_and_a_rerun_runs_nothing(tmp_path: Path) -> None:
    sweep_file = write_sweep(tmp_path, grid={"algo_kwargs.learning_rate": [0.001, 0.0003]}, seeds=2)
    out = tmp_path / "out"
    result = diffrl("sweep", str(sweep_file), "--sweep-dir", str(out), "--workers", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    trials = index(out)
    assert sorted(trials) == [
        "tiny-learning_rate=0.0003-seed0", "tiny-learning_rate=0.0003-seed1",
        "tiny-learning_rate=0.001-seed0", "tiny-learning_rate=0.001-seed1",
    ]
    for name, entry in trials.items():
        run = out / "runs" / name
        assert entry["status"] == "done" and entry["attempts"] == 1 and entry["num_timesteps"] == 300
        assert entry["final_return"] == json.loads((run / "results.json").read_text())["mean_return"]
        assert status(run)["status"] == "finished" and (run / "model.zip").exists()
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["seed"] == entry["seed"]
        assert config["algo_kwargs"]["learning_rate"] == entry["point"]["algo_kwargs.learning_rate"]
        assert config["algo_kwargs"]["batch_size"] == 32  # the rest of the base config is kept
    assert "4 done" in result.stdout and "best " in result.stdout

    before = {name: (out / "runs" / name / "status.json").stat().st_mtime_ns for name in trials}
    logs = {name: (out / "logs" / f"{name}.log").read_text() for name in trials}
    again = diffrl("sweep", str(sweep_file), "--sweep-dir", str(out), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "4 already finished" in again.stdout and "running" not in again.stdout
    assert {name: (out / "runs" / name / "status.json").stat().st_mtime_ns for name in trials} == before
    assert {name: (out / "logs" / f"{name}.log").read_text() for name in trials} == logs
    assert all(entry["attempts"] == 1 for entry in index(out).values())


@pytest.mark.slow
def test_an_interrupted_sweep_finishes_on_rerun_without_redoing_finished_runs(tmp_path: Path) -> None:
    config = {**TINY, "total_timesteps": 2000, "checkpoint": {"freq": 100}, "eval": {"freq": 1000, "n_episodes": 1}}
    sweep_file = write_sweep(tmp_path, config, grid={"algo_kwargs.learning_rate": [0.001]}, seeds=[0, 1, 2])
    first, second = "tiny-learning_rate=0.001-seed0", "tiny-learning_rate=0.001-seed1"
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "diffrl_core.cli", "sweep", str(sweep_file), "--sweep-dir", str(out), "--workers", "1"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # until the second run has a checkpoint to continue from
            time.sleep(0.2)
            if (out / "index.json").exists() and index(out)[first]["status"] == "done":
                run = out / "runs" / second
                if (run / "status.json").exists() and status(run).get("checkpoint"):
                    break
        else:
            pytest.fail("the second run did not reach a checkpoint")
        process.send_signal(signal.SIGINT)  # to the sweep only, as `kill -INT`; it passes a SIGTERM on to the run
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stdout + stderr
    assert "interrupted by SIGINT" in stderr and "Traceback" not in stderr
    trials = index(out)
    assert trials[first]["status"] == "done"
    assert trials[second]["status"] == "interrupted"
    assert trials["tiny-learning_rate=0.001-seed2"]["status"] == "pending"
    assert status(out / "runs" / second)["status"] == "interrupted"
    finished_at = status(out / "runs" / first)["updated_at"]
    checkpoint_steps = status(out / "runs" / second)["checkpoint_timesteps"]
    assert 0 < checkpoint_steps < 2000

    rerun = diffrl("sweep", str(sweep_file), "--sweep-dir", str(out), "--workers", "1", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    trials = index(out)
    assert all(entry["status"] == "done" for entry in trials.values()), trials
    assert status(out / "runs" / first)["updated_at"] == finished_at  # not trained again
    assert trials[first]["attempts"] == 1
    assert trials[second]["attempts"] == 2 and trials[second]["resumed"] is True
    resumed = status(out / "runs" / second)
    assert resumed["sessions"] == 2 and resumed["num_timesteps"] == 2000
    assert " start\n" in (log := (out / "logs" / f"{second}.log").read_text()) and " resume\n" in log


@pytest.mark.slow
def test_a_failed_run_is_recorded_with_its_error_and_the_sweep_goes_on(tmp_path: Path) -> None:
    # valid as a config, but gymnasium's Pendulum has no `gravitee`: the run fails when its env is made
    sweep_file = write_sweep(tmp_path, grid={"env_kwargs": [{}, {"gravitee": 9.8}]}, seeds=1)
    out = tmp_path / "out"
    result = diffrl("sweep", str(sweep_file), "--sweep-dir", str(out), "--workers", "2", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    trials = index(out)
    good = trials[run_name("tiny", {"env_kwargs": {}}, 0)]
    bad = trials[run_name("tiny", {"env_kwargs": {"gravitee": 9.8}}, 0)]
    assert good["status"] == "done" and isinstance(good["final_return"], float)
    assert bad["status"] == "failed" and "gravitee" in bad["error"]
    assert "1 run(s) failed" in result.stderr and "gravitee" in result.stdout


# -- the sweep file ---------------------------------------------------------------------------------------------


def test_the_runs_of_a_sweep_file_are_every_config_point_and_seed(tmp_path: Path) -> None:
    sweep_file = write_sweep(tmp_path, set={"total_timesteps": 100, "algo_kwargs.batch_size": 16},
                             grid={"algo_kwargs.learning_rate": [0.1, 0.2], "policy.net_arch": [[8], [8, 8]]},
                             seeds=[3, 7])
    trials = load_sweep(sweep_file).grid_trials()
    assert len(trials) == 8 and len({trial.name for trial in trials}) == 8
    assert trials[0].name == "tiny-learning_rate=0.1-net_arch=_8_-seed3"
    for trial in trials:
        assert trial.config["seed"] == trial.seed and trial.config["total_timesteps"] == 100
        assert trial.config["algo_kwargs"] == {**TINY["algo_kwargs"], "batch_size": 16,
                                               "learning_rate": trial.point["algo_kwargs.learning_rate"]}
        assert trial.config["policy"]["net_arch"] == trial.point["policy.net_arch"]


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        ({"grid": {"algo_kwargs.learning_rate": []}}, ["learning_rate", "lists no value"]),
        ({"seeds": [1, 1]}, ["distinct"]),
        ({"seeds": 0}, ["seeds"]),
        ({"grids": {}}, ["grids", "unknown key", "did you mean 'grid'"]),
        ({"grid": {"a": [1]}, "search": {"n_trials": 2, "params": {"a": {"low": 0, "high": 1}}}}, ["not both"]),
        ({"search": {"n_trials": 2, "params": {"x": {"low": 2.0, "high": 1.0}}}}, ["search.params.x", "above"]),
        ({"search": {"n_trials": 2, "params": {"x": {"low": 0.0, "high": 1.0, "log": True}}}}, ["low` > 0"]),
        ({"grid": {"algo_kwargs.learning_rate": ["fast"]}}, ["tiny.yaml", "learning_rate='fast'", "valid number"]),
        ({"grid": {"policy.net_arch": [[8], -1]}}, ["net_arch=-1", "policy.net_arch"]),
        ({"set": {"algo_kwargs.learning_starts": "soon"}}, ["learning_starts"]),
        ({"config": "missing.yaml"}, ["missing.yaml", "does not exist"]),
    ],
)
def test_a_bad_sweep_file_exits_2_naming_the_key(tmp_path: Path, spec: dict, fragments: list[str]) -> None:
    sweep_file = write_sweep(tmp_path, **spec)
    result = CliRunner().invoke(main, ["sweep", str(sweep_file), "--sweep-dir", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for fragment in fragments:
        assert fragment in result.output, result.output
    assert not (tmp_path / "out" / "runs").exists() or not any((tmp_path / "out" / "runs").iterdir())


def test_an_unknown_component_in_the_grid_exits_2_before_any_run(tmp_path: Path) -> None:
    sweep_file = write_sweep(tmp_path, grid={"policy.head": ["squashed_gaussian", "squashed_gausian"]})
    result = CliRunner().invoke(main, ["sweep", str(sweep_file), "--sweep-dir", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "squashed_gausian" in result.output and "squashed_gaussian" in result.output
    assert not (tmp_path / "out").exists()


def test_run_names_are_stable_readable_and_fit_a_folder_name() -> None:
    assert run_name("pendulum", {"algo_kwargs.learning_rate": 0.001}, 2) == "pendulum-learning_rate=0.001-seed2"
    # the same last segment twice: the whole key path tells them apart
    name = run_name("c", {"algo_kwargs.gamma": 0.9, "policy.head_kwargs.gamma": 0.5}, 0)
    assert "algo_kwargs.gamma=0.9" in name and "policy.head_kwargs.gamma=0.5" in name
    long = run_name("c", {"policy.net_arch": list(range(100))}, 12)
    assert len(long) <= MAX_NAME and long.endswith("-seed12") and long.startswith("c-net_arch=")
    assert long == run_name("c", {"policy.net_arch": list(range(100))}, 12)
    assert long != run_name("c", {"policy.net_arch": list(range(101))}, 12)
    assert "/" not in run_name("c", {"env": "diffrl/PointMassGoal-v0"}, 0)


def test_a_rerun_refuses_a_changed_config_of_a_started_run(tmp_path: Path) -> None:
    sweep_file = write_sweep(tmp_path, seeds=1)
    with SweepFolder(tmp_path / "out") as folder:
        folder.adopt(load_sweep(sweep_file), load_sweep(sweep_file).grid_trials())
    write_sweep(tmp_path, {**TINY, "total_timesteps": 999}, seeds=1)
    with SweepFolder(tmp_path / "out") as folder, pytest.raises(ConfigError, match="changed since it was started"):
        folder.adopt(load_sweep(sweep_file), load_sweep(sweep_file).grid_trials())


def test_two_sweeps_cannot_run_in_one_folder(tmp_path: Path) -> None:
    with SweepFolder(tmp_path / "out"), pytest.raises(DiffRLError, match=f"pid {os.getpid()}"):
        SweepFolder(tmp_path / "out").open()
    with SweepFolder(tmp_path / "out"):  # released when the first one closed
        pass


def test_the_progress_shows_counts_the_best_setting_and_failures(tmp_path: Path) -> None:
    entries = {
        "a0": {"status": "done", "base": "c.yaml", "point": {"lr": 1}, "final_return": -100.0},
        "a1": {"status": "done", "base": "c.yaml", "point": {"lr": 1}, "final_return": -300.0},
        "b0": {"status": "done", "base": "c.yaml", "point": {"lr": 2}, "final_return": -150.0},
        "b1": {"status": "failed", "base": "c.yaml", "point": {"lr": 2}, "error": "ValueError: boom\nmore"},
        "c0": {"status": "running", "base": "c.yaml", "point": {"lr": 3}},
    }
    assert best_point(entries) == ("c.yaml lr=2", -150.0, 1)
    assert best_point(entries, maximize=False) == ("c.yaml lr=1", -200.0, 2)
    with SweepFolder(tmp_path / "out") as folder:
        for name, entry in entries.items():
            folder.record(name, **entry)
        lines = Progress(folder, [*entries, "d0"], live=True).lines()
        counts = "6 runs | 1 running | 3 done | 1 failed | 1 pending | best -150"
        assert lines[0].startswith(f"sweep {folder.path}: {counts}")
        assert any(line.startswith("  running  c0") for line in lines)
        assert "  failed   b1: ValueError: boom" in lines
        report = Progress(folder, list(entries)).report()
        assert "ValueError: boom" in report and "-300" in report


@pytest.mark.parametrize("sweep_file", sorted((Path(__file__).parents[1] / "examples" / "sweeps").glob("*.yaml")),
                         ids=lambda path: path.name)
def test_the_example_sweep_files_expand_to_valid_runs(sweep_file: Path) -> None:
    sweep = load_sweep(sweep_file)
    if sweep.spec.search is None:
        assert sweep.grid_trials()
    else:
        from diffrl_core.plugins import load_plugins
        from diffrl_core.sweeps.search import SearchSpace

        SearchSpace(sweep, load_plugins())  # every range's ends and every choice make a valid config


def test_several_config_files_each_run_every_point_and_seed(tmp_path: Path) -> None:
    write_sweep(tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "td3.yaml").write_text(yaml.safe_dump({**TINY, "algo": "td3"}))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"config": ["tiny.yaml", "other/td3.yaml"], "seeds": 2}))
    trials = load_sweep(tmp_path / "sweep.yaml").grid_trials()
    assert [(trial.name, trial.config["algo"]) for trial in trials] == [
        ("tiny-seed0", "sac"), ("tiny-seed1", "sac"), ("td3-seed0", "td3"), ("td3-seed1", "td3")]
    # two config files of the same name would share run names: refused, naming both
    (tmp_path / "other" / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"config": ["tiny.yaml", "other/tiny.yaml"]}))
    with pytest.raises(ConfigError, match="two runs would be named 'tiny-seed0'.*other/tiny.yaml"):
        load_sweep(tmp_path / "sweep.yaml").grid_trials()


def test_storage_is_for_searches_only(tmp_path: Path) -> None:
    sweep_file = write_sweep(tmp_path)
    result = CliRunner().invoke(main, ["sweep", str(sweep_file), "--storage", "sqlite:///x.db"])
    assert result.exit_code == 2 and "--storage is for sweep files with `search`" in result.output


def test_an_unknown_key_of_a_searched_param_names_the_valid_ones(tmp_path: Path) -> None:
    sweep_file = write_sweep(tmp_path, search={"n_trials": 2, "params": {"algo_kwargs.tau": {"low": 0.1, "hig": 0.2}}})
    result = CliRunner().invoke(main, ["sweep", str(sweep_file), "--sweep-dir", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "search.params.algo_kwargs.tau.hig: unknown key; did you mean 'high'?" in result.output, result.output

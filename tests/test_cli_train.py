"""``diffrl train / eval / plot`` driven as a user would: subprocesses, real signals, broken configs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

# Small enough for a few hundred steps per second on one core
TINY = """\
env: Pendulum-v1
algo: sac
policy:
  net_arch: [16, 16]
  losses:
    - {name: sac_entropy, weight: 1.0}
    - {name: bc, weight: 0.1}
algo_kwargs: {learning_starts: 50, buffer_size: 5000, batch_size: 32}
total_timesteps: 400
seed: 1
eval: {freq: 200, n_episodes: 2}
checkpoint: {freq: 200}
logging: {log_interval: 1, print_freq: 100}
"""

# torch's threads fight over 2 cores with the test process and other runs: one is fastest
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def diffrl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "diffrl_core.cli", *args], cwd=cwd, capture_output=True, text=True, env=ENV, timeout=300
    )


def start(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "diffrl_core.cli", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=ENV, start_new_session=True,  # its own process group, as a shell job
    )


def write_config(path: Path, text: str = TINY, **changes: object) -> Path:
    data = yaml.safe_load(text)
    data.update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def status(run: Path) -> dict:
    return json.loads((run / "status.json").read_text())


def num_timesteps(model: Path) -> int:
    from diffrl_core import load_model

    return load_model(model).num_timesteps


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    assert result.stderr.startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished tiny run, shared by the tests that read it."""
    work = tmp_path_factory.mktemp("trained")
    config = write_config(work / "tiny.yaml")
    result = diffrl("train", str(config), "--set", "seed=3", "--set", "policy.losses[1].weight=0.2", cwd=work)
    assert result.returncode == 0, result.stderr
    (run,) = (work / "runs").iterdir()
    assert run.name.startswith("tiny-")
    assert "Traceback" not in result.stderr
    return run


@pytest.mark.slow
def test_train_leaves_a_complete_run_folder(trained: Path) -> None:
    for name in ("config.yaml", "status.json", "model.zip", "results.json", "evaluations.npz", "logs/progress.csv"):
        assert (trained / name).is_file(), name
    assert list((trained / "logs").glob("events.out.tfevents.*")), "no TensorBoard log"
    assert (trained / "checkpoints" / "model_200.zip").is_file()
    assert not [p for p in trained.rglob("*") if p.name.startswith(".tmp-")], "temporary files left behind"

    done = status(trained)
    assert done["status"] == "finished" and done["num_timesteps"] == 400 and done["name"] == "tiny"

    # the resolved config: overrides applied, defaults filled in, versions recorded
    config = yaml.safe_load((trained / "config.yaml").read_text())
    assert config["seed"] == 3 and config["policy"]["losses"][1] == {"name": "bc", "weight": 0.2, "kwargs": {}}
    assert config["policy"]["head"] == "squashed_gaussian" and config["eval"]["deterministic"] is True
    versions = config["versions"]
    assert versions["diffrl-core"] == "0.1.0"
    assert versions["plugins"]["gaussian"] == {
        "distribution": "diffrl-plugin-gaussian", "version": "0.1.0", "components": ["sac_entropy", "squashed_gaussian"]
    }
    assert "bc" in versions["plugins"]["diffrl_core"]["components"]

    # every logged value in the CSV, each loss term in its own column
    header = (trained / "logs" / "progress.csv").read_text().splitlines()[0].split(",")
    for key in (
        "train/loss/sac_entropy", "train/loss/bc", "train/actor_loss", "rollout/ep_rew_mean", "eval/mean_reward"
    ):
        assert key in header, header

    with np.load(trained / "evaluations.npz") as evaluations:
        assert list(evaluations["timesteps"]) == [200, 400] and evaluations["results"].shape == (2, 2)
    results = json.loads((trained / "results.json").read_text())
    assert results["num_timesteps"] == 400 and results["n_episodes"] == 2
    assert results["mean_return"] == pytest.approx(np.mean(results["returns"]))
    assert num_timesteps(trained / "model.zip") == 400


@pytest.mark.slow
def test_eval_a_run_and_a_checkpoint(trained: Path, tmp_path: Path) -> None:
    gif = tmp_path / "episode.gif"
    result = diffrl("eval", str(trained), "--episodes", "2", "--video", str(gif), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "mean return" in result.stdout and "+/-" in result.stdout
    assert gif.read_bytes()[:6] == b"GIF89a"

    result = diffrl(
        "eval", str(trained / "checkpoints" / "model_200.zip"), "-n", "2", "--stochastic", "--json", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["env"] == "Pendulum-v1" and report["num_timesteps"] == 200 and report["deterministic"] is False
    assert len(report["returns"]) == 2 and report["std_return"] == pytest.approx(np.std(report["returns"]))

    assert_user_error(diffrl("eval", str(tmp_path / "nothing"), cwd=tmp_path), "does not exist")


@pytest.mark.slow
def test_plot_runs_to_png(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "curves.png"
    result = diffrl("plot", str(trained), str(trained.parent), "-o", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "2 run(s), 1 curve(s)" in result.stdout  # the same config twice: one mean curve
    assert_user_error(diffrl("plot", str(tmp_path), cwd=tmp_path), "not a run folder")


def interrupt(
    work: Path, signum: int, run: Path, group: bool = False, **changes: object
) -> subprocess.CompletedProcess:
    """Start a long run, send ``signum`` once it wrote its first checkpoint, wait for the exit.

    :param group: send the signal to the whole process group, as Ctrl-C in a terminal does
    """
    config = write_config(work / "long.yaml", total_timesteps=100_000, checkpoint={"freq": 100}, **changes)
    process = start("train", str(config), "--run-dir", str(run), cwd=work)
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 120
    for line in process.stdout:
        lines.append(line)
        if line.startswith("checkpoint:") or time.monotonic() > deadline:
            break
    if group:
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, "".join(lines) + stdout, stderr)


@pytest.mark.slow
def test_sigint_leaves_a_checkpoint_and_resume_continues_the_step_counter(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = interrupt(tmp_path, signal.SIGINT, run)
    assert result.returncode == 130, (result.stdout, result.stderr)
    assert "interrupted by SIGINT" in result.stderr and f"diffrl train --resume {run}" in result.stderr
    assert "Traceback" not in result.stderr

    stopped = status(run)
    steps = stopped["num_timesteps"]
    assert stopped["status"] == "interrupted" and stopped["pid"] is None and 100 <= steps < 100_000
    assert stopped["checkpoint"] == f"checkpoints/model_{steps}.zip"
    assert stopped["replay_buffer"] == f"checkpoints/replay_buffer_{steps}.safetensors"
    assert num_timesteps(run / stopped["checkpoint"]) == steps
    assert not (run / "model.zip").exists()  # the final model is only written by a finished run
    progress = run / "logs" / "progress.csv"
    rows_before = len(progress.read_text().splitlines()) if progress.exists() else 0

    # a resumed run keeps its model: only total_timesteps, eval, checkpoint, logging may change
    assert_user_error(diffrl("train", "--resume", str(run), "--set", "policy.net_arch=[8]", cwd=tmp_path), "policy")

    total = steps + 150
    result = diffrl("train", "--resume", str(run), "--set", f"total_timesteps={total}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"at step {steps} of {total} (with its replay buffer)" in result.stdout
    finished = status(run)
    assert finished["status"] == "finished" and finished["num_timesteps"] == total and finished["sessions"] == 2
    assert num_timesteps(run / "model.zip") == total
    assert yaml.safe_load((run / "config.yaml").read_text())["total_timesteps"] == total
    # the logs are continued, not overwritten
    rows = (run / "logs" / "progress.csv").read_text().splitlines()
    assert len(rows) > rows_before
    assert len(list((run / "logs").glob("events.out.tfevents.*"))) == 2

    # nothing left to do
    assert_user_error(diffrl("train", "--resume", str(run), cwd=tmp_path), "already reached", "total_timesteps")


@pytest.mark.slow
def test_sigterm_leaves_a_loadable_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = interrupt(tmp_path, signal.SIGTERM, run)
    assert result.returncode == 143, (result.stdout, result.stderr)
    stopped = status(run)
    assert stopped["status"] == "interrupted" and stopped["signal"] == "SIGTERM"
    assert num_timesteps(run / stopped["checkpoint"]) == stopped["num_timesteps"]


@pytest.mark.slow
def test_ctrl_c_reaches_subprocess_envs_too(tmp_path: Path) -> None:
    # SubprocVecEnv workers get the terminal's SIGINT as well; they must leave it to the trainer
    run = tmp_path / "run"
    result = interrupt(
        tmp_path, signal.SIGINT, run, group=True, n_envs=2, vec_env="subproc", eval={"freq": 0, "final": False}
    )
    assert result.returncode == 130, (result.stdout, result.stderr)
    stopped = status(run)
    assert stopped["status"] == "interrupted" and stopped["error"] is None
    assert num_timesteps(run / stopped["checkpoint"]) == stopped["num_timesteps"]


BROKEN = {
    "bad_yaml": ("env: Pendulum-v1\npolicy: [unclosed\n", ["not valid YAML", "line 2"]),
    "unknown_key": ("env: Pendulum-v1\ntotal_timestep: 10\n", ["total_timestep: unknown key", "'total_timesteps'"]),
    "wrong_type": (
        "env: Pendulum-v1\npolicy:\n  losses:\n    - {name: sac_entropy}\n    - {name: bc, weight: heavy}\n",
        ["policy.losses[1].weight", "valid number", "'heavy'"],
    ),
    "unknown_component": (
        "env: Pendulum-v1\npolicy: {head: squashed_gausian}\n",
        ["'squashed_gausian'", "did you mean 'squashed_gaussian'"],
    ),
    "incompatible": (
        "env: Pendulum-v1\nalgo: sac\npolicy: {head: deterministic, losses: [{name: q_value}]}\n",
        ["algo 'sac' cannot train head 'deterministic'"],
    ),
    "log_prob_unknown": (
        "env: Pendulum-v1\nalgo: sac\npolicy: {head: gaussian, postprocess: clip}\n",
        ["post-processor 'clip'", "not bijective", "algo 'sac'", "'tanh'", "policy.raw_log_prob: true"],
    ),
    "raw_log_prob_without_effect": (
        "env: Pendulum-v1\npolicy: {head: gaussian, postprocess: tanh, raw_log_prob: true}\n",
        ["policy.raw_log_prob: true has no effect", "exact log-prob"],
    ),
    "bad_postprocess_kwarg_value": (
        "env: Pendulum-v1\npolicy: {head: gaussian, postprocess: tanh, postprocess_kwargs: {epsilon: -1}}\n",
        ["policy.postprocess_kwargs", "post-processor 'tanh'", "epsilon must be a number in [0, 1)"],
    ),
    "bad_head_kwarg_value": (
        "env: Pendulum-v1\npolicy: {head: beta, head_kwargs: {deterministic_action: median}}\n",
        ["policy.head_kwargs", "actor head 'beta'", "'mean' or 'mode'"],
    ),
    "python_tag": (
        "env: Pendulum-v1\nalgo_kwargs: !!python/object/apply:os.system [touch pwned]\n",
        ["python/object", "not allowed"],
    ),
    "not_a_mapping": ("- env: Pendulum-v1\n", ["must hold a mapping"]),
}


#: errors found when the components are resolved or built
COMPOSING = {"incompatible", "log_prob_unknown", "raw_log_prob_without_effect", "bad_postprocess_kwarg_value",
             "bad_head_kwarg_value"}


@pytest.mark.parametrize("case", [*BROKEN, "missing_file", "bad_override"])
def test_broken_configs_exit_2_and_leave_no_run_folder(case: str, tmp_path: Path) -> None:
    config = tmp_path / f"{case}.yaml"
    args = [str(config)]
    if case in BROKEN:
        config.write_text(BROKEN[case][0])
        fragments = BROKEN[case][1]
    elif case == "missing_file":
        fragments = ["does not exist", "missing_file.yaml"]
    else:
        write_config(config)
        args += ["--set", "eval.freq=often"]
        fragments = ["eval.freq", "valid integer", "--set eval.freq=often"]
    if case in COMPOSING:  # found when composing, after torch is imported: still no folder
        args += ["--run-dir", str(tmp_path / "run")]
    assert_user_error(diffrl("train", *args, cwd=tmp_path), *fragments)
    assert [p.name for p in tmp_path.iterdir()] in ([], [config.name])  # no runs/, no run, no pwned


@pytest.mark.slow
def test_existing_run_dir_is_refused(trained: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "tiny.yaml")
    assert_user_error(
        diffrl("train", str(config), "--run-dir", str(trained), cwd=tmp_path), "already exists", "--resume"
    )
    assert status(trained)["status"] == "finished"


EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_configs_compose(path: Path) -> None:
    from diffrl_core import make_model

    model = make_model(path)
    assert model.num_timesteps == 0
    model.env.close()


def test_examples_cover_pendulum_and_every_diffrl_env() -> None:
    from diffrl_core.plugins import load_plugins

    envs = {yaml.safe_load(path.read_text())["env"] for path in EXAMPLES}
    plugin_envs = {r.name for r in load_plugins().registry("envs") if r.provenance.plugin == "envs"}
    assert plugin_envs and plugin_envs <= envs
    names = {p.name for p in EXAMPLES}
    assert {"pendulum_sac.yaml", "pendulum_td3.yaml"} <= names


def test_set_overrides_are_parsed_as_yaml_never_evaluated() -> None:
    from diffrl_core.config import apply_overrides
    from diffrl_core.errors import ConfigError

    data = {"env": "Pendulum-v1", "policy": {"losses": [{"name": "sac_entropy"}]}}
    result = apply_overrides(data, [
        "policy.losses[0].weight=0.5", "algo_kwargs.learning_rate=1e-3", "seed=null", "policy.net_arch=[8, 8]",
        "policy.losses[1]={name: bc, weight: 0.1}", "env_kwargs.g=__import__('os').getcwd()",
    ])
    assert result["policy"]["losses"] == [{"name": "sac_entropy", "weight": 0.5}, {"name": "bc", "weight": 0.1}]
    assert result["algo_kwargs"] == {"learning_rate": 0.001} and result["seed"] is None
    assert result["env_kwargs"]["g"] == "__import__('os').getcwd()"  # a string, nothing more
    assert data["policy"]["losses"] == [{"name": "sac_entropy"}]  # the input is not modified
    for bad, message in [
        ("policy.losses[3].weight=1", "policy.losses has 1 item(s)"),
        ("env.name=x", "env is not a mapping"),
        ("seed", "expected KEY=VALUE"),
        ("a b=1", "is not a key path"),
        ("policy.net_arch[0]=3", "set the whole list"),
        ("seed=[1", "not valid YAML"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            apply_overrides(data, [bad])


def test_yaml_floats_without_a_dot_are_numbers(tmp_path: Path) -> None:
    from diffrl_core.config import read_yaml

    path = tmp_path / "c.yaml"
    path.write_text("a: 1e-3\nb: -2E+4\nc: 3.0e-4\nd: 10\ne: '1e-3'\nf: v1e3\n")
    assert read_yaml(path) == {"a": 0.001, "b": -20000.0, "c": 0.0003, "d": 10, "e": "1e-3", "f": "v1e3"}


def test_train_reads_its_config_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # in-process: the config is read and validated once, then handed to the run as a Config
    from click.testing import CliRunner

    import diffrl_core.config
    import diffrl_core.runs
    from diffrl_core.cli import main

    reads: list[Path] = []
    read_yaml = diffrl_core.config.read_yaml

    def counting_read_yaml(path: str | os.PathLike[str]) -> dict:
        reads.append(Path(path))
        return read_yaml(path)

    for module in (diffrl_core.config, diffrl_core.runs):  # every module that reads config files
        monkeypatch.setattr(module, "read_yaml", counting_read_yaml)
    config = write_config(
        tmp_path / "bandit.yaml",
        "env: diffrl/QuadraticBandit-v0\nalgo: td3\npolicy: {net_arch: [8]}\n"
        "algo_kwargs: {learning_starts: 10, batch_size: 8, buffer_size: 100}\ntotal_timesteps: 50\nseed: 0\n"
        "eval: {freq: 0, n_episodes: 2}\ncheckpoint: {freq: 0}\nlogging: {tensorboard: false}\n",
    )
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(config), "--run-dir", str(run), "--set", "seed=1"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert reads == [config]
    assert status(run)["status"] == "finished" and status(run)["num_timesteps"] == 50
    assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == 1

"""A shared run folder runs no code: crafted files through ``load_model``, ``diffrl eval``, ``--resume`` and ``plot``.

Each payload, if unpickled, would create a marker file (``open(marker, "w")``); the marker must
stay absent, and each command must end with exit 0 or 2 (a clear refusal), never a traceback.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch as th
from click.testing import CliRunner
from stable_baselines3 import A2C, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm

from diffrl_core.cli import main
from diffrl_core.compose import load_model
from diffrl_core.errors import ModelFileError

TINY = {
    "env": "Pendulum-v1", "algo": "sac", "seed": 1, "total_timesteps": 200,
    "policy": {"net_arch": [16]}, "algo_kwargs": {"learning_starts": 50, "buffer_size": 1000, "batch_size": 16},
    "eval": {"freq": 100, "n_episodes": 1}, "checkpoint": {"freq": 100},
}


class Payload:
    """Unpickling it creates ``marker``: proof that a file's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def pickled(marker: Path) -> str:
    return base64.b64encode(pickle.dumps(Payload(marker))).decode()


def test_the_payload_does_run_when_unpickled(tmp_path) -> None:
    """The tests below mean something only if unpickling the payload really creates the marker."""
    pickle.loads(base64.b64decode(pickled(tmp_path / "marker"))).close()
    assert (tmp_path / "marker").exists()


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    import yaml

    root = tmp_path_factory.mktemp("run")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    result = CliRunner().invoke(main, ["train", str(config), "--run-dir", str(root / "run")])
    assert result.exit_code == 0, result.output
    return root / "run"


def rewrite_zip(path: Path, change) -> None:
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    change(entries)
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)


def poison_data(key: str):
    """A stable-baselines3 zip whose ``data`` entry ``key`` holds the payload (as SB3 writes pickled entries)."""
    def change(entries: dict, marker: Path) -> None:
        data = json.loads(entries["data"])
        entry = data.get(key)
        fields = {name: value for name, value in entry.items() if name != ":serialized:"} \
            if isinstance(entry, dict) else {}
        data[key] = {":type:": "<class 'object'>", **fields, ":serialized:": pickled(marker)}
        entries["data"] = json.dumps(data).encode()
    return change


def poison_pth(name: str):
    def change(entries: dict, marker: Path) -> None:
        buffer = io.BytesIO()
        th.save({"weights": Payload(marker)}, buffer)
        entries[name] = buffer.getvalue()
    return change


POISONS = {
    "extra data key": poison_data("innocent_looking_key"),
    "observation_space": poison_data("observation_space"),
    "action_space": poison_data("action_space"),
    "lr_schedule": poison_data("lr_schedule"),
    "policy_class": poison_data("policy_class"),
    "policy_kwargs": poison_data("policy_kwargs"),
    "train_freq": poison_data("train_freq"),
    "replay_buffer_class": poison_data("replay_buffer_class"),
    "policy.pth": poison_pth("policy.pth"),
    "optimizer .pth": poison_pth("actor.optimizer.pth"),
    "pytorch_variables.pth": poison_pth("pytorch_variables.pth"),
}


def crafted_run(run_folder: Path, tmp_path: Path, poison) -> tuple[Path, Path]:
    """A copy of the run whose model and checkpoint are stable-baselines3 zips carrying ``poison``, with a pickled
    replay buffer, a VecNormalize pickle and an evaluations file that each carry it too."""
    run, marker = tmp_path / "run", tmp_path / "marker"
    shutil.copytree(run_folder, run)
    model = load_model(run / "model.zip")
    for path in (run / "model.zip", run / "checkpoints" / "model_200.zip"):
        BaseAlgorithm.save(model, path)
        rewrite_zip(path, lambda entries: poison(entries, marker))
    (run / "checkpoints" / "replay_buffer_200.pkl").write_bytes(pickle.dumps(Payload(marker)))
    (run / "vecnormalize.pkl").write_bytes(pickle.dumps(Payload(marker)))
    status = json.loads((run / "status.json").read_text())
    status.update(checkpoint="checkpoints/model_200.zip", replay_buffer="checkpoints/replay_buffer_200.pkl")
    (run / "status.json").write_text(json.dumps(status))
    return run, marker


@pytest.mark.parametrize("where", POISONS)
def test_a_crafted_run_folder_runs_no_code(run_folder, tmp_path, where) -> None:
    run, marker = crafted_run(run_folder, tmp_path, POISONS[where])
    try:
        load_model(run / "model.zip")
    except ModelFileError:
        pass
    runner = CliRunner()
    for args in (["eval", str(run), "-n", "1"], ["train", "--resume", str(run), "--set", "total_timesteps=250"],
                 ["plot", str(run), "--output", str(tmp_path / "plot.png")]):
        result = runner.invoke(main, args)
        assert result.exit_code in (0, 2), (args, result.output, result.exception)
        assert "Traceback" not in result.output
        assert not marker.exists(), (where, args)
    assert not marker.exists()


def test_a_pickled_evaluations_file_is_refused_unread(run_folder, tmp_path) -> None:
    run, marker = tmp_path / "run", tmp_path / "marker"
    shutil.copytree(run_folder, run)
    results = np.empty((1, 1), dtype=object)
    results[0, 0] = Payload(marker)
    np.savez(run / "evaluations.npz", timesteps=np.array([100]), results=results, ep_lengths=np.array([[200]]))
    result = CliRunner().invoke(main, ["plot", str(run), "--output", str(tmp_path / "plot.png")])
    assert result.exit_code == 2 and "results.npy is not an array of numbers" in result.output, result.output
    assert not marker.exists()


def test_an_evaluations_file_of_mismatched_arrays_is_refused(run_folder, tmp_path) -> None:
    run = tmp_path / "run"
    shutil.copytree(run_folder, run)
    np.savez(run / "evaluations.npz", timesteps=np.array([100, 200]), results=np.array([1.0, 2.0]),
             ep_lengths=np.array([200, 200]))
    result = CliRunner().invoke(main, ["plot", str(run), "--output", str(tmp_path / "plot.png")])
    assert result.exit_code == 2 and "its arrays do not go together" in result.output, result.output


def test_resuming_leaves_a_pickled_replay_buffer_out_and_says_so(run_folder, tmp_path) -> None:
    run, marker = tmp_path / "run", tmp_path / "marker"
    shutil.copytree(run_folder, run)
    (run / "checkpoints" / "replay_buffer_200.safetensors").unlink()
    (run / "checkpoints" / "replay_buffer_200.pkl").write_bytes(pickle.dumps(Payload(marker)))
    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps({**status, "replay_buffer": "checkpoints/replay_buffer_200.pkl"}))
    result = CliRunner().invoke(main, ["train", "--resume", str(run), "--set", "total_timesteps=250"])
    assert result.exit_code == 0, result.output
    assert "not loading checkpoints/replay_buffer_200.pkl: it is a pickle" in result.output
    assert "without its replay buffer" in result.output
    assert not marker.exists()


def test_status_cannot_point_outside_the_run_folder(run_folder, tmp_path) -> None:
    run = tmp_path / "run"
    shutil.copytree(run_folder, run)
    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps({**status, "checkpoint": "../elsewhere.zip"}))
    result = CliRunner().invoke(main, ["train", "--resume", str(run), "--set", "total_timesteps=250"])
    assert result.exit_code == 2 and "outside the run folder" in result.output, result.output


@pytest.mark.parametrize(("case", "change", "message"), [
    ("truncated", lambda p: p.write_bytes(p.read_bytes()[:1000]), "not a zip archive, or it is truncated"),
    ("policy tensors missing", lambda p: _drop(p, "policy.safetensors"), "'policy.safetensors' is missing"),
    ("optimizer missing", lambda p: _drop(p, "actor.optimizer.safetensors"),
     "'actor.optimizer.safetensors' is missing"),
    ("entropy coefficient missing", lambda p: _drop(p, "variables.safetensors"), "'variables.safetensors' is missing"),
    ("empty file", lambda p: p.write_bytes(b""), "not a zip archive"),
])
def test_a_damaged_checkpoint_stops_eval_and_resume_with_exit_2(run_folder, tmp_path, case, change, message) -> None:
    run = tmp_path / "run"
    shutil.copytree(run_folder, run)
    for path in (run / "model.zip", run / "checkpoints" / "model_200.zip"):
        change(path)
    for args in (["eval", str(run), "-n", "1"], ["train", "--resume", str(run), "--set", "total_timesteps=250"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "model" in result.output and "Traceback" not in result.output


def _drop(path: Path, name: str) -> None:
    rewrite_zip(path, lambda entries: entries.pop(name))


@pytest.mark.parametrize(("algo_class", "env_id", "kwargs"), [
    (SAC, "Pendulum-v1", {"learning_starts": 20}),
    (TD3, "Pendulum-v1", {"learning_starts": 20}),
    (PPO, "CartPole-v1", {"n_steps": 32, "batch_size": 32}),
    (A2C, "CartPole-v1", {"n_steps": 8}),
    (PPO, "Pendulum-v1", {"n_steps": 32, "batch_size": 32}),
])
def test_a_model_saved_by_stable_baselines3_loads_and_predicts_the_same(tmp_path, algo_class, env_id, kwargs) -> None:
    model = algo_class("MlpPolicy", env_id, policy_kwargs={"net_arch": [16]}, seed=0, **kwargs)
    model.learn(64)
    model.save(tmp_path / "sb3")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_model(tmp_path / "sb3.zip")
    unread = [str(warning.message) for warning in caught if "were not read" in str(warning.message)]
    if algo_class in (SAC, TD3):  # TrainFreq is a pickle only: the warning names it (PPO/A2C pickle nothing needed)
        assert len(unread) == 1 and "train_freq" in unread[0]
    else:
        assert not unread
    # the same weights, under the composed names
    theirs, ours = model.policy.state_dict(), loaded.policy.state_dict()
    assert sorted(tuple(t.flatten().tolist()) for t in theirs.values()) == \
        sorted(tuple(t.flatten().tolist()) for t in ours.values())
    observations = np.stack([model.observation_space.sample() for _ in range(16)])
    expected = model.predict(observations, deterministic=True)[0]
    actions = loaded.predict(observations, deterministic=True)[0]
    if algo_class in (PPO, A2C) and env_id == "Pendulum-v1":
        # clip_to_bounds hands SB3 the action normalized to [-1, 1], and SB3 scales it back: float32 rounding
        np.testing.assert_allclose(actions, expected, rtol=0, atol=1e-6)
    else:
        assert np.array_equal(actions, expected)
    assert loaded.num_timesteps == model.num_timesteps
    # and saved again, it is in diffrl's format
    loaded.save(tmp_path / "again")
    with zipfile.ZipFile(tmp_path / "again.zip") as archive:
        assert "manifest.json" in archive.namelist()


def test_trust_pickle_is_stable_baselines3s_own_load(tmp_path) -> None:
    """The opt-in runs the pickles, as documented: only for files one trusts."""
    model = SAC("MlpPolicy", "Pendulum-v1", policy_kwargs={"net_arch": [16]}, seed=0)
    model.save(tmp_path / "sb3")
    marker = tmp_path / "marker"
    rewrite_zip(tmp_path / "sb3.zip", lambda entries: poison_data("innocent_looking_key")(entries, marker))
    with pytest.warns(UserWarning):
        load_model(tmp_path / "sb3.zip")
    assert not marker.exists()
    load_model(tmp_path / "sb3.zip", trust_pickle=True)
    assert marker.exists()

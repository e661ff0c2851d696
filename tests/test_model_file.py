"""diffrl's model file (a JSON manifest and safetensors): exact round trips, and bad files refused clearly."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch as th
from click.testing import CliRunner
from stable_baselines3.common.utils import LinearSchedule

from diffrl_core import make_model
from diffrl_core.cli import main as cli
from diffrl_core.compose import load_model
from diffrl_core.errors import ModelFileError, ModelSaveError
from diffrl_core.model_data import allow_classes, decode, encode
from diffrl_core.model_file import MANIFEST

SMALL = {"net_arch": [16]}


def sac(**algo_kwargs) -> dict:
    return {"env": "Pendulum-v1", "algo": "sac", "seed": 0, "policy": SMALL,
            "algo_kwargs": {"learning_starts": 10, "batch_size": 16, **algo_kwargs}}


@pytest.fixture(scope="module")
def trained_sac(tmp_path_factory) -> tuple[object, Path]:
    model = make_model(sac())
    model.learn(40)
    path = tmp_path_factory.mktemp("sac") / "model.zip"
    model.save(path)
    return model, path


def rewritten(path: Path, target: Path, change) -> Path:
    """A copy of the zip at ``path`` with ``change(entries)`` applied to its entries (name -> bytes)."""
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    change(entries)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return target


def edit_manifest(edit):
    def change(entries):
        manifest = json.loads(entries[MANIFEST])
        edit(manifest)
        entries[MANIFEST] = json.dumps(manifest).encode()
    return change


def test_the_file_holds_a_manifest_and_safetensors_only(trained_sac) -> None:
    _, path = trained_sac
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read(MANIFEST))
    assert names == {MANIFEST, *manifest["files"]}
    assert all(name.endswith(".safetensors") for name in manifest["files"])
    assert manifest["components"]["head"]["name"] == "squashed_gaussian"
    assert manifest["config"]["env"] == "Pendulum-v1"
    assert manifest["data"]["observation_space"]["__type__"] == "space"
    assert manifest["versions"]["stable-baselines3"]
    assert "lr_schedule" not in manifest["data"]  # rebuilt from learning_rate


def test_a_round_trip_restores_every_tensor_and_setting(trained_sac) -> None:
    model, path = trained_sac
    loaded = load_model(path)
    for name, state in model.get_parameters().items():
        other = loaded.get_parameters()[name]
        if "param_groups" in state:
            assert other["param_groups"] == state["param_groups"], name
            for index, values in state["state"].items():
                for key, value in values.items():
                    assert th.equal(other["state"][index][key], value), (name, index, key)
        else:
            assert all(th.equal(other[key], value) for key, value in state.items()), name
    assert th.equal(loaded.log_ent_coef, model.log_ent_coef)
    for key in ("num_timesteps", "_n_updates", "_episode_num", "target_entropy", "learning_rate", "train_freq",
                "observation_space", "action_space", "ent_coef", "seed"):
        assert getattr(loaded, key) == getattr(model, key), key
    observations = np.stack([model.observation_space.sample() for _ in range(8)])
    assert np.array_equal(loaded.predict(observations, deterministic=True)[0],
                          model.predict(observations, deterministic=True)[0])


def test_every_kind_of_saved_value_comes_back_as_it_was() -> None:
    from collections import deque

    from gymnasium import spaces
    from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise, VectorizedActionNoise
    from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit
    from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule

    space = spaces.Dict({"a": spaces.Box(-np.inf, np.arange(3.0), dtype=np.float64), "b": spaces.Discrete(3, start=1),
                         "c": spaces.Tuple([spaces.MultiDiscrete([2, 3]), spaces.MultiBinary(4)])})
    values = [
        None, True, 3, 0.5, float("inf"), "text", (1, "episode"), [1, (2, 3)], {"pi": [64], "qf": [64]},
        {1: "int key"}, {"__type__": "a user's key"}, np.float32(1.5), np.array([[1, 2]], dtype=np.uint8),
        np.array([np.nan, -np.inf]), deque([{"r": 1.0, "l": 3}], maxlen=100), space,
        TrainFreq(4, TrainFrequencyUnit.EPISODE), FloatSchedule(LinearSchedule(1e-3, 0.0, 0.5)),
        FloatSchedule(ConstantSchedule(3e-4)), th.nn.ReLU, th.optim.RMSprop,
    ]
    for value in values:
        back = decode(json.loads(json.dumps(encode(value, "value"), allow_nan=False)))
        assert type(back) is type(value), value
        if isinstance(value, np.ndarray):
            assert back.dtype == value.dtype and np.array_equal(back, value, equal_nan=True)
        elif isinstance(value, float) or isinstance(value, (FloatSchedule, spaces.Space)):
            assert repr(back) == repr(value)
        else:
            assert back == value, value
    ou = OrnsteinUhlenbeckActionNoise(np.zeros(2), np.ones(2) * 0.3)
    ou()
    vectorized = VectorizedActionNoise(NormalActionNoise(np.zeros(2), np.ones(2)), 3)
    for noise in (ou, vectorized):
        back = decode(json.loads(json.dumps(encode(noise, "noise"))))
        assert repr(back) == repr(noise)
    back_ou = decode(json.loads(json.dumps(encode(ou, "noise"))))
    assert np.array_equal(back_ou.noise_prev, ou.noise_prev)


def test_schedules_and_noise_of_a_model_round_trip(tmp_path) -> None:
    model = make_model({**sac(), "algo": "td3", "action_noise": {"type": "ornstein_uhlenbeck", "sigma": 0.2}})
    model.learning_rate = LinearSchedule(1e-3, 1e-4, 1.0)
    model._setup_lr_schedule()
    model.learn(20)
    model.save(tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    assert loaded.lr_schedule(0.5) == model.lr_schedule(0.5)
    assert np.array_equal(loaded.action_noise.noise_prev, model.action_noise.noise_prev)


def test_what_would_need_code_is_refused_when_saving(tmp_path) -> None:
    model = make_model(sac())
    model.learning_rate = lambda progress: 1e-3 * progress
    with pytest.raises(ModelSaveError, match=r"learning_rate: it is a function.*LinearSchedule"):
        model.save(tmp_path / "model")
    assert not (tmp_path / "model.zip").exists()


class MyActivation(th.nn.ReLU):
    pass


def test_a_class_of_ones_own_is_saved_by_name_once_allowed(tmp_path) -> None:
    model = make_model(sac())
    model.policy_kwargs = {**model.policy_kwargs, "activation_fn": MyActivation}
    with pytest.raises(ModelSaveError, match=r"MyActivation is not one a model file may name.*allow_classes"):
        model.save(tmp_path / "model")
    allow_classes(MyActivation)
    model.save(tmp_path / "model")
    assert load_model(tmp_path / "model").policy_kwargs["activation_fn"] is MyActivation


@pytest.mark.parametrize(("case", "change", "message"), [
    ("truncated", None, "not a zip archive, or it is truncated"),
    ("missing tensors", lambda e: e.pop("policy.safetensors"), "'policy.safetensors' is missing"),
    ("missing manifest", lambda e: e.pop(MANIFEST), "neither a diffrl model"),
    ("flipped byte", lambda e: e.update({"policy.safetensors": e["policy.safetensors"][:-1] + b"\x00"}),
     "does not match its checksum"),
    ("extra entry", lambda e: e.update({"data": b"{}"}), "entries its manifest does not list: 'data'"),
    ("manifest not json", lambda e: e.update({MANIFEST: b"{not json"}), "manifest.json is not valid JSON"),
    ("newer format", edit_manifest(lambda m: m.update(format_version=99)), "version 99 of diffrl's model format"),
    ("unknown type", edit_manifest(lambda m: m["data"].update(seed={"__type__": "pickle", "bytes": "x"})),
     "'seed' is malformed: unknown value type 'pickle'"),
    ("unlisted class", edit_manifest(lambda m: m["data"].update(policy_class={"__type__": "class",
                                                                                "name": "os.system"})),
     "the class os.system is not one a model file may name"),
    ("method attribute", edit_manifest(lambda m: m["data"].update(predict=1)), "sets the attribute 'predict'"),
    ("wrong shapes", edit_manifest(lambda m: m["data"]["policy_kwargs"].update(net_arch=[8])),
     "tensors do not fit the model it describes"),
])
def test_a_damaged_file_is_refused_with_its_name_and_the_problem(trained_sac, tmp_path, case, change,
                                                                   message) -> None:
    _, path = trained_sac
    target = tmp_path / "damaged.zip"
    if change is None:
        target.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        rewritten(path, target, change)
    with pytest.raises(ModelFileError, match=message) as caught:
        load_model(target)
    assert str(target) in str(caught.value)
    result = CliRunner().invoke(cli, ["eval", str(target), "--env", "Pendulum-v1", "-n", "1"])
    assert result.exit_code == 2, result.output
    assert f"cannot load '{target}'" in result.output
    assert "Traceback" not in result.output


def test_sizes_are_checked_before_anything_is_decompressed(trained_sac, tmp_path) -> None:
    _, path = trained_sac
    bomb = tmp_path / "bomb.zip"

    def inflate(entries):
        entries["policy.safetensors"] = bytes(200 * 2**20)  # 200 MiB of zeros, about 200 KiB deflated
    rewritten(path, bomb, inflate)
    assert bomb.stat().st_size < 2 * 2**20
    with pytest.raises(ModelFileError, match=r"'policy.safetensors' declares 209715200 bytes.*before decompressing"):
        load_model(bomb)


def test_a_loaded_model_and_buffer_continue_training_exactly(tmp_path) -> None:
    """Save and load lose nothing that training uses: with the env and the random number generators where they
    were (what a file cannot hold, docs/model-format.md), the loaded model trains to the uninterrupted one's bits."""
    import random

    def first_half():
        model = make_model(sac(learning_starts=50))
        model.learn(150)
        return model

    uninterrupted = first_half()
    uninterrupted.learn(150, reset_num_timesteps=False)

    model = first_half()
    model.save(tmp_path / "model")
    model.save_replay_buffer(tmp_path / "buffer.safetensors")
    generators = th.get_rng_state(), np.random.get_state(), random.getstate()
    resumed = load_model(tmp_path / "model", env=model.get_env(), force_reset=False)
    resumed.load_replay_buffer(tmp_path / "buffer.safetensors")
    th.set_rng_state(generators[0]), np.random.set_state(generators[1]), random.setstate(generators[2])
    resumed.learn(150, reset_num_timesteps=False)
    assert resumed.num_timesteps == uninterrupted.num_timesteps == 300
    for name, state in uninterrupted.get_parameters().items():
        if "param_groups" not in state:
            other = resumed.get_parameters()[name]
            assert all(th.equal(other[key], value) for key, value in state.items()), name
    assert th.equal(resumed.log_ent_coef, uninterrupted.log_ent_coef)

"""The replay-buffer file: arrays and JSON only, refused with a clear message when damaged or mismatched,
never unpickled."""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors
import safetensors.numpy
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer, NStepReplayBuffer, ReplayBuffer
from stable_baselines3.common.envs import BitFlippingEnv
from stable_baselines3.common.save_util import save_to_pkl
from stable_baselines3.common.vec_env import DummyVecEnv
from stable_baselines3.her import HerReplayBuffer

from diffrl_core import buffer_file
from diffrl_core.buffer_file import METADATA_KEY, load_replay_buffer, save_replay_buffer
from diffrl_core.errors import ModelFileError, ModelSaveError

OBS = spaces.Box(-1.0, 1.0, (3,), np.float32)
ACTION = spaces.Box(-2.0, 2.0, (1,), np.float32)
DICT_OBS = spaces.Dict({"position": spaces.Box(-1.0, 1.0, (3,), np.float32),
                        "image": spaces.Box(0, 255, (2, 2), np.uint8)})


def make(cls: type[ReplayBuffer] = ReplayBuffer, size: int = 100, obs: spaces.Space = OBS, **kwargs: Any) -> Any:
    return cls(size, obs, ACTION, device="cpu", **kwargs)


def random_obs(space: spaces.Space, n_envs: int, rng: np.random.Generator) -> Any:
    if isinstance(space, spaces.Dict):
        return {key: random_obs(sub, n_envs, rng) for key, sub in space.spaces.items()}
    assert isinstance(space, spaces.Box)
    if space.dtype == np.uint8:
        return rng.integers(0, 256, (n_envs, *space.shape), dtype=np.uint8)
    return rng.uniform(-1, 1, (n_envs, *space.shape)).astype(space.dtype)


def fill(buffer: ReplayBuffer, steps: int, seed: int = 0) -> ReplayBuffer:
    """Add ``steps`` random transitions (per env), with episode ends and time-limit truncations."""
    rng = np.random.default_rng(seed)
    n = buffer.n_envs
    for _ in range(steps):
        done = rng.random(n) < 0.1
        infos = [{"TimeLimit.truncated": bool(d and rng.random() < 0.5)} for d in done]
        buffer.add(random_obs(buffer.observation_space, n, rng), random_obs(buffer.observation_space, n, rng),
                   rng.uniform(-2, 2, (n, 1)).astype(np.float32), rng.standard_normal(n).astype(np.float32),
                   done.astype(np.float32), infos)
    return buffer


def arrays_of(buffer: ReplayBuffer) -> dict[str, np.ndarray]:
    """Every numeric array of the buffer, written independently of the module under test."""
    found: dict[str, np.ndarray] = {}
    for name, value in vars(buffer).items():
        if isinstance(value, np.ndarray) and not value.dtype.hasobject:
            found[name] = value
        elif isinstance(value, dict) and value and all(isinstance(v, np.ndarray) for v in value.values()):
            found.update({f"{name}/{key}": array for key, array in value.items()})
    return found


def assert_same(saved: ReplayBuffer, loaded: ReplayBuffer, batch_size: int = 32) -> None:
    assert (loaded.pos, loaded.full) == (saved.pos, saved.full)
    expected, actual = arrays_of(saved), arrays_of(loaded)
    assert expected.keys() == actual.keys()
    for name, array in expected.items():
        assert actual[name].dtype == array.dtype, name
        np.testing.assert_array_equal(actual[name], array, err_msg=name)
    samples = []
    for buffer in (saved, loaded):
        np.random.seed(123)
        samples.append(buffer.sample(batch_size))
    assert_same_tensors(samples[0], samples[1])


def assert_same_tensors(a: Any, b: Any) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same_tensors(a[key], b[key])
    elif isinstance(a, tuple):
        assert type(a) is type(b)
        for x, y in zip(a, b, strict=True):
            assert_same_tensors(x, y)
    elif a is None:  # the discounts of a buffer that is not n-step
        assert b is None
    else:
        assert torch.equal(a, b)


def resave(source: Path, target: Path, edit_tensors: Callable[[dict[str, np.ndarray]], None] | None = None,
           edit_metadata: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """Write ``source`` again as ``target`` with its arrays / metadata edited and a matching checksum."""
    tensors = dict(safetensors.numpy.load(source.read_bytes()))
    with safetensors.safe_open(source, framework="np") as file:
        metadata = json.loads(file.metadata()[METADATA_KEY])
    if edit_tensors:
        edit_tensors(tensors)
    if edit_metadata:
        edit_metadata(metadata)
    data = safetensors.numpy.save(tensors, metadata={METADATA_KEY: json.dumps(metadata)})
    metadata["payload_sha256"] = hashlib.sha256(data[8 + int.from_bytes(data[:8], "little"):]).hexdigest()
    safetensors.numpy.save_file(tensors, target, metadata={METADATA_KEY: json.dumps(metadata)})
    return target


def refused(buffer: ReplayBuffer, path: Path, fragment: str) -> ModelFileError:
    with pytest.raises(ModelFileError) as info:
        load_replay_buffer(buffer, path)
    message = str(info.value)
    assert message.startswith(f"cannot load {str(path)!r}: ")
    assert fragment in message, message
    return info.value


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "buffer.safetensors"
    save_replay_buffer(fill(make(), 30), path)
    return path


# -- round trips -------------------------------------------------------------------------------------


CASES: dict[str, Callable[[], ReplayBuffer]] = {
    "partly filled": lambda: fill(make(), 30),
    "full, wrapped around": lambda: fill(make(), 130),
    "exactly full": lambda: fill(make(), 100),
    "empty": lambda: make(),
    "dict observations": lambda: fill(make(DictReplayBuffer, obs=DICT_OBS), 30),
    "dict observations, full": lambda: fill(make(DictReplayBuffer, obs=DICT_OBS), 170),
    "optimize_memory_usage": lambda: fill(make(optimize_memory_usage=True, handle_timeout_termination=False), 30),
    "optimize_memory_usage, full": lambda: fill(
        make(optimize_memory_usage=True, handle_timeout_termination=False), 150),
    "two envs": lambda: fill(make(n_envs=2), 20),
    "two envs, full": lambda: fill(make(n_envs=2), 75),
    "n-step": lambda: fill(make(NStepReplayBuffer, n_steps=3, gamma=0.9), 40),
}


@pytest.mark.parametrize("case", CASES)
def test_round_trip(tmp_path: Path, case: str) -> None:
    buffer = CASES[case]()
    path = tmp_path / "buffer"  # a path without suffix is used as given
    save_replay_buffer(buffer, path)
    assert os.listdir(tmp_path) == ["buffer"]  # no temporary file left
    fresh = _fresh_like(buffer)
    load_replay_buffer(fresh, path)
    if buffer.pos or buffer.full:
        assert_same(buffer, fresh)
    else:
        assert (fresh.pos, fresh.full) == (0, False)
    # training goes on in the loaded buffer as in the saved one
    fill(buffer, 7, seed=5)
    fill(fresh, 7, seed=5)
    assert_same(buffer, fresh)


def _fresh_like(buffer: ReplayBuffer) -> ReplayBuffer:
    kwargs: dict[str, Any] = {"n_envs": buffer.n_envs, "optimize_memory_usage": buffer.optimize_memory_usage,
                              "handle_timeout_termination": buffer.handle_timeout_termination}
    if isinstance(buffer, NStepReplayBuffer):
        kwargs.update(n_steps=buffer.n_steps, gamma=buffer.gamma)
    return type(buffer)(buffer.buffer_size * buffer.n_envs, buffer.observation_space, buffer.action_space,
                        device="cpu", **kwargs)


def test_a_partly_filled_buffer_stores_only_its_rows(tmp_path: Path) -> None:
    buffer = fill(make(size=10_000), 500)
    ours, theirs = tmp_path / "buffer.safetensors", tmp_path / "buffer.pkl"
    save_replay_buffer(buffer, ours)
    save_to_pkl(theirs, buffer)
    with safetensors.safe_open(ours, framework="np") as file:
        assert {file.get_slice(name).get_shape()[0] for name in file.keys()} == {500}
        metadata = json.loads(file.metadata()[METADATA_KEY])
    assert metadata["rows"] == 500
    assert metadata["arrays"]["observations"] == {"shape": [10_000, 1, 3], "dtype": "float32"}
    assert ours.stat().st_size * 10 < theirs.stat().st_size


def test_rows_written_ahead_of_pos_are_kept(tmp_path: Path) -> None:
    buffer = fill(make(), 30)
    buffer.observations[60] = 1.0  # a subclass that writes ahead: the buffer is stored whole
    save_replay_buffer(buffer, tmp_path / "buffer")
    fresh = make()
    load_replay_buffer(fresh, tmp_path / "buffer")
    assert_same(buffer, fresh)


def test_the_metadata(saved: Path) -> None:
    with safetensors.safe_open(saved, framework="np") as file:
        metadata = json.loads(file.metadata()[METADATA_KEY])
    payload = saved.read_bytes()[8 + int.from_bytes(saved.read_bytes()[:8], "little"):]
    assert metadata == {
        "format": "diffrl-replay-buffer", "version": 1, "class": "ReplayBuffer", "buffer_size": 100, "n_envs": 1,
        "pos": 30, "full": False, "rows": 30,
        "settings": {"optimize_memory_usage": False, "handle_timeout_termination": True},
        "arrays": {name: {"shape": [100, 1, 3] if "observations" in name else [100, 1, 1] if name == "actions"
                          else [100, 1], "dtype": "float32"}
                   for name in ("actions", "dones", "next_observations", "observations", "rewards", "timeouts")},
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
    }


# -- HerReplayBuffer ---------------------------------------------------------------------------------


def make_her(copy_info_dict: bool = False, n_sampled_goal: int = 4) -> HerReplayBuffer:
    env = DummyVecEnv([lambda: BitFlippingEnv(n_bits=4, continuous=True, max_steps=5)])
    return HerReplayBuffer(40, env.observation_space, env.action_space, env=env, device="cpu",
                           n_sampled_goal=n_sampled_goal, goal_selection_strategy="future",
                           copy_info_dict=copy_info_dict)


def fill_her(buffer: HerReplayBuffer, steps: int, seed: int = 0) -> HerReplayBuffer:
    env = buffer.env
    assert env is not None
    env.seed(seed)
    rng = np.random.default_rng(seed)
    obs = env.reset()
    for _ in range(steps):
        action = rng.uniform(-1, 1, (1, 4)).astype(np.float32)
        new_obs, rewards, dones, infos = env.step(action)
        next_obs = {key: value.copy() for key, value in new_obs.items()}
        for i, done in enumerate(dones):
            if done:
                for key in next_obs:
                    next_obs[key][i] = infos[i]["terminal_observation"][key]
        buffer.add(obs, next_obs, action, rewards, dones, infos)
        obs = new_obs
    return buffer


@pytest.mark.parametrize("steps", [23, 57])
def test_her_round_trip(tmp_path: Path, steps: int) -> None:
    buffer = fill_her(make_her(), steps)
    save_replay_buffer(buffer, tmp_path / "her")
    with safetensors.safe_open(tmp_path / "her", framework="np") as file:
        names = set(file.keys())
    assert {"ep_start", "ep_length", "_current_ep_start", "observations/desired_goal"} <= names
    assert "infos" not in names
    fresh = make_her()
    load_replay_buffer(fresh, tmp_path / "her")
    assert_same(buffer, fresh)
    np.testing.assert_array_equal(fresh._current_ep_start, buffer._current_ep_start)


def test_her_settings_are_checked(tmp_path: Path) -> None:
    save_replay_buffer(fill_her(make_her(), 23), tmp_path / "her")
    refused(make_her(n_sampled_goal=2), tmp_path / "her",
            "saved from a buffer with n_sampled_goal=4; the model's buffer has n_sampled_goal=2")


def test_her_info_dicts_cannot_be_saved(tmp_path: Path) -> None:
    with pytest.raises(ModelSaveError, match="copy_info_dict=True"):
        save_replay_buffer(fill_her(make_her(copy_info_dict=True), 10), tmp_path / "her")
    assert os.listdir(tmp_path) == []
    save_replay_buffer(make_her(copy_info_dict=True), tmp_path / "her")  # no info dicts yet: nothing is lost


# -- no code runs ------------------------------------------------------------------------------------


class _Opener:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))  # unpickling it creates the marker file


def test_a_pickle_is_refused_and_never_run(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Opener(probe))).close()
    assert probe.exists()  # the payload does run when unpickled
    marker = tmp_path / "marker"
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(_Opener(marker)))
    refused(make(), path, "it looks like a pickle")
    assert not marker.exists()


def test_a_stable_baselines3_pickle_is_refused_with_a_hint(tmp_path: Path) -> None:
    save_to_pkl(tmp_path / "buffer.pkl", fill(make(), 30))
    refused(make(), tmp_path / "buffer.pkl", "save the buffer again with diffrl_core.buffer_file.save_replay_buffer")


def test_loading_calls_no_pickle_torch_load_or_eval(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("called while loading a replay buffer")

    for owner, name in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load"),
                        (builtins, "eval"), (builtins, "exec"), (np, "load")]:
        monkeypatch.setattr(owner, name, forbidden)
    fresh = make()
    load_replay_buffer(fresh, saved)
    assert fresh.pos == 30


# -- damaged files -----------------------------------------------------------------------------------


def test_a_missing_file(tmp_path: Path) -> None:
    refused(make(), tmp_path / "nothing.safetensors", "no such file")
    refused(make(), tmp_path, "it is a folder")


def _header_length(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[:8], "little")


@pytest.mark.parametrize("where", ["empty", "inside the header length", "inside the header",
                                   "at the data", "inside the data", "one byte short"])
def test_a_truncated_file(saved: Path, tmp_path: Path, where: str) -> None:
    data = saved.read_bytes()
    n = _header_length(saved)
    cut = {"empty": 0, "inside the header length": 5, "inside the header": 8 + n // 2, "at the data": 8 + n,
           "inside the data": 8 + n + 100, "one byte short": len(data) - 1}[where]
    path = tmp_path / "cut"
    path.write_bytes(data[:cut])
    refused(make(), path, "truncated")


def test_trailing_bytes(saved: Path, tmp_path: Path) -> None:
    path = tmp_path / "longer"
    path.write_bytes(saved.read_bytes() + b"\0" * 16)
    refused(make(), path, "16 unexpected bytes after its 1200 of array data")


@pytest.mark.parametrize("seed", range(3))
def test_random_bytes(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "random"
    path.write_bytes(np.random.default_rng(seed).bytes(4096))
    refused(make(), path, "not a diffrl-replay-buffer file")


def test_an_oversized_header_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "huge"
    path.write_bytes((200_000_000).to_bytes(8, "little") + b"{}")
    refused(make(), path, "header of 200000000 bytes, more than the 100000000 allowed")


@pytest.mark.parametrize("header", [b"{nope}", b"\xff\xfe{}", b"[" * 100_000 + b"]" * 100_000, b"[]"])
def test_a_header_that_is_not_a_json_object(tmp_path: Path, header: bytes) -> None:
    path = tmp_path / "garbage"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    refused(make(), path, "its safetensors header is not")


@pytest.mark.parametrize(("metadata", "fragment"), [
    (None, "has no 'diffrl_replay_buffer' metadata"),
    ({"other": "x"}, "has no 'diffrl_replay_buffer' metadata"),
    ({METADATA_KEY: "{not json"}, "metadata is not valid JSON"),
    ({METADATA_KEY: "[1, 2]"}, "not a diffrl-replay-buffer file"),
    ({METADATA_KEY: json.dumps({"format": "something-else"})}, "not a diffrl-replay-buffer file"),
    ({METADATA_KEY: json.dumps({"format": "diffrl-replay-buffer", "version": 2})},
     "format version 2, this diffrl reads version 1"),
    ({METADATA_KEY: json.dumps({"format": "diffrl-replay-buffer", "version": 1, "class": "ReplayBuffer"})},
     "'buffer_size' is missing or malformed"),
])
def test_a_safetensors_file_without_valid_metadata(tmp_path: Path, metadata: dict[str, str] | None,
                                                   fragment: str) -> None:
    path = tmp_path / "plain.safetensors"
    safetensors.numpy.save_file({"observations": np.zeros((3, 1, 3), np.float32)}, path, metadata=metadata)
    refused(make(), path, fragment)


def test_a_changed_byte_fails_the_checksum_and_nothing_is_loaded(saved: Path, tmp_path: Path) -> None:
    data = bytearray(saved.read_bytes())
    data[8 + _header_length(saved) + 700] ^= 0x01
    path = tmp_path / "altered"
    path.write_bytes(bytes(data))
    target = fill(make(), 10, seed=9)
    before = {name: array.copy() for name, array in arrays_of(target).items()}
    refused(target, path, "checksum mismatch")
    assert (target.pos, target.full) == (10, False)
    for name, array in before.items():
        np.testing.assert_array_equal(arrays_of(target)[name], array)


def test_changed_metadata_is_checked(saved: Path, tmp_path: Path) -> None:
    def pos(value: int) -> Callable[[dict[str, Any]], None]:
        return lambda metadata: metadata.update(pos=value)

    refused(make(), resave(saved, tmp_path / "a", edit_metadata=pos(100)), "pos 100 is outside the buffer")
    refused(make(), resave(saved, tmp_path / "b", edit_metadata=pos(20)), "it stores 30 rows, which does not fit")


# -- files of another buffer -------------------------------------------------------------------------


def test_another_buffer_class(tmp_path: Path) -> None:
    save_replay_buffer(fill(make(DictReplayBuffer, obs=DICT_OBS), 10), tmp_path / "dict")
    refused(make(), tmp_path / "dict", "it holds a DictReplayBuffer, the model has a ReplayBuffer")


def test_another_observation_shape(saved: Path) -> None:
    refused(make(obs=spaces.Box(-1.0, 1.0, (4,), np.float32)), saved,
            "array 'next_observations' is float32 (100, 1, 3) in the file, the model's buffer has float32 (100, 1, 4)")


def test_another_observation_dtype(saved: Path) -> None:
    refused(make(obs=spaces.Box(-1.0, 1.0, (3,), np.float64)), saved,
            "array 'next_observations' is float32 (100, 1, 3) in the file, the model's buffer has float64")


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"size": 200}, "buffer_size=100, the model's buffer has buffer_size=200"),
    ({"size": 200, "n_envs": 2}, "n_envs=1, the model's buffer has n_envs=2"),
    ({"optimize_memory_usage": True, "handle_timeout_termination": False},
     "with optimize_memory_usage=False, handle_timeout_termination=True; the model's buffer has "
     "optimize_memory_usage=True, handle_timeout_termination=False"),
])
def test_another_buffer_setting(saved: Path, kwargs: dict[str, Any], fragment: str) -> None:
    refused(make(**kwargs), saved, fragment)


def test_n_step_settings_are_checked_not_taken(tmp_path: Path) -> None:
    save_replay_buffer(fill(make(NStepReplayBuffer, n_steps=3, gamma=0.9), 20), tmp_path / "nstep")
    refused(make(NStepReplayBuffer, n_steps=5, gamma=0.9), tmp_path / "nstep",
            "it was saved from a buffer with n_steps=3; the model's buffer has n_steps=5")
    refused(make(NStepReplayBuffer, n_steps=5, gamma=0.99), tmp_path / "nstep",
            "with n_steps=3, gamma=0.9; the model's buffer has n_steps=5, gamma=0.99: build the model with the same")


def test_missing_and_unexpected_arrays(tmp_path: Path) -> None:
    extended = fill(make(), 10)
    extended.priorities = np.ones((100, 1), np.float32)  # type: ignore[attr-defined]
    save_replay_buffer(extended, tmp_path / "extended")
    refused(make(), tmp_path / "extended", "unexpected array(s) 'priorities'")
    save_replay_buffer(fill(make(), 10), tmp_path / "plain")
    wanting = make()
    wanting.priorities = np.ones((100, 1), np.float32)  # type: ignore[attr-defined]
    refused(wanting, tmp_path / "plain", "missing array(s) 'priorities'")


def test_array_data_that_disagrees_with_the_metadata(saved: Path, tmp_path: Path) -> None:
    def as_float64(tensors: dict[str, np.ndarray]) -> None:
        tensors["rewards"] = tensors["rewards"].astype(np.float64)

    def drop_rewards(tensors: dict[str, np.ndarray]) -> None:
        del tensors["rewards"]

    refused(make(), resave(saved, tmp_path / "a", edit_tensors=as_float64),
            "array 'rewards' holds float64 (30, 1), the buffer needs float32 (30, 1)")
    refused(make(), resave(saved, tmp_path / "b", edit_tensors=drop_rewards), "missing array(s) 'rewards'")


# -- saving ------------------------------------------------------------------------------------------


def test_an_interrupted_save_keeps_the_old_file(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(tmp: str) -> None:
        raise KeyboardInterrupt

    before = saved.read_bytes()
    monkeypatch.setattr(buffer_file, "_write_digest", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_replay_buffer(fill(make(), 80, seed=3), saved)
    assert saved.read_bytes() == before
    assert os.listdir(saved.parent) == [saved.name]

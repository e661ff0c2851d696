"""stable-baselines3 zips (its own models, diffrl's before its model format) read without running code from them."""

from __future__ import annotations

import base64
import builtins
import io
import json
import pickle
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import A2C, DDPG, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer, RolloutBuffer
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.save_util import data_to_json
from stable_baselines3.common.utils import FloatSchedule, LinearSchedule

from diffrl_core import make_model
from diffrl_core.errors import ModelFileError
from diffrl_core.model_file import SavedModel
from diffrl_core.sb3.policies import POLICIES
from diffrl_core.sb3_zip import RUNTIME_STATE, read_sb3_zip

SB3_CLASSES = {"sac": SAC, "td3": TD3, "ppo": PPO, "a2c": A2C}
ENVS = {"sac": "Pendulum-v1", "td3": "Pendulum-v1", "ppo": "CartPole-v1", "a2c": "CartPole-v1"}
ALGO_CLASSES = {"sac": "ComposedSAC", "td3": "ComposedTD3", "ppo": "ComposedPPO", "a2c": "ComposedA2C"}
#: name -> (the zip, the model it was saved from)
Saved = dict[str, tuple[Path, Any]]
#: the small models' settings (a few updates in 50 steps)
SMALL = {"sac": dict(learning_starts=0, batch_size=16), "td3": dict(learning_starts=0, batch_size=16),
         "ppo": dict(n_steps=32, batch_size=16, n_epochs=2), "a2c": dict(n_steps=8)}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Saved:
    """Small trained models saved by stable-baselines3's writer: its own (``sac``...) and diffrl's composed ones
    (``composed-sac``, ``composed-a2c``: what diffrl saved before its model format)."""
    folder = tmp_path_factory.mktemp("sb3-zips")
    models: dict[str, BaseAlgorithm] = {}
    for algo, cls in SB3_CLASSES.items():
        models[algo] = cls("MlpPolicy", ENVS[algo], policy_kwargs=dict(net_arch=[16]), seed=0, **SMALL[algo])
    models["ddpg"] = DDPG("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16]), seed=0, learning_starts=0,
                          batch_size=16)
    for algo in ("sac", "a2c"):
        models[f"composed-{algo}"] = make_model({"env": ENVS[algo], "algo": algo, "policy": {"net_arch": [16]},
                                                 "algo_kwargs": SMALL[algo], "seed": 0})
    result = {}
    for name, model in models.items():
        model.learn(50)
        path = folder / f"{name}.zip"
        BaseAlgorithm.save(model, path)  # stable-baselines3's own writer, for the composed ones too
        result[name] = (path, model)
    return result


def read(path: Path, env_spaces: tuple[Any, Any] | None = None, overrides: dict[str, Any] | None = None) -> SavedModel:
    with zipfile.ZipFile(path) as archive:
        return read_sb3_zip(path, archive, env_spaces, overrides or {})


def rewrite(source: Path, target: Path, edit_data: Callable[[dict[str, Any]], None] | None = None,
            entries: dict[str, bytes | None] | None = None) -> Path:
    """A copy of a zip with its ``data`` edited and entries replaced (``None``: removed)."""
    with zipfile.ZipFile(source) as archive:
        contents: dict[str, bytes | None] = {name: archive.read(name) for name in archive.namelist()}
    if edit_data is not None:
        data = json.loads(contents["data"] or b"")
        edit_data(data)
        contents["data"] = json.dumps(data).encode()
    contents.update(entries or {})
    with zipfile.ZipFile(target, "w") as archive:
        for name, content in contents.items():
            if content is not None:
                archive.writestr(name, content)
    return target


def names(skipped: list[str]) -> set[str]:
    """The entries a skipped list names (each item is ``name (why)``)."""
    return {item.split(" ", 1)[0] for item in skipped}


def assert_same(ours: Any, theirs: Any, where: str = "") -> None:
    if isinstance(theirs, th.Tensor):
        assert isinstance(ours, th.Tensor) and th.equal(ours, theirs.cpu()), where
    elif isinstance(theirs, dict):
        assert list(ours) == list(theirs), where
        for key in theirs:
            assert_same(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(theirs, (list, tuple)):
        assert len(ours) == len(theirs), where
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    else:
        assert ours == theirs, where


@pytest.fixture(autouse=True)
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Reading calls neither pickle nor cloudpickle, and torch.load only with weights_only=True."""
    calls: list[str] = []
    for module, name in ((pickle, "loads"), (pickle, "load"), (cloudpickle, "loads"), (cloudpickle, "load")):
        monkeypatch.setattr(module, name, lambda *args, _name=f"{module.__name__}.{name}", **kwargs:
                            calls.append(_name))
    real_load = th.load

    def load(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("weights_only") is not True:
            calls.append(f"torch.load({kwargs})")
        return real_load(*args, **kwargs)

    monkeypatch.setattr(th, "load", load)
    yield
    assert calls == []


# -- stable-baselines3's own models and diffrl's old ones ---------------------------------------


@pytest.mark.parametrize("algo", list(SB3_CLASSES))
def test_stable_baselines3_models_are_read(saved: Saved, algo: str) -> None:
    path, model = saved[algo]
    result = read(path)
    env = gym.make(ENVS[algo])
    assert result.algo_class == ALGO_CLASSES[algo]
    assert result.components == {} and result.by_position and result.config is None
    assert result.data["observation_space"] == env.observation_space
    assert result.data["action_space"] == env.action_space
    assert result.data["policy_class"] is POLICIES[algo]["MlpPolicy"]
    assert result.versions["stable-baselines3"]
    assert_same(result.params, model.get_parameters(), algo)
    on_policy = algo in ("ppo", "a2c")
    expected = set(RUNTIME_STATE) - ({"_last_original_obs"} if on_policy else set())  # None for on-policy: JSON
    assert names(result.skipped) == expected | (set() if on_policy else {"train_freq"})
    for key in RUNTIME_STATE:
        assert result.data[key] is None
    assert "train_freq" not in result.data and "lr_schedule" not in result.data
    assert result.data["learning_rate"] == model.learning_rate
    assert result.data["policy_kwargs"]["net_arch"] == [16]
    buffer = "rollout_buffer_class" if on_policy else "replay_buffer_class"
    assert result.data[buffer] is (RolloutBuffer if on_policy else ReplayBuffer)
    if algo == "sac":
        assert set(result.variables) == {"log_ent_coef"}
        assert th.equal(result.variables["log_ent_coef"], model.log_ent_coef.detach())
    else:
        assert result.variables == {}
    if algo == "ppo":
        assert isinstance(result.data["clip_range"], FloatSchedule) and result.data["clip_range"](0.5) == 0.2
    if algo == "a2c":  # its default policy_kwargs are pickled: an optimizer class
        assert result.data["policy_kwargs"]["optimizer_class"] is th.optim.RMSprop
        assert result.data["policy_kwargs"]["optimizer_kwargs"] == model.policy_kwargs["optimizer_kwargs"]


def test_ddpg_is_read_as_the_td3_it_is(saved: Saved) -> None:
    path, model = saved["ddpg"]
    result = read(path)
    assert result.algo_class == "ComposedTD3"
    assert result.data["policy_delay"] == 1 and result.data["policy_kwargs"]["n_critics"] == 1
    assert_same(result.params, model.get_parameters())


@pytest.mark.parametrize("algo", ["sac", "a2c"])
def test_diffrls_composed_models_saved_by_stable_baselines3_are_read(
    saved: Saved, algo: str
) -> None:
    path, model = saved[f"composed-{algo}"]
    result = read(path)
    assert result.algo_class == ALGO_CLASSES[algo]
    assert result.components == model.diffrl_components and not result.by_position
    assert result.config == model.diffrl_config
    assert "diffrl_components" not in result.data and "diffrl_config" not in result.data
    assert result.data["policy_class"] is POLICIES[algo]["MlpPolicy"]
    assert result.data["observation_space"] == model.observation_space
    assert_same(result.params, model.get_parameters(), algo)
    if algo == "sac":
        assert th.equal(result.variables["log_ent_coef"], model.log_ent_coef.detach())
    else:
        assert result.data["policy_kwargs"]["optimizer_class"] is th.optim.RMSprop


def test_diffrls_first_format_is_converted(saved: Saved, tmp_path: Path) -> None:
    def first_format(data: dict[str, Any]) -> None:
        data["diffrl_components"] = {"algo": "sac", "actor_heads": {"gaussian": {"plugin": "builtin"}}}
        data["policy_kwargs"] = {"net_arch": [16], "head": "gaussian", "postprocess": "tanh"}
        data["losses"] = [{"name": "sac_entropy", "weight": 1.0}, {"name": "bc", "weight": 0.5}]

    path = rewrite(saved["composed-sac"][0], tmp_path / "first.zip", first_format)
    result = read(path)
    assert result.components["format"] == 1
    assert result.components["head"] == {"name": "gaussian", "kwargs": {}}
    assert result.components["postprocess"] == {"name": "tanh", "kwargs": {}}
    assert [loss["name"] for loss in result.components["losses"]] == ["sac_entropy", "bc"]
    assert result.components["provenance"]["actor_heads"] == {"gaussian": {"plugin": "builtin"}}
    assert "losses" not in result.data
    assert result.data["policy_class"] is POLICIES["sac"]["MlpPolicy"]  # saved before the alias was


def test_other_algorithms_are_refused_by_name(saved: Saved, tmp_path: Path) -> None:
    def dqn(data: dict[str, Any]) -> None:
        data["policy_class"]["__module__"] = "stable_baselines3.dqn.policies"

    with pytest.raises(ModelFileError, match="it holds a DQN model; diffrl loads SAC, TD3"):
        read(rewrite(saved["sac"][0], tmp_path / "dqn.zip", dqn))


# -- rebuilding the pickled entries -------------------------------------------------------------


def serialized(value: Any) -> dict[str, Any]:
    """``value`` as stable-baselines3 writes what JSON cannot hold (the pickle is never read back here)."""
    return json.loads(data_to_json({"value": value}))["value"]


@pytest.mark.parametrize("space", [
    spaces.Box(-1.0, 2.5, (2, 3), np.float32),
    spaces.Box(np.array([-1.0, -np.inf, 0.125]), np.array([1.0, np.inf, 7.0]), dtype=np.float64),
    spaces.Box(0, 255, (4, 4, 3), np.uint8),
    spaces.Box(-3, 7, (2,), np.int64),
    spaces.Discrete(5, start=-2),
    spaces.MultiDiscrete([3, 4], start=[1, 0]),
    spaces.MultiBinary(4),
    spaces.MultiBinary([2, 3]),
], ids=repr)
def test_spaces_are_rebuilt_from_their_readable_fields(saved: Saved,
                                                       tmp_path: Path, space: gym.Space) -> None:
    repr(space)  # sets a Box's low_repr / high_repr, as printing a model does
    path = rewrite(saved["sac"][0], tmp_path / "space.zip",
                   lambda data: data.update(observation_space=serialized(space)))
    rebuilt = read(path).data["observation_space"]
    assert type(rebuilt) is type(space) and rebuilt == space
    assert rebuilt.dtype == space.dtype


def test_a_space_that_cannot_be_rebuilt_is_taken_from_the_env(saved: Saved,
                                                              tmp_path: Path) -> None:
    observations = spaces.Dict({"a": spaces.Box(-1, 1, (3,)), "b": spaces.Discrete(2)})
    action = gym.make("Pendulum-v1").action_space
    path = rewrite(saved["sac"][0], tmp_path / "dict.zip",
                   lambda data: data.update(observation_space=serialized(observations)))
    with pytest.raises(ModelFileError, match=r"its observation_space cannot be read without unpickling .*pass env="):
        read(path)
    result = read(path, env_spaces=(observations, action))
    assert result.data["observation_space"] is observations
    assert result.data["policy_class"] is POLICIES["sac"]["MultiInputPolicy"]
    with pytest.raises(ModelFileError, match="its observation_space is a gymnasium.spaces.dict.Dict; the env's is a "
                                             "gymnasium.spaces.box.Box"):
        read(path, env_spaces=(spaces.Box(-1, 1, (3,)), action))


def test_truncated_bounds_are_taken_from_the_env(saved: Saved, tmp_path: Path) -> None:
    big = spaces.Box(-np.ones(2000, dtype=np.float32), np.arange(2000, dtype=np.float32))  # numpy prints "..."
    path = rewrite(saved["sac"][0], tmp_path / "big.zip", lambda data: data.update(observation_space=serialized(big)))
    with pytest.raises(ModelFileError, match="numpy left some of its values out"):
        read(path)
    assert read(path, env_spaces=(big, gym.make("Pendulum-v1").action_space)).data["observation_space"] is big


def test_the_envs_spaces_stand_in_only_for_equal_ones(saved: Saved) -> None:
    path = saved["sac"][0]
    env = gym.make("Pendulum-v1")
    result = read(path, env_spaces=(env.observation_space, env.action_space))
    assert result.data["observation_space"] is env.observation_space  # exact bounds, not the printed ones
    other = spaces.Box(-5.0, 5.0, (1,), np.float32)
    result = read(path, env_spaces=(env.observation_space, other))
    assert result.data["action_space"] == env.action_space  # the file's: loading reports the mismatch


def test_overrides_are_used_as_given(saved: Saved) -> None:
    kwargs = {"net_arch": [16], "optimizer_class": th.optim.Adam}
    result = read(saved["a2c"][0], overrides={"policy_kwargs": kwargs, "train_freq": 7, "unknown_key": 1})
    assert result.data["policy_kwargs"] is kwargs
    assert "unknown_key" not in result.data  # only the file's entries
    result = read(saved["sac"][0], overrides={"train_freq": (4, "step"), "policy_class": POLICIES["sac"]["CnnPolicy"]})
    assert result.data["train_freq"] == (4, "step") and "train_freq" not in names(result.skipped)
    assert result.data["policy_class"] is POLICIES["sac"]["CnnPolicy"]


def test_training_settings_are_rebuilt_or_listed(saved: Saved, tmp_path: Path) -> None:
    def settings(data: dict[str, Any]) -> None:
        data["learning_rate"] = serialized(LinearSchedule(1e-3, 1e-4, 0.5))
        data["action_noise"] = serialized(NormalActionNoise(np.zeros(1), 0.3 * np.ones(1)))
        data["my_thing"] = serialized({1, 2})

    result = read(rewrite(saved["sac"][0], tmp_path / "settings.zip", settings))
    assert result.data["learning_rate"](1.0) == pytest.approx(1e-3) and result.data["learning_rate"](0.0) == 1e-4
    noise = result.data["action_noise"]
    assert isinstance(noise, NormalActionNoise) and noise._sigma.tolist() == [0.3]
    assert "my_thing" not in result.data and "my_thing" in names(result.skipped)

    def functions(data: dict[str, Any]) -> None:
        data["learning_rate"] = serialized(lambda progress: 1e-3 * progress)
        data["clip_range"] = serialized(FloatSchedule(lambda progress: 0.1))

    result = read(rewrite(saved["ppo"][0], tmp_path / "functions.zip", functions))
    assert {"learning_rate", "clip_range"} <= names(result.skipped)
    assert "learning_rate" not in result.data and "clip_range" not in result.data


def test_policy_kwargs_name_only_allowed_classes(saved: Saved,
                                                 tmp_path: Path) -> None:
    def custom(data: dict[str, Any]) -> None:
        data["policy_kwargs"]["optimizer_class"] = "<class 'os.system'>"

    with pytest.raises(ModelFileError, match=r"os.system, which is not one a model may name.*pass policy_kwargs"):
        read(rewrite(saved["a2c"][0], tmp_path / "custom.zip", custom))


def test_the_policy_alias_follows_the_networks(saved: Saved, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    th.save({"actor.features_extractor.cnn.0.weight": th.zeros(2)}, buffer)
    path = rewrite(saved["sac"][0], tmp_path / "cnn.zip", entries={"policy.pth": buffer.getvalue()})
    assert read(path).data["policy_class"] is POLICIES["sac"]["CnnPolicy"]

    def subclass(data: dict[str, Any]) -> None:
        data["diffrl_components"]["policy"] = None  # a user's subclass of a composed policy

    path = rewrite(saved["composed-sac"][0], tmp_path / "subclass.zip", subclass)
    with pytest.raises(ModelFileError, match="pass policy_class=YourPolicyClass"):
        read(path)
    assert read(path, overrides={"policy_class": POLICIES["sac"]["MlpPolicy"]}).data["policy_class"] is not None


# -- damaged files ------------------------------------------------------------------------------


@pytest.mark.parametrize(("algo", "removed", "message"), [
    ("sac", "policy.pth", "the entry 'policy.pth' is missing: a SAC model keeps the policy's weights there"),
    ("td3", "critic.optimizer.pth", "the entry 'critic.optimizer.pth' is missing"),
    ("sac", "ent_coef_optimizer.pth", "the entry 'ent_coef_optimizer.pth' is missing"),
    ("ppo", "policy.optimizer.pth", "the entry 'policy.optimizer.pth' is missing"),
    ("sac", "pytorch_variables.pth", "the tuned entropy coefficient log_ent_coef is missing"),
])
def test_missing_tensors_are_refused(saved: Saved, tmp_path: Path, algo: str,
                                     removed: str, message: str) -> None:
    path = rewrite(saved[algo][0], tmp_path / "missing.zip", entries={removed: None})
    with pytest.raises(ModelFileError, match=message):
        read(path)


def test_data_that_is_not_json_is_refused(saved: Saved, tmp_path: Path) -> None:
    path = rewrite(saved["sac"][0], tmp_path / "bad.zip", entries={"data": b"{not json"})
    with pytest.raises(ModelFileError, match="its 'data' entry is not valid JSON"):
        read(path)
    path = rewrite(saved["sac"][0], tmp_path / "list.zip", entries={"data": b"[1, 2]"})
    with pytest.raises(ModelFileError, match="not a JSON object"):
        read(path)


# -- crafted files: nothing from them runs ------------------------------------------------------


class Payload:
    """Unpickling it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return builtins.open, (str(self.marker), "w")


@pytest.fixture
def payload(tmp_path: Path) -> Iterator[tuple[Path, Payload, str]]:
    """A payload, its marker and its base64 cloudpickle (checked to create the marker when unpickled)."""
    check = tmp_path / "unpickled-check"
    pickled = cloudpickle.dumps(Payload(check))
    assert pickled is not None
    pickle.Unpickler(io.BytesIO(pickled)).load().close()  # the real unpickler, not the patched loads
    assert check.exists()
    marker = tmp_path / "unpickled"
    yield marker, Payload(marker), base64.b64encode(cloudpickle.dumps(Payload(marker))).decode()
    assert not marker.exists(), "the file's pickle was unpickled"


def _extra_key(data: dict[str, Any], pickled: str) -> None:
    data["evil"] = {":type:": "<class 'object'>", ":serialized:": pickled}


def _serialized_of(key: str) -> Callable[[dict[str, Any], str], None]:
    def edit(data: dict[str, Any], pickled: str) -> None:
        entry = data[key]
        if ":serialized:" not in entry:  # a JSON dict (SAC's policy_kwargs): written as a pickled one would be
            entry = {":type:": "<class 'dict'>", **entry}
        data[key] = {**entry, ":serialized:": pickled}

    return edit


@pytest.mark.parametrize("edit", [
    _extra_key, _serialized_of("observation_space"), _serialized_of("lr_schedule"), _serialized_of("policy_class"),
    _serialized_of("policy_kwargs"), _serialized_of("train_freq"), _serialized_of("replay_buffer_class"),
    _serialized_of("_last_obs"),
], ids=["extra key", "observation_space", "lr_schedule", "policy_class", "policy_kwargs", "train_freq",
        "replay_buffer_class", "_last_obs"])
def test_pickled_entries_are_never_unpickled(saved: Saved, tmp_path: Path,
                                             payload: tuple[Path, Payload, str],
                                             edit: Callable[[dict[str, Any], str], None]) -> None:
    path = rewrite(saved["sac"][0], tmp_path / "crafted.zip", lambda data: edit(data, payload[2]))
    try:
        result = read(path)
    except ModelFileError:
        return
    assert result.algo_class == "ComposedSAC"
    if edit is _extra_key:
        assert "evil" not in result.data and "evil" in names(result.skipped)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's, for the plain pickle
@pytest.mark.parametrize("entry", ["policy.pth", "actor.optimizer.pth", "pytorch_variables.pth"])
@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_tensor_entries_holding_code_are_refused(saved: Saved, tmp_path: Path,
                                                 payload: tuple[Path, Payload, str], entry: str, writer: str) -> None:
    if writer == "pickle":
        content = pickle.dumps(payload[1])
    else:
        buffer = io.BytesIO()
        th.save({"log_ent_coef": payload[1]} if entry == "pytorch_variables.pth" else payload[1], buffer)
        content = buffer.getvalue()
    path = rewrite(saved["sac"][0], tmp_path / "crafted.zip", entries={entry: content})
    with pytest.raises(ModelFileError, match=f"the entry '{entry}' holds something other than tensors; weights_only "
                                             "refused it"):
        read(path)


def test_other_tensor_files_are_not_read(saved: Saved, tmp_path: Path,
                                         payload: tuple[Path, Payload, str]) -> None:
    path = rewrite(saved["td3"][0], tmp_path / "extra.zip", entries={"evil.pth": pickle.dumps(payload[1])})
    result = read(path)
    assert "evil" not in result.params and "evil.pth" in names(result.skipped)

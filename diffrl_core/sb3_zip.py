"""stable-baselines3's own zips (and diffrl's before its model format), read without running code from them.

stable-baselines3 saves what JSON cannot hold as ``{":type:": ..., ":serialized:": <base64 cloudpickle>,
<readable fields>}`` and its ``load`` unpickles every such entry: whoever wrote the file chooses what runs.
:func:`read_sb3_zip` never unpickles: it reads the JSON, and rebuilds each pickled entry, in this order,

1. from the caller's ``overrides`` (``custom_objects`` and ``load_model``'s keyword arguments), used as given;
2. from what else the file holds: the spaces from the env's (``env_spaces``) or from their readable fields,
   the policy class from diffrl's policy tables, the buffer classes, ``policy_kwargs``' classes and the
   schedules from their readable fields, with classes looked up only in
   :func:`~diffrl_core.model_data.allowed_classes` (never imported by a name from the file);
3. not at all: the state of the experience collection (``_last_obs``, the episode buffers), which the next
   ``learn()`` resets, is set to ``None``; training settings that cannot be rebuilt (``train_freq``, a learning
   rate function, ...) are left out so that the class default applies. Both are listed in
   :attr:`~diffrl_core.model_file.SavedModel.skipped` for the caller to report.

The tensors are read with ``torch.load(weights_only=True)``, which refuses anything but tensors and plain
containers. A file whose spaces, policy class or policy kwargs cannot be rebuilt is refused with what to pass.
"""

from __future__ import annotations

import io
import json
import math
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np
from gymnasium import spaces

from diffrl_core.config import ALGOS, DEFAULT_HEADS, DEFAULT_LOSSES
from diffrl_core.errors import ModelFileError
from diffrl_core.kinds import COMPONENT_KINDS
from diffrl_core.model_data import DTYPES, allowed_classes
from diffrl_core.model_file import DERIVED, SavedModel, read_entry
from diffrl_core.sb3.algorithms import ALGORITHMS

if TYPE_CHECKING:
    from gymnasium import Space

#: limits checked before anything is decompressed
MAX_DATA_BYTES = 64 * 2**20
MAX_PTH_BYTES = 4 * 2**30
_MAX_VERSION_BYTES = 1024
TYPE = ":type:"
SERIALIZED = ":serialized:"
VARIABLES_ENTRY = "pytorch_variables.pth"
#: algo -> the composed class that loads it
ALGO_CLASSES = {algo: cls.__name__ for algo, cls in ALGORITHMS.items()}
#: the module of stable-baselines3's policy classes -> the algorithm (PPO and A2C share theirs)
_POLICY_MODULES = {
    "stable_baselines3.sac.policies": "sac",
    "stable_baselines3.td3.policies": "td3",  # DDPG's too: it is TD3 with one critic and no delay
    "stable_baselines3.common.policies": "on-policy",
}
#: other algorithms by the module of their policies, for the refusal
_OTHER_ALGORITHMS = {
    "stable_baselines3.dqn.policies": "DQN",
    "sb3_contrib.tqc.policies": "TQC",
    "sb3_contrib.qrdqn.policies": "QR-DQN",
    "sb3_contrib.crossq.policies": "CrossQ",
    "sb3_contrib.ars.policies": "ARS",
    "sb3_contrib.common.recurrent.policies": "RecurrentPPO",
    "sb3_contrib.common.maskable.policies": "MaskablePPO",
}
#: state dicts each algorithm saves and needs (SAC's ent_coef_optimizer: only with a tuned coefficient)
_STATE_DICTS = {
    "sac": ("policy", "actor.optimizer", "critic.optimizer"),
    "td3": ("policy", "actor.optimizer", "critic.optimizer"),
    "ppo": ("policy", "policy.optimizer"),
    "a2c": ("policy", "policy.optimizer"),
}
#: what collecting experience left behind; the next learn() resets it (stable-baselines3 does the same)
RUNTIME_STATE = ("_last_obs", "_last_original_obs", "_last_episode_starts", "ep_info_buffer", "ep_success_buffer")
#: entries a model cannot be built without
_REQUIRED = ("observation_space", "action_space", "policy_class")
#: policy kwargs of diffrl 0.1 (the component names)
_FIRST_FORMAT_POLICY_KWARGS = ("head", "head_kwargs", "postprocess", "postprocess_kwargs")
_INT_DTYPES = frozenset(name for name in DTYPES if np.dtype(name).kind in "iu")
_FLOAT_DTYPES = frozenset(name for name in DTYPES if np.dtype(name).kind == "f")
_NUMBER = r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|inf|nan)"
_NUMBER_RE = re.compile(_NUMBER)
_INT_RE = re.compile(r"[-+]?\d+")
_CLASS_RE = re.compile(r"<class '([A-Za-z_][\w.]*)'>")
_INIT_RE = re.compile(r"<function ([A-Za-z_]\w*)\.__init__ at 0x[0-9a-fA-F]+>")
_CONSTANT_RE = re.compile(rf"ConstantSchedule\(val=({_NUMBER})\)")
_LINEAR_RE = re.compile(rf"LinearSchedule\(start=({_NUMBER}), end=({_NUMBER}), end_fraction=({_NUMBER})\)")
#: a string value of serialized policy kwargs that is a name (diffrl's names), not the str() of an object
_NAME_RE = re.compile(r"[A-Za-z_][\w.\-]*")


class _NotRebuilt(Exception):
    """An entry's readable fields do not say enough to rebuild it (the reason, for the caller's message)."""


def read_sb3_zip(path: Path, archive: zipfile.ZipFile, env_spaces: tuple[Space, Space] | None,
                 overrides: Mapping[str, Any]) -> SavedModel:
    """What a stable-baselines3 zip holds, for :func:`~diffrl_core.model_file.build_model`, read without
    unpickling anything (nor ``torch.load`` without ``weights_only``).

    :param path: the file, for messages
    :param archive: the file, opened (:func:`~diffrl_core.model_file.open_archive`)
    :param env_spaces: the observation and action spaces of the env the model is loaded onto, if any: they
        stand in for spaces whose readable fields are not enough, and for ones that equal them
    :param overrides: values for entries, used as given instead of the file's (stable-baselines3's
        ``custom_objects``, and the keyword arguments of ``load_model``)
    :return: the model's data; ``components`` is empty for a model of stable-baselines3's own (its default
        composition applies) and ``by_position`` is set, its state dicts having stable-baselines3's keys
    :raises ModelFileError: when the file is malformed, holds another algorithm, lacks tensors the model needs,
        or its spaces, policy class or policy kwargs cannot be rebuilt without unpickling
    """
    raw = _read_data(archive, path)
    saved_components = raw.get("diffrl_components")
    if saved_components is not None and not isinstance(saved_components, dict):
        raise ModelFileError(path, "its diffrl_components is not a mapping of names (the file is damaged)")
    algo = _algorithm(path, raw, saved_components, overrides)
    observation_space = _space(path, "observation_space", raw, overrides, env_spaces, 0)
    action_space = _space(path, "action_space", raw, overrides, env_spaces, 1)
    skipped: list[str] = []
    params, variables = _read_tensors(archive, path, algo, raw, skipped)
    data: dict[str, Any] = {
        "observation_space": observation_space,
        "action_space": action_space,
        "policy_class": overrides["policy_class"] if "policy_class" in overrides
        else _policy_class(path, algo, saved_components, observation_space, params),
    }
    for key, value in raw.items():
        if key in ("diffrl_components", "diffrl_config", *_REQUIRED):
            continue
        if key in overrides:
            data[key] = overrides[key]
        elif key in DERIVED:
            continue  # _setup_model rebuilds it (lr_schedule from learning_rate)
        elif not _is_serialized(value):
            data[key] = value
        elif key in RUNTIME_STATE:
            data[key] = None
            skipped.append(f"{key} (collection state, reset by the next learn())")
        else:
            try:
                data[key] = _rebuilt(key, value, raw, observation_space)
            except _NotRebuilt as exc:
                if key == "policy_kwargs":  # the networks' shapes: the tensors would not fit without them
                    raise ModelFileError(path, f"its policy_kwargs cannot be read without unpickling ({exc}); pass "
                                               "policy_kwargs={...} (the kwargs the model was made with) to load "
                                               "it") from None
                skipped.append(f"{key} ({exc}; the default applies)")
    if saved_components is None:
        components: dict[str, Any] = {}
    elif "format" in saved_components:
        components = saved_components
    else:
        components = _from_first_format(path, saved_components, data)
        data.pop("losses", None)  # moved into the components, and the names out of policy_kwargs
        if isinstance(data.get("policy_kwargs"), dict):
            data["policy_kwargs"] = {key: value for key, value in data["policy_kwargs"].items()
                                     if key not in _FIRST_FORMAT_POLICY_KWARGS}
    config = raw.get("diffrl_config")
    return SavedModel(
        path=path, algo_class=ALGO_CLASSES[algo], components=components, data=data, params=params,
        variables=variables, config=config if isinstance(config, dict) else None,
        versions=_versions(archive, path), skipped=skipped, by_position=saved_components is None,
    )


def _read_data(archive: zipfile.ZipFile, path: Path) -> dict[str, Any]:
    content = read_entry(archive, path, "data", MAX_DATA_BYTES)
    try:
        data = json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ModelFileError(path, f"its 'data' entry is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelFileError(path, "its 'data' entry is not a JSON object of the model's attributes")
    return data


def _is_serialized(value: Any) -> TypeGuard[dict[str, Any]]:
    return isinstance(value, dict) and SERIALIZED in value


def _type_name(value: Mapping[str, Any]) -> str | None:
    """``module.QualName`` of a serialized entry's ``:type:`` (``<class 'module.QualName'>``)."""
    match = _CLASS_RE.fullmatch(str(value.get(TYPE)))
    return match.group(1) if match else None


# -- the algorithm ----------------------------------------------------------------------------


def _algorithm(path: Path, raw: Mapping[str, Any], components: Mapping[str, Any] | None,
               overrides: Mapping[str, Any]) -> str:
    """``sac``, ``td3``, ``ppo`` or ``a2c``: from diffrl's names, else from the module of the policy class."""
    loads = "diffrl loads SAC, TD3 (and DDPG), PPO and A2C models"
    if components is not None:
        algo = components.get("algo")
        if algo not in ALGOS:
            raise ModelFileError(path, f"its diffrl_components name the algorithm {str(algo)[:100]!r}; {loads}")
        return str(algo)
    from diffrl_core.sb3.policies import POLICIES

    given = overrides.get("policy_class")
    for algo, classes in POLICIES.items():  # the caller named the policy class: its algorithm
        if isinstance(given, type) and issubclass(given, tuple(classes.values())):
            return algo
    policy_class = raw.get("policy_class")
    if not _is_serialized(policy_class):
        raise ModelFileError(path, "it does not hold its policy class (policy_class): it is not a stable-baselines3 "
                                   "model, or it is damaged")
    module = policy_class.get("__module__")
    kind = _POLICY_MODULES.get(module) if isinstance(module, str) else None
    if kind is None:
        what = _OTHER_ALGORITHMS.get(module) if isinstance(module, str) else None
        named = f"a {what} model" if what else f"a model whose policy comes from {str(module)[:200]!r}"
        raise ModelFileError(path, f"it holds {named}; {loads} (with stable-baselines3's policies)")
    if kind != "on-policy":
        return kind
    if {"clip_range", "n_epochs"} <= raw.keys() and "cg_max_steps" not in raw:
        return "ppo"
    if not {"n_epochs", "batch_size"} & raw.keys() and {"vf_coef", "gae_lambda"} <= raw.keys():
        return "a2c"
    raise ModelFileError(path, f"it holds an on-policy model that is neither PPO nor A2C; {loads}")


# -- tensors ----------------------------------------------------------------------------------


def _read_tensors(archive: zipfile.ZipFile, path: Path, algo: str, raw: Mapping[str, Any],
                  skipped: list[str]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The state dicts and torch variables the algorithm needs, each loaded with ``weights_only``; other tensor
    files are not read (they would set attributes the model does not have), and are listed in ``skipped``."""
    names = set(archive.namelist())
    tuned = algo == "sac" and isinstance(raw.get("ent_coef"), str) and raw["ent_coef"].startswith("auto")
    needed = _STATE_DICTS[algo] + (("ent_coef_optimizer",) if tuned else ())
    params: dict[str, dict[str, Any]] = {}
    for name in needed:
        entry = f"{name}.pth"
        if entry not in names:
            what = "the policy's weights" if name == "policy" else f"the state of the optimizer {name}"
            raise ModelFileError(path, f"the entry {entry!r} is missing: a {algo.upper()} model keeps {what} there "
                                       "(the file is incomplete)")
        state = _load_pth(archive, path, entry)
        if not _is_state_dict(state, optimizer=name != "policy"):
            raise ModelFileError(path, f"the entry {entry!r} is not the state dict of {name}")
        params[name] = state
    variables: dict[str, Any] = {}
    if algo == "sac":  # its only torch variable: the entropy coefficient (tuned: log_ent_coef)
        name = "log_ent_coef" if tuned else "ent_coef_tensor"
        stored = _load_pth(archive, path, VARIABLES_ENTRY) if VARIABLES_ENTRY in names else {}
        if not isinstance(stored, dict):
            raise ModelFileError(path, f"the entry {VARIABLES_ENTRY!r} is not a mapping of tensors")
        if _is_tensor(stored.get(name)):
            variables[name] = stored[name]
        elif tuned:
            raise ModelFileError(path, f"the tuned entropy coefficient log_ent_coef is missing (the entry "
                                       f"{VARIABLES_ENTRY!r} does not hold it as a tensor)")
    known = {f"{name}.pth" for name in needed} | {VARIABLES_ENTRY}
    skipped.extend(f"{entry} (a tensor file that a {algo.upper()} model does not have: not read)"
                   for entry in sorted(names) if entry.endswith(".pth") and entry not in known)
    return params, variables


def _load_pth(archive: zipfile.ZipFile, path: Path, entry: str) -> Any:
    import torch as th

    content = read_entry(archive, path, entry, MAX_PTH_BYTES)
    try:
        return th.load(io.BytesIO(content), map_location="cpu", weights_only=True)
    except Exception as exc:  # whatever the restricted unpickler or a damaged file raises: nothing ran
        text = " ".join(str(exc).split())[:300]
        raise ModelFileError(path, f"the entry {entry!r} holds something other than tensors; weights_only refused "
                                   f"it: {type(exc).__name__}: {text}") from None


def _is_tensor(value: Any) -> bool:
    import torch as th

    return isinstance(value, th.Tensor)


def _is_state_dict(state: Any, optimizer: bool) -> bool:
    if not isinstance(state, dict):
        return False
    if optimizer:
        return (set(state) == {"state", "param_groups"} and isinstance(state["state"], dict)
                and isinstance(state["param_groups"], list))
    return all(isinstance(key, str) and _is_tensor(value) for key, value in state.items())


def _versions(archive: zipfile.ZipFile, path: Path) -> dict[str, Any]:
    """The version of stable-baselines3 that wrote the file, when it says (informative only: never refused)."""
    try:
        text = read_entry(archive, path, "_stable_baselines3_version", _MAX_VERSION_BYTES).decode().strip()
    except (ModelFileError, UnicodeDecodeError):
        return {}
    return {"stable-baselines3": text} if text else {}


# -- spaces -----------------------------------------------------------------------------------


def _space(path: Path, key: str, raw: Mapping[str, Any], overrides: Mapping[str, Any],
           env_spaces: tuple[Space, Space] | None, index: int) -> Any:
    """A space: the caller's, else the readable one (the env's instead when they are equal, as its bounds are
    exact where the printed ones may be rounded), else the env's.

    A readable space that differs from the env's is kept: loading then reports that the spaces do not match.
    """
    if key in overrides:
        return overrides[key]
    value = raw.get(key)
    env_space = env_spaces[index] if env_spaces is not None else None
    try:
        if not _is_serialized(value):
            raise _NotRebuilt("the file does not hold it" if value is None else "it is not a space")
        space = _rebuilt_space(value)
    except _NotRebuilt as exc:
        if env_space is None:
            raise ModelFileError(path, f"its {key} cannot be read without unpickling ({exc}): pass env= (an env with "
                                       "the model's spaces) to load it") from None
        saved_type = _type_name(value) if isinstance(value, dict) else None
        env_type = f"{type(env_space).__module__}.{type(env_space).__qualname__}"
        if saved_type is not None and saved_type != env_type:
            raise ModelFileError(path, f"its {key} is a {saved_type}; the env's is a {env_type}") from None
        return env_space
    return env_space if env_space is not None and _equal(space, env_space) else space


def _equal(space: Any, other: Any) -> bool:
    try:
        return bool(type(space) is type(other) and space == other)
    except (ValueError, TypeError):
        return False


def _rebuilt_space(value: Mapping[str, Any]) -> Any:
    """A Box, Discrete, MultiDiscrete or MultiBinary space from the fields stable-baselines3 writes beside it."""
    name = _type_name(value)
    kind = name.rpartition(".")[2] if name and name.startswith(("gymnasium.spaces.", "gym.spaces.")) else None
    try:
        if kind == "Box":
            dtype = _dtype(value.get("dtype"), _INT_DTYPES | _FLOAT_DTYPES)
            shape = _shape(value.get("_shape"))
            low = _bound(value, "low", shape, dtype)
            high = _bound(value, "high", shape, dtype)
            return spaces.Box(low=low, high=high, shape=shape, dtype=np.dtype(dtype))
        if kind == "Discrete":
            dtype = _dtype(value.get("dtype", "int64"), _INT_DTYPES)
            return spaces.Discrete(_int(value.get("n")), start=_int(value.get("start", 0)), dtype=dtype)
        if kind == "MultiDiscrete":
            dtype = _dtype(value.get("dtype", "int64"), _INT_DTYPES)
            shape = _shape(value.get("_shape"))
            nvec = _array(value.get("nvec"), shape, dtype)
            start = _array(value["start"], shape, dtype) if "start" in value else None
            return spaces.MultiDiscrete(nvec, dtype=dtype, start=start)
        if kind == "MultiBinary":
            n = value.get("n")
            if isinstance(n, str):
                return spaces.MultiBinary(_array(n, None, "int64"))
            if isinstance(n, list) and all(isinstance(item, int) and not isinstance(item, bool) for item in n):
                return spaces.MultiBinary(n)
            return spaces.MultiBinary(_int(n))
    except _NotRebuilt:
        raise
    except (ValueError, TypeError, AssertionError, OverflowError, KeyError) as exc:
        raise _NotRebuilt(f"its readable fields do not make a {kind} ({type(exc).__name__}: {exc})") from None
    what = name or str(value.get(TYPE))[:200]
    raise _NotRebuilt(f"a {what}, which is not rebuilt from readable fields (Box, Discrete, MultiDiscrete and "
                      "MultiBinary spaces are)")


def _dtype(value: Any, allowed: frozenset[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise _NotRebuilt(f"the dtype {str(value)[:50]!r}")
    return value


def _shape(value: Any) -> tuple[int, ...]:
    if not (isinstance(value, list) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                             for n in value)):
        raise _NotRebuilt(f"the shape {str(value)[:50]!r}")
    return tuple(value)


def _int(value: Any) -> int:
    """An integer, or the ``str()`` of a numpy one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
        return int(value)
    raise _NotRebuilt(f"{str(value)[:50]!r} is not an integer")


def _bound(value: Mapping[str, Any], name: str, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """A Box bound: the uniform value of ``<name>_repr`` when it is one number, else the printed array."""
    uniform = value.get(f"{name}_repr")
    if isinstance(uniform, str) and _NUMBER_RE.fullmatch(uniform.strip()):
        return _cast(np.full(shape, float(uniform)), dtype)
    return _array(value.get(name), shape, dtype)


def _array(text: Any, shape: tuple[int, ...] | None, dtype: str) -> np.ndarray:
    """An array from numpy's printed form (``"[-1. -1. -8.]"``); refused when numpy left values out (``...``).

    :param shape: the shape it must have (``None``: one dimension, any length)
    """
    if not isinstance(text, str):
        raise _NotRebuilt("its values are not written")
    if "..." in text:
        raise _NotRebuilt("numpy left some of its values out when it printed them")
    if text.count("[") != text.count("]"):
        raise _NotRebuilt("its printed values are malformed")
    tokens = text.replace("[", " ").replace("]", " ").split()
    if not all(_NUMBER_RE.fullmatch(token) for token in tokens):
        raise _NotRebuilt("its printed values are not all numbers")
    if shape is None:
        if text.count("[") > 1:
            raise _NotRebuilt("its printed values have more than one dimension")
        shape = (len(tokens),)
    if len(tokens) != math.prod(shape):
        raise _NotRebuilt(f"{len(tokens)} printed values for the shape {shape}")
    return _cast(np.array([float(token) for token in tokens], dtype=np.float64).reshape(shape), dtype)


def _cast(array: np.ndarray, dtype: str) -> np.ndarray:
    if dtype in _INT_DTYPES:
        info = np.iinfo(dtype)
        if not (np.all(np.isfinite(array)) and np.all(array == np.round(array))
                and np.all(array >= info.min) and np.all(array <= info.max)):
            raise _NotRebuilt(f"its values are not all {dtype} integers")
    return array.astype(dtype)


# -- the policy class -------------------------------------------------------------------------


def _policy_class(path: Path, algo: str, components: Mapping[str, Any] | None, observation_space: Any,
                  params: Mapping[str, Mapping[str, Any]]) -> type:
    """diffrl's composed policy class: by the alias diffrl saved, else by what stable-baselines3's aliases differ in
    (the observation space, the CNN)."""
    from diffrl_core.sb3.policies import POLICIES

    if components is not None and "policy" in components:
        alias = components["policy"]
        if alias is None:
            raise ModelFileError(path, "its policy class is a subclass of a composed policy, which only unpickling "
                                       "could rebuild: pass policy_class=YourPolicyClass to load it")
    elif isinstance(observation_space, spaces.Dict):
        alias = "MultiInputPolicy"
    elif any("features_extractor.cnn." in key for key in params["policy"]):
        alias = "CnnPolicy"
    else:
        alias = "MlpPolicy"
    if not isinstance(alias, str) or alias not in POLICIES[algo]:
        raise ModelFileError(path, f"it names the policy {str(alias)[:100]!r}, not one of "
                                   f"{', '.join(POLICIES[algo])}: the file is damaged or not diffrl's")
    return POLICIES[algo][alias]


# -- other entries ----------------------------------------------------------------------------


def _rebuilt(key: str, value: Mapping[str, Any], raw: Mapping[str, Any], observation_space: Any) -> Any:
    """A pickled entry rebuilt from its readable fields; :class:`_NotRebuilt` when they are not enough."""
    if key in ("learning_rate", "clip_range", "clip_range_vf"):
        return _schedule(value)
    if key == "policy_kwargs":
        return _policy_kwargs(value)
    if key == "action_noise":
        return _action_noise(value)
    if key in ("replay_buffer_class", "rollout_buffer_class"):
        return _buffer_class(key, value, observation_space, raw)
    if key == "train_freq":
        raise _NotRebuilt("a TrainFreq, which stable-baselines3 writes without readable fields")
    name = _type_name(value) or str(value.get(TYPE))[:200]
    raise _NotRebuilt(f"a {name}, which diffrl does not rebuild: it was not unpickled")


def _number(text: Any) -> float:
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    if isinstance(text, str) and _NUMBER_RE.fullmatch(text.strip()):
        return float(text)
    raise _NotRebuilt(f"{str(text)[:50]!r} is not a number")


def _schedule(value: Mapping[str, Any]) -> Any:
    """stable-baselines3's schedule classes (constant, linear, and the FloatSchedule around them); a function
    cannot be rebuilt."""
    from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule, LinearSchedule

    name = _type_name(value)
    if name == "stable_baselines3.common.utils.FloatSchedule":
        text = value.get("value_schedule")
        text = text.strip() if isinstance(text, str) else ""
        if match := _CONSTANT_RE.fullmatch(text):
            return FloatSchedule(ConstantSchedule(float(match.group(1))))
        if match := _LINEAR_RE.fullmatch(text):
            start, end, fraction = (float(group) for group in match.groups())
            return FloatSchedule(LinearSchedule(start, end, fraction))
        raise _NotRebuilt(f"a schedule around {text[:100]!r}, which is not a ConstantSchedule or LinearSchedule")
    if name == "stable_baselines3.common.utils.ConstantSchedule":
        return ConstantSchedule(_number(value.get("val")))
    if name == "stable_baselines3.common.utils.LinearSchedule":
        return LinearSchedule(_number(value.get("start")), _number(value.get("end")),
                              _number(value.get("end_fraction")))
    raise _NotRebuilt(f"a {name or 'value'}, which only unpickling could rebuild (stable-baselines3's "
                      "ConstantSchedule, LinearSchedule and FloatSchedule are rebuilt)")


def _policy_kwargs(value: Mapping[str, Any]) -> dict[str, Any]:
    """The policy kwargs from the copy stable-baselines3 writes of each item: JSON values as they are, classes
    (``"<class 'torch.optim.rmsprop.RMSprop'>"``) from the allowed ones, numbers and names from their text."""
    if _type_name(value) != "dict":
        raise _NotRebuilt(f"they are a {str(value.get(TYPE))[:100]}, not a dict")
    classes = allowed_classes()
    kwargs: dict[str, Any] = {}
    for key, item in value.items():
        if key in (TYPE, SERIALIZED):
            continue
        if not isinstance(item, str):
            kwargs[key] = item  # JSON values are written as they are
        elif match := _CLASS_RE.fullmatch(item):
            if match.group(1) not in classes:
                raise _NotRebuilt(f"{key} is the class {match.group(1)}, which is not one a model may name; call "
                                  "diffrl_core.allow_classes(...) with it, or pass policy_kwargs")
            kwargs[key] = classes[match.group(1)]
        elif _INT_RE.fullmatch(item):
            kwargs[key] = int(item)  # the str() of a numpy integer
        elif _NUMBER_RE.fullmatch(item):
            kwargs[key] = float(item)  # ... or float
        elif item in ("True", "False"):
            kwargs[key] = item == "True"  # ... or bool
        elif _NAME_RE.fullmatch(item):
            kwargs[key] = item  # a name (diffrl's first format saved component names here)
        else:
            raise _NotRebuilt(f"{key} is written as {item[:100]!r}, the text of an object")
    return kwargs


_NOISE_DTYPE_RE = re.compile(r"<class 'numpy\.(float16|float32|float64)'>")


def _action_noise(value: Mapping[str, Any]) -> Any:
    """stable-baselines3's NormalActionNoise from its printed mean and sigma."""
    from stable_baselines3.common.noise import NormalActionNoise

    if _type_name(value) != "stable_baselines3.common.noise.NormalActionNoise":
        raise _NotRebuilt(f"a {_type_name(value) or 'value'}: only NormalActionNoise is rebuilt from its fields")
    dtype = _NOISE_DTYPE_RE.fullmatch(str(value.get("_dtype", "<class 'numpy.float32'>")))
    if dtype is None:
        raise _NotRebuilt(f"the noise dtype {str(value.get('_dtype'))[:50]!r}")
    mean = _array(value.get("_mu"), None, "float64")
    sigma = _array(value.get("_sigma"), mean.shape, "float64")
    return NormalActionNoise(mean, sigma, dtype=np.dtype(dtype.group(1)).type)


def _buffer_class(key: str, value: Mapping[str, Any], observation_space: Any, raw: Mapping[str, Any]) -> type:
    """One of stable-baselines3's buffer classes, from the allowed classes: the one whose ``__init__`` the file
    shows (a class's own methods are among its readable fields), else the one stable-baselines3 picks for the
    observation space."""
    classes = allowed_classes()
    module = value.get("__module__")
    init = _INIT_RE.fullmatch(str(value.get("__init__")))
    if isinstance(module, str) and init and f"{module}.{init.group(1)}" in classes:
        return classes[f"{module}.{init.group(1)}"]
    if module == "stable_baselines3.her.her_replay_buffer":
        return classes["stable_baselines3.her.her_replay_buffer.HerReplayBuffer"]
    if module == "stable_baselines3.common.buffers":
        dict_space = isinstance(observation_space, spaces.Dict)
        if key == "rollout_buffer_class":
            name = "DictRolloutBuffer" if dict_space else "RolloutBuffer"
        else:
            n_steps = raw.get("n_steps")
            n_step = isinstance(n_steps, int) and n_steps > 1
            name = "DictReplayBuffer" if dict_space else "NStepReplayBuffer" if n_step else "ReplayBuffer"
        return classes[f"{module}.{name}"]
    raise _NotRebuilt(f"a buffer class from {str(module)[:200]!r}, which is not one a model may name")


def _from_first_format(path: Path, saved: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """diffrl 0.1's names in the current format: it saved them in ``policy_kwargs``, and the loss specs as
    ``losses``."""
    algo = saved["algo"]
    policy_kwargs = data.get("policy_kwargs")
    policy_kwargs = policy_kwargs if isinstance(policy_kwargs, dict) else {}
    if not isinstance(policy_kwargs.get("postprocess"), str):
        raise ModelFileError(path, "its diffrl_components are in diffrl 0.1's format, but its policy_kwargs do "
                                   "not name the post-processor (the file is damaged)")
    return {
        "format": 1,
        "algo": algo,
        "head": {"name": policy_kwargs.get("head") or DEFAULT_HEADS[algo],
                 "kwargs": policy_kwargs.get("head_kwargs", {})},
        "postprocess": {"name": policy_kwargs["postprocess"], "kwargs": policy_kwargs.get("postprocess_kwargs", {})},
        "losses": data.get("losses") or [{"name": DEFAULT_LOSSES[algo], "weight": 1.0}],
        "provenance": {kind.name: saved.get(kind.name, {}) for kind in COMPONENT_KINDS},
    }

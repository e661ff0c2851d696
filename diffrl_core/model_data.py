"""A stable-baselines3 model's non-tensor attributes as plain JSON, and back, without code.

stable-baselines3 saves what JSON cannot hold (spaces, schedules, classes, ``TrainFreq``, action
noise, deques, arrays) with cloudpickle, and unpickles it on load: whoever wrote the file chooses
what runs. Here each such value becomes a tagged JSON object (``{"__type__": "space", ...}``) that
is decoded by building the value from its fields, and classes are written by name and read back
only from :func:`allowed_classes` (never imported by a name from the file). A value of any other
type is refused when saving (:class:`~diffrl_core.errors.ModelSaveError`), so that nothing is saved
which cannot be loaded.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

import numpy as np

from diffrl_core.errors import ModelSaveError

TYPE = "__type__"
#: the array dtypes a file may hold (object arrays would need pickle)
DTYPES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                     "float16", "float32", "float64"})
#: classes allowed on top of the built-in table (:func:`allow_classes`)
_EXTRA_CLASSES: dict[str, type] = {}


class DecodeError(ValueError):
    """A value in the file is not what its tag says (the caller names the file and the entry)."""


def class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@cache
def _builtin_classes() -> dict[str, type]:
    import torch as th
    from stable_baselines3.common import buffers, torch_layers
    from stable_baselines3.her.her_replay_buffer import HerReplayBuffer

    from diffrl_core.sb3.policies import POLICIES

    classes: list[type] = [
        *(cls for cls in vars(th.nn.modules.activation).values()
          if isinstance(cls, type) and issubclass(cls, th.nn.Module) and cls is not th.nn.Module),
        *(cls for cls in vars(th.optim).values() if isinstance(cls, type) and issubclass(cls, th.optim.Optimizer)),
        torch_layers.FlattenExtractor, torch_layers.NatureCNN, torch_layers.CombinedExtractor,
        buffers.ReplayBuffer, buffers.DictReplayBuffer, buffers.NStepReplayBuffer, HerReplayBuffer,
        buffers.RolloutBuffer, buffers.DictRolloutBuffer,
        *(cls for aliases in POLICIES.values() for cls in aliases.values()),
    ]
    return {class_name(cls): cls for cls in classes}


def allowed_classes() -> dict[str, type]:
    """The classes a model file may name (by ``module.QualName``): torch's activations and optimizers,
    stable-baselines3's features extractors and buffers, diffrl's composed policies, and what
    :func:`allow_classes` added."""
    return {**_builtin_classes(), **_EXTRA_CLASSES}


def allow_classes(*classes: type) -> None:
    """Let models name these classes (e.g. a features extractor of your own in ``policy_kwargs``).

    Call it in the process that saves and in the one that loads, as with torch's
    ``torch.serialization.add_safe_globals``: the file holds the class's name, and loading
    looks the name up among the classes allowed in that process.
    """
    for cls in classes:
        if not isinstance(cls, type):
            raise TypeError(f"allow_classes takes classes, not {cls!r}")
        _EXTRA_CLASSES[class_name(cls)] = cls


# -- encoding ----------------------------------------------------------------------------------


def encode(value: Any, where: str) -> Any:
    """``value`` as JSON-able data; ``where`` names it in the error when it cannot be stored."""
    from gymnasium import spaces
    from stable_baselines3.common import noise, utils
    from stable_baselines3.common.type_aliases import TrainFreq

    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {TYPE: "float", "value": str(value)}
    if isinstance(value, np.ndarray):
        return _encode_array(value, where)
    if isinstance(value, np.generic):
        return {TYPE: "numpy_scalar", "dtype": _dtype_name(value.dtype, where),
                "value": encode(value.item(), where)}
    if isinstance(value, TrainFreq):  # a NamedTuple: before tuple
        return {TYPE: "train_freq", "frequency": encode(value.frequency, where), "unit": value.unit.value}
    if isinstance(value, tuple):
        return {TYPE: "tuple", "items": [encode(item, f"{where}[{i}]") for i, item in enumerate(value)]}
    if isinstance(value, list):
        return [encode(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, deque):
        return {TYPE: "deque", "maxlen": value.maxlen,
                "items": [encode(item, f"{where}[{i}]") for i, item in enumerate(value)]}
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value) and TYPE not in value:
            return {key: encode(item, f"{where}.{key}") for key, item in value.items()}
        return {TYPE: "mapping", "items": [[encode(key, where), encode(item, f"{where}[{key!r}]")]
                                           for key, item in value.items()]}
    if isinstance(value, spaces.Space):
        return _encode_space(value, where)
    if isinstance(value, type):
        name = class_name(value)
        if allowed_classes().get(name) is not value:
            raise ModelSaveError(
                f"cannot save {where}: the class {name} is not one a model file may name (torch's activations and "
                "optimizers, stable-baselines3's features extractors and buffers, diffrl's policies). Call "
                f"diffrl_core.allow_classes({value.__qualname__}) before saving and before loading"
            )
        return {TYPE: "class", "name": name}
    if isinstance(value, utils.FloatSchedule):
        return {TYPE: "float_schedule", "schedule": encode(value.value_schedule, where)}
    if isinstance(value, utils.ConstantSchedule):
        return {TYPE: "constant_schedule", "value": encode(value.val, where)}
    if isinstance(value, utils.LinearSchedule):
        return {TYPE: "linear_schedule", "start": encode(value.start, where), "end": encode(value.end, where),
                "end_fraction": encode(value.end_fraction, where)}
    if type(value) is noise.NormalActionNoise:
        return {TYPE: "normal_noise", "mean": encode(value._mu, where), "sigma": encode(value._sigma, where),
                "dtype": _dtype_name(np.dtype(value._dtype), where)}
    if type(value) is noise.OrnsteinUhlenbeckActionNoise:
        return {TYPE: "ornstein_uhlenbeck_noise", "mean": encode(value._mu, where),
                "sigma": encode(value._sigma, where), "theta": encode(value._theta, where),
                "dt": encode(value._dt, where), "initial_noise": encode(value.initial_noise, where),
                "noise_prev": encode(value.noise_prev, where), "dtype": _dtype_name(np.dtype(value._dtype), where)}
    if type(value) is noise.VectorizedActionNoise:
        return {TYPE: "vectorized_noise", "base_noise": encode(value.base_noise, where),
                "noises": [encode(item, where) for item in value.noises]}
    what = "a function" if callable(value) and not isinstance(value, type) else f"a {type(value).__qualname__}"
    hint = (" (learning rates and clip ranges: a number, or a schedule from stable_baselines3.common.utils: "
            "ConstantSchedule, LinearSchedule, FloatSchedule)") if callable(value) else ""
    raise ModelSaveError(
        f"cannot save {where}: it is {what}, which would take code to load, and diffrl's model files hold "
        f"none{hint}. `diffrl export` writes stable-baselines3's own (pickled) zip instead"
    )


def _dtype_name(dtype: np.dtype[Any], where: str) -> str:
    if dtype.name not in DTYPES:
        raise ModelSaveError(f"cannot save {where}: arrays of {dtype} cannot be stored without pickle")
    return dtype.name


def _encode_array(array: np.ndarray, where: str) -> dict[str, Any]:
    dtype = _dtype_name(array.dtype, where)
    flat = array.ravel().tolist()
    if array.dtype.kind == "f":
        flat = [item if math.isfinite(item) else str(item) for item in flat]
    return {TYPE: "ndarray", "dtype": dtype, "shape": list(array.shape), "data": flat}


def _encode_space(space: Any, where: str) -> dict[str, Any]:
    from gymnasium import spaces

    kind = type(space)
    if kind is spaces.Box:
        return {TYPE: "space", "space": "Box", "low": _encode_array(space.low, where),
                "high": _encode_array(space.high, where), "dtype": _dtype_name(space.dtype, where)}
    if kind is spaces.Discrete:
        return {TYPE: "space", "space": "Discrete", "n": int(space.n), "start": int(space.start),
                "dtype": _dtype_name(space.dtype, where)}
    if kind is spaces.MultiDiscrete:
        return {TYPE: "space", "space": "MultiDiscrete", "nvec": _encode_array(space.nvec, where),
                "start": _encode_array(space.start, where), "dtype": _dtype_name(space.dtype, where)}
    if kind is spaces.MultiBinary:
        return {TYPE: "space", "space": "MultiBinary", "n": encode(space.n, where)}
    if kind is spaces.Dict:
        return {TYPE: "space", "space": "Dict",
                "spaces": [[key, _encode_space(sub, f"{where}[{key!r}]")] for key, sub in space.spaces.items()]}
    if kind is spaces.Tuple:
        return {TYPE: "space", "space": "Tuple",
                "spaces": [_encode_space(sub, f"{where}[{i}]") for i, sub in enumerate(space.spaces)]}
    raise ModelSaveError(f"cannot save {where}: {kind.__qualname__} spaces are not supported by diffrl's model "
                         "format (Box, Discrete, MultiDiscrete, MultiBinary, Dict and Tuple are)")


# -- decoding ----------------------------------------------------------------------------------


def decode(value: Any) -> Any:
    """The value :func:`encode` encoded; :class:`DecodeError` when the data is not well formed."""
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if isinstance(value, list):
        return [decode(item) for item in value]
    if not isinstance(value, dict):
        raise DecodeError(f"unexpected {type(value).__name__}")
    if TYPE not in value:
        return {key: decode(item) for key, item in value.items()}
    tag = value[TYPE]
    decoder = _DECODERS.get(tag) if isinstance(tag, str) else None
    if decoder is None:
        raise DecodeError(f"unknown value type {tag!r}")
    try:
        return decoder(value)
    except DecodeError:
        raise
    except (KeyError, TypeError, ValueError, OverflowError, AssertionError) as exc:
        raise DecodeError(f"a malformed {tag} ({type(exc).__name__}: {exc})") from None


def _field(value: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in value:
        raise DecodeError(f"a {value[TYPE]} without {name!r}")
    item = value[name]
    if not isinstance(item, kind) or (isinstance(item, bool) and kind in (int, float, (int, float))):
        raise DecodeError(f"{value[TYPE]}.{name} is a {type(item).__name__}")
    return item


def _number(value: Mapping[str, Any], name: str) -> float:
    item = decode(value.get(name))
    if isinstance(item, bool) or not isinstance(item, (int, float)):
        raise DecodeError(f"{value[TYPE]}.{name} is not a number")
    return item


def _decode_float(value: Mapping[str, Any]) -> float:
    text = _field(value, "value", str)
    if text not in ("inf", "-inf", "nan"):
        raise DecodeError(f"float {text!r}")
    return float(text)


def _decode_array(value: Mapping[str, Any]) -> np.ndarray:
    if value.get(TYPE) != "ndarray":
        raise DecodeError("an array was expected")
    dtype = _field(value, "dtype", str)
    if dtype not in DTYPES:
        raise DecodeError(f"array dtype {dtype!r}")
    shape = _field(value, "shape", list)
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise DecodeError(f"array shape {shape!r}")
    data = _field(value, "data", list)
    if math.prod(shape) != len(data):
        raise DecodeError(f"an array of shape {shape} with {len(data)} values")
    if not all(isinstance(item, (int, float)) or item in ("inf", "-inf", "nan") for item in data):
        raise DecodeError("an array with a value that is not a number")
    if np.dtype(dtype).kind == "f":
        data = [float(item) for item in data]
    return np.array(data, dtype=dtype).reshape(shape)


def _decode_numpy_scalar(value: Mapping[str, Any]) -> np.generic:
    dtype = _field(value, "dtype", str)
    if dtype not in DTYPES:
        raise DecodeError(f"scalar dtype {dtype!r}")
    item = decode(value.get("value"))
    if not isinstance(item, (int, float)):
        raise DecodeError("a scalar that is not a number")
    return np.dtype(dtype).type(item)


def _decode_space(value: Mapping[str, Any]) -> Any:
    from gymnasium import spaces

    kind = _field(value, "space", str)
    if kind == "Box":
        low, high = _decode_array(_field(value, "low", dict)), _decode_array(_field(value, "high", dict))
        return spaces.Box(low=low, high=high, shape=low.shape, dtype=_field(value, "dtype", str))
    if kind == "Discrete":
        return spaces.Discrete(_field(value, "n", int), start=_field(value, "start", int))
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(_decode_array(_field(value, "nvec", dict)), dtype=_field(value, "dtype", str),
                                    start=_decode_array(_field(value, "start", dict)))
    if kind == "MultiBinary":
        n = decode(value.get("n"))
        return spaces.MultiBinary(tuple(n) if isinstance(n, (list, tuple)) else n)
    if kind == "Dict":
        pairs = _field(value, "spaces", list)
        return spaces.Dict({_pair(pair)[0]: _decode_space(_pair(pair)[1]) for pair in pairs})
    if kind == "Tuple":
        return spaces.Tuple([_decode_space(item) for item in _field(value, "spaces", list)])
    raise DecodeError(f"unknown space {kind!r}")


def _pair(pair: Any) -> tuple[str, dict[str, Any]]:
    if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) and isinstance(pair[1], dict)):
        raise DecodeError("a Dict space entry is not [key, space]")
    return pair[0], pair[1]


def _decode_class(value: Mapping[str, Any]) -> type:
    name = _field(value, "name", str)
    cls = allowed_classes().get(name)
    if cls is None:
        raise DecodeError(f"the class {name} is not one a model file may name; if you trust it, call "
                          "diffrl_core.allow_classes(...) with it before loading")
    return cls


def _decode_schedule(value: Mapping[str, Any]) -> Any:
    from stable_baselines3.common import utils

    tag = value[TYPE]
    if tag == "constant_schedule":
        return utils.ConstantSchedule(_number(value, "value"))
    if tag == "linear_schedule":
        return utils.LinearSchedule(_number(value, "start"), _number(value, "end"), _number(value, "end_fraction"))
    inner = decode(_field(value, "schedule", (dict, int, float)))
    if not isinstance(inner, (utils.ConstantSchedule, utils.LinearSchedule, int, float)) or isinstance(inner, bool):
        raise DecodeError("a float_schedule around something that is not a schedule")
    return utils.FloatSchedule(inner)


def _decode_train_freq(value: Mapping[str, Any]) -> Any:
    from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit

    return TrainFreq(_field(value, "frequency", int), TrainFrequencyUnit(_field(value, "unit", str)))


def _decode_noise(value: Mapping[str, Any]) -> Any:
    from stable_baselines3.common import noise

    tag = value[TYPE]
    if tag == "vectorized_noise":
        base = _decode_noise(_field(value, "base_noise", dict))
        noises = [_decode_noise(item) for item in _field(value, "noises", list)]
        vectorized = noise.VectorizedActionNoise(base, len(noises))
        vectorized.noises = noises
        return vectorized
    mean, sigma = _decode_array(_field(value, "mean", dict)), _decode_array(_field(value, "sigma", dict))
    dtype = _field(value, "dtype", str)
    if dtype not in DTYPES:
        raise DecodeError(f"noise dtype {dtype!r}")
    if tag == "normal_noise":
        return noise.NormalActionNoise(mean, sigma, dtype=np.dtype(dtype).type)
    if tag != "ornstein_uhlenbeck_noise":
        raise DecodeError(f"{tag!r} is not action noise")
    initial = value.get("initial_noise")
    ou = noise.OrnsteinUhlenbeckActionNoise(mean, sigma, theta=_number(value, "theta"), dt=_number(value, "dt"),
                                            initial_noise=None if initial is None else _decode_array(initial),
                                            dtype=np.dtype(dtype).type)
    ou.noise_prev = _decode_array(_field(value, "noise_prev", dict))
    return ou


def _decode_deque(value: Mapping[str, Any]) -> deque[Any]:
    maxlen = value.get("maxlen")
    if maxlen is not None and (not isinstance(maxlen, int) or isinstance(maxlen, bool) or maxlen < 0):
        raise DecodeError(f"deque maxlen {maxlen!r}")
    return deque((decode(item) for item in _field(value, "items", list)), maxlen=maxlen)


def _decode_mapping(value: Mapping[str, Any]) -> dict[Any, Any]:
    items = _field(value, "items", list)
    if not all(isinstance(item, list) and len(item) == 2 for item in items):
        raise DecodeError("a mapping item is not [key, value]")
    decoded = {}
    for key, item in items:
        key = decode(key)
        if isinstance(key, (list, dict, deque, np.ndarray)):
            raise DecodeError("a mapping key that cannot be a key")
        decoded[key] = decode(item)
    return decoded


_DECODERS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "float": _decode_float,
    "ndarray": _decode_array,
    "numpy_scalar": _decode_numpy_scalar,
    "tuple": lambda value: tuple(decode(item) for item in _field(value, "items", list)),
    "deque": _decode_deque,
    "mapping": _decode_mapping,
    "space": _decode_space,
    "class": _decode_class,
    "constant_schedule": _decode_schedule,
    "linear_schedule": _decode_schedule,
    "float_schedule": _decode_schedule,
    "train_freq": _decode_train_freq,
    "normal_noise": _decode_noise,
    "ornstein_uhlenbeck_noise": _decode_noise,
    "vectorized_noise": _decode_noise,
}

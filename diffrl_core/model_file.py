"""diffrl's model file: a zip of a JSON manifest and safetensors files; loading it runs no code.

``model.save(path)`` of a composed model writes ``path.zip`` holding:

- ``manifest.json``: the format and its version, the algorithm class, the components (names,
  kwargs, owners), every other attribute stable-baselines3 saves (spaces, hyperparameters,
  schedules, counters) as tagged JSON (:mod:`diffrl_core.model_data`), the optimizers'
  settings, the resolved config when the model came from one, the versions of the packages
  that wrote it, and the size and sha256 of each other file;
- ``policy.safetensors``, one ``<optimizer>.safetensors`` per optimizer and
  ``variables.safetensors`` (SAC's ``log_ent_coef``): tensors only.

Reading checks before it builds anything: the number of entries, each entry's size against the
manifest (and a cap for the manifest itself) before it is decompressed, each checksum, the
JSON's shape. A file that fails any check raises :class:`~diffrl_core.errors.ModelFileError`
naming the file and the problem, and nothing is half-loaded. ``docs/model-format.md`` has the
format and the threat model.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from diffrl_core.errors import ModelFileError, ModelSaveError
from diffrl_core.model_data import DecodeError, decode, encode

if TYPE_CHECKING:
    import torch as th
    from stable_baselines3.common.base_class import BaseAlgorithm

FORMAT = "diffrl-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
VARIABLES = "variables"
#: limits checked before anything is decompressed
MAX_MANIFEST_BYTES = 64 * 2**20
MAX_ENTRIES = 256
MAX_TENSOR_FILE_BYTES = 64 * 2**30
#: attributes that stable-baselines3 saves but ``_setup_model`` rebuilds from the others (the learning
#: rate schedule from ``learning_rate``; the batch-norm statistics from the networks): not stored
DERIVED = frozenset({
    "lr_schedule", "batch_norm_stats", "batch_norm_stats_target", "actor_batch_norm_stats",
    "actor_batch_norm_stats_target", "critic_batch_norm_stats", "critic_batch_norm_stats_target",
})
#: package versions written into the manifest
_VERSIONED = ("diffrl-core", "stable-baselines3", "torch", "gymnasium", "numpy", "safetensors")


@dataclass
class SavedModel:
    """What a model file holds, checked and decoded, before any model is built from it."""

    path: Path
    #: the composed algorithm's class name (``ComposedSAC``, ...)
    algo_class: str
    #: the components' names, kwargs and provenance (``diffrl_components``)
    components: dict[str, Any]
    #: every other saved attribute, decoded
    data: dict[str, Any]
    #: state dicts by attribute path (``policy``, ``actor.optimizer``, ...)
    params: dict[str, dict[str, Any]]
    #: torch variables by attribute path (``log_ent_coef``)
    variables: dict[str, th.Tensor] = field(default_factory=dict)
    config: dict[str, Any] | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    #: entries not read from the file (stable-baselines3 zips: pickled runtime state), for the caller to report
    skipped: list[str] = field(default_factory=list)
    #: the state dicts are stable-baselines3's own policy's: matched to the composed one's by position and shape
    by_position: bool = False


def with_zip_suffix(path: str | os.PathLike[str]) -> Path:
    """``path``, with ``.zip`` added when it has no suffix (as stable-baselines3's ``save`` does)."""
    path = Path(path)
    return path if path.suffix else path.with_name(path.name + ".zip")


# -- saving ------------------------------------------------------------------------------------


def save_model(model: BaseAlgorithm, path: str | os.PathLike[str] | IO[bytes],
               exclude: list[str] | None = None, include: list[str] | None = None) -> None:
    """Write ``model`` to ``path`` (``.zip`` added when it has no suffix), as stable-baselines3's ``save`` would
    choose its contents (``exclude`` / ``include`` as there), in diffrl's format.

    :raises ModelSaveError: when an attribute cannot be stored without code; nothing is written then
    """
    from stable_baselines3.common.save_util import recursive_getattr

    data = model.__dict__.copy()
    excluded = set(exclude or ()).union(model._excluded_save_params())
    if include is not None:
        excluded = excluded.difference(include)
    state_dict_names, variable_names = model._get_torch_save_params()
    for name in (*state_dict_names, *variable_names):
        excluded.add(name.split(".")[0])
    for name in excluded | DERIVED:
        data.pop(name, None)
    components = data.pop("diffrl_components", None)
    if not isinstance(components, dict):
        raise ModelSaveError(f"{type(model).__name__} is not a composed model: it has no diffrl_components")
    config = data.pop("diffrl_config", None)
    cls = type(model).__name__
    entries: dict[str, bytes] = {}
    state_dicts: dict[str, Any] = {}
    for name, state_dict in model.get_parameters().items():
        file = f"{name}.safetensors"
        if name in state_dict_names and _is_optimizer_state(state_dict):
            entries[file], state_dicts[name] = _optimizer_entry(state_dict, f"{cls}.{name}")
        else:
            entries[file], state_dicts[name] = _tensors_entry(state_dict, f"{cls}.{name}")
        state_dicts[name]["file"] = file
    variables = {name: recursive_getattr(model, name) for name in variable_names}
    if variables:
        entries[f"{VARIABLES}.safetensors"], _ = _tensors_entry(variables, f"{cls} variables")
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "algo_class": cls,
        "components": components,
        "data": {key: encode(value, f"{cls}.{key}") for key, value in data.items()},
        "state_dicts": state_dicts,
        "variables": sorted(variables),
        "config": config,
        "versions": _versions(),
        "files": {file: {"bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()}
                  for file, content in entries.items()},
    }
    text = json.dumps(manifest, indent=1, allow_nan=False).encode()
    if isinstance(path, (str, os.PathLike)):
        with open(with_zip_suffix(path), "wb") as file_object:
            _write_archive(file_object, text, entries)
    else:
        _write_archive(path, text, entries)


def _write_archive(file: IO[bytes], manifest: bytes, entries: Mapping[str, bytes]) -> None:
    # stored, not deflated (as stable-baselines3's zips): float weights hardly compress, and inflating costs time
    with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(MANIFEST, manifest)
        for name, content in entries.items():
            archive.writestr(name, content)


def _is_optimizer_state(state_dict: Mapping[str, Any]) -> bool:
    return set(state_dict) == {"state", "param_groups"}


def _tensors_entry(tensors: Mapping[str, Any], where: str) -> tuple[bytes, dict[str, Any]]:
    """safetensors bytes of ``tensors``; tensors sharing memory are stored once (``aliases``)."""
    import torch as th
    from safetensors.torch import save

    stored: dict[str, th.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[Any, ...], str] = {}
    for key, tensor in tensors.items():
        if not isinstance(tensor, th.Tensor):
            raise ModelSaveError(f"cannot save {where}: {key!r} is a {type(tensor).__name__}, not a tensor")
        tensor = tensor.detach()
        identity = (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tuple(tensor.stride()))
        if tensor.numel() and identity in seen:
            aliases[key] = seen[identity]
            continue
        seen[identity] = key
        stored[key] = tensor.cpu().contiguous()
    return save(stored), {"aliases": aliases}


def _optimizer_entry(state_dict: Mapping[str, Any], where: str) -> tuple[bytes, dict[str, Any]]:
    """An optimizer's state: its tensors in safetensors (``<param>/<key>``), the rest as JSON."""
    import torch as th

    tensors: dict[str, th.Tensor] = {}
    other: dict[str, dict[str, Any]] = {}
    for index, state in state_dict["state"].items():
        for key, value in state.items():
            if isinstance(value, th.Tensor):
                tensors[f"{index}/{key}"] = value
            else:
                other.setdefault(str(index), {})[key] = encode(value, f"{where} state {index}.{key}")
    content, description = _tensors_entry(tensors, where)
    return content, {**description, "param_groups": encode(state_dict["param_groups"], f"{where} param_groups"),
                     "other_state": other}


def _versions() -> dict[str, Any]:
    from diffrl_core.runs import package_version

    return {"python": platform.python_version(), **{name: package_version(name) for name in _VERSIONED}}


# -- reading -----------------------------------------------------------------------------------


def is_model_file(archive: zipfile.ZipFile) -> bool:
    """Whether an open zip is in diffrl's format (else it may be a stable-baselines3 zip)."""
    return MANIFEST in archive.namelist()


def in_model_format(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a zip in diffrl's format (False: a stable-baselines3 zip, or not a zip at all)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return is_model_file(archive)
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        return False


def open_archive(source: Path | IO[bytes], path: Path | None = None) -> zipfile.ZipFile:
    """``source`` (a path, or a file object named ``path`` in messages) opened as a zip, its number of entries checked.

    :raises ModelFileError: when it is missing, not a zip, or has too many entries
    """
    path = path or (source if isinstance(source, Path) else Path("<file object>"))
    try:
        archive = zipfile.ZipFile(source)
    except FileNotFoundError:
        raise ModelFileError(path, "there is no such file") from None
    except IsADirectoryError:
        raise ModelFileError(path, "it is a folder (give the model's .zip, or the run folder to the CLI)") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ModelFileError(path, f"it is not a zip archive, or it is truncated ({exc})") from None
    if len(archive.infolist()) > MAX_ENTRIES:
        archive.close()
        raise ModelFileError(path, f"it has {len(archive.infolist())} entries, more than a model has ({MAX_ENTRIES})")
    return archive


def read_entry(archive: zipfile.ZipFile, path: Path, name: str, limit: int) -> bytes:
    """The entry ``name``, refused when it is missing, declares more than ``limit`` bytes or inflates past them.

    :raises ModelFileError: naming the entry
    """
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise ModelFileError(path, f"the entry {name!r} is missing (the file is incomplete)") from None
    if info.file_size > limit:
        raise ModelFileError(path, f"the entry {name!r} declares {info.file_size} bytes, more than the "
                                   f"{limit} it may have: refused before decompressing it")
    try:
        with archive.open(info) as entry:
            content = entry.read(limit + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as exc:
        raise ModelFileError(path, f"the entry {name!r} is corrupt ({type(exc).__name__}: {exc})") from None
    if len(content) > limit:
        raise ModelFileError(path, f"the entry {name!r} inflates past its declared size: refused")
    return content


def read_model_file(path: Path, archive: zipfile.ZipFile) -> SavedModel:
    """The checked, decoded contents of a model file in diffrl's format (``archive`` opened from ``path``).

    :raises ModelFileError: when anything is missing, altered, malformed or too large
    """
    manifest = _read_manifest(archive, path)
    files = manifest["files"]
    unexpected = sorted(set(archive.namelist()) - {MANIFEST, *files})
    if unexpected:
        raise ModelFileError(path, f"it has entries its manifest does not list: {', '.join(map(repr, unexpected))}")
    contents: dict[str, bytes] = {}
    for name, description in files.items():
        content = read_entry(archive, path, name, description["bytes"])
        if len(content) != description["bytes"]:
            raise ModelFileError(path, f"the entry {name!r} has {len(content)} bytes, its manifest says "
                                       f"{description['bytes']} (the file is truncated or altered)")
        if hashlib.sha256(content).hexdigest() != description["sha256"]:
            raise ModelFileError(path, f"the entry {name!r} does not match its checksum (the file was altered "
                                       "or damaged)")
        contents[name] = content
    params: dict[str, dict[str, Any]] = {}
    for name, description in manifest["state_dicts"].items():
        tensors = _load_tensors(path, description["file"], contents)
        try:
            params[name] = (_optimizer_state(tensors, description) if "param_groups" in description
                            else _with_aliases(tensors, description))
        except (DecodeError, ValueError, KeyError, TypeError) as exc:
            raise ModelFileError(path, f"the state of {name!r} is malformed ({exc})") from None
    variables: dict[str, Any] = {}
    if manifest["variables"]:
        variables = _load_tensors(path, f"{VARIABLES}.safetensors", contents)
        if sorted(variables) != sorted(manifest["variables"]):
            raise ModelFileError(path, f"{VARIABLES}.safetensors holds {sorted(variables)}, the manifest lists "
                                       f"{manifest['variables']}")
    data = {}
    for key, value in manifest["data"].items():
        try:
            data[key] = decode(value)
        except DecodeError as exc:
            raise ModelFileError(path, f"the saved attribute {key!r} is malformed: {exc}") from None
    return SavedModel(path=path, algo_class=manifest["algo_class"], components=manifest["components"], data=data,
                      params=params, variables=variables, config=manifest.get("config"),
                      versions=manifest.get("versions") or {})


#: the manifest's keys and their JSON types
_MANIFEST_KEYS: dict[str, type | tuple[type, ...]] = {
    "format": str, "format_version": int, "algo_class": str, "components": dict, "data": dict,
    "state_dicts": dict, "variables": list, "files": dict, "config": (dict, type(None)), "versions": dict,
}


def _read_manifest(archive: zipfile.ZipFile, path: Path) -> dict[str, Any]:
    raw = read_entry(archive, path, MANIFEST, MAX_MANIFEST_BYTES)
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(path, f"{MANIFEST} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelFileError(path, f"{MANIFEST} does not describe a diffrl model")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(path, f"it is in version {manifest.get('format_version')!r} of diffrl's model format; "
                                   f"this diffrl-core reads version {FORMAT_VERSION} (upgrade diffrl-core)")
    for key, kind in _MANIFEST_KEYS.items():
        if key not in manifest or not isinstance(manifest[key], kind):
            raise ModelFileError(path, f"{MANIFEST} lacks {key!r} or has the wrong type for it")
    for name, description in manifest["files"].items():
        if not (isinstance(description, dict) and isinstance(description.get("bytes"), int)
                and isinstance(description.get("sha256"), str) and 0 <= description["bytes"] <= MAX_TENSOR_FILE_BYTES
                and name.endswith(".safetensors")):
            raise ModelFileError(path, f"{MANIFEST} describes the entry {name!r} wrongly")
    for name, description in manifest["state_dicts"].items():
        if not (isinstance(description, dict) and description.get("file") in manifest["files"]
                and isinstance(description.get("aliases"), dict)):
            raise ModelFileError(path, f"{MANIFEST} describes the state of {name!r} wrongly")
    return manifest


def _load_tensors(path: Path, file: str, contents: Mapping[str, bytes]) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    if file not in contents:
        raise ModelFileError(path, f"the manifest names {file!r} but does not list it among its files")
    try:
        return load(contents[file])
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ModelFileError(path, f"the entry {file!r} is not a valid safetensors file ({exc})") from None


def _with_aliases(tensors: dict[str, Any], description: Mapping[str, Any]) -> dict[str, Any]:
    """The state dict in its saved key order, with the tensors that shared memory given back under each key."""
    state = dict(tensors)
    for key, target in description["aliases"].items():
        if not isinstance(key, str) or target not in tensors:
            raise ValueError(f"the alias {key!r} names no stored tensor")
        state[key] = tensors[target]
    return state


def _optimizer_state(tensors: dict[str, Any], description: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in _with_aliases(tensors, description).items():
        index, _, name = key.partition("/")
        state.setdefault(int(index), {})[name] = tensor
    other = description.get("other_state", {})
    if not isinstance(other, dict):
        raise ValueError("other_state is not a mapping")
    for index, values in other.items():
        if not isinstance(values, dict):
            raise ValueError("other_state entries are not mappings")
        state.setdefault(int(index), {}).update({name: decode(value) for name, value in values.items()})
    groups = decode(description["param_groups"])
    if not (isinstance(groups, list) and all(isinstance(group, dict) for group in groups)):
        raise ValueError("param_groups is not a list of mappings")
    return {"state": dict(sorted(state.items())), "param_groups": groups}


# -- building ----------------------------------------------------------------------------------


def build_model(cls: type[BaseAlgorithm], saved: SavedModel, env: Any = None, device: th.device | str = "auto",
                force_reset: bool = True, **kwargs: Any) -> BaseAlgorithm:
    """The model ``saved`` describes, built as stable-baselines3's ``load`` builds one, from checked data.

    :param cls: the composed algorithm class (its ``composition`` keyword given in ``kwargs``)
    :param env: an env with the saved spaces, to continue training on
    :param force_reset: start the next ``learn()`` with an env reset (stable-baselines3's default)
    :param kwargs: attributes set after the saved ones (stable-baselines3's ``load(**kwargs)``)
    :raises ModelFileError: when the tensors do not fit the model the file describes
    """
    from stable_baselines3.common.save_util import recursive_setattr
    from stable_baselines3.common.utils import check_for_correct_spaces

    data = dict(saved.data)
    for key in ("observation_space", "action_space", "policy_class"):
        if key not in data:
            raise ModelFileError(saved.path, f"it does not hold the model's {key}")
    if env is not None:
        env = cls._wrap_env(env, data.get("verbose", 0))
        check_for_correct_spaces(env, data["observation_space"], data["action_space"])
        if force_reset:
            data["_last_obs"] = None  # the next learn() resets the env (as stable-baselines3's load does)
        data["n_envs"] = env.num_envs
    composition = kwargs.pop("composition", None)
    model = cls(policy=data["policy_class"], env=env, device=device, _init_setup_model=False,  # type: ignore[call-arg]
                composition=composition)
    _check_attributes(saved.path, model, data)
    model.__dict__.update(data)
    model.__dict__.update(kwargs)
    model.diffrl_components = saved.components  # type: ignore[attr-defined]
    if saved.config is not None:
        model.diffrl_config = saved.config  # type: ignore[attr-defined]
    model._setup_model()
    try:
        params = matched_by_position(model, saved.params) if saved.by_position else saved.params
        model.set_parameters(params, exact_match=True, device=device)  # type: ignore[arg-type]
        for name, tensor in saved.variables.items():
            recursive_setattr(model, f"{name}.data", tensor.data.to(model.device))
    except (RuntimeError, ValueError, KeyError, AttributeError, IndexError) as exc:
        problem = f"its tensors do not fit the model it describes ({_first_line(exc)})"
        raise ModelFileError(saved.path, problem) from None
    if getattr(model, "use_sde", False):
        model.policy.reset_noise()  # type: ignore[operator]
    return model


def _check_attributes(path: Path, model: BaseAlgorithm, data: Mapping[str, Any]) -> None:
    """Saved attributes may set data, never replace a method, a property or what the model builds itself."""
    excluded = set(model._excluded_save_params())
    for key in data:
        own = key in model.__dict__ or key in ("observation_space", "action_space", "n_envs")
        if key.startswith("__") or key in excluded or (not own and hasattr(type(model), key)):
            raise ModelFileError(path, f"it sets the attribute {key!r}, which a saved model may not set")


def matched_by_position(model: BaseAlgorithm, params: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """stable-baselines3's state dicts renamed to the composed model's keys (:func:`_renamed`).

    SB3's PPO registers a Box action space's ``log_std`` before the networks, the composed
    policy inside its head: the optimizer's per-parameter state is reordered to match.
    """
    from stable_baselines3.common.save_util import recursive_getattr

    matched = dict(params)
    reordered: dict[str, list[int]] = {}
    for name, state in params.items():
        if _is_optimizer_state(state):
            continue  # optimizers index parameters by position
        module = recursive_getattr(model, name)
        ours = module.state_dict()
        if len(ours) != len(state):
            raise ValueError(f"{name} has {len(state)} tensors, the composed model {len(ours)}")
        mapping = _renamed(name, state, ours)
        matched[name] = {mapping[key]: tensor for key, tensor in state.items()}
        our_parameters = [key for key, _ in module.named_parameters()]
        their_order = [mapping[key] for key in state if mapping[key] in our_parameters]
        if their_order != our_parameters:
            reordered[name] = [our_parameters.index(key) for key in their_order]
    for name, positions in reordered.items():
        optimizer = f"{name}.optimizer"
        if optimizer not in params or len(params[optimizer]["param_groups"]) != 1:
            raise ValueError(f"{name}'s parameters are in another order than stable-baselines3's, and its optimizer "
                             "state cannot be matched to them")
        state = params[optimizer]["state"]
        matched[optimizer] = {**params[optimizer], "state": {positions[int(index)]: value
                                                             for index, value in state.items()}}
    return matched


def _renamed(name: str, state: Mapping[str, Any], ours: Mapping[str, Any]) -> dict[str, str]:
    """Their key -> our key (one of the two stable-baselines3's, the other composed): the same name once the
    head's module is left out (``action_net.weight``, ``head.action_net.weight``), else the next one in order
    in the same place (TD3's ``actor.mu.4.weight``, ``actor.head.mu.weight``); shapes must agree."""
    by_name = {key.replace("head.", ""): key for key in ours}
    mapping = {}
    for key, tensor in state.items():
        plain = key.replace("head.", "")
        if plain in by_name and tuple(ours[by_name[plain]].shape) == tuple(tensor.shape):
            mapping[key] = by_name[plain]
    rest = [key for key in ours if key not in mapping.values()]
    for key, our_key in zip([key for key in state if key not in mapping], rest, strict=True):
        if not _same_place(key, our_key) or tuple(state[key].shape) != tuple(ours[our_key].shape):
            raise ValueError(f"{name}: {key} {tuple(state[key].shape)} does not match {our_key} "
                             f"{tuple(ours[our_key].shape)}")
        mapping[key] = our_key
    return mapping


def _same_place(key: str, our_key: str) -> bool:
    """Whether a stable-baselines3 parameter and a composed one are in the same network and of the same kind."""
    return (key.split(".")[0], key.rsplit(".", 1)[-1]) == (our_key.split(".")[0], our_key.rsplit(".", 1)[-1])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


#: an evaluations.npz holds a few arrays of numbers
MAX_ARRAYS_BYTES = 2**30


def read_evaluations(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``evaluations.npz``: ``timesteps`` (n_evals), ``results`` and ``ep_lengths`` (n_evals x n_episodes).

    :raises ModelFileError: when it is not such a file
    """
    arrays = read_arrays(path, ("timesteps", "results", "ep_lengths"))
    timesteps, results, lengths = arrays["timesteps"], arrays["results"], arrays["ep_lengths"]
    if timesteps.ndim != 1 or results.ndim != 2 or results.shape[0] != len(timesteps) or lengths.shape != results.shape:
        raise ModelFileError(path, f"its arrays do not go together: timesteps {timesteps.shape}, results "
                                   f"{results.shape}, ep_lengths {lengths.shape} (n_evals, and n_evals x n_episodes)")
    return arrays


def read_arrays(path: str | os.PathLike[str], names: tuple[str, ...]) -> dict[str, Any]:
    """The arrays ``names`` of an ``.npz`` file, without pickle and with sizes bounded.

    :raises ModelFileError: when it is not such a file
    """
    import numpy as np

    path = Path(path)
    with open_archive(path) as archive:
        declared = sum(info.file_size for info in archive.infolist())
        if declared > MAX_ARRAYS_BYTES:
            raise ModelFileError(path, f"it declares {declared} bytes of arrays, more than {MAX_ARRAYS_BYTES}")
        arrays = {}
        for name in names:
            content = read_entry(archive, path, f"{name}.npy", MAX_ARRAYS_BYTES)
            try:
                arrays[name] = np.load(io.BytesIO(content), allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:
                raise ModelFileError(path, f"{name}.npy is not an array of numbers ({exc})") from None
    return arrays


def manifest_of(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A model file's manifest, checked (for tools that only read the names, e.g. ``diffrl eval``'s messages)."""
    path = Path(path)
    with open_archive(path) as archive:
        return _read_manifest(archive, path)


def model_bytes(model: BaseAlgorithm) -> bytes:
    """``model`` saved in memory (tests and benchmarks)."""
    buffer = io.BytesIO()
    save_model(model, buffer)
    return buffer.getvalue()

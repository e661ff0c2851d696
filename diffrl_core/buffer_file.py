"""A replay-buffer file that holds only arrays and JSON: loading it never runs code.

stable-baselines3's ``model.save_replay_buffer`` pickles the whole buffer, and
``load_replay_buffer`` unpickles it, so a crafted file runs code. This format is one
`safetensors <https://huggingface.co/docs/safetensors>`_ file:

- every numpy array of the buffer (``observations``, ``actions``, ..., HerReplayBuffer's
  ``ep_start``, ``ep_length``, ``_current_ep_start``); a dict of arrays (DictReplayBuffer's
  ``observations``) as ``observations/<key>``. Per-transition arrays (shape
  ``(buffer_size, n_envs, ...)``) are stored for the filled rows only;
- one metadata entry, :data:`METADATA_KEY`, a JSON object: format name and version, the buffer
  class name, ``buffer_size``, ``n_envs``, ``pos``, ``full``, the stored rows, each array's full
  shape and dtype, the buffer's settings (checked on load, never applied) and the sha256 of the
  tensor data (everything after the safetensors header).

:func:`load_replay_buffer` fills the model's own freshly built buffer in place, after checking
the file against it; it reads the file with bounded sizes and calls neither pickle nor
``torch.load`` nor ``eval``.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import os
import struct
from typing import Any

import numpy as np
import safetensors
import safetensors.numpy
from stable_baselines3.common.buffers import ReplayBuffer

from diffrl_core.errors import ModelFileError, ModelSaveError
from diffrl_core.runs import atomic_path

#: ``format`` in the metadata: what tells this file from any other safetensors file
FORMAT = "diffrl-replay-buffer"
#: the version :func:`save_replay_buffer` writes and the only one :func:`load_replay_buffer` reads
VERSION = 1
#: the key of the safetensors metadata that holds the JSON object
METADATA_KEY = "diffrl_replay_buffer"
#: the largest safetensors header read (safetensors' own limit); ours are a few kB
MAX_HEADER_BYTES = 100_000_000
#: settings of the buffer classes (constructor arguments): stored to be checked against the
#: buffer being filled, never to overwrite it (a model built with n_steps=5 keeps n_steps=5)
SETTINGS = (
    "optimize_memory_usage",
    "handle_timeout_termination",
    "n_steps",
    "gamma",
    "n_sampled_goal",
    "goal_selection_strategy",
    "copy_info_dict",
)

# the checksum is only known once safetensors has laid out the data: the file is written with
# this placeholder in the metadata, which is then overwritten in place with the digest (same length)
_DIGEST_PLACEHOLDER = "0" * 64
_CHUNK = 1 << 20
_PICKLE_PROTOCOLS = range(2, 6)


# -- save ------------------------------------------------------------------------------------------


def save_replay_buffer(buffer: ReplayBuffer, path: str | os.PathLike[str]) -> None:
    """Save a replay buffer's arrays and state to ``path`` (one safetensors file, no pickle).

    The file is written to a temporary file in the same folder and then renamed, so an
    interrupted save leaves either the old file or the new one, never half a file.

    :param buffer: the buffer (ReplayBuffer, DictReplayBuffer, NStepReplayBuffer, HerReplayBuffer, ...);
        its env (HerReplayBuffer's) and anything else that is not an array is not stored
    :param path: the file to write, used as given (no suffix is added)
    :raises ModelSaveError: the buffer holds data that is not a plain array (HerReplayBuffer's
        info dicts with ``copy_info_dict=True``)
    """
    arrays = _buffer_arrays(buffer, path)
    rows = _filled_rows(buffer, buffer.pos, buffer.full)
    # a buffer that writes ahead of pos (a subclass we do not know) is stored whole rather than cut
    if rows < buffer.buffer_size and any(
        _per_transition(buffer, array) and np.any(array[rows:]) for array in arrays.values()
    ):
        rows = buffer.buffer_size
    tensors = {
        name: np.ascontiguousarray(array[:rows] if _per_transition(buffer, array) else array)
        for name, array in arrays.items()
    }
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "class": type(buffer).__name__,
        "buffer_size": int(buffer.buffer_size),
        "n_envs": int(buffer.n_envs),
        "pos": int(buffer.pos),
        "full": bool(buffer.full),
        "rows": rows,
        "settings": _settings(buffer),
        "arrays": {name: {"shape": list(array.shape), "dtype": str(array.dtype)} for name, array in arrays.items()},
        "payload_sha256": _DIGEST_PLACEHOLDER,
    }
    # runs.atomic_path: a temporary name with this pid, which the next writer removes if this process is killed
    with atomic_path(path) as tmp:
        safetensors.numpy.save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(metadata)})
        _write_digest(str(tmp))


def _write_digest(tmp: str) -> None:
    """Hash the data of the file just written and put the digest in place of the placeholder."""
    with open(tmp, "r+b") as file:
        (header_length,) = struct.unpack("<Q", file.read(8))
        header = file.read(header_length)
        digest = hashlib.sha256()
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
        placeholder = _DIGEST_PLACEHOLDER.encode()
        if header.count(placeholder) != 1:  # the digest is the only 64 zeros in a header of ours
            raise RuntimeError(f"safetensors wrote an unexpected header: {header[:300]!r}")
        file.seek(8 + header.index(placeholder))
        file.write(digest.hexdigest().encode())
        file.flush()
        os.fsync(file.fileno())


# -- load ------------------------------------------------------------------------------------------


def load_replay_buffer(buffer: ReplayBuffer, path: str | os.PathLike[str]) -> None:
    """Fill ``buffer`` in place from a file of :func:`save_replay_buffer`.

    ``buffer`` is the model's own freshly built buffer (``model.replay_buffer``): its class,
    ``buffer_size``, ``n_envs``, settings and arrays must be those of the saved one. Every check
    is done before anything is copied, so a refused file leaves the buffer as it was. The file is
    read with bounded sizes (never more than the buffer can hold), and never unpickled.

    HerReplayBuffer: its env is the one the buffer already has; the last trajectory is restored
    as it was (call ``buffer.truncate_last_trajectory()`` afterwards to end it, as
    stable-baselines3's ``load_replay_buffer`` does by default).

    :param buffer: the buffer to fill
    :param path: the file
    :raises ModelFileError: the file is missing, truncated, not such a file, altered (checksum),
        or saved from a buffer that does not match ``buffer``; the message says which
    """
    arrays = _buffer_arrays(buffer, path, loading=True)
    data, metadata, rows = _read(buffer, arrays, path)
    try:
        loaded = safetensors.numpy.load(data)
    except (safetensors.SafetensorError, KeyError, ValueError, TypeError) as exc:
        raise ModelFileError(path, f"the safetensors data cannot be read: {exc}") from exc
    missing, unexpected = sorted(arrays.keys() - loaded.keys()), sorted(loaded.keys() - arrays.keys())
    if missing or unexpected:
        raise ModelFileError(path, _names_problem(missing, unexpected, "the safetensors data"))
    for name, target in arrays.items():
        expected_shape = (rows, *target.shape[1:]) if _per_transition(buffer, target) else target.shape
        array = loaded[name]
        if array.dtype != target.dtype or array.shape != expected_shape:
            raise ModelFileError(
                path,
                f"array {name!r} holds {array.dtype} {_shape(array.shape)}, the buffer needs "
                f"{target.dtype} {_shape(expected_shape)}",
            )
    # everything is checked: only now is the buffer changed
    for name, target in arrays.items():
        if _per_transition(buffer, target):
            target[:rows] = loaded[name]
            # rows past the saved ones were never written: zero as in a fresh buffer, whose untouched zero
            # pages are only read here (writing them would make a large buffer take all its memory at once)
            if np.any(target[rows:]):
                target[rows:] = 0
        else:
            target[...] = loaded[name]
    buffer.pos = int(metadata["pos"])
    buffer.full = bool(metadata["full"])


def _read(
    buffer: ReplayBuffer, arrays: dict[str, np.ndarray], path: str | os.PathLike[str]
) -> tuple[bytes, dict[str, Any], int]:
    """The file's bytes, its metadata (checked against ``buffer``) and the stored rows.

    Sizes are checked before bytes are read: the 8-byte header length against
    :data:`MAX_HEADER_BYTES` and the file's size, the array data against what the buffer can hold.
    """
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size  # of the file opened, not of whatever the path names later
            if size < 8:
                raise ModelFileError(
                    path,
                    f"the file is truncated or not a {FORMAT} file: it has {size} bytes, "
                    "fewer than the 8 that start a safetensors file",
                )
            prefix = file.read(8)
            (header_length,) = struct.unpack("<Q", prefix)
            if header_length > MAX_HEADER_BYTES:
                raise ModelFileError(
                    path,
                    f"not a {FORMAT} file (a safetensors file): its first 8 bytes give a header of "
                    f"{header_length} bytes, more than the {MAX_HEADER_BYTES} allowed{_pickle_hint(prefix)}",
                )
            if 8 + header_length > size:
                raise ModelFileError(
                    path,
                    f"the file is truncated or not a {FORMAT} file: its safetensors header should have "
                    f"{header_length} bytes, only {size - 8} follow{_pickle_hint(prefix)}",
                )
            header = _parse_header(file.read(header_length), path)
            metadata = _parse_metadata(header, path)
            # a file of another buffer is told as such before its size or its data are looked at
            rows = _check_metadata(buffer, arrays, metadata, path)
            data_length = _data_length(header, path)
            actual = size - 8 - header_length
            if actual < data_length:
                raise ModelFileError(
                    path,
                    f"the file is truncated: its header announces {data_length} bytes of array data, "
                    f"it has {actual}",
                )
            if actual > data_length:
                raise ModelFileError(
                    path, f"the file has {actual - data_length} unexpected bytes after its {data_length} of array data"
                )
            max_data = sum(array.nbytes for array in arrays.values())
            if data_length > max_data:
                raise ModelFileError(
                    path,
                    f"it holds {data_length} bytes of array data, more than the model's buffer can hold "
                    f"({max_data} bytes)",
                )
            file.seek(0)  # one read of the whole file: the data hashed is the data parsed
            data = file.read(8 + header_length + data_length)
    except FileNotFoundError as exc:
        raise ModelFileError(path, "no such file") from exc
    except IsADirectoryError as exc:
        raise ModelFileError(path, "it is a folder, not a replay-buffer file") from exc
    except OSError as exc:
        raise ModelFileError(path, f"the file cannot be read: {exc}") from exc
    if len(data) != 8 + header_length + data_length:  # the file shrank while it was read
        raise ModelFileError(path, f"the file is truncated: expected {data_length} bytes of array data")
    digest = hashlib.sha256(memoryview(data)[8 + header_length :]).hexdigest()
    if digest != metadata["payload_sha256"]:
        raise ModelFileError(
            path,
            f"checksum mismatch: the array data has sha256 {digest}, the file's metadata says "
            f"{metadata['payload_sha256']}; the file was altered or damaged after it was saved",
        )
    return data, metadata, rows


def _pickle_hint(prefix: bytes) -> str:
    # a pickle starts with PROTO (0x80) and its protocol number: say so, rather than "not a file"
    if prefix[0] == 0x80 and prefix[1] in _PICKLE_PROTOCOLS:
        return (
            "; it looks like a pickle (stable-baselines3's own save_replay_buffer format), which is not "
            "loaded because unpickling a file can run any code: save the buffer again with "
            "diffrl_core.buffer_file.save_replay_buffer"
        )
    return ""


def _parse_header(header_bytes: bytes, path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ModelFileError(path, f"not a {FORMAT} file: its safetensors header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise ModelFileError(path, f"not a {FORMAT} file: its safetensors header is not a JSON object")
    return header


def _data_length(header: dict[str, Any], path: str | os.PathLike[str]) -> int:
    """How many bytes of array data the safetensors header describes (the largest end offset)."""
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(type(offset) is int and offset >= 0 for offset in offsets)
        ):
            raise ModelFileError(path, f"not a {FORMAT} file: its safetensors header entry {name!r} is malformed")
        end = max(end, offsets[1])
    return end


def _parse_metadata(header: dict[str, Any], path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata JSON object, with the types of its fields checked."""
    entries = header.get("__metadata__")
    if not isinstance(entries, dict) or METADATA_KEY not in entries:
        raise ModelFileError(
            path,
            f"the safetensors file has no {METADATA_KEY!r} metadata: it was not written by "
            "diffrl_core.buffer_file.save_replay_buffer",
        )
    try:
        metadata = json.loads(entries[METADATA_KEY])
    except (TypeError, ValueError, RecursionError) as exc:
        raise ModelFileError(path, f"its {METADATA_KEY!r} metadata is not valid JSON ({exc})") from exc
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ModelFileError(path, f"not a {FORMAT} file: its metadata has no \"format\": {FORMAT!r}")
    if metadata.get("version") != VERSION:
        raise ModelFileError(
            path,
            f"the file has format version {metadata.get('version')!r}, this diffrl reads version {VERSION} "
            "(a newer diffrl wrote it?)",
        )
    fields: dict[str, type | tuple[type, ...]] = {
        "class": str, "buffer_size": int, "n_envs": int, "pos": int, "full": bool, "rows": int,
        "settings": dict, "arrays": dict, "payload_sha256": str,
    }  # fmt: skip
    for field, kind in fields.items():
        value = metadata.get(field)
        # bool is an int: a "pos": true is as wrong as a "full": 1
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ModelFileError(path, f"its metadata field {field!r} is missing or malformed: {value!r}")
    for name, spec in metadata["arrays"].items():
        if not (
            isinstance(spec, dict)
            and isinstance(spec.get("dtype"), str)
            and isinstance(spec.get("shape"), list)
            and all(type(n) is int and n >= 0 for n in spec["shape"])
        ):
            raise ModelFileError(path, f"its metadata for array {name!r} is malformed: {spec!r}")
    return metadata


def _check_metadata(
    buffer: ReplayBuffer, arrays: dict[str, np.ndarray], metadata: dict[str, Any], path: str | os.PathLike[str]
) -> int:
    """Check the file's metadata against the buffer to fill; return the stored rows."""
    kind = type(buffer).__name__
    if metadata["class"] != kind:
        raise ModelFileError(path, f"it holds a {metadata['class']}, the model has a {kind}")
    for field in ("buffer_size", "n_envs"):
        saved, current = metadata[field], getattr(buffer, field)
        if saved != current:
            raise ModelFileError(
                path,
                f"it was saved from a buffer with {field}={saved}, the model's buffer has {field}={current}: "
                f"build the model with the same {field}",
            )
    settings, saved_settings = _settings(buffer), metadata["settings"]
    names = dict.fromkeys([*settings, *saved_settings])  # in SETTINGS order
    differ = [name for name in names if settings.get(name) != saved_settings.get(name)]
    if differ:
        raise ModelFileError(
            path,
            f"it was saved from a buffer with {_assignments(saved_settings, differ)}; the model's buffer has "
            f"{_assignments(settings, differ)}: build the model with the same settings",
        )
    pos, full, rows = metadata["pos"], metadata["full"], metadata["rows"]
    if not 0 <= pos < buffer.buffer_size:
        raise ModelFileError(path, f"its pos {pos} is outside the buffer (0 to {buffer.buffer_size - 1})")
    if rows not in (_filled_rows(buffer, pos, full), buffer.buffer_size):
        raise ModelFileError(path, f"it stores {rows} rows, which does not fit pos={pos}, full={full}")
    saved_arrays: dict[str, Any] = metadata["arrays"]
    missing, unexpected = sorted(arrays.keys() - saved_arrays.keys()), sorted(saved_arrays.keys() - arrays.keys())
    if missing or unexpected:
        raise ModelFileError(path, _names_problem(missing, unexpected, "its metadata"))
    for name, target in arrays.items():
        spec = saved_arrays[name]
        if spec["dtype"] != str(target.dtype) or tuple(spec["shape"]) != target.shape:
            raise ModelFileError(
                path,
                f"array {name!r} is {spec['dtype']} {_shape(spec['shape'])} in the file, the model's buffer has "
                f"{target.dtype} {_shape(target.shape)} (a different observation or action space?)",
            )
    return rows


def _assignments(settings: dict[str, Any], names: list[str]) -> str:
    return ", ".join(f"{name}={settings.get(name)!r}" for name in names)


def _names_problem(missing: list[str], unexpected: list[str], where: str) -> str:
    problems = []
    if missing:
        problems.append(f"missing array(s) {', '.join(map(repr, missing))}")
    if unexpected:
        problems.append(f"unexpected array(s) {', '.join(map(repr, unexpected))}")
    return f"{where} does not match the model's buffer: {'; '.join(problems)}"


# -- the buffer's contents ---------------------------------------------------------------------------


def _buffer_arrays(buffer: ReplayBuffer, path: str | os.PathLike[str], loading: bool = False) -> dict[str, np.ndarray]:
    """The buffer's arrays by file name: its numpy attributes, and each dict of arrays as ``name/key``.

    Object arrays are no data to store: HerReplayBuffer's ``infos`` holds empty dicts unless
    ``copy_info_dict=True``, and then any object, which this format cannot hold without code.
    """
    arrays: dict[str, np.ndarray] = {}
    for name, value in sorted(vars(buffer).items()):
        if isinstance(value, dict) and value and all(isinstance(v, np.ndarray) for v in value.values()):
            items = [(f"{name}/{key}", array) for key, array in sorted(value.items())]
        elif isinstance(value, np.ndarray):
            items = [(name, value)]
        else:  # the env, spaces, device, settings (checked separately), pos and full
            continue
        for item_name, array in items:
            if array.dtype.hasobject:
                if not loading and any(not (isinstance(e, dict) and not e) for e in array[: _filled_rows(buffer)].flat):
                    raise ModelSaveError(
                        f"cannot save the {type(buffer).__name__} to {os.fspath(path)!r}: its {item_name!r} holds "
                        "Python objects, which a file without code cannot store (HerReplayBuffer keeps the info "
                        "dicts there with copy_info_dict=True): nothing was written"
                    )
                continue
            arrays[item_name] = array
    return arrays


def _per_transition(buffer: ReplayBuffer, array: np.ndarray) -> bool:
    """Whether an array has a row per transition (is stored for the filled rows only)."""
    return array.shape[:2] == (buffer.buffer_size, buffer.n_envs)


def _filled_rows(buffer: ReplayBuffer, pos: int | None = None, full: bool | None = None) -> int:
    """The rows written so far, for ``pos`` and ``full`` (the buffer's own by default)."""
    pos = buffer.pos if pos is None else pos
    full = buffer.full if full is None else full
    if full:
        return int(buffer.buffer_size)
    # optimize_memory_usage: the next observation of the last transition is in observations[pos]
    return min(pos + 1, buffer.buffer_size) if getattr(buffer, "optimize_memory_usage", False) else pos


def _settings(buffer: ReplayBuffer) -> dict[str, Any]:
    """The buffer's :data:`SETTINGS`, as JSON values (an enum by its name)."""
    settings: dict[str, Any] = {}
    for name in SETTINGS:
        if not hasattr(buffer, name):
            continue
        value = getattr(buffer, name)
        if isinstance(value, enum.Enum):
            value = value.name
        elif isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)  # JSON has no inf/nan
        elif not isinstance(value, bool | int | float | str | None):
            value = repr(value)  # a setting of a subclass we do not know: compared by its repr
        settings[name] = value
    return settings


def _shape(shape: tuple[int, ...] | list[int]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"

"""Run folders: layout, resolved config, status, checkpoints, ``--set`` overrides, signals.

Everything here is plain files and the standard library (no torch, no stable-baselines3),
so the ``diffrl`` commands stay thin and the layout can be read by other tools.

A run folder (``runs/<config-stem>-<timestamp>`` by default)::

    config.yaml        the resolved config (every default filled in) + a ``versions`` section
    status.json        running | interrupted | finished | failed, num_timesteps, checkpoint, ...
    model.zip          the final model (only once the run finished)
    checkpoints/       model_<steps>.zip (+ replay_buffer_<steps>.pkl for the latest one)
    logs/              progress.csv and TensorBoard events (every logged value)
    evaluations.npz    periodic evaluations: timesteps, results (n_evals x n_episodes), ep_lengths
    results.json       the final evaluation (mean / std return)

Every file is written to a temporary name and moved into place (``os.replace``), and the
folder itself appears only once its config and status are written: a config error leaves
nothing behind, and an interrupted run always has a status that points to a complete checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import importlib.metadata
import json
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from diffrl_core.config import Config, parse_config, read_yaml, safe_load
from diffrl_core.errors import ConfigError, DiffRLError

CONFIG_FILE = "config.yaml"
STATUS_FILE = "status.json"
MODEL_FILE = "model.zip"
RESULTS_FILE = "results.json"
EVALUATIONS_FILE = "evaluations.npz"
CHECKPOINTS_DIR = "checkpoints"
LOGS_DIR = "logs"

#: Config keys that ``--resume`` may change: they do not change the model or the env.
RESUMABLE_KEYS = ("total_timesteps", "eval", "checkpoint", "logging")

#: Exit codes of an interrupted ``diffrl train`` (the shell's 128 + signal number).
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


# -- --set overrides ---------------------------------------------------------------------------

_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)")


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """``"policy.losses[1].weight=0.5"`` -> ``(["policy", "losses", 1, "weight"], 0.5)``.

    The value is read with the safe YAML loader (numbers, booleans, null, lists and mappings
    work; nothing is evaluated).

    :raises ConfigError: for a malformed ``KEY=VALUE``
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set policy.losses[0].weight=0.5")
    path: list[str | int] = []
    for part in key.split("."):
        match = _SEGMENT.fullmatch(part)
        if not match:
            raise ConfigError(f"--set {text!r}: {key!r} is not a key path like 'algo_kwargs.learning_rate' or 'policy.losses[1].weight'")
        path.append(match.group(1))
        path.extend(int(index) for index in re.findall(r"\[(\d+)\]", match.group(2)))
    try:
        value = safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML: {exc}") from None
    return path, value


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``data`` with each ``KEY=VALUE`` set (missing mappings on the way are created)."""
    result = copy.deepcopy(dict(data))
    for text in overrides:
        path, value = parse_override(text)
        node: Any = result
        for depth, part in enumerate(path):
            parent, last = _path_text(path[:depth]) or "the config", depth == len(path) - 1
            following = None if last else path[depth + 1]
            if isinstance(part, int):
                if not isinstance(node, list):
                    raise ConfigError(f"--set {text!r}: {parent} is not a list")
                if part > len(node) or (part == len(node) and isinstance(following, int)):
                    raise ConfigError(f"--set {text!r}: {parent} has {len(node)} item(s)")
                if part == len(node):  # one past the end appends
                    node.append({})
            else:
                if not isinstance(node, dict):
                    raise ConfigError(f"--set {text!r}: {parent} is not a mapping")
                if not last and node.get(part) is None:
                    if isinstance(following, int):
                        where = _path_text(path[: depth + 1])
                        raise ConfigError(
                            f"--set {text!r}: {where} is not set in the config; set the whole list, e.g. --set '{where}=[...]'"
                        )
                    node[part] = {}
            if last:
                node[part] = value
            else:
                node = node[part]
    return result


def _path_text(path: Sequence[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def load_config(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> tuple[dict[str, Any], Config]:
    """Read a YAML config (safe loader), apply ``--set`` overrides, validate.

    :return: the raw mapping (after overrides) and the validated config
    :raises ConfigError: naming the file, the key path and what was expected
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{str(path)!r} is a folder, not a config file (to continue a run: diffrl train --resume {path})")
    if not path.exists():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    raw = apply_overrides(read_yaml(path), overrides)
    try:
        return raw, parse_config(raw)
    except ConfigError as exc:
        suffix = f" (with {' '.join('--set ' + o for o in overrides)})" if overrides else ""
        raise ConfigError(str(exc).replace("invalid config", f"invalid config {path}{suffix}", 1)) from None


# -- atomic files ------------------------------------------------------------------------------

_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``target`` (same suffix); move it into place on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{target.stem}-", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; the final file gets the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_text(target: str | os.PathLike[str], text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json(target: str | os.PathLike[str], data: Any) -> None:
    write_text(target, json.dumps(data, indent=2) + "\n")


# -- versions and the resolved config ----------------------------------------------------------


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect_versions(components: Mapping[str, Any], env_provenance: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``versions`` section of a run's config.

    :param components: ``model.diffrl_components`` (algo + provenance of each component)
    :param env_provenance: the provenance of the env id, when a plugin registered it
    """
    plugins: dict[str, dict[str, Any]] = {}
    entries = [(kind, name, prov) for kind, named in components.items() if isinstance(named, Mapping) for name, prov in named.items()]
    if env_provenance:
        entries.append(("envs", "env", env_provenance))
    for kind, name, prov in entries:
        if not isinstance(prov, Mapping):
            continue
        plugin = plugins.setdefault(
            prov.get("plugin") or "?",
            {
                "distribution": "diffrl-core" if prov.get("builtin") else prov.get("distribution"),
                "version": _version("diffrl-core") if prov.get("builtin") else prov.get("version"),
                "components": [],
            },
        )
        plugin["components"].append(name if kind != "envs" else "env")
    for plugin in plugins.values():
        plugin["components"] = sorted(set(plugin["components"]))
    versions: dict[str, Any] = {
        "diffrl-core": _version("diffrl-core"),
        "stable-baselines3": _version("stable-baselines3"),
        "gymnasium": _version("gymnasium"),
        "torch": _version("torch"),
        "plugins": plugins,
    }
    return versions


def resolved_config(config: Config, versions: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The config with every default filled in (head and losses included), as plain data."""
    data = config.model_dump(mode="json", exclude={"versions"})
    data["policy"]["head"] = config.head
    data["policy"]["losses"] = [spec.model_dump(mode="json") for spec in config.losses]
    if versions is not None:
        data["versions"] = dict(versions)
    return data


def dump_yaml(data: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=None)


# -- the run folder ----------------------------------------------------------------------------


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def default_run_dir(config_path: str | os.PathLike[str], root: str | os.PathLike[str] = "runs") -> Path:
    """``runs/<config-stem>-<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``, ... if taken)."""
    base = Path(root) / f"{Path(config_path).stem}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def check_new_run_dir(path: str | os.PathLike[str]) -> None:
    """A new run may go into ``path``: it does not exist, or is an empty folder."""
    path = Path(path)
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        what = "a run folder" if (path / STATUS_FILE).exists() else ("a file" if path.is_file() else "a folder that is not empty")
        raise DiffRLError(
            f"{str(path)!r} already exists ({what}); continue it with `diffrl train --resume {path}` "
            "or choose another --run-dir"
        )


@dataclass(frozen=True)
class RunDir:
    """The files of one run folder."""

    path: Path

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def status_file(self) -> Path:
        return self.path / STATUS_FILE

    @property
    def model_file(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def results_file(self) -> Path:
        return self.path / RESULTS_FILE

    @property
    def evaluations_file(self) -> Path:
        return self.path / EVALUATIONS_FILE

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def logs(self) -> Path:
        return self.path / LOGS_DIR

    def checkpoint_file(self, num_timesteps: int) -> Path:
        return self.checkpoints / f"model_{num_timesteps}.zip"

    def replay_buffer_file(self, num_timesteps: int) -> Path:
        return self.checkpoints / f"replay_buffer_{num_timesteps}.pkl"

    def model_checkpoints(self) -> list[tuple[int, Path]]:
        """``(num_timesteps, path)`` of every model checkpoint, oldest first."""
        found = []
        for file in self.checkpoints.glob("model_*.zip"):
            match = re.fullmatch(r"model_(\d+)\.zip", file.name)
            if match:
                found.append((int(match.group(1)), file))
        return sorted(found)

    # status

    def read_status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_file.read_text())
        except FileNotFoundError:
            raise DiffRLError(f"{str(self.path)!r} is not a diffrl run folder (no {STATUS_FILE})") from None
        except json.JSONDecodeError as exc:
            raise DiffRLError(f"{self.status_file} is corrupt: {exc}") from None

    def update_status(self, **changes: Any) -> dict[str, Any]:
        status = self.read_status() if self.status_file.exists() else {}
        status.update(changes, updated_at=now())
        write_json(self.status_file, status)
        return status

    def relative(self, path: Path | None) -> str | None:
        return None if path is None else path.relative_to(self.path).as_posix()

    # config

    def read_config(self) -> Config:
        data = read_yaml(self.config_file)
        try:
            return parse_config(data)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("invalid config", f"invalid config {self.config_file}", 1)) from None

    def resume_point(self) -> tuple[Path, Path | None, int]:
        """The checkpoint to continue from: ``(model, replay buffer or None, num_timesteps)``."""
        status = self.read_status()
        checkpoint = status.get("checkpoint")
        if checkpoint and (self.path / checkpoint).exists():
            buffer = status.get("replay_buffer")
            buffer_path = self.path / buffer if buffer and (self.path / buffer).exists() else None
            return self.path / checkpoint, buffer_path, int(status.get("checkpoint_timesteps", status.get("num_timesteps", 0)))
        # a run killed before it could write its status: the newest complete checkpoint
        checkpoints = self.model_checkpoints()
        if not checkpoints:
            raise DiffRLError(f"run {str(self.path)!r} has no checkpoint yet (it stopped before the first one, or is still before it)")
        steps, model = checkpoints[-1]
        buffer_path = self.replay_buffer_file(steps)
        return model, buffer_path if buffer_path.exists() else None, steps


def open_run(path: str | os.PathLike[str]) -> RunDir:
    """An existing run folder.

    :raises DiffRLError: when ``path`` is not one
    """
    path = Path(path)
    if not path.is_dir():
        raise DiffRLError(f"run folder {str(path)!r} does not exist" if not path.exists() else f"{str(path)!r} is not a folder")
    run = RunDir(path)
    if not run.status_file.exists() or not run.config_file.exists():
        raise DiffRLError(f"{str(path)!r} is not a diffrl run folder (it has no {STATUS_FILE} and {CONFIG_FILE})")
    return run


def create_run_dir(target: str | os.PathLike[str], config: Mapping[str, Any], status: Mapping[str, Any]) -> RunDir:
    """Create a run folder holding ``config.yaml`` and ``status.json``, all at once.

    The files are written into a hidden sibling folder which is then renamed to ``target``.
    """
    target = Path(target)
    check_new_run_dir(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    os.chmod(staging, 0o777 & ~_UMASK)
    try:
        (staging / CONFIG_FILE).write_text(dump_yaml(config))
        (staging / STATUS_FILE).write_text(json.dumps({**status, "started_at": now(), "updated_at": now()}, indent=2) + "\n")
        (staging / CHECKPOINTS_DIR).mkdir()
        (staging / LOGS_DIR).mkdir()
        os.rename(staging, target)  # also replaces an empty folder
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return RunDir(target)


def pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class ResumePlan:
    """What ``--resume`` continues: the run, its config (after overrides) and the checkpoint."""

    run: RunDir
    config: Config
    saved: Config
    model: Path
    replay_buffer: Path | None
    num_timesteps: int


def plan_resume(run_dir: str | os.PathLike[str], overrides: Sequence[str] = ()) -> ResumePlan:
    """Check that a run can be resumed with these overrides (without importing torch).

    :raises DiffRLError: when the run is being trained, has no checkpoint or is done; a
        :class:`ConfigError` when an override is invalid or would change the model or the env
    """
    run = open_run(run_dir)
    status = run.read_status()
    if status.get("status") in ("running", "created") and pid_alive(status.get("pid")):
        raise DiffRLError(f"run {str(run.path)!r} is being trained right now (pid {status['pid']}); stop it first")
    saved = run.read_config()
    config = saved
    if overrides:
        data = apply_overrides(resolved_config(saved, saved.versions), overrides)
        try:
            config = parse_config(data)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("invalid config", f"invalid config for resumed run {run.path}", 1)) from None
        before, after = resolved_config(saved), resolved_config(config)
        fixed = sorted(key for key in before.keys() | after.keys() if key not in RESUMABLE_KEYS and before.get(key) != after.get(key))
        if fixed:
            raise ConfigError(
                f"--resume can only change {', '.join(RESUMABLE_KEYS)}; changing {', '.join(fixed)} would change the "
                "model or the env: start a new run instead"
            )
    model, buffer, steps = run.resume_point()
    if steps >= config.total_timesteps:
        raise DiffRLError(
            f"run {str(run.path)!r} already reached {steps} of total_timesteps={config.total_timesteps}; "
            f"to train longer: diffrl train --resume {run.path} --set total_timesteps=N"
        )
    return ResumePlan(run, config, saved, model, buffer, steps)


# -- signals -----------------------------------------------------------------------------------


class StopSignals:
    """Turn SIGINT / SIGTERM into a stop request that the training loop checks at each step.

    The first signal sets :attr:`signum`, so that ``learn()`` returns after the current step
    and a checkpoint can be written; a second one raises :class:`KeyboardInterrupt` at once.
    Used as a context manager; the previous handlers are restored on exit.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def __enter__(self) -> StopSignals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


# -- learning curves ---------------------------------------------------------------------------


def find_runs(paths: Sequence[str | os.PathLike[str]]) -> list[RunDir]:
    """Run folders named directly, or the run folders directly inside the given folders."""
    found: list[RunDir] = []
    for path in map(Path, paths):
        if (path / STATUS_FILE).exists():
            found.append(open_run(path))
            continue
        if not path.is_dir():
            raise DiffRLError(f"{str(path)!r} " + ("does not exist" if not path.exists() else "is not a run folder"))
        children = sorted(child for child in path.iterdir() if (child / STATUS_FILE).exists())
        if not children:
            raise DiffRLError(f"{str(path)!r} is not a run folder and holds none (a run folder has a {STATUS_FILE})")
        found.extend(RunDir(child) for child in children)
    return found


def read_curve(run: RunDir, metric: str = "eval") -> tuple[Any, Any, str]:
    """``(timesteps, returns, metric)`` of a run: evaluation means, or training episode returns.

    ``metric="eval"`` falls back to ``"train"`` when the run has no evaluation.
    """
    import numpy as np

    if metric == "eval" and run.evaluations_file.exists():
        with np.load(run.evaluations_file) as data:
            if len(data["timesteps"]):
                return data["timesteps"].astype(float), np.nanmean(data["results"], axis=1), "eval"
    xs, ys = [], []
    progress = run.logs / "progress.csv"
    if progress.exists():
        import csv

        with progress.open(newline="") as file:
            for row in csv.DictReader(file):
                x, y = row.get("time/total_timesteps"), row.get("rollout/ep_rew_mean")
                if x and y:
                    xs.append(float(x))
                    ys.append(float(y))
    if not xs:
        raise DiffRLError(f"run {str(run.path)!r} has no evaluations and no logged episode returns yet")
    order = np.argsort(xs, kind="stable")
    return np.asarray(xs)[order], np.asarray(ys)[order], "train"

"""Run folders: layout, atomic writes, the resolved config, status, checkpoints, resuming.

Everything here is plain files and the standard library (no torch, no stable-baselines3),
so the ``diffrl`` commands stay thin and the layout can be read by other tools.

A run folder (``runs/<config-stem>-<timestamp>`` by default)::

    config.yaml        the resolved config (every default filled in) + a ``versions`` section
    status.json        created | running | interrupted | finished | failed, num_timesteps, checkpoint, ...
    model.zip          the final model (only once the run finished)
    checkpoints/       model_<steps>.zip (+ replay_buffer_<steps>.safetensors for the latest one)
    logs/              progress.csv and TensorBoard events (every logged value)
    evaluations.npz    periodic evaluations: timesteps, results (n_evals x n_episodes), ep_lengths
    results.json       the final evaluation (mean / std return)

Every file is written to a temporary name next to it, ``.tmp-<pid>-<stem>-<random><suffix>``,
and moved into place (``os.replace``); the folder itself is written as a hidden sibling,
``.staging-<pid>-<name>-<random>/``, and renamed into place once its config and status are
written. So a config error leaves nothing behind, and an interrupted run always has a status
that points to a complete checkpoint. The writer's pid tells what a killed process (SIGKILL,
power loss) left from what a live one is still writing: such leftovers are hidden (never taken
for a run or a checkpoint) and removed by the next writer (:func:`atomic_path` for its own
target, :func:`create_run_dir` in its parent folder, :func:`plan_resume` in the run folder).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import importlib.metadata
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffrl_core.algo_kwargs import RESUMABLE_ALGO_KWARGS
from diffrl_core.config import Config, apply_overrides, parse_config, read_yaml
from diffrl_core.errors import ConfigError, DiffRLError
from diffrl_core.strict_yaml import safe_dump

CONFIG_FILE = "config.yaml"
STATUS_FILE = "status.json"
MODEL_FILE = "model.zip"
RESULTS_FILE = "results.json"
EVALUATIONS_FILE = "evaluations.npz"
CHECKPOINTS_DIR = "checkpoints"
LOGS_DIR = "logs"
#: replay buffers are arrays in safetensors (diffrl_core.buffer_file); ``.pkl``: stable-baselines3's pickle, from
#: runs made before diffrl 0.2, loaded only when the user trusts them (``--trust-pickle``)
REPLAY_BUFFER_SUFFIX = ".safetensors"

#: Config keys that ``--resume`` may change: they do not change the model or the env.
RESUMABLE_KEYS = ("total_timesteps", "threads", "eval", "checkpoint", "logging")


# -- atomic files ------------------------------------------------------------------------------

_UMASK = os.umask(0o022)
os.umask(_UMASK)


#: Prefixes of the temporary files of :func:`atomic_path` and the staging folders of :func:`create_run_dir`;
#: the writer's pid and ``-`` follow.
TMP_PREFIX = ".tmp-"
STAGING_PREFIX = ".staging-"

#: Leftovers named without a pid (by diffrl before pids were part of the names) are removed once they were
#: not modified for this long (seconds): a live writer keeps its file's modification time recent.
STALE_AFTER = 3600.0

# tempfile's random part: 8 of [a-z0-9_]
_RANDOM = r"[a-z0-9_]{8}"
# stems and names are shortened in temporary names, which must stay within the file system's 255 bytes
_NAME_CHARS = 64


def _stale(path: Path, pid: int | None) -> bool:
    """Whether ``path`` is a leftover of a process that is gone (``pid``: the writer's, from the name)."""
    if pid is not None:
        return pid != os.getpid() and not pid_alive(pid)
    try:
        return time.time() - path.lstat().st_mtime > STALE_AFTER
    except FileNotFoundError:
        return False


def _entries(folder: str | os.PathLike[str]) -> list[os.DirEntry[str]]:
    """The entries of ``folder``; none when it does not exist (yet) or is not a folder."""
    try:
        return list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _remove_stale_files(folder: Path, pattern: re.Pattern[str]) -> list[Path]:
    """Remove the stale temporary files in ``folder``.

    :param pattern: the names of the temporary files to consider; its group ``pid`` (when it matched) is the writer's
    :return: the files removed
    """
    removed: list[Path] = []
    for entry in _entries(folder):
        match = pattern.fullmatch(entry.name) if entry.name.startswith(TMP_PREFIX) else None
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        path = Path(entry.path)
        if _stale(path, int(match["pid"]) if match["pid"] else None):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            removed.append(path)
    return removed


# any temporary file, with the pid in its name or (an older name) without
_ANY_TMP = re.compile(rf"{re.escape(TMP_PREFIX)}(?:(?P<pid>\d+)-)?.+")


def _remove_stale_temporaries(target: Path) -> list[Path]:
    """Remove what killed writers of ``target`` left next to it (so a rewritten file, e.g. a plot, cleans up)."""
    stem, suffix = target.stem, re.escape(target.suffix)
    pattern = re.compile(
        rf"{re.escape(TMP_PREFIX)}(?:(?P<pid>\d+)-{re.escape(stem[:_NAME_CHARS])}|{re.escape(stem)})-{_RANDOM}{suffix}"
    )
    return _remove_stale_files(target.parent, pattern)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``target`` (same suffix); move it into place on success.

    The temporary name holds this process's pid; the leftovers of killed writers of ``target``
    are removed first.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(target)
    fd, tmp = tempfile.mkstemp(
        prefix=f"{TMP_PREFIX}{os.getpid()}-{target.stem[:_NAME_CHARS]}-", suffix=target.suffix, dir=target.parent
    )
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


@functools.cache  # installed versions do not change while a process runs, and each lookup reads metadata files
def package_version(distribution: str) -> str | None:
    """The installed version of ``distribution`` (None when it is not installed)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect_versions(components: Mapping[str, Any], env_provenance: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``versions`` section of a run's config.

    :param components: kind -> name -> provenance of each component (``model.diffrl_components["provenance"]``)
    :param env_provenance: the provenance of the env id, when a plugin registered it
    """
    plugins: dict[str, dict[str, Any]] = {}
    entries = [
        (kind, name, prov)
        for kind, named in components.items()
        if isinstance(named, Mapping)
        for name, prov in named.items()
    ]
    if env_provenance:
        entries.append(("envs", "env", env_provenance))
    for kind, name, prov in entries:
        if not isinstance(prov, Mapping):
            continue
        plugin = plugins.setdefault(
            prov.get("plugin") or "?",
            {
                "distribution": "diffrl-core" if prov.get("builtin") else prov.get("distribution"),
                "version": package_version("diffrl-core") if prov.get("builtin") else prov.get("version"),
                "components": [],
            },
        )
        plugin["components"].append(name if kind != "envs" else "env")
    for plugin in plugins.values():
        plugin["components"] = sorted(set(plugin["components"]))
    versions: dict[str, Any] = {
        "diffrl-core": package_version("diffrl-core"),
        "stable-baselines3": package_version("stable-baselines3"),
        "gymnasium": package_version("gymnasium"),
        "torch": package_version("torch"),
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
    """A run's config as YAML that :func:`~diffrl_core.strict_yaml.safe_load` reads back the same."""
    return safe_dump(dict(data), sort_keys=False, default_flow_style=None)


# -- the run folder ----------------------------------------------------------------------------


def now() -> str:
    return _dt.datetime.now(_dt.UTC).astimezone().isoformat(timespec="seconds")


def default_run_dir(config_path: str | os.PathLike[str], root: str | os.PathLike[str] = "runs") -> Path:
    """``runs/<config-stem>-<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``, ... if taken)."""
    base = Path(root) / f"{Path(config_path).stem}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def check_new_run_dir(path: str | os.PathLike[str]) -> None:
    """A new run may go into ``path``: it does not exist, or is an empty folder.

    :raises DiffRLError: when ``path`` is taken
    """
    path = Path(path)
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        raise _taken(path)


def _taken(path: Path) -> DiffRLError:
    if (path / STATUS_FILE).exists():
        what = "a run folder"
    else:
        what = "a file" if path.is_file() else "a folder that is not empty"
    return DiffRLError(
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
        return self.checkpoints / f"replay_buffer_{num_timesteps}{REPLAY_BUFFER_SUFFIX}"

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

    def inside(self, relative: str) -> Path:
        """A path that ``status.json`` names, which must lie inside the run folder (a shared folder may be crafted).

        :raises DiffRLError: when it points elsewhere
        """
        path = self.path / str(relative)
        if not path.resolve().is_relative_to(self.path.resolve()):
            raise DiffRLError(f"{self.status_file} names {relative!r}, which is outside the run folder: refused")
        return path

    def relative(self, path: Path | None) -> str | None:
        return None if path is None else path.relative_to(self.path).as_posix()

    # config

    def read_config(self) -> Config:
        """The run's resolved config (``config.yaml``), validated."""
        return parse_config(read_yaml(self.config_file), source=f"config {self.config_file}")

    def resume_point(self) -> tuple[Path, Path | None, int]:
        """The checkpoint to continue from: ``(model, replay buffer or None, num_timesteps)``."""
        status = self.read_status()
        checkpoint = status.get("checkpoint")
        if checkpoint and self.inside(checkpoint).exists():
            buffer = status.get("replay_buffer")
            buffer_path = self.inside(buffer) if buffer and self.inside(buffer).exists() else None
            steps = int(status.get("checkpoint_timesteps", status.get("num_timesteps", 0)))
            return self.path / checkpoint, buffer_path, steps
        # a run killed before it could write its status: the newest complete checkpoint
        checkpoints = self.model_checkpoints()
        if not checkpoints:
            raise DiffRLError(
                f"run {str(self.path)!r} has no checkpoint yet (it stopped before the first one, or is still before it)"
            )
        steps, model = checkpoints[-1]
        for buffer_path in (self.replay_buffer_file(steps), self.replay_buffer_file(steps).with_suffix(".pkl")):
            if buffer_path.exists():
                return model, buffer_path, steps
        return model, None, steps


def open_run(path: str | os.PathLike[str]) -> RunDir:
    """An existing run folder.

    :raises DiffRLError: when ``path`` is not one
    """
    path = Path(path)
    if not path.is_dir():
        raise DiffRLError(
            f"run folder {str(path)!r} does not exist" if not path.exists() else f"{str(path)!r} is not a folder"
        )
    run = RunDir(path)
    if not run.status_file.exists() or not run.config_file.exists():
        raise DiffRLError(f"{str(path)!r} is not a diffrl run folder (it has no {STATUS_FILE} and {CONFIG_FILE})")
    return run


def create_run_dir(target: str | os.PathLike[str], config: Mapping[str, Any], status: Mapping[str, Any]) -> RunDir:
    """Create a run folder holding ``config.yaml`` and ``status.json``, all at once.

    The files are written into a hidden sibling folder (``.staging-<pid>-<name>-<random>``) which
    is then renamed to ``target``: an empty folder is replaced, anything else at ``target`` is left
    alone. The staging folders that killed processes left in the same parent folder are removed first.

    :param target: the run folder to create; it must not exist, or be an empty folder
    :param config: the resolved config, written to ``config.yaml``
    :param status: the first ``status.json`` (``started_at`` and ``updated_at`` are added)
    :raises DiffRLError: when ``target`` is taken (see :func:`check_new_run_dir`)
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_staging(target.parent)
    staging = Path(
        tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-{target.name[:_NAME_CHARS]}-", dir=target.parent)
    )
    os.chmod(staging, 0o777 & ~_UMASK)
    try:
        (staging / CONFIG_FILE).write_text(dump_yaml(config))
        first_status = {**status, "started_at": now(), "updated_at": now()}
        (staging / STATUS_FILE).write_text(json.dumps(first_status, indent=2) + "\n")
        (staging / CHECKPOINTS_DIR).mkdir()
        (staging / LOGS_DIR).mkdir()
        try:
            os.rename(staging, target)  # replaces an empty folder, fails on anything else
        except OSError:
            if target.exists():
                raise _taken(target) from None
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return RunDir(target)


def pid_alive(pid: Any) -> bool:
    """Whether ``pid`` is another process that is running on this machine (this process: False)."""
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- leftovers of killed processes -------------------------------------------------------------

_STAGING = re.compile(rf"{re.escape(STAGING_PREFIX)}(?P<pid>\d+)-.+-{_RANDOM}")
# the staging folders of diffrl before pids were part of the names: .<name>-<random>
_OLDER_STAGING = re.compile(rf"\.(?!{re.escape(TMP_PREFIX[1:])}|{re.escape(STAGING_PREFIX[1:])}).+-{_RANDOM}")
_STAGED = {CONFIG_FILE, STATUS_FILE, CHECKPOINTS_DIR, LOGS_DIR}


def _holds_only_staged_files(folder: Path) -> bool:
    """Whether ``folder`` holds nothing but what :func:`create_run_dir` stages (so removing it loses nothing else)."""
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name not in _STAGED:
                    return False
                if entry.name in (CHECKPOINTS_DIR, LOGS_DIR):
                    if not entry.is_dir(follow_symlinks=False):
                        return False
                    with os.scandir(entry.path) as inside:
                        if any(inside):
                            return False
    except OSError:
        return False
    return True


def clean_staging(parent: str | os.PathLike[str]) -> list[Path]:
    """Remove the staging folders that killed processes left in ``parent`` (a folder of run folders).

    A staging folder is removed when the process named in it is gone (or, for a name without a pid,
    when it was not modified for :data:`STALE_AFTER` seconds), and only if it holds nothing but the
    files :func:`create_run_dir` stages.

    :param parent: the folder holding the run folders
    :return: the folders removed
    """
    removed: list[Path] = []
    for entry in _entries(parent):
        if not entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue
        match = _STAGING.fullmatch(entry.name)
        if match is None and not _OLDER_STAGING.fullmatch(entry.name):
            continue
        path = Path(entry.path)
        if _stale(path, int(match["pid"]) if match else None) and _holds_only_staged_files(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def clean_leftovers(run: RunDir) -> list[Path]:
    """Remove the temporary files that killed processes left in a run folder, its checkpoints/ and logs/.

    A file is removed when the process named in it is gone (or, for a name without a pid, when it was
    not modified for :data:`STALE_AFTER` seconds): the files of a process still writing stay.

    :param run: the run folder
    :return: the files removed
    """
    removed: list[Path] = []
    for folder in (run.path, run.checkpoints, run.logs):
        removed += _remove_stale_files(folder, _ANY_TMP)
    return removed


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

    The temporary files that a killed process left in the run folder are removed (:func:`clean_leftovers`).

    :raises DiffRLError: when the run is being trained, has no checkpoint or is done; a
        :class:`ConfigError` when an override is invalid or would change the model or the env
    """
    run = open_run(run_dir)
    status = run.read_status()
    if status.get("status") in ("running", "created") and pid_alive(status.get("pid")):
        raise DiffRLError(f"run {str(run.path)!r} is being trained right now (pid {status['pid']}); stop it first")
    clean_leftovers(run)  # e.g. the half-written checkpoint of a run that was killed
    saved = run.read_config()
    config = saved
    if overrides:
        data = apply_overrides(resolved_config(saved, saved.versions), overrides)
        config = parse_config(data, source=f"config for resumed run {run.path}")
        fixed = _fixed_changes(resolved_config(saved), resolved_config(config))
        if fixed:
            raise ConfigError(
                f"--resume can only change {', '.join(RESUMABLE_KEYS)} and algo_kwargs."
                f"{{{','.join(RESUMABLE_ALGO_KWARGS)}}}; changing {', '.join(fixed)} would change the model or the "
                "env: start a new run instead"
            )
    model, buffer, steps = run.resume_point()
    if steps >= config.total_timesteps:
        raise DiffRLError(
            f"run {str(run.path)!r} already reached {steps} of total_timesteps={config.total_timesteps}; "
            f"to train longer: diffrl train --resume {run.path} --set total_timesteps=N"
        )
    return ResumePlan(run, config, saved, model, buffer, steps)


def _fixed_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """The keys changed between two resolved configs that ``--resume`` cannot change."""
    fixed = []
    for key in sorted(before.keys() | after.keys()):
        if key in RESUMABLE_KEYS or before.get(key) == after.get(key):
            continue
        if key == "algo_kwargs":  # how the model is trained may change (a lower learning rate after a divergence)
            old, new = before.get(key) or {}, after.get(key) or {}
            fixed += [f"algo_kwargs.{name}" for name in sorted(old.keys() | new.keys())
                      if name not in RESUMABLE_ALGO_KWARGS and old.get(name) != new.get(name)]
        else:
            fixed.append(key)
    return fixed


# -- finding runs --------------------------------------------------------------------------------


def find_runs(paths: Sequence[str | os.PathLike[str]]) -> list[RunDir]:
    """Run folders named directly, or the run folders inside the given folders, at any depth.

    A folder with a ``status.json`` is a run folder, and is not searched further; other folders are
    searched (e.g. a sweep's ``SWEEP/runs/<run>/``), in the order of their names. Hidden entries are
    skipped: they are not runs (e.g. the staging folder of a run being created, or one a killed process
    left). A link to a folder is taken when it is a run folder, but not searched (no cycles).

    :param paths: run folders, or folders holding run folders
    :return: the run folders, those of each path in turn
    :raises DiffRLError: when a path does not exist, or is no run folder and holds none
    """
    found: list[RunDir] = []
    for path in map(Path, paths):
        if (path / STATUS_FILE).exists():
            found.append(open_run(path))
            continue
        if not path.is_dir():
            raise DiffRLError(f"{str(path)!r} " + ("does not exist" if not path.exists() else "is not a run folder"))
        inside = _runs_inside(path)
        if not inside:
            raise DiffRLError(f"{str(path)!r} is not a run folder and holds none (a run folder has a {STATUS_FILE})")
        found.extend(inside)
    return found


def _runs_inside(folder: Path) -> list[RunDir]:
    """The run folders inside ``folder`` (not a run folder itself), at any depth, sorted by name at each level."""
    try:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except PermissionError:
        raise DiffRLError(f"cannot search {str(folder)!r} for run folders: permission denied") from None
    found: list[RunDir] = []
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        child = Path(entry.path)
        if (child / STATUS_FILE).exists():
            found.append(RunDir(child))
        elif not entry.is_symlink():
            found += _runs_inside(child)
    return found


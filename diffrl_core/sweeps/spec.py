"""The sweep file: which configs, which grid of overrides or which search, which seeds.

A sweep file is YAML, read with the same strict safe loader as configs::

    config: pendulum_sac.yaml            # or a list of config files; relative to the sweep file
    set: {total_timesteps: 20000}        # overrides of every run (optional)
    grid:                                # every combination (optional)
      algo_kwargs.learning_rate: [0.001, 0.0003]
      policy.net_arch: [[64, 64], [256, 256]]
    seeds: 5                             # 0..4, or a list of seeds

or, instead of ``grid``, an Optuna search (:mod:`diffrl_core.sweeps.search`)::

    search:
      n_trials: 30
      params:
        algo_kwargs.learning_rate: {low: 1.0e-5, high: 1.0e-2, log: true}
        algo_kwargs.batch_size: {choices: [64, 128, 256]}

Every run of the sweep is checked (its config validated, its components and env looked up)
before the first one starts, so a typo in the grid exits 2 without training anything.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from diffrl_core.config import MAX_ERRORS_LISTED, MAX_SEED, apply_overrides, describe_error, parse_config
from diffrl_core.errors import ConfigError
from diffrl_core.strict_yaml import read_yaml, shorten

#: the most runs one sweep may expand to (a typo such as ``seeds: 100000`` must not fill the disk)
MAX_RUNS = 10_000
#: run names are folder names: kept well within the file system's 255 bytes
MAX_NAME = 120

Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class SearchParam(_Strict):
    """One searched config key: a range (``low``/``high``, optionally ``log`` or ``step``) or ``choices``."""

    low: float | None = Field(None, description="the smallest value (with `high`)")
    high: float | None = Field(None, description="the largest value (with `low`)")
    log: bool = Field(False, description="sample on a log scale (`low` > 0)")
    step: float | None = Field(None, description="sample a multiple of `step` above `low`")
    int: bool = Field(False, description="sample integers (e.g. batch_size, n_steps)")
    choices: list[Any] | None = Field(None, description="sample one of these values instead of a range")

    @model_validator(mode="after")
    def _one_kind(self) -> SearchParam:
        ranged = self.low is not None or self.high is not None
        if self.choices is not None:
            if ranged or self.log or self.step is not None or self.int:
                raise ValueError("`choices` goes alone: without low, high, log, step or int")
            if not self.choices:
                raise ValueError("`choices` must list at least one value")
            encoded = [json.dumps(choice, sort_keys=True) for choice in self.choices]
            if len(set(encoded)) != len(encoded):
                raise ValueError("`choices` lists a value twice")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give `low` and `high` (a range), or `choices`")
        if self.low > self.high:
            raise ValueError(f"`low` ({self.low}) is above `high` ({self.high})")
        if self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("`log: true` needs `low` > 0 and no `step`")
        if self.int and (self.low != math.floor(self.low) or self.high != math.floor(self.high)):
            raise ValueError("`int: true` needs whole numbers as `low` and `high`")
        if self.step is not None and (self.step <= 0 or (self.int and self.step != math.floor(self.step))):
            raise ValueError("`step` must be positive" + (", and whole with `int: true`" if self.int else ""))
        return self


class SearchSpec(_Strict):
    """An Optuna study over config keys: TPE, median pruning on evaluation returns, several seeds per trial."""

    params: dict[str, SearchParam] = Field(description="the searched config keys (dotted paths) and their ranges")
    n_trials: int = Field(ge=1, le=MAX_RUNS, description="trials of the study in all (across every process)")
    direction: Literal["maximize", "minimize"] = Field("maximize", description="of the final evaluation return")
    sampler: Literal["tpe", "random"] = Field("tpe", description="Optuna's TPESampler or RandomSampler")
    pruner: Literal["median", "none"] = Field("median", description="Optuna's MedianPruner on evaluation returns")
    startup_trials: int = Field(5, ge=0, description="trials sampled at random / never pruned before TPE and pruning")
    study_name: str | None = Field(None, description="the study's name in the storage (default: the sweep file's stem)")

    @model_validator(mode="after")
    def _some_params(self) -> SearchSpec:
        if not self.params:
            raise ValueError("`params` must name at least one config key")
        return self


class SweepSpec(_Strict):
    """A sweep file (see the module docstring)."""

    config: str | list[str] = Field(description="the config file(s), relative to the sweep file")
    set: dict[str, Any] = Field(default_factory=dict, description="overrides of every run, `key.path: value`")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="config keys and the values to combine")
    seeds: Annotated[int, Field(ge=1, le=MAX_RUNS)] | list[Seed] = Field(
        1, description="a number of seeds (0, 1, ...) or a list of seeds; every point of the grid runs each"
    )
    search: SearchSpec | None = Field(None, description="an Optuna search instead of a grid")

    @model_validator(mode="after")
    def _coherent(self) -> SweepSpec:
        if self.search is not None and self.grid:
            raise ValueError("give `grid` or `search`, not both")
        if isinstance(self.config, list) and not self.config:
            raise ValueError("`config` must name at least one config file")
        if isinstance(self.seeds, list) and (not self.seeds or len(set(self.seeds)) != len(self.seeds)):
            raise ValueError("`seeds` must list distinct seeds")
        for key, values in self.grid.items():
            if not values:
                raise ValueError(f"grid key {key!r} lists no value")
        return self

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    @property
    def config_files(self) -> list[str]:
        return [self.config] if isinstance(self.config, str) else list(self.config)


@dataclass(frozen=True)
class Trial:
    """One run of a sweep: a config file, overrides (the grid point or search sample) and a seed."""

    name: str
    base: str  # the config file, as the sweep file names it
    point: dict[str, Any]  # the grid point (or sampled values), dotted keys
    seed: int
    config: dict[str, Any] = field(repr=False)  # the complete, validated config, as plain data

    def config_text(self) -> str:
        from diffrl_core.runs import dump_yaml

        return dump_yaml(self.config)


@dataclass(frozen=True)
class Sweep:
    """A sweep file, read and checked: its spec and where relative paths start."""

    path: Path
    spec: SweepSpec
    bases: dict[str, dict[str, Any]]  # config file (as named) -> its raw mapping, ``set`` applied

    @property
    def name(self) -> str:
        return self.path.stem

    def trial(self, base: str, point: Mapping[str, Any], seed: int, name: str | None = None) -> Trial:
        """The run of ``base`` with ``point``'s keys and ``seed`` set, validated.

        :raises ConfigError: naming the sweep file, the config file and the point when the result is invalid
        """
        overrides = [_override(key, value) for key, value in point.items()] + [f"seed={seed}"]
        where = f"{base} in sweep {self.path}" + (f" at {describe_point(point)}" if point else "")
        try:
            data = apply_overrides(self.bases[base], overrides)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        parse_config(data, source=f"config {where}")
        return Trial(name or run_name(Path(base).stem, point, seed), base, dict(point), seed, data)

    def grid_trials(self) -> list[Trial]:
        """Every config x grid point x seed, in that order (seeds innermost)."""
        keys = list(self.spec.grid)
        points = [dict(zip(keys, values, strict=True)) for values in itertools.product(*self.spec.grid.values())]
        total = len(self.bases) * len(points) * len(self.spec.seed_list)
        if total > MAX_RUNS:
            raise ConfigError(f"sweep {self.path} expands to {total} runs; at most {MAX_RUNS} (fewer seeds or values)")
        seeds = self.spec.seed_list
        trials = [self.trial(base, point, seed) for base in self.bases for point in points for seed in seeds]
        seen: dict[str, Trial] = {}
        for trial in trials:
            if trial.name in seen:  # e.g. two config files of the same name in different folders
                raise ConfigError(
                    f"sweep {self.path}: two runs would be named {trial.name!r} ({seen[trial.name].base} and "
                    f"{trial.base}); give the config files different names"
                )
            seen[trial.name] = trial
        return trials


def load_sweep(path: str | Path) -> Sweep:
    """Read a sweep file and the config files it names (``set`` applied), checking their shape.

    :raises ConfigError: naming the file and key path of every problem, and what is valid
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file {str(path)!r} " + ("is not a file" if path.exists() else "does not exist"))
    raw = read_yaml(path)
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as exc:
        lines = [describe_error(error, SweepSpec) for error in exc.errors()[:MAX_ERRORS_LISTED]]
        raise ConfigError(f"invalid sweep file {path}:\n" + "\n".join(lines)) from None
    bases: dict[str, dict[str, Any]] = {}
    for name in spec.config_files:
        file = path.parent / name
        if not file.is_file():
            raise ConfigError(f"sweep {path}: config file {name!r} ({file}) " +
                              ("is not a file" if file.exists() else "does not exist"))
        data = read_yaml(file)
        try:
            bases[name] = apply_overrides(data, [_override(k, v) for k, v in spec.set.items()])
        except ConfigError as exc:
            raise ConfigError(f"sweep {path}, `set` on {name}: {exc}") from None
    return Sweep(path, spec, bases)


def _override(key: str, value: Any) -> str:
    """A ``--set`` argument: JSON is YAML, so the value is read back exactly as the sweep file gave it."""
    return f"{key}={json.dumps(value)}"


def describe_point(point: Mapping[str, Any]) -> str:
    """``key=value, ...`` of a grid point, for tables and messages."""
    return ", ".join(f"{key}={shorten(value)}" for key, value in point.items())


_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]+")


def run_name(stem: str, point: Mapping[str, Any], seed: int) -> str:
    """A run folder's name: the config's stem, the grid point's values (last key segment) and the seed.

    ``pendulum_sac-learning_rate=0.001-seed0``. Names are stable across invocations (a rerun finds its
    runs by name); one too long for a folder keeps a readable start and a hash of the whole.
    """
    short = [str(key).rsplit(".", 1)[-1] for key in point]
    labels = [k if short.count(k) == 1 else str(key) for k, key in zip(short, point, strict=True)]
    parts = [stem, *(f"{label}={json.dumps(value, separators=(',', ':'))}" for label, value in
                     zip(labels, point.values(), strict=True)), f"seed{seed}"]
    name = _UNSAFE.sub("_", "-".join(parts)).strip("._") or "run"
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:10]
        name = f"{name[:MAX_NAME - 11 - len(str(seed)) - 5]}-{digest}-seed{seed}"
    return name





__all__ = ["MAX_RUNS", "SearchParam", "SearchSpec", "Sweep", "SweepSpec", "Trial", "describe_point", "load_sweep",
           "run_name"]


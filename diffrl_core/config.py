"""The experiment config: YAML (safe loader only) or a mapping in, validated settings out.

Errors name the key path in the file (``policy.losses[1].weight``), what was expected and
what was given. No config string is ever evaluated as code: component names go through
the registries, activation functions and action noise through fixed tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from diffrl_core.errors import ConfigError

ALGOS = ("sac", "td3")
DEFAULT_HEADS = {"sac": "squashed_gaussian", "td3": "deterministic"}
DEFAULT_LOSSES = {"sac": "sac_entropy", "td3": "q_value"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LossSpec(_Strict):
    """One actor loss term: ``{name: sac_entropy, weight: 1.0, kwargs: {}}``."""

    name: str
    weight: float = 1.0
    kwargs: dict[str, Any] = Field(default_factory=dict)


class ActionNoiseSpec(_Strict):
    """Exploration noise added by stable-baselines3 to the normalized action (TD3's default)."""

    type: Literal["normal", "ornstein_uhlenbeck"] = "normal"
    sigma: float = Field(0.1, ge=0.0)


class PolicyConfig(_Strict):
    """The ``policy`` section: the actor's components by name, and the networks' sizes."""

    net_arch: list[int] | dict[Literal["pi", "qf"], list[int]] = Field(default_factory=lambda: [256, 256])
    activation_fn: Literal["relu", "tanh", "elu", "leaky_relu", "gelu", "silu"] = "relu"
    head: str | None = None
    head_kwargs: dict[str, Any] = Field(default_factory=dict)
    losses: list[LossSpec] | None = Field(None, min_length=1)
    postprocess: str = "unscale"
    postprocess_kwargs: dict[str, Any] = Field(default_factory=dict)
    n_critics: int = Field(2, ge=1)


class Config(_Strict):
    """A whole experiment (see the README's config reference)."""

    env: str
    env_kwargs: dict[str, Any] = Field(default_factory=dict)
    n_envs: int = Field(1, ge=1)
    vec_env: Literal["dummy", "subproc"] = "dummy"
    algo: Literal["sac", "td3"] = "sac"
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    algo_kwargs: dict[str, Any] = Field(default_factory=dict)
    action_noise: ActionNoiseSpec | None = None
    total_timesteps: int = Field(20_000, ge=1)
    seed: int | None = 0

    @property
    def head(self) -> str:
        return self.policy.head or DEFAULT_HEADS[self.algo]

    @property
    def losses(self) -> list[LossSpec]:
        return list(self.policy.losses or [LossSpec(name=DEFAULT_LOSSES[self.algo])])


def read_yaml(path: str | PathLike[str]) -> dict[str, Any]:
    """Read a YAML mapping with the safe loader."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys (env, algo, policy, ...), got {type(data).__name__}")
    return data


def parse_config(config: Mapping[str, Any] | str | PathLike[str] | Config) -> Config:
    """Validate a config mapping (or read and validate a YAML file).

    :raises ConfigError: naming each bad key path, what was expected and what was given
    """
    if isinstance(config, Config):
        return config
    source = "config"
    if isinstance(config, (str, PathLike)):
        source = str(config)
        config = read_yaml(config)
    try:
        return Config.model_validate(dict(config))
    except ValidationError as exc:
        raise ConfigError(f"invalid {source}:\n" + "\n".join(_describe(error) for error in exc.errors())) from None


def key_path(loc: tuple[int | str, ...]) -> str:
    """``("policy", "losses", 1, "weight")`` -> ``"policy.losses[1].weight"``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _describe(error: Any) -> str:
    # pydantic adds the union member or literal it tried to the location; keep the key path
    loc = tuple(part for part in error["loc"] if not (isinstance(part, str) and ("[" in part or part.startswith("function"))))
    if error["type"] == "extra_forbidden":
        return f"  {key_path(loc)}: unknown key"
    if error["type"] == "missing":
        return f"  {key_path(loc)}: required key is missing"
    given = error.get("input")
    return f"  {key_path(loc)}: {error['msg']} (got {given!r})"

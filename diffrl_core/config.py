"""The experiment config: YAML (safe loader only) or a mapping in, validated settings out.

Errors name the key path in the file (``policy.losses[1].weight``), what was expected and
what was given. No config string is ever evaluated as code: component names go through
the registries, activation functions and action noise through fixed tables.
"""

from __future__ import annotations

import difflib
import re
import typing
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


class EvalConfig(_Strict):
    """The ``eval`` section: periodic evaluation during ``diffrl train`` (on a separate env)."""

    freq: int = Field(5_000, ge=0)
    n_episodes: int = Field(10, ge=1)
    deterministic: bool = True
    final: bool = True


class CheckpointConfig(_Strict):
    """The ``checkpoint`` section: periodic checkpoints in ``RUN_DIR/checkpoints``."""

    freq: int = Field(10_000, ge=0)
    save_replay_buffer: bool = True
    keep: int | None = Field(None, ge=1)


class LoggingConfig(_Strict):
    """The ``logging`` section: what ``diffrl train`` logs to ``RUN_DIR/logs`` and the terminal."""

    log_interval: int = Field(4, ge=1)
    tensorboard: bool = True
    csv: bool = True
    print_freq: int | None = Field(None, ge=1)


class Config(_Strict):
    """A whole experiment (see ``docs/cli.md`` for every key)."""

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
    eval: EvalConfig = Field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    #: written by ``diffrl train`` into a run's ``config.yaml`` (diffrl-core and plugin versions);
    #: informational, ignored on input so that a run's config can be trained again
    versions: dict[str, Any] | None = None

    @property
    def head(self) -> str:
        return self.policy.head or DEFAULT_HEADS[self.algo]

    @property
    def losses(self) -> list[LossSpec]:
        return list(self.policy.losses or [LossSpec(name=DEFAULT_LOSSES[self.algo])])


class SafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader (no tags that build objects), reading ``1e-3`` as a float.

    YAML 1.1 (PyYAML) needs a dot in a float (``1.0e-3``) and reads ``1e-3`` as a string,
    which would reach stable-baselines3 as ``learning_rate: "1e-3"``.
    """


SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def safe_load(text: str) -> Any:
    """``yaml.load`` with :class:`SafeLoader`: plain data only, nothing is ever constructed or evaluated."""
    return yaml.load(text, Loader=SafeLoader)  # noqa: S506 - a subclass of yaml.SafeLoader


def read_yaml(path: str | PathLike[str]) -> dict[str, Any]:
    """Read a YAML mapping with the safe loader."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror or exc}") from None
    try:
        data = safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {str(exc).replace('<unicode string>', str(path))}") from None
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
        known = _known_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else (f"; valid: {', '.join(known)}" if known else "")
        return f"  {key_path(loc)}: unknown key{hint}"
    if error["type"] == "missing":
        return f"  {key_path(loc)}: required key is missing"
    given = error.get("input")
    return f"  {key_path(loc)}: {error['msg']} (got {given!r})"


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys a config section accepts, walking the schema along ``loc``."""
    model: Any = Config
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = next((t for t in _types(field.annotation) if isinstance(t, type) and issubclass(t, BaseModel)), None)
        if model is None:
            return []
    return sorted(getattr(model, "model_fields", {}))


def _types(annotation: Any) -> list[Any]:
    args = typing.get_args(annotation)
    return [t for arg in args for t in _types(arg)] if args else [annotation]

"""The experiment config: YAML (safe loader only) or a mapping in, validated settings out.

Errors name the key path in the file (``policy.losses[1].weight``), what was expected and
what was given. No config string is ever evaluated as code: component names go through
the registries, activation functions and action noise through fixed tables.
:func:`load_config` reads a config file and applies ``--set KEY=VALUE`` overrides.
"""

from __future__ import annotations

import copy
import difflib
import re
import typing
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator

from diffrl_core.algo_kwargs import algo_kwargs_errors
from diffrl_core.errors import ConfigError
from diffrl_core.strict_yaml import SafeLoader as SafeLoader
from diffrl_core.strict_yaml import read_yaml, safe_load, shorten

ALGOS = ("sac", "td3", "ppo", "a2c")
#: the on-policy algorithms (rollout buffer, advantages; no replay buffer or critic Q-values)
ON_POLICY_ALGOS = ("ppo", "a2c")

# The components a config gets when it names none: the only place these defaults are written.
#: algo -> the actor head of stable-baselines3's own actor for it (continuous actions)
_ON_POLICY_HEAD = "diag_gaussian"  # stable-baselines3's DiagGaussianDistribution, in diffrl-plugin-gaussian
DEFAULT_HEADS = {"sac": "squashed_gaussian", "td3": "deterministic", "ppo": _ON_POLICY_HEAD, "a2c": _ON_POLICY_HEAD}
#: the head of stable-baselines3's PPO/A2C policy for each discrete action space (by gymnasium's class name)
DISCRETE_HEADS = {"Discrete": "categorical", "MultiDiscrete": "multi_categorical", "MultiBinary": "bernoulli"}
#: algo -> the loss term that is stable-baselines3's own actor loss for it
DEFAULT_LOSSES = {"sac": "sac_entropy", "td3": "q_value", "ppo": "ppo_clip", "a2c": "policy_gradient"}
#: the on-policy entropy term; stable-baselines3's ``ent_coef`` is its weight among the default terms
ENTROPY_LOSS = "entropy_bonus"
#: the post-processor that passes an action in ``[-1, 1]`` through (stable-baselines3's way)
DEFAULT_POSTPROCESSOR = "identity"
#: the post-processor of an unbounded head under PPO/A2C when the config names none: the raw action is
#: an env action clipped to the bounds, as stable-baselines3's on-policy algorithms do
ON_POLICY_UNBOUNDED_POSTPROCESSOR = "clip_to_bounds"


def default_head(algo: str, action_space: Any = None) -> str:
    """The head of stable-baselines3's own policy for ``algo`` (PPO/A2C: by the kind of discrete action space)."""
    if algo in ON_POLICY_ALGOS and type(action_space).__name__ in DISCRETE_HEADS:  # no gymnasium import needed
        return DISCRETE_HEADS[type(action_space).__name__]
    return DEFAULT_HEADS[algo]


def default_losses(algo: str, ent_coef: float = 0.0) -> list[tuple[str, float]]:
    """``(name, weight)`` of stable-baselines3's own actor loss for ``algo``.

    PPO and A2C: the policy loss and ``entropy_bonus`` weighted by ``ent_coef`` (their
    ``loss = policy_loss + ent_coef * entropy_loss``; the value loss stays the algorithm's).
    """
    if algo in ON_POLICY_ALGOS:
        return [(DEFAULT_LOSSES[algo], 1.0), (ENTROPY_LOSS, float(ent_coef))]
    return [(DEFAULT_LOSSES[algo], 1.0)]


class _Strict(BaseModel):
    # strict: YAML gives typed values, so `true` is no number and "1" no integer; numbers are finite
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


#: the largest hidden layer a config may ask for (a typo such as 2560000 would exhaust memory)
MAX_LAYER_SIZE = 65_536
#: seeds are unsigned 32-bit integers (numpy's and gymnasium's seeding)
MAX_SEED = 2**32 - 1
#: the most critics a config may ask for (REDQ-style ensembles use about 10)
MAX_CRITICS = 64
#: the most errors one message lists (each names its key path)
MAX_ERRORS_LISTED = 20
#: the most parallel envs a config may ask for (each is a process with `vec_env: subproc`)
MAX_ENVS = 1024
#: the most torch threads a config may ask for
MAX_THREADS = 1024

LayerSizes = list[Annotated[int, Field(ge=1, le=MAX_LAYER_SIZE)]]

# Names from the tables of diffrl_core.sb3.policies (written here too: reading a config imports no torch)
#: features extractors a config may name (``policy.features_extractor``)
FeaturesExtractorName = Literal["flatten", "nature_cnn", "combined"]
#: optimizers a config may name (``policy.optimizer``)
OptimizerName = Literal["adam", "adamw", "sgd", "rmsprop", "radam", "nadam"]


class LossSpec(_Strict):
    """One actor loss term: ``{name: sac_entropy, weight: 1.0, kwargs: {}}``."""

    name: str = Field(description="the loss term, by name (`diffrl list loss_terms`)")
    weight: float = Field(1.0, description="multiplies the term's loss in the sum")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the loss term")


class ActionNoiseSpec(_Strict):
    """Exploration noise added by stable-baselines3 to the normalized action (TD3's default)."""

    type: Literal["normal", "ornstein_uhlenbeck"] = Field(
        "normal", description="`normal` (independent at each step) or `ornstein_uhlenbeck` (correlated in time)"
    )
    sigma: float = Field(0.1, ge=0.0, description="standard deviation of the noise, in units of the normalized action")


class PolicyConfig(_Strict):
    """The ``policy`` section: the actor's components by name, and the networks' sizes."""

    net_arch: LayerSizes | dict[Literal["pi", "qf", "vf"], LayerSizes] | None = Field(
        None,
        description=(
            "hidden layers of actor and critics (value function), or `{pi: [...], qf: [...]}` (SAC, TD3) / "
            "`{pi: [...], vf: [...]}` (PPO, A2C) to size them apart; unset: stable-baselines3's default "
            "(`[256, 256]` for SAC, `[400, 300]` for TD3, `{pi: [64, 64], vf: [64, 64]}` for PPO and A2C)"
        ),
    )
    activation_fn: Literal["relu", "tanh", "elu", "leaky_relu", "gelu", "silu"] | None = Field(
        None, description="activation function of the hidden layers; unset: stable-baselines3's default "
        "(`relu` for SAC and TD3, `tanh` for PPO and A2C)"
    )
    ortho_init: bool | None = Field(
        None, description="PPO, A2C: orthogonal initialization of the networks (stable-baselines3's default: true)"
    )
    features_extractor: FeaturesExtractorName | None = Field(
        None,
        description=(
            "network from observations to features, by name: `flatten`, `nature_cnn` (images) or `combined` "
            "(Dict observations); unset: the one of stable-baselines3's policy for the observation space "
            "(`MultiInputPolicy` for Dict, `CnnPolicy` for images, `MlpPolicy` otherwise)"
        ),
    )
    features_extractor_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="keyword arguments of the features extractor (e.g. `features_dim` of `nature_cnn`)",
    )
    share_features_extractor: bool | None = Field(
        None, description="actor and critics share one features extractor; unset: stable-baselines3's default "
        "(no for SAC and TD3, where the critic loss would train it; yes for PPO and A2C)"
    )
    normalize_images: bool = Field(True, description="divide image observations by 255")
    optimizer: OptimizerName | None = Field(
        None, description="optimizer of the actor and the critics, by name; unset: stable-baselines3's default "
        "(`adam`; `rmsprop` for A2C)"
    )
    optimizer_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments of the optimizer (e.g. `weight_decay`, `eps`)"
    )
    head: str | None = Field(
        None,
        description="actor head, by name (`diffrl list actor_heads`); unset: the head of stable-baselines3's own actor "
        "(PPO, A2C: `categorical`, `multi_categorical` or `bernoulli` for a Discrete, MultiDiscrete or MultiBinary "
        "action space)",
    )
    head_kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the head")
    losses: list[LossSpec] | None = Field(
        None, min_length=1,
        description=(
            "actor loss terms, summed in this order (`diffrl list loss_terms`); "
            "unset: stable-baselines3's own actor loss (PPO, A2C: `entropy_bonus` weighted by `algo_kwargs.ent_coef`)"
        ),
    )
    postprocess: str = Field(
        DEFAULT_POSTPROCESSOR,
        description=(
            "action post-processor, by name (`diffrl list postprocessors`): "
            "the head's raw actions -> actions in [-1, 1]; unset under PPO and A2C after an unbounded head: "
            "`clip_to_bounds` (stable-baselines3's clipping to the env's bounds)"
        ),
    )
    postprocess_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments of the post-processor"
    )
    n_critics: int | None = Field(
        None, ge=1, le=MAX_CRITICS, description="SAC, TD3: number of Q-networks (stable-baselines3's default: 2)"
    )
    raw_log_prob: bool = Field(
        False,
        description=(
            "let SAC and loss terms that need a log-prob use the head's log-prob of its *raw* action after a "
            "post-processor that is not bijective (`clip` after an unbounded head, dead zones): the entropy is then "
            "that of the raw action, not of the action the critic sees. Refused where it changes nothing"
        ),
    )


class EvalConfig(_Strict):
    """The ``eval`` section: periodic evaluation during ``diffrl train`` (on a separate env)."""

    freq: int = Field(5_000, ge=0, description="evaluate every this many steps (`0`: never during training)")
    n_episodes: int = Field(10, ge=1, description="episodes per evaluation")
    deterministic: bool = Field(True, description="evaluate with the deterministic action")
    final: bool = Field(True, description="evaluate once more at the end (`results.json`)")


class CheckpointConfig(_Strict):
    """The ``checkpoint`` section: periodic checkpoints in ``RUN_DIR/checkpoints``."""

    freq: int = Field(
        10_000, ge=0, description="save a checkpoint every this many steps (`0`: only on interrupt and at the end)"
    )
    save_replay_buffer: bool = Field(
        True,
        description=(
            "save the replay buffer with each checkpoint (only the latest is kept), so a resumed run continues with it"
        ),
    )
    keep: int | None = Field(None, ge=1, description="keep only the newest N model checkpoints (`null`: all)")


class LoggingConfig(_Strict):
    """The ``logging`` section: what ``diffrl train`` logs to ``RUN_DIR/logs`` and the terminal."""

    log_interval: int = Field(
        4, ge=1, description="dump the logs every this many episodes (SAC, TD3) or rollouts (PPO, A2C) "
        "(stable-baselines3's `log_interval`)"
    )
    tensorboard: bool = Field(True, description="write TensorBoard events to `logs/`")
    csv: bool = Field(True, description="write `logs/progress.csv`")
    print_freq: int | None = Field(
        None,
        ge=1,
        description="without a terminal, print a progress line every this many steps (`null`: 5% of the run)",
    )


class Config(_Strict):
    """A whole experiment (see ``docs/cli.md`` for every key)."""

    env: str = Field(
        description=(
            "gymnasium env id (any registered id, plugin ids included; `module:ns/Env-v0` imports `module` first)"
        ),
    )
    env_kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of `gymnasium.make`")
    n_envs: int = Field(1, ge=1, le=MAX_ENVS, description="number of parallel training envs")
    vec_env: Literal["dummy", "subproc"] = Field(
        "dummy", description="`dummy` (in process) or `subproc` (one process per env)"
    )
    algo: Literal["sac", "td3", "ppo", "a2c"] = Field(
        "sac", description="the training loop: stable-baselines3's `SAC`, `TD3`, `PPO` or `A2C`"
    )
    policy: PolicyConfig = Field(
        default_factory=PolicyConfig, description="the actor's components and the networks' sizes"
    )
    algo_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "keyword arguments of stable-baselines3's `SAC` / `TD3` / `PPO` / `A2C` (`learning_rate`, `buffer_size`, "
            "`learning_starts`, `batch_size`, `tau`, `gamma`, `train_freq`, `gradient_steps`, `ent_coef`, "
            "`policy_delay`, `n_steps`, `n_epochs`, `clip_range`, `gae_lambda`, `device`, ...: the rows below); "
            "keys set elsewhere in the config (`policy`, `seed`, `action_noise`, ...) are refused"
        ),
    )
    action_noise: ActionNoiseSpec | None = Field(
        None, description="SAC, TD3: exploration noise added to the normalized action (`null`: none)"
    )
    total_timesteps: int = Field(20_000, ge=1, description="env steps to train for (over all envs)")
    seed: int | None = Field(
        0, ge=0, le=MAX_SEED, description="seed of torch, numpy, the envs and the action space; `null` for none"
    )
    threads: int | None = Field(
        None, ge=1, le=MAX_THREADS,
        description=(
            "threads torch computes with (`diffrl train --threads N`); `null`: 1, unless `OMP_NUM_THREADS` or "
            "`MKL_NUM_THREADS` is set, so that runs sharing the CPU do not slow each other down"
        ),
    )
    eval: EvalConfig = Field(default_factory=EvalConfig, description="periodic evaluation during `diffrl train`")
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig, description="periodic checkpoints")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="logs and progress output")
    versions: dict[str, Any] | None = Field(
        None,
        description=(
            "written by `diffrl train` into a run's `config.yaml` (diffrl-core and plugin versions); "
            "informational, ignored on input so that a run's config can be trained again"
        ),
    )

    @model_validator(mode="after")
    def _check_algo_kwargs(self, info: ValidationInfo) -> Config:
        # parse_config reports these with the other errors, key by key; this catches Config(...) built directly
        if not (info.context or {}).get("algo_kwargs_checked"):
            errors = algo_kwargs_errors(self.algo, self.algo_kwargs) + policy_errors(self)
            if errors:
                raise ValueError("; ".join(describe_error(error).strip() for error in errors))
        return self

    @property
    def head(self) -> str:
        """The head the config names, else the default for a continuous action space (see :meth:`head_for`)."""
        return self.policy.head or DEFAULT_HEADS[self.algo]

    def head_for(self, action_space: Any) -> str:
        """The head the config names, else that of stable-baselines3's own policy for ``action_space``."""
        return self.policy.head or default_head(self.algo, action_space)

    @property
    def losses(self) -> list[LossSpec]:
        """The configured loss terms, else stable-baselines3's own (with ``algo_kwargs.ent_coef`` under PPO/A2C)."""
        if self.policy.losses:
            return list(self.policy.losses)
        ent_coef = self.algo_kwargs.get("ent_coef", 0.0) if self.algo in ON_POLICY_ALGOS else 0.0
        return [LossSpec(name=name, weight=weight) for name, weight in default_losses(self.algo, ent_coef)]


#: policy keys that only one family of algorithms has: key -> (the algorithms, why)
_POLICY_KEYS_OF = {
    "n_critics": (("sac", "td3"), "PPO and A2C have one value function, no Q-networks"),
    "ortho_init": (ON_POLICY_ALGOS, "SAC and TD3 keep PyTorch's initialization"),
}
#: top-level keys that only the off-policy algorithms have: key -> why
_OFF_POLICY_KEYS = {"action_noise": "PPO and A2C explore by sampling their head (or with an exploration-noise "
                                    "post-processor)"}


def policy_errors(config: Config) -> list[dict[str, Any]]:
    """What the ``policy`` section sets that ``algo`` does not have, as pydantic-style error dicts."""
    errors: list[dict[str, Any]] = []
    policy, algo = config.policy, config.algo
    for key, (algos, why) in _POLICY_KEYS_OF.items():
        if getattr(policy, key) is not None and algo not in algos:
            errors.append({"loc": ("policy", key), "type": "reserved",
                           "msg": f"only for algo {' or '.join(algos)}: {why}; remove it"})
    for key, why in _OFF_POLICY_KEYS.items():
        if getattr(config, key) is not None and algo in ON_POLICY_ALGOS:
            errors.append({"loc": (key,), "type": "reserved", "msg": f"only for algo sac or td3: {why}; remove it"})
    if isinstance(policy.net_arch, dict):
        wrong = "qf" if algo in ON_POLICY_ALGOS else "vf"
        right = "vf" if wrong == "qf" else "qf"
        if wrong in policy.net_arch:
            errors.append({"loc": ("policy", "net_arch", wrong), "type": "reserved",
                           "msg": f"algo {algo!r} sizes its {'value function' if right == 'vf' else 'Q-networks'} "
                           f"with {right!r}, not {wrong!r}"})
    if algo in ON_POLICY_ALGOS and policy.losses is not None and "ent_coef" in config.algo_kwargs:
        errors.append({"loc": ("algo_kwargs", "ent_coef"), "type": "reserved",
                       "msg": f"with policy.losses set, the entropy coefficient is the weight of an {ENTROPY_LOSS!r} "
                       f"term there (e.g. {{name: {ENTROPY_LOSS}, weight: 0.01}}); ent_coef is its weight only among "
                       "stable-baselines3's default terms (policy.losses unset)"})
    return errors


def parse_config(config: Mapping[str, Any] | str | PathLike[str] | Config, source: str | None = None) -> Config:
    """Validate a config mapping (or read and validate a YAML file).

    :param config: the config: a mapping, the path of a YAML file, or an already validated one
    :param source: where the config came from, as the error message names it after "invalid"
        (e.g. ``"config runs/x/config.yaml"``); default ``"config"``, or the file's path
    :raises ConfigError: naming each bad key path, what was expected and what was given
    """
    if isinstance(config, Config):
        return config
    if isinstance(config, (str, PathLike)):
        source = source or str(config)
        config = read_yaml(config)
    source = source or "config"
    data = dict(config)
    errors: list[Any] = []
    algo, algo_kwargs = data.get("algo", "sac"), data.get("algo_kwargs", {})
    if algo in ALGOS and isinstance(algo_kwargs, Mapping):
        errors = algo_kwargs_errors(algo, algo_kwargs)
    try:
        parsed = Config.model_validate(data, context={"algo_kwargs_checked": True})
    except ValidationError as exc:
        errors = [*exc.errors(), *errors]
    else:
        errors += policy_errors(parsed)
    if errors:
        lines = [describe_error(error) for error in errors[:MAX_ERRORS_LISTED]]
        if len(errors) > MAX_ERRORS_LISTED:
            lines.append(f"  ... and {len(errors) - MAX_ERRORS_LISTED} more")
        raise ConfigError(f"invalid {source}:\n" + "\n".join(lines))
    return parsed


def key_path(loc: Sequence[int | str]) -> str:
    """``("policy", "losses", 1, "weight")`` -> ``"policy.losses[1].weight"`` (a huge key shortened)."""
    path = ""
    for part in loc:
        if not isinstance(part, int) and len(str(part)) > 100:
            part = f"{str(part)[:60]}...({len(str(part))} characters)"
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def describe_error(error: Any, schema: type[BaseModel] | None = None) -> str:
    """One line of an error message: the key path, what is wrong, and what was given (or the valid keys).

    :param error: one of a pydantic ``ValidationError``'s ``errors()``
    :param schema: the model that was validated, whose keys an unknown key is matched against (default :class:`Config`)
    """
    # pydantic adds the union member or literal it tried to the location; keep the key path
    loc = tuple(
        part for part in error["loc"]
        if not (isinstance(part, str) and ("[" in part or part.startswith("function")))
    )
    if error["type"] == "extra_forbidden":
        known = _known_keys(loc[:-1], schema or Config)
        close = difflib.get_close_matches(str(loc[-1]), known, n=3, cutoff=0.6)
        if close:
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?"
        else:
            hint = f"; valid: {', '.join(known)}" if known else ""
        return f"  {key_path(loc)}: unknown key{hint}"
    if error["type"] == "missing":
        return f"  {key_path(loc)}: required key is missing"
    if error["type"] in ("reserved", "unknown"):  # algo_kwargs' own errors say what to do instead
        return f"  {key_path(loc)}: {error['msg']}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if not loc:  # a check across keys (a model validator): the whole input would say nothing more
        return f"  {message}"
    return f"  {key_path(loc)}: {message} (got {shorten(error.get('input'))})"


def _known_keys(loc: tuple[int | str, ...], schema: type[BaseModel]) -> list[str]:
    """The keys a section of ``schema`` accepts, walking it along ``loc``."""
    model: Any = schema
    mapping_key = False  # the next part is a key of a ``dict[str, Model]`` field (e.g. a sweep's search.params)
    for part in loc:
        if isinstance(part, int) or mapping_key:
            mapping_key = False
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = next((t for t in _types(field.annotation) if isinstance(t, type) and issubclass(t, BaseModel)), None)
        if model is None:
            return []
        mapping_key = any(typing.get_origin(t) is dict for t in (field.annotation, *typing.get_args(field.annotation)))
    return sorted(getattr(model, "model_fields", {}))


def _types(annotation: Any) -> list[Any]:
    args = typing.get_args(annotation)
    return [t for arg in args for t in _types(arg)] if args else [annotation]


# -- --set overrides and config files ----------------------------------------------------------

_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)")


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """``"policy.losses[1].weight=0.5"`` -> ``(["policy", "losses", 1, "weight"], 0.5)``.

    The value is read with the safe YAML loader (numbers, booleans, null, lists and mappings
    work; nothing is evaluated).

    :param text: one ``--set`` argument, ``KEY=VALUE``
    :return: the key path and the value
    :raises ConfigError: for a malformed ``KEY=VALUE``
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {shorten(text)}: expected KEY=VALUE, e.g. --set policy.losses[0].weight=0.5")
    path: list[str | int] = []
    for part in key.split("."):
        match = _SEGMENT.fullmatch(part)
        if not match:
            raise ConfigError(
                f"--set {shorten(text)}: {shorten(key)} is not a key path like 'algo_kwargs.learning_rate'"
                " or 'policy.losses[1].weight'"
            )
        path.append(match.group(1))
        path.extend(int(index) for index in re.findall(r"\[(\d+)\]", match.group(2)))
    return path, safe_load(raw, source=f"--set {shorten(text)}")


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``data`` with each ``KEY=VALUE`` set (missing mappings on the way are created).

    :param data: a raw config mapping (it is not modified)
    :param overrides: ``--set`` arguments, applied in order
    :raises ConfigError: for a malformed override, or a key path the config's shape does not allow
    """
    result = copy.deepcopy(dict(data))
    for text in overrides:
        path, value = parse_override(text)
        node: Any = result
        for depth, part in enumerate(path):
            parent, last = key_path(path[:depth]) or "the config", depth == len(path) - 1
            following = None if last else path[depth + 1]
            if isinstance(part, int):
                if not isinstance(node, list):
                    raise ConfigError(f"--set {shorten(text)}: {parent} is not a list")
                if part > len(node) or (part == len(node) and isinstance(following, int)):
                    raise ConfigError(f"--set {shorten(text)}: {parent} has {len(node)} item(s)")
                if part == len(node):  # one past the end appends
                    node.append({})
            else:
                if not isinstance(node, dict):
                    raise ConfigError(f"--set {shorten(text)}: {parent} is not a mapping")
                if not last and node.get(part) is None:
                    if isinstance(following, int):
                        where = key_path(path[: depth + 1])
                        raise ConfigError(
                            f"--set {shorten(text)}: {where} is not set in the config;"
                            f" set the whole list, e.g. --set '{where}=[...]'"
                        )
                    node[part] = {}
            if last:
                node[part] = value
            else:
                node = node[part]
    return result


def load_config(path: str | PathLike[str], overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config file (safe loader), apply ``--set`` overrides, validate.

    The file is read once (with :func:`read_yaml`).

    :param path: the config file
    :param overrides: ``--set`` arguments, ``KEY=VALUE``
    :raises ConfigError: when the file is missing, or naming the file, the key path and what was expected
    """
    path = Path(path)
    if not path.is_file():
        if not path.exists():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        hint = f" (to continue a run: diffrl train --resume {path})" if path.is_dir() else ""
        raise ConfigError(f"{str(path)!r} is not a file{hint}")
    raw = apply_overrides(read_yaml(path), overrides)
    shown = [o if len(o) <= 200 else shorten(o) for o in overrides]
    suffix = f" (with {' '.join('--set ' + o for o in shown)})" if overrides else ""
    return parse_config(raw, source=f"config {path}{suffix}")

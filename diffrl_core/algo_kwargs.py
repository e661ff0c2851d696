"""The ``algo_kwargs`` a config may pass to stable-baselines3's SAC, TD3, PPO and A2C, with their types and ranges.

stable-baselines3 checks few of its constructor arguments: ``learning_rate: 0``,
``buffer_size: 0``, ``gamma: 2.5`` or ``batch_size: true`` train silently into nonsense, and
``learning_rate: -1`` fails deep inside ``learn()``. These models refuse such values when the
config is read, before any plugin is loaded or folder created, naming the key and the valid
range. Keys the config sets elsewhere (``policy_kwargs``, ``seed``, ...) are refused with where
to set them instead; ``replay_buffer_class`` is a name from a table (never an import path).

Imports pydantic only (no torch).
"""

# Every field defaults to None without allowing None: only the keys a config sets are validated and
# passed on (an explicit `null` is refused), which mypy's pydantic plugin cannot express.
# mypy: disable-error-code="assignment,arg-type"

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

#: algo_kwargs that the config sets elsewhere, or that hold Python objects (key -> why refused)
RESERVED_ALGO_KWARGS = {
    "policy": "set it with policy.head / policy.losses / policy.postprocess",
    "env": "set it with the config key 'env'",
    "policy_kwargs": "set it with the config section 'policy'",
    "seed": "set it with the config key 'seed'",
    "action_noise": "set it with the config section 'action_noise'",
    "composition": "set it with the config section 'policy'",
    "_init_setup_model": "internal to stable-baselines3",
}


def _entropy_coefficient(value: str | float) -> str | float:
    """SAC's ``ent_coef``: a positive number, ``auto``, or ``auto_<initial value>``."""
    if isinstance(value, str):
        if value == "auto":
            return value
        initial = value.removeprefix("auto_")
        try:
            number = float(initial) if initial != value else None
        except ValueError:
            number = None
        if number is None or not number > 0 or number == float("inf"):
            raise ValueError("expected a positive number, 'auto' or 'auto_<positive initial value>' such as 'auto_0.1'")
        return value
    if not value > 0:
        raise ValueError("expected a positive number (or 'auto')")
    return value


def _target_entropy(value: str | float) -> str | float:
    if isinstance(value, str) and value != "auto":
        raise ValueError("expected a number or 'auto'")
    return value


def _gradient_steps(value: int) -> int:
    if value < -1:
        raise ValueError("expected an integer >= 0 (0: collect without training), or -1 (as many as env steps)")
    return value


def _sde_sample_freq(value: int) -> int:
    if value < 1 and value != -1:
        raise ValueError("expected an integer >= 1, or -1 (sample the noise only at the start of each rollout)")
    return value


def _device(value: str) -> str:
    kind, _, index = value.partition(":")
    if kind not in ("auto", "cpu", "cuda", "mps", "xpu") or (index and (kind == "auto" or not index.isdigit())):
        raise ValueError("expected 'auto', 'cpu', 'cuda', 'cuda:<index>', 'mps' or 'xpu'")
    return value


def _train_freq(value: int | list[Any]) -> int | list[Any]:
    """``train_freq``: ``N`` env steps, or ``[N, step]`` / ``[N, episode]``."""
    if isinstance(value, list):
        if (len(value) != 2 or not isinstance(value[0], int) or isinstance(value[0], bool) or value[0] < 1
                or value[1] not in ("step", "episode")):
            raise ValueError("expected an integer >= 1, or [N, 'step'] / [N, 'episode'] with N >= 1")
    elif value < 1:
        raise ValueError("expected an integer >= 1, or [N, 'step'] / [N, 'episode'] with N >= 1")
    return value


#: replay buffers a config may name (``algo_kwargs.replay_buffer_class``): stable-baselines3's classes by their names
ReplayBufferName = Literal["ReplayBuffer", "DictReplayBuffer", "HerReplayBuffer"]


class _ReplayBufferKwargs(BaseModel):
    """``replay_buffer_kwargs`` of stable-baselines3's ``ReplayBuffer`` and ``DictReplayBuffer``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    handle_timeout_termination: bool = Field(
        None, description="treat a time-limit truncation as no termination (bootstrap from it)"
    )


class _HerReplayBufferKwargs(_ReplayBufferKwargs):
    """``replay_buffer_kwargs`` of stable-baselines3's ``HerReplayBuffer``."""

    n_sampled_goal: int = Field(None, ge=1, description="virtual transitions (new goals) per real transition")
    goal_selection_strategy: Literal["future", "final", "episode"] = Field(
        None, description="where the new goals come from in the episode"
    )
    copy_info_dict: bool = Field(None, description="pass the real infos to compute_reward (slower)")


#: replay buffer name -> the model of its replay_buffer_kwargs
REPLAY_BUFFER_KWARGS: dict[str, type[_ReplayBufferKwargs]] = {
    "ReplayBuffer": _ReplayBufferKwargs,
    "DictReplayBuffer": _ReplayBufferKwargs,
    "HerReplayBuffer": _HerReplayBufferKwargs,
}


class _AlgorithmKwargs(BaseModel):
    """The keyword arguments every algorithm has (stable-baselines3's ``BaseAlgorithm``), with ``gamma``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    gamma: float = Field(None, ge=0, le=1, description="discount factor")
    stats_window_size: int = Field(None, ge=1, description="episodes averaged in the rollout logs")
    tensorboard_log: str | None = Field(
        None, description="TensorBoard folder (`diffrl train` logs into the run folder)"
    )
    verbose: int = Field(None, ge=0, le=2, description="stable-baselines3's verbosity (0, 1 or 2)")
    device: Annotated[str, AfterValidator(_device)] = Field(
        None, description="torch device: `auto`, `cpu`, `cuda`, ..."
    )


class _OffPolicyKwargs(_AlgorithmKwargs):
    """The keyword arguments SAC and TD3 share (stable-baselines3's ``OffPolicyAlgorithm``)."""

    learning_rate: Annotated[float, Field(gt=0)] | Callable[[float], float] = Field(
        None, description="Adam's step size of the actor and the critics (from Python also a schedule: "
        "a callable of the remaining progress, 1 -> 0, as stable-baselines3 takes)"
    )
    buffer_size: int = Field(None, ge=1, description="replay buffer size, in transitions (per env)")
    learning_starts: int = Field(None, ge=0, description="env steps of random actions before the first update")
    batch_size: int = Field(None, ge=1, description="minibatch size of each gradient step")
    tau: float = Field(
        None, gt=0, le=1, description="soft update coefficient of the target networks (1: hard copy)"
    )
    train_freq: Annotated[int | list[Any], AfterValidator(_train_freq)] = Field(
        None, description="update every N env steps, or `[N, episode]`"
    )
    gradient_steps: Annotated[int, AfterValidator(_gradient_steps)] = Field(
        None, description="gradient steps per update (`-1`: as many as env steps collected, `0`: none)"
    )
    replay_buffer_class: ReplayBufferName = Field(
        None, description="the replay buffer, by name: `ReplayBuffer`, `DictReplayBuffer` or `HerReplayBuffer` "
        "(hindsight experience replay, for goal-conditioned envs); unset: chosen by the observation space"
    )
    replay_buffer_kwargs: dict[str, Any] | None = Field(
        None, description="keyword arguments of the replay buffer (`HerReplayBuffer`: `n_sampled_goal`, "
        "`goal_selection_strategy`, `copy_info_dict`; all: `handle_timeout_termination`)"
    )
    optimize_memory_usage: bool = Field(None, description="store each observation once in the replay buffer")
    n_steps: int = Field(None, ge=1, description="n-step returns in the replay buffer (1: one-step TD targets)")


class SACKwargs(_OffPolicyKwargs):
    """``algo_kwargs`` of ``algo: sac``."""

    ent_coef: Annotated[str | float, AfterValidator(_entropy_coefficient)] = Field(
        None, description="entropy coefficient: a positive number, `auto` (learned) or `auto_<initial value>`"
    )
    target_update_interval: int = Field(None, ge=1, description="update the target networks every N gradient steps")
    target_entropy: Annotated[str | float, AfterValidator(_target_entropy)] = Field(
        None, description="the entropy `auto` tuning aims at (`auto`: minus the action dimension)"
    )
    use_sde: bool = Field(
        None, description="generalized state-dependent exploration (gSDE); needs a head that supports it "
        "(`squashed_gaussian`), whose `head_kwargs` take gSDE's `log_std_init`, `use_expln`, `clip_mean`, `full_std`"
    )
    sde_sample_freq: Annotated[int, AfterValidator(_sde_sample_freq)] = Field(
        None, description="gSDE: new exploration weights every N steps (`-1`: only at the start of each rollout)"
    )
    use_sde_at_warmup: bool = Field(None, description="gSDE: explore with gSDE instead of uniform actions "
                                    "before `learning_starts`")


class TD3Kwargs(_OffPolicyKwargs):
    """``algo_kwargs`` of ``algo: td3``."""

    policy_delay: int = Field(None, ge=1, description="update the actor and the targets every N critic updates")
    target_policy_noise: float = Field(
        None, ge=0, description="standard deviation of the target policy's smoothing noise"
    )
    target_noise_clip: float = Field(None, ge=0, description="the smoothing noise is clipped to +/- this")


def _clip_range(value: float | Callable[[float], float]) -> float | Callable[[float], float]:
    if not callable(value) and not value > 0:
        raise ValueError("expected a positive number (from Python also a schedule of the remaining progress)")
    return value


class _OnPolicyKwargs(_AlgorithmKwargs):
    """The keyword arguments PPO and A2C share (stable-baselines3's ``OnPolicyAlgorithm``)."""

    learning_rate: Annotated[float, Field(gt=0)] | Callable[[float], float] = Field(
        None, description="the optimizer's step size (Adam; RMSprop for A2C) (from Python also a schedule: a "
        "callable of the remaining progress, 1 -> 0, as stable-baselines3 takes)"
    )
    n_steps: int = Field(None, ge=1, description="env steps per env collected before each update (the rollout)")
    gae_lambda: float = Field(None, ge=0, le=1, description="GAE's lambda (1: Monte Carlo returns, 0: one-step TD)")
    ent_coef: float = Field(
        None, ge=0, description="entropy coefficient: the weight of the default `entropy_bonus` loss term "
        "(only with policy.losses unset; with it set, give `entropy_bonus` its weight there)"
    )
    vf_coef: float = Field(None, ge=0, description="weight of the value loss")
    max_grad_norm: float = Field(None, gt=0, description="the gradient is clipped to this norm")
    normalize_advantage: bool = Field(None, description="normalize the advantages over each minibatch")
    use_sde: bool = Field(
        None, description="generalized state-dependent exploration (gSDE); needs a head that supports it under "
        "the algorithm (`diag_gaussian`: SB3's PPO/A2C gSDE; `squashed_gaussian`), whose `head_kwargs` take "
        "`log_std_init`, `use_expln`, `full_std`"
    )
    sde_sample_freq: Annotated[int, AfterValidator(_sde_sample_freq)] = Field(
        None, description="gSDE: new exploration weights every N steps (`-1`: only at the start of each rollout)"
    )


class PPOKwargs(_OnPolicyKwargs):
    """``algo_kwargs`` of ``algo: ppo``."""

    batch_size: int = Field(None, ge=2, description="minibatch size of each gradient step")
    n_epochs: int = Field(None, ge=1, description="passes over the rollout per update")
    clip_range: Annotated[float | Callable[[float], float], AfterValidator(_clip_range)] = Field(
        None, description="PPO's clip range of the likelihood ratio (what the `ppo_clip` term uses)"
    )
    clip_range_vf: Annotated[float | Callable[[float], float], AfterValidator(_clip_range)] = Field(
        None, description="clip range of the value function's change (unset: not clipped)"
    )
    target_kl: float = Field(None, gt=0, description="stop an update's epochs early past this KL divergence")


class A2CKwargs(_OnPolicyKwargs):
    """``algo_kwargs`` of ``algo: a2c``."""

    rms_prop_eps: float = Field(None, gt=0, description="RMSprop's epsilon")
    use_rms_prop: bool = Field(None, description="RMSprop (stable-baselines3's default) rather than Adam, "
                               "unless policy.optimizer names one")


#: algo -> the model of its algo_kwargs
ALGO_KWARGS: dict[str, type[_AlgorithmKwargs]] = {
    "sac": SACKwargs, "td3": TD3Kwargs, "ppo": PPOKwargs, "a2c": A2CKwargs,
}

#: algo_kwargs stable-baselines3 has that diffrl does not compose yet: key -> why refused
UNSUPPORTED_ALGO_KWARGS = {
    "ppo": {"rollout_buffer_class": "the rollout buffer is stable-baselines3's own (or its Dict version)",
            "rollout_buffer_kwargs": "see rollout_buffer_class"},
}
UNSUPPORTED_ALGO_KWARGS["a2c"] = UNSUPPORTED_ALGO_KWARGS["ppo"]

#: algo_kwargs ``--resume`` may change: they change how the model is trained, not what it is
RESUMABLE_ALGO_KWARGS = (
    "learning_rate", "batch_size", "learning_starts", "tau", "gamma", "train_freq", "gradient_steps",
    "target_update_interval", "policy_delay", "target_policy_noise", "target_noise_clip", "stats_window_size",
    "verbose", "device", "n_epochs", "clip_range", "clip_range_vf", "target_kl", "vf_coef", "max_grad_norm",
    "gae_lambda", "normalize_advantage",
)


def algo_kwargs_errors(algo: str, kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What is wrong with a config's ``algo_kwargs`` under ``algo``, as pydantic-style error dicts.

    Each error has ``loc`` (starting with ``"algo_kwargs"``), ``msg``, ``type`` and, where a
    value was refused, ``input``; reserved and unknown keys get a ``msg`` that says what to do.

    :param algo: ``sac`` or ``td3``
    :param kwargs: the config's ``algo_kwargs``
    :return: no errors when every key is a keyword of the algorithm with a valid value
    """
    model = ALGO_KWARGS[algo]
    errors: list[dict[str, Any]] = []
    known = [key for key in model.model_fields]
    checked: dict[str, Any] = {}
    listed = False
    for key, value in kwargs.items():
        if key in RESERVED_ALGO_KWARGS:
            errors.append({"loc": ("algo_kwargs", key), "type": "reserved", "msg": RESERVED_ALGO_KWARGS[key]})
        elif key in UNSUPPORTED_ALGO_KWARGS.get(algo, {}):
            errors.append({"loc": ("algo_kwargs", key), "type": "reserved",
                           "msg": f"not supported under algo {algo!r}: {UNSUPPORTED_ALGO_KWARGS[algo][key]}"})
        elif key not in model.model_fields:
            close = difflib.get_close_matches(str(key)[:100], known, n=3, cutoff=0.6)
            if close:
                hint = f"did you mean {', '.join(map(repr, close))}?"
            else:  # the valid keys once per message
                hint = "valid: see above" if listed else f"valid: {', '.join(sorted(known))}"
                listed = True
            errors.append({
                "loc": ("algo_kwargs", key), "type": "unknown",
                "msg": f"not a keyword argument of stable-baselines3's {algo.upper()}; {hint}",
            })
        else:
            checked[key] = value
    try:
        model.model_validate(checked)
    except ValidationError as exc:
        seen = set()
        order = list(checked)  # in the order the config gives the keys, not the models' field order
        for error in sorted(exc.errors(), key=lambda error: order.index(error["loc"][0])):
            # the key and list indexes; pydantic adds the union member it tried ("constrained-float", "callable")
            loc = ("algo_kwargs", error["loc"][0], *(part for part in error["loc"][1:] if isinstance(part, int)))
            if loc not in seen:  # one line per key: the first member's reason (a number, before a schedule)
                seen.add(loc)
                errors.append({**error, "loc": loc})
    return errors + _replay_buffer_kwargs_errors(checked)


def _replay_buffer_kwargs_errors(kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``replay_buffer_kwargs`` checked against the keywords of the replay buffer the config names."""
    buffer, buffer_kwargs = kwargs.get("replay_buffer_class"), kwargs.get("replay_buffer_kwargs")
    if not isinstance(buffer_kwargs, Mapping) or buffer not in (None, *REPLAY_BUFFER_KWARGS):
        return []  # not a mapping, or an unknown buffer: reported above
    model = REPLAY_BUFFER_KWARGS[buffer or "ReplayBuffer"]
    errors: list[dict[str, Any]] = []
    for key in buffer_kwargs:
        if key not in model.model_fields:
            valid = ", ".join(sorted(model.model_fields))
            errors.append({
                "loc": ("algo_kwargs", "replay_buffer_kwargs", key), "type": "unknown",
                "msg": f"not a keyword argument of stable-baselines3's {buffer or 'ReplayBuffer'} a config may set; "
                f"valid: {valid}",
            })
    try:
        model.model_validate({key: value for key, value in buffer_kwargs.items() if key in model.model_fields})
    except ValidationError as exc:
        errors += [{**error, "loc": ("algo_kwargs", "replay_buffer_kwargs", *error["loc"])} for error in exc.errors()]
    return errors

"""A seeded config fuzzer for ``diffrl train``: every broken config is a short user error, never a crash.

A config file is the one input of ``diffrl train`` that users write by hand, copy from examples
and generate from scripts. Whatever it holds, ``diffrl train CONFIG`` must end in one of two ways:

* exit 0: the config is valid, and a run folder exists;
* exit 2: one paragraph starting with ``Error:`` (short, whatever the size of the value at
  fault), no traceback, and no run folder (nor a hidden ``.staging-*`` folder) left behind;

never exit 1 (an internal failure with a traceback), a hang, or a run folder for a refused config.

Configs start from each example in ``examples/`` and get one to three random mutations
(``random.Random`` with fixed seeds, so that a failure reproduces):

* data level: a key deleted, a key set (top level, ``policy.*``, ``algo_kwargs.*``,
  ``env_kwargs.*``, ``eval.*``, ``checkpoint.*``, ``logging.*``, ``action_noise.*``) to a value of a
  pool of edge cases (0, -1, huge ints, nan, inf, booleans, null, YAML 1.1 strings, empty and
  nested containers, a 100 kB string, 100-deep nesting, non-string keys) or of the values the
  key takes, an unknown key, a typo of a key, a type swap (scalar / list / mapping);
* text level: a duplicated top-level key, invalid UTF-8 bytes, a byte order mark, tabs, an
  alias bomb, 10,000-deep flow nesting, a ``!!python/object`` tag, a merge key, a YAML 1.1
  scalar written raw (``1:30``, ``yes``, ``0777``, dates), truncation at a random byte;
* command line: ``--set KEY=VALUE`` overrides with odd paths and values.

On top of the random ones, a fixed list of cases pins the values an issue listed as accepted
by mistake (``learning_rate: 0``, ``gamma: 2.5``, ``true`` as a number, a duplicated ``policy:``,
``total_timesteps: 1:30``, non-UTF-8 files, deep nesting, alias bombs, kwargs a constructor
rejects, huge values): each must exit 2 naming its key.

The run itself stops right after validation: ``diffrl_core.training._train`` is replaced by a
function that returns 0 (it is called once the envs, the model and the run folder exist), so an
accepted config costs only composing its model. Sizes that would allocate real memory (replay
buffers over 10**6 transitions, many critics, huge env dimensions) are kept out of the random
pool; the explicit cases hold the ones that fail fast, and ``policy.n_critics`` (unbounded, it
would build critics for hours) is checked on reading the config alone.
"""

from __future__ import annotations

import codecs
import math
import random
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from click.testing import CliRunner, Result

import diffrl_core.training
from diffrl_core.cli import main
from diffrl_core.config import load_config, parse_config
from diffrl_core.errors import ConfigError
from diffrl_core.runs import STAGING_PREFIX
from diffrl_core.strict_yaml import read_yaml, safe_dump, safe_load

REPO = Path(__file__).resolve().parents[1]
EXAMPLES: dict[str, str] = {p.stem: p.read_text(encoding="utf-8") for p in sorted((REPO / "examples").glob("*.yaml"))}

#: seconds one config may take (composing a model takes tens of milliseconds)
TIME_LIMIT = 20.0
#: the longest "Error: ..." paragraph accepted (huge values must be shortened)
MAX_MESSAGE = 3000
#: random configs per seed batch
RANDOM_CONFIGS = 300


# -- cases -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One config file (as bytes) and what ``diffrl train`` must do with it.

    :param name: what was done to which example, to find the case again
    :param content: the file's bytes
    :param refused: fragments the error message must contain; ``None``: exit 0 or exit 2 are both fine
    :param overrides: ``--set`` arguments
    :param accepted: the config is valid: it must exit 0
    """

    name: str
    content: bytes
    refused: tuple[str, ...] | None = None
    overrides: tuple[str, ...] = ()
    accepted: bool = False


def _load(example: str) -> dict[str, Any]:
    data = safe_load(EXAMPLES[example])
    assert isinstance(data, dict)
    return data


def _dump(data: Any) -> bytes:
    # the strict dumper quotes every string YAML 1.1 or 1.2 would read as another type: the file holds `data`
    return safe_dump(data, sort_keys=False, allow_unicode=True).encode("utf-8")


def _set(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set a dotted key path (mappings on the way are created, or replace what is there)."""
    *parents, last = path.split(".")
    node = data
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = value
    return data


def _with(example: str, changes: dict[str, Any]) -> bytes:
    data = _load(example)
    for path, value in changes.items():
        _set(data, path, value)
    return _dump(data)


def _nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


HUGE_TEXT = "x" * 100_000
SAC, TD3 = "pendulum_sac", "pendulum_td3"
BANDIT, REACH, CART = "quadratic_bandit_sac", "point_mass_reach_sac", "cart_pole_balance_td3"
ALIAS_BOMB = "\n".join(
    [f"l0: &l0 [{', '.join(['x'] * 10)}]"]
    + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9)]
) + "\n"


def _refused(name: str, example: str, changes: dict[str, Any], *fragments: str) -> Case:
    return Case(name, _with(example, changes), refused=fragments)


def _text(name: str, content: bytes | str, *fragments: str) -> Case:
    return Case(name, content.encode("utf-8") if isinstance(content, str) else content, refused=fragments)


def explicit_cases() -> list[Case]:
    """The values an issue listed, and the boundary values around them, each with its expected outcome."""
    sac = EXAMPLES[SAC]
    cases = [Case(f"example {name}", text.encode("utf-8"), accepted=True) for name, text in EXAMPLES.items()]
    cases += [
        Case(f"{SAC} with {path}={value!r}", _with(SAC, {path: value}), accepted=True)
        for path, value in [
            ("seed", 2**32 - 1), ("seed", None), ("algo_kwargs.learning_rate", 1e-9), ("algo_kwargs.gamma", 1),
            ("algo_kwargs.gamma", 0), ("algo_kwargs.tau", 1), ("algo_kwargs.buffer_size", 1),
            ("policy.net_arch", [65_536]), ("policy.net_arch", {"pi": [8], "qf": [16]}), ("n_envs", 3),
        ]
    ]
    cases += [
        Case("BOM before the example", codecs.BOM_UTF8 + sac.encode("utf-8"), accepted=True),
        Case("YAML 1.2 ints and floats", (sac + "n_envs: 0o2\nlogging: {print_freq: 1_000}\n").encode(), accepted=True),
    ]
    # values listed in the issue; each must be refused naming its key
    for path, values in {
        "algo_kwargs.learning_rate": [0, -1, math.nan, math.inf, True, "1e-3x"],
        "algo_kwargs.buffer_size": [0, -1, True, 2.5, 10**12, 2**64],
        "algo_kwargs.batch_size": [0, True],
        "algo_kwargs.gamma": [-1, 2.5],
        "algo_kwargs.tau": [-1, 2.5],
        "algo_kwargs.ent_coef": [-1, "auto_-1"],
        "algo_kwargs.learning_starts": [True],
        "algo_kwargs.train_freq": [0, [1, "epoch"], True],
        "policy.net_arch": [[0], [-1], [-64, 64], [True], [10**9], [2**64], {"pi": [0]}],
        "policy.n_critics": [0, True],
        "seed": [-1, 2**32, 2**64, -(2**63), True, 1.5],
        "total_timesteps": [True, 0, "1:30"],
        "n_envs": [True, 0, 2**32],
    }.items():
        key = path.rpartition(".")[2]
        cases += [_refused(f"{SAC} with {path}={value!r}", SAC, {path: value}, key) for value in values]
    cases += [
        _refused(f"{TD3} with {path}={value!r}", TD3, {path: value}, path.rpartition(".")[2])
        for path, value in [
            ("algo_kwargs.policy_delay", 0), ("algo_kwargs.target_policy_noise", -1),
            ("algo_kwargs.target_noise_clip", math.nan), ("action_noise.sigma", -1), ("action_noise.type", "pink"),
        ]
    ]
    # kwargs a constructor rejects
    cases += [
        _refused("head_kwargs unknown", SAC, {"policy.head_kwargs": {"bogus": 1}}, "policy.head_kwargs"),
        _refused("head_kwargs rejected", SAC, {"policy.head_kwargs": {"log_std_min": 1, "log_std_max": 0}},
                 "policy.head_kwargs"),
        _refused("head_kwargs non-string key", SAC, {"policy.head_kwargs": {1: 2}}, "policy.head_kwargs"),
        _refused("beta head_kwargs rejected", SAC, {"policy.head": "beta", "policy.head_kwargs":
                                                    {"deterministic_action": "median"}}, "policy.head_kwargs"),
        _refused("postprocess_kwargs rejected", SAC, {"policy.postprocess": "gaussian_noise",
                                                      "policy.postprocess_kwargs": {"sigma": -1}},
                 "policy.postprocess_kwargs"),
        _refused("loss kwargs unknown", SAC, {"policy.losses": [{"name": "bc", "kwargs": {"bogus": 1}}]},
                 "policy.losses[0].kwargs"),
        _refused("replay_buffer_kwargs unknown", SAC, {"algo_kwargs.replay_buffer_kwargs": {"bogus": 1}}, "bogus"),
        _refused("env_kwargs unknown", SAC, {"env_kwargs": {"bogus": 1}}, "env_kwargs"),
        _refused("env_kwargs non-string key", SAC, {"env_kwargs": {1: 2}}, "env_kwargs"),
        _refused("bandit action_dim 0", BANDIT, {"env_kwargs": {"action_dim": 0}}, "env_kwargs"),
        _refused("bandit action_dim 2**40", BANDIT, {"env_kwargs": {"action_dim": 2**40}}, "env_kwargs"),
        _refused("bandit target_seed -1", BANDIT, {"env_kwargs": {"target_seed": -1}}, "env_kwargs"),
        _refused("reach frame_skip 0", REACH, {"env_kwargs": {"frame_skip": 0}}, "env_kwargs"),
        _refused("reach width inf", REACH, {"env_kwargs": {"width": math.inf}}, "env_kwargs"),
        _refused("reach width nan", REACH, {"env_kwargs": {"width": math.nan}}, "env_kwargs"),
        _refused("cart force_mag 'abc'", CART, {"env_kwargs": {"force_mag": "abc"}}, "env_kwargs"),
        _refused("render_mode not a string", SAC, {"env_kwargs": {"render_mode": 0}}, "env_kwargs"),
        _refused("render_mode a list", CART, {"env_kwargs": {"render_mode": []}}, "env_kwargs"),
        _refused("env of a missing module", SAC, {"env": "no_such_module:Pendulum-v1"}, "env"),
        _refused("env of a module named 1", SAC, {"env": "1:30"}, "env"),
        _refused("subproc env_kwargs unknown", SAC, {"vec_env": "subproc", "env_kwargs": {"bogus": 1}},
                 "env_kwargs"),
    ]
    # huge values: the message stays short
    cases += [
        _refused("huge env id", SAC, {"env": HUGE_TEXT}, "env"),
        _refused("huge head name", SAC, {"policy.head": HUGE_TEXT}, "policy.head"),
        _refused("huge env_kwargs key", SAC, {"env_kwargs": {HUGE_TEXT: 1}}, "env_kwargs"),
        _refused("huge head_kwargs value", SAC, {"policy.head_kwargs": {"log_std_init": HUGE_TEXT}},
                 "policy.head_kwargs"),
        _refused("huge unknown key", SAC, {HUGE_TEXT: 1}, "unknown key"),
        _refused("huge unknown policy key", SAC, {"policy": {HUGE_TEXT: 1}}, "unknown key"),
        _refused("huge unknown algo_kwargs key", SAC, {"algo_kwargs": {HUGE_TEXT: 1}}, "algo_kwargs"),
        _refused("huge loss name", SAC, {"policy.losses": [{"name": HUGE_TEXT}]}, "policy.losses[0].name"),
        _refused("huge postprocess name", SAC, {"policy.postprocess": HUGE_TEXT}, "policy.postprocess"),
        _refused("huge activation_fn", SAC, {"policy.activation_fn": HUGE_TEXT}, "policy.activation_fn"),
        _refused("huge algo", SAC, {"algo": HUGE_TEXT}, "algo"),
        _refused("huge env_kwargs value", SAC, {"env_kwargs": {"g": HUGE_TEXT, "bogus": HUGE_TEXT}}, "env_kwargs"),
        _refused("huge device", SAC, {"algo_kwargs.device": HUGE_TEXT}, "algo_kwargs.device"),
        _refused("huge ent_coef", SAC, {"algo_kwargs.ent_coef": "auto_" + HUGE_TEXT}, "algo_kwargs.ent_coef"),
        _refused("huge learning_rate string", SAC, {"algo_kwargs.learning_rate": HUGE_TEXT}, "learning_rate"),
        _refused("2000 bad layer sizes", SAC, {"policy.net_arch": [0] * 2000}, "policy.net_arch"),
        _refused("500 unknown algo_kwargs", SAC, {"algo_kwargs": {f"k{i}": i for i in range(500)}}, "algo_kwargs"),
        _refused("500 bad losses", SAC, {"policy.losses": [{"name": i} for i in range(500)]}, "policy.losses"),
        _refused("100-deep list", SAC, {"seed": _nested(100)}, "nesting"),
    ]
    # text level: what the YAML reader must refuse
    cases += [
        _text("duplicated policy key", sac + "policy:\n  net_arch: [8]\n", "duplicate key 'policy'"),
        _text("duplicated nested key", sac.replace("  head:", "  net_arch: [8]\n  head:"), "duplicate key 'net_arch'"),
        _text("sexagesimal total_timesteps", sac.replace("total_timesteps: 20000", "total_timesteps: 1:30"),
              "total_timesteps"),
        _text("yes as a bool", sac.replace("n_episodes: 10}", "n_episodes: 10, deterministic: yes}"),
              "eval.deterministic"),
        _text("on as a bool", sac.replace("policy:\n", "policy:\n  raw_log_prob: on\n"), "policy.raw_log_prob"),
        _text("date as a seed", sac.replace("seed: 0", "seed: 2001-12-14"), "seed"),
        _text("invalid bytes", sac.encode("utf-8").replace(b"env:", b"\xff\xfeenv:"), "UTF-8"),
        _text("latin-1 comment", ("# caf\xe9\n" + sac).encode("latin-1"), "UTF-8"),
        _text("UTF-16 file", sac.encode("utf-16"), "UTF-16"),
        _text("flow nesting 10,000 deep", sac + "seed: " + "[" * 10_000 + "]" * 10_000 + "\n", "nesting"),
        _text("unclosed flow nesting 10,000 deep", sac + "seed: " + "[" * 10_000 + "\n", "nesting"),
        _text("block nesting 100 deep", sac + "env_kwargs:\n" + "".join(
            "  " * (i + 1) + f"k{i}:\n" for i in range(100)) + "  " * 101 + "1\n", "nesting"),
        _text("alias bomb", sac + ALIAS_BOMB, "alias"),
        _text("recursive alias", sac + "env_kwargs: &a {x: *a}\n", "alias"),
        _text("python tag", sac + "env_kwargs: !!python/object/apply:os.system ['true']\n", "tag"),
        _text("local tag", sac.replace("seed: 0", "seed: !custom 0"), "tag"),
        _text("merge key", sac + "base: &b {freq: 10}\nextra:\n  <<: *b\n", "merge key"),
        _text("tab indentation", sac.replace("  net_arch", "\tnet_arch"), "not valid YAML"),
        _text("NUL byte", sac.replace("seed: 0", "seed: 0\x00"), "not valid YAML"),
        _text("int of 5000 digits", sac.replace("seed: 0", "seed: 1" + "0" * 5000), "digits"),
        _text("empty file", "", "mapping"),
        _text("a list", "- env: Pendulum-v1\n", "mapping"),
        _text("a scalar", "Pendulum-v1\n", "mapping"),
        _text("two documents", sac + "---\n" + sac, "single document"),
        _text("file over 1 MiB", sac + "# " + "x" * (1 << 20) + "\n", "too large"),
        _text("undefined alias", sac.replace("seed: 0", "seed: *nothing"), "nothing"),
        _text("unhashable key", sac + "? [a, b]\n: 1\n", "unhashable"),
        _text("null key", sac + "~: 1\n", "Keys should be strings"),
    ]
    cases += [
        Case("--set a YAML 1.1 value", sac.encode(), refused=("total_timesteps",),
             overrides=("total_timesteps=1:30",)),
        Case("--set into a scalar", sac.encode(), refused=("not a mapping",), overrides=("seed.x=1",)),
        Case("--set past a list's end", sac.encode(), refused=("policy.losses",),
             overrides=("policy.losses[5].weight=1",)),
        Case("--set without =", sac.encode(), refused=("KEY=VALUE",), overrides=("seed",)),
        Case("--set a huge value", sac.encode(), refused=("total_timesteps",),
             overrides=("total_timesteps=" + "9" * 5000,)),
        Case("--set a huge string", sac.encode(), refused=("env",), overrides=("env=" + HUGE_TEXT,)),
        Case("--set a huge key", sac.encode(), refused=("--set",), overrides=("x" * 100_000 + "=1",)),
    ]
    return cases


# -- random mutations --------------------------------------------------------------------------

POOL: list[Any] = [
    0, -1, 1, 2.5, -2.5, 1e9, 2**32, 2**64, -(2**63), math.nan, math.inf, -math.inf, True, False, None,
    "", "abc", "1:30", "yes", "on", "0777", "1e-3", "auto", "cpu", [], [0], [-1], [1e9], [1, "step"], {}, {"a": 1},
    {1: "a"}, {"name": "bc"}, HUGE_TEXT, _nested(100), _nested(30), list(range(50)),
]

#: the values each key takes, so that many mutated configs are valid and get composed
VALID: dict[str, list[Any]] = {
    "env": ["Pendulum-v1", "MountainCarContinuous-v0", "diffrl/QuadraticBandit-v0", "CartPole-v1", "NoSuch-v0",
            "diffrl_core.envs:diffrl/QuadraticBandit-v0", "no_such_module:Pendulum-v1", "Pendulum-v0"],
    "algo": ["sac", "td3", "ppo"],
    "vec_env": ["dummy"],
    "n_envs": [1, 2],
    "seed": [0, 2**32 - 1, None],
    "total_timesteps": [1, 100],
    "versions": [None, {"diffrl-core": "0.0.1"}],
    "action_noise": [None, {"type": "normal"}, {"type": "ornstein_uhlenbeck", "sigma": 0.3}],
    "action_noise.sigma": [0, 0.5],
    "action_noise.type": ["normal", "ornstein_uhlenbeck"],
    "policy.head": ["squashed_gaussian", "gaussian", "beta", "deterministic", "nope"],
    "policy.postprocess": ["identity", "clip", "tanh", "gaussian_noise", "ou_noise", "nope"],
    "policy.losses": [[{"name": "sac_entropy"}], [{"name": "q_value"}], [{"name": "bc", "weight": 0.5}],
                      [{"name": "sac_entropy_closed_form"}], [{"name": "sac_entropy_detached"}], [{"name": "nope"}]],
    "policy.net_arch": [[8], [16, 16], {"pi": [8], "qf": [8, 8]}, {"pi": [8]}, {"vf": [8]}],
    "policy.activation_fn": ["tanh", "gelu", "softmax"],
    "policy.n_critics": [1, 3],
    "policy.raw_log_prob": [True, False],
    "policy.head_kwargs": [{}, {"log_std_init": -1.0}, {"state_dependent_std": False}, {"squash": False},
                           {"deterministic_action": "mode"}, {"eps": 0.1}],
    "policy.postprocess_kwargs": [{}, {"sigma": 0.2}, {"epsilon": 0.5}, {"theta": 0.1, "dt": 0.5}],
    "algo_kwargs.learning_rate": [1e-4, 3e-4],
    "algo_kwargs.buffer_size": [1, 1000, 1_000_000],
    "algo_kwargs.learning_starts": [0, 100],
    "algo_kwargs.batch_size": [1, 64],
    "algo_kwargs.tau": [0.005, 1],
    "algo_kwargs.gamma": [0, 0.99, 1],
    "algo_kwargs.train_freq": [1, [1, "episode"], [4, "step"]],
    "algo_kwargs.gradient_steps": [-1, 0, 2],
    "algo_kwargs.ent_coef": ["auto", "auto_0.1", 0.1],
    "algo_kwargs.target_update_interval": [1, 2],
    "algo_kwargs.target_entropy": ["auto", -1.0],
    "algo_kwargs.policy_delay": [2],
    "algo_kwargs.target_policy_noise": [0.2],
    "algo_kwargs.target_noise_clip": [0.5],
    "algo_kwargs.device": ["cpu", "auto", "cuda:0"],
    "algo_kwargs.n_steps": [1, 3],
    "algo_kwargs.replay_buffer_kwargs": [None, {"handle_timeout_termination": False}],
    "algo_kwargs.optimize_memory_usage": [True, False],
    "algo_kwargs.stats_window_size": [1],
    "algo_kwargs.verbose": [0],
    "algo_kwargs.use_sde": [False, True],
    "algo_kwargs.sde_sample_freq": [-1, 4],
    "algo_kwargs.replay_buffer_class": ["ReplayBuffer", "DictReplayBuffer", "HerReplayBuffer"],
    "policy.features_extractor": ["flatten", "nature_cnn", "combined"],
    "policy.features_extractor_kwargs": [{}, {"features_dim": 8}, {"bogus": 1}],
    "policy.share_features_extractor": [True, False],
    "policy.optimizer": ["adam", "sgd", "rmsprop"],
    "policy.optimizer_kwargs": [{}, {"weight_decay": 0.01}, {"bogus": 1}],
    "env_kwargs": [{}, {"max_episode_steps": 10}],
    "env_kwargs.max_episode_steps": [1, 10],
    "env_kwargs.render_mode": ["rgb_array", "human"],
    "env_kwargs.disable_env_checker": [True],
    "env_kwargs.g": [9.81],
    "env_kwargs.action_dim": [1, 3],
    "env_kwargs.context_dim": [1, 3],
    "env_kwargs.k": [0.5],
    "env_kwargs.action_low": [-1.0],
    "env_kwargs.target_seed": [3],
    "env_kwargs.frame_skip": [1, 2],
    "env_kwargs.ctrl_cost_weight": [0.1],
    "env_kwargs.force_mag": [5.0],
    "env_kwargs.width": [64],
    "eval.freq": [0, 1],
    "eval.n_episodes": [1],
    "eval.deterministic": [True, False],
    "eval.final": [True, False],
    "checkpoint.freq": [0, 100],
    "checkpoint.save_replay_buffer": [False],
    "checkpoint.keep": [1, None],
    "logging.log_interval": [1],
    "logging.tensorboard": [False],
    "logging.csv": [False],
    "logging.print_freq": [1, None],
}
KEYS = sorted(VALID)


def _hazardous(path: str, value: Any) -> bool:
    """Values that would really allocate (gigabytes) or loop (billions of times) before any check could refuse them."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return False
    limits = {"algo_kwargs.buffer_size": 10**6, "policy.n_critics": 16, "env_kwargs.action_dim": 64,
              "env_kwargs.context_dim": 64, "n_envs": 8}
    return abs(value) > limits.get(path, math.inf)


def _paths(data: Any, prefix: str = "") -> list[str]:
    """The dotted paths of every mapping key in ``data`` (not into lists)."""
    paths: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str) and "." not in key:
                path = f"{prefix}{key}"
                paths += [path, *_paths(value, path + ".")]
    return paths


def _get(data: dict[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        node = node[part]
    return node


def _delete(data: dict[str, Any], path: str) -> None:
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[part]
    del node[last]


def _typo(rng: random.Random, key: str) -> str:
    i = rng.randrange(len(key))
    return rng.choice([
        key[:i] + key[i + 1:],  # a letter dropped
        key[:i] + rng.choice("aeiou_") + key[i:],  # one added
        key[:i] + key[i + 1:i + 2] + key[i:i + 1] + key[i + 2:],  # two swapped
        key.upper(), key.replace("_", "-"), key + " ",
    ]) or "_"


def _swap_type(rng: random.Random, value: Any) -> Any:
    if isinstance(value, dict):
        return rng.choice([list(value.values()), list(value), str(value), None])
    if isinstance(value, list):
        return rng.choice([{str(i): v for i, v in enumerate(value)}, value[0] if value else 0, str(value), [value]])
    return rng.choice([[value], {"value": value}, str(value), None if value is not None else 0])


def _pick_value(rng: random.Random, path: str) -> Any:
    while True:
        if path in VALID and rng.random() < 0.5:
            value = rng.choice(VALID[path])
        else:
            value = rng.choice(POOL)
        if not _hazardous(path, value):
            return value


def _mutate_data(rng: random.Random, data: dict[str, Any]) -> str:
    """One data-level mutation of ``data``, in place; returns what was done."""
    paths = _paths(data)
    op = rng.choice(["delete", "set", "set", "set", "set", "unknown", "typo", "swap"])
    if op == "delete" and paths:
        path = rng.choice(paths)
        _delete(data, path)
        return f"delete {path}"
    if op == "unknown":
        parent = rng.choice(["", "policy.", "algo_kwargs.", "eval.", "checkpoint.", "logging.", "action_noise."])
        path = parent + rng.choice(["bogus", "Seed", "learning-rate", "1", "policy_kwargs", "seed", "net_arch"])
        value = _pick_value(rng, path)
        _set(data, path, value)
        return f"set {path}={_short(value)}"
    if op == "typo" and paths:
        path = rng.choice(paths)
        *parents, last = path.split(".")
        value = _get(data, path)
        _delete(data, path)
        typo = ".".join([*parents, _typo(rng, last).replace(".", "")])
        _set(data, typo, value)
        return f"rename {path} -> {typo}"
    if op == "swap" and paths:
        path = rng.choice(paths)
        value = _swap_type(rng, _get(data, path))
        if not _hazardous(path, value):
            _set(data, path, value)
        return f"set {path}={_short(value)} (type swap)"
    path = rng.choice(KEYS)
    value = _pick_value(rng, path)
    _set(data, path, value)
    return f"set {path}={_short(value)}"


#: YAML 1.1 scalars and other raw text, written unquoted into the file
RAW_SCALARS = ["1:30", "yes", "no", "on", "off", "y", "0777", "0o17", "0x1F", "1_000", "2001-12-14", ".nan", ".inf",
               "-.inf", "1e400", "~", "!!str 5", "!!float x", "!!int 1.5", "!!binary aGk=", "!!set {a}", "=",
               "*undefined", "&anchor 3", "'unclosed", "[1, 2", "{a: 1", "@reserved", "%x", "`tick", "|\n  text"]


def _mutate_text(rng: random.Random, text: str) -> tuple[bytes, str]:
    """One text-level mutation of a YAML text; returns the bytes and what was done."""
    lines = text.splitlines(keepends=True)
    top = [i for i, line in enumerate(lines) if line[:1].isalpha()]
    op = rng.choice(["duplicate", "bytes", "bom", "tabs", "bomb", "deep", "tag", "truncate", "raw", "raw", "merge"])
    if op == "duplicate" and top:
        i = rng.choice(top)
        block = [lines[i]] + [line for line in lines[i + 1:i + 12] if line.startswith(" ")]
        return (text + "".join(block)).encode(), f"duplicate top-level key {lines[i].split(':')[0]!r}"
    if op == "bytes":
        at = rng.randrange(len(text) + 1)
        junk = rng.choice([b"\xff\xfe", b"\xc3", b"\xe9", b"\x80abc", b"\xed\xa0\x80"])
        data = text.encode()
        return data[:at] + junk + data[at:], f"insert {junk!r} at byte {at}"
    if op == "bom":
        bom = rng.choice([codecs.BOM_UTF8, codecs.BOM_UTF8 * 2, codecs.BOM_UTF16_LE])
        return bom + text.encode(), f"prefix {bom!r}"
    if op == "tabs":
        return text.replace("  ", "\t", rng.randint(1, 3)).encode(), "indent with tabs"
    if op == "bomb":
        return (text + ALIAS_BOMB).encode(), "append an alias bomb"
    if op == "deep":
        n = rng.choice([65, 1000, 10_000])
        return (text + f"env_kwargs: {{a: {'[' * n}{']' * n}}}\n").encode(), f"env_kwargs nested {n} deep"
    if op == "tag":
        tag = rng.choice(["!!python/object/apply:os.system ['true']", "!!python/name:os.system", "!!timestamp 2001"])
        return (text + f"env_kwargs: {{a: {tag}}}\n").encode(), f"tag {tag}"
    if op == "truncate":
        data = text.encode()
        at = rng.randrange(len(data))
        return data[:at], f"truncate at byte {at}"
    if op == "merge":
        return (text + "defaults: &d {freq: 1}\nextra:\n  <<: *d\n").encode(), "merge key"
    # a value replaced by a raw scalar
    values = [i for i, line in enumerate(lines) if ": " in line and not line.rstrip().endswith(":")]
    if not values:
        return text.encode()[: len(text) // 2], "truncate in the middle"
    i = rng.choice(values)
    key, _, _ = lines[i].partition(": ")
    raw = rng.choice(RAW_SCALARS)
    lines[i] = f"{key}: {raw}\n"
    return "".join(lines).encode(), f"{key.strip()}: {raw} (raw)"


#: ``--set`` arguments, some of them odd
OVERRIDES = ["seed=1", "seed=1:30", "seed=yes", "seed=", "=1", "seed", "policy.net_arch=[8]", "policy.net_arch[0]=8",
             "policy.net_arch[9]=8", "policy.losses[0].weight=0.5", "policy.losses[1].name=bc", "policy=1",
             "algo_kwargs.learning_rate=.nan", "algo_kwargs.bogus=1", "a.b.c=1", "eval.freq=[[[[1]]]]", "env_kwargs={",
             "x[0]=1", "seed[0]=1", "policy.losses[0]=1", "algo_kwargs=!!python/name:os.system", "1=1", "é=1",
             "total_timesteps=" + "9" * 5000, "checkpoint.keep=~"]


def random_case(rng: random.Random, index: int) -> Case:
    example = rng.choice(sorted(EXAMPLES))
    data, done = _load(example), []
    for _ in range(rng.choice([1, 1, 2, 3])):
        done.append(_mutate_data(rng, data))
    content = _dump(data)
    if rng.random() < 0.2:
        content, what = _mutate_text(rng, content.decode())
        done.append(what)
    overrides: tuple[str, ...] = ()
    if rng.random() < 0.1:
        overrides = tuple(rng.sample(OVERRIDES, rng.randint(1, 2)))
        done.append(" ".join(f"--set {_short(o)}" for o in overrides))
    return Case(f"#{index} {example}: {'; '.join(done)}", content, overrides=overrides)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


# -- running a case ----------------------------------------------------------------------------


class Hang(BaseException):
    """A config took longer than :data:`TIME_LIMIT` (a BaseException: nothing on the way may swallow it)."""


@pytest.fixture
def stop_after_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    """``diffrl train`` returns 0 once its run folder exists, without training."""

    def no_training(model: Any, config: Any, run: Any, eval_env: Any, output: Any, resumed: bool) -> int:
        output.close()
        for env in (model.get_env(), eval_env):  # what _train closes (subprocess envs have workers)
            if env is not None:
                env.close()
        return 0

    monkeypatch.setattr(diffrl_core.training, "_train", no_training)


@pytest.fixture
def time_limit() -> Iterator[Callable[[float], None]]:
    """``arm(seconds)``: raise :class:`Hang` in the main thread after that long (``arm(0)`` disarms)."""

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise Hang

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        yield lambda seconds: signal.setitimer(signal.ITIMER_REAL, seconds)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _excerpt(text: str, lines: int = 8) -> str:
    kept = [line[:300] for line in text.strip().splitlines()]
    return "\n".join(kept if len(kept) <= lines else [*kept[:3], "...", *kept[-(lines - 4):]])


def check(case: Case, work: Path, index: int, arm: Callable[[float], None]) -> str | None:
    """Run ``diffrl train`` on one case; what is wrong with the outcome, or None."""
    config = work / "configs" / f"case{index:04d}.yaml"
    config.parent.mkdir(exist_ok=True)
    config.write_bytes(case.content)
    runs = work / "runs"
    runs.mkdir(exist_ok=True)
    run = runs / f"case{index:04d}"
    args = ["train", str(config), "--run-dir", str(run)]
    for override in case.overrides:
        args += ["--set", override]
    start = time.monotonic()
    arm(TIME_LIMIT)
    try:
        result: Result = CliRunner().invoke(main, args, catch_exceptions=True)
    except Hang:
        return f"hang: no outcome after {TIME_LIMIT:.0f} s\n    config: {config}"
    finally:
        arm(0)
    seconds = time.monotonic() - start
    problems = _problems(case, result, run, runs)
    if not problems:
        return None
    details = [*problems, f"exit {result.exit_code} after {seconds:.1f} s; output:", _excerpt(result.output)]
    if result.exc_info is not None and not isinstance(result.exception, SystemExit):
        details += ["traceback (last lines):", _excerpt("".join(traceback.format_exception(*result.exc_info)), 6)]
    details.append(f"config: {config}")
    return "\n    ".join(details)


def _problems(case: Case, result: Result, run: Path, runs: Path) -> list[str]:
    problems: list[str] = []
    code, stderr = result.exit_code, result.stderr
    if code not in (0, 2):
        problems.append(f"exit code {code}")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        problems.append(f"exception {type(result.exception).__name__}")
    if "Traceback" in result.output:
        problems.append("a traceback in the output")
    if list(runs.glob(STAGING_PREFIX + "*")):
        problems.append("a staging folder left behind")
    if case.accepted and code != 0:
        problems.append("a valid config was refused")
    if case.refused is not None and code != 2:
        problems.append(f"not refused (expected an error naming {', '.join(case.refused)})")
    if code == 2:
        if not stderr.startswith("Error: "):
            problems.append("the error does not start with 'Error: '")
        if len(stderr) > MAX_MESSAGE:
            problems.append(f"an error of {len(stderr)} characters (at most {MAX_MESSAGE})")
        missing = [fragment for fragment in case.refused or () if fragment not in stderr]
        if missing:
            problems.append(f"the error does not name {', '.join(map(repr, missing))}")
        if run.exists():
            problems.append("a run folder for a refused config")
    if code == 0:
        problems += _check_run(run)
    return problems


def _check_run(run: Path) -> list[str]:
    """An accepted config leaves a run folder whose config.yaml is valid (it can be trained again)."""
    if not (run / "config.yaml").is_file() or not (run / "status.json").is_file():
        return ["exit 0 without a run folder"]
    try:
        parse_config(read_yaml(run / "config.yaml"))
    except ConfigError as exc:
        return [f"the run's config.yaml is refused: {_excerpt(str(exc), 3)}"]
    return []


def _run_all(cases: list[Case], work: Path, arm: Callable[[float], None]) -> None:
    failures = []
    for index, case in enumerate(cases):
        problem = check(case, work, index, arm)
        if problem:
            failures.append(f"{case.name}\n    {problem}")
    assert not failures, f"{len(failures)} of {len(cases)} configs failed:\n\n" + "\n\n".join(failures)


# -- tests -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("stop_after_validation")
def test_listed_invalid_values_are_refused_naming_their_key(
    tmp_path: Path, time_limit: Callable[[float], None]
) -> None:
    _run_all(explicit_cases(), tmp_path, time_limit)


@pytest.mark.usefixtures("stop_after_validation")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_configs_exit_0_or_2(tmp_path: Path, time_limit: Callable[[float], None], seed: int) -> None:
    rng = random.Random(seed)
    _run_all([random_case(rng, i) for i in range(RANDOM_CONFIGS)], tmp_path, time_limit)


@pytest.mark.parametrize(("path", "value"), [("policy.n_critics", 2**32), ("policy.n_critics", 10**6)])
def test_sizes_that_cannot_be_built_are_refused_when_read(tmp_path: Path, path: str, value: int) -> None:
    """Refused when the config is read: composed, they would build critics for hours and exhaust memory.

    Checked with ``load_config`` alone (not through ``diffrl train``), so that the test cannot hang.
    """
    config = tmp_path / "config.yaml"
    config.write_bytes(_with(SAC, {path: value}))
    with pytest.raises(ConfigError, match=path.replace(".", r"\.")):
        load_config(config)

"""Composing policies from names: every valid combination trains, acts and round-trips."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env

from diffrl_core import (
    ConfigError,
    IncompatibleComponentsError,
    UnknownNameError,
    load_model,
    make_model,
)
from diffrl_core.registry import Registry

HEADS = {"deterministic": dict(bounded=True, log_prob=False), "gaussian": dict(bounded=False, log_prob=True),
         "squashed_gaussian": dict(bounded=True, log_prob=True)}
LOSSES = {"q_value": set(), "bc": set(), "sac_entropy": {"log_prob", "alpha"}}
# keeps_log_prob: after which heads the log-prob of the normalized action is known
POSTPROCESSORS = {"identity": dict(needs_bounded=True, keeps_log_prob="always"),
                  "clip": dict(needs_bounded=False, keeps_log_prob="after bounded heads"),
                  "tanh": dict(needs_bounded=False, keeps_log_prob="always")}
TINY = dict(learning_starts=50, batch_size=16, buffer_size=1000)
OBSERVATIONS = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, -3.0], [-0.5, 0.8, 7.0], [0.3, -0.9, 1.5]], dtype=np.float32)


def is_valid(algo: str, head: str, losses: list[str], postprocess: str) -> bool:
    """The composition rules, spelled out independently of the code under test."""
    if algo == "sac" and not HEADS[head]["log_prob"]:
        return False  # SAC's soft target needs a log-prob
    if POSTPROCESSORS[postprocess]["needs_bounded"] and not HEADS[head]["bounded"]:
        return False  # identity only fits heads whose output is already in [-1, 1]
    for loss in losses:
        if "log_prob" in LOSSES[loss] and not HEADS[head]["log_prob"]:
            return False
        if "alpha" in LOSSES[loss] and algo != "sac":
            return False
    needs_log_prob = algo == "sac" or any("log_prob" in LOSSES[loss] for loss in losses)
    known = POSTPROCESSORS[postprocess]["keeps_log_prob"] == "always" or HEADS[head]["bounded"]
    if needs_log_prob and not known:
        return False  # e.g. clip after gaussian: the density of the clipped action is unknown
    return True


LOSS_LISTS = [["q_value"], ["bc"], ["sac_entropy"], ["sac_entropy", "bc"]]
COMBINATIONS = [
    (algo, head, losses, post)
    for algo, head, losses, post in itertools.product(["sac", "td3"], HEADS, LOSS_LISTS, POSTPROCESSORS)
]
VALID = [c for c in COMBINATIONS if is_valid(*c)]
INVALID = [c for c in COMBINATIONS if not is_valid(*c)]


def config_for(algo: str, head: str, losses: list[str], post: str, **extra) -> dict:
    return {
        "env": "Pendulum-v1",
        "algo": algo,
        "policy": {
            "net_arch": [16, 16],
            "head": head,
            "losses": [{"name": name, "weight": 1.0 if i == 0 else 0.5} for i, name in enumerate(losses)],
            "postprocess": post,
        },
        "algo_kwargs": TINY,
        "seed": 3,
        **extra,
    }


def test_the_combination_table_has_both_kinds() -> None:
    assert len(VALID) >= 20 and len(INVALID) >= 10


@pytest.mark.slow
def test_valid_combinations_train_act_and_round_trip(tmp_path: Path) -> None:
    expected = {}
    for algo, head, losses, post in VALID:
        label = f"{algo}-{head}-{'+'.join(losses)}-{post}"
        model = make_model(config_for(algo, head, losses, post))
        model.learn(250)
        assert model._n_updates > 0, label
        low, high = model.action_space.low, model.action_space.high
        for deterministic in (True, False):
            single, _ = model.predict(OBSERVATIONS[0], deterministic=deterministic)
            batched, _ = model.predict(OBSERVATIONS, deterministic=deterministic)
            assert single.shape == (1,) and batched.shape == (4, 1), label
            assert single.dtype == batched.dtype == np.float32, label
            assert np.all((batched >= low) & (batched <= high)) and np.all((single >= low) & (single <= high)), label
        # each term is logged under its own name
        for name in losses:
            assert f"train/loss/{name}" in model.logger.name_to_value, label
        model.save(tmp_path / label)
        expected[label] = model.predict(OBSERVATIONS, deterministic=True)[0].tolist()

    script = (
        "import json, sys, numpy as np\n"
        "from diffrl_core import load_model\n"
        "obs = np.array(json.loads(sys.argv[2]), dtype=np.float32)\n"
        "out = {}\n"
        "for label in json.loads(sys.argv[3]):\n"
        "    model = load_model(sys.argv[1] + '/' + label)\n"
        "    out[label] = model.predict(obs, deterministic=True)[0].tolist()\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), json.dumps(OBSERVATIONS.tolist()), json.dumps(list(expected))],
        capture_output=True, text=True, check=True,
    )
    assert json.loads(result.stdout) == expected


@pytest.mark.parametrize("algo,head,losses,post", INVALID, ids=lambda v: "+".join(v) if isinstance(v, list) else v)
def test_invalid_combinations_are_refused_naming_both(algo, head, losses, post) -> None:
    with pytest.raises(IncompatibleComponentsError) as excinfo:
        make_model(config_for(algo, head, losses, post))
    message = str(excinfo.value)
    assert repr(head) in message or head in message
    assert any(name in message for name in [algo, post, *losses])


def test_unknown_component_suggests_close_names() -> None:
    config = config_for("sac", "squashed_gaussian", ["sac_entropy"], "identity")
    config["policy"]["head"] = "squashed_gausian"
    with pytest.raises(
        UnknownNameError,
        match=r"unknown actor head 'squashed_gausian' \(in policy.head\); did you mean 'squashed_gaussian'",
    ):
        make_model(config)
    config = config_for("sac", "squashed_gaussian", ["sac_entropy", "bcc"], "identity")
    with pytest.raises(UnknownNameError, match=r"policy.losses\[1\].name.*did you mean 'bc'"):
        make_model(config)


@pytest.mark.parametrize(
    "policy,key",
    [({"head": "squashed_gaussian", "head_kwargs": {"log_std_mn": -5}}, "policy.head_kwargs"),
     ({"postprocess": "clip", "postprocess_kwargs": {"limit": 1}}, "policy.postprocess_kwargs"),
     ({"losses": [{"name": "sac_entropy"}, {"name": "bc", "kwargs": {"scale": 2}}]}, r"policy.losses\[1\].kwargs")],
)
def test_component_kwargs_are_checked_when_composing(policy, key) -> None:
    with pytest.raises(ConfigError, match=f"{key}: .* does not take these kwargs"):
        make_model({"env": "Pendulum-v1", "policy": policy})


def test_head_kwargs_reach_the_head() -> None:
    model = make_model({"env": "Pendulum-v1", "policy": {"head": "squashed_gaussian", "net_arch": [8],
                                                         "head_kwargs": {"log_std_init": -1.5, "log_std_max": 0.5}}})
    head = model.actor.head
    assert head.log_std_max == 0.5 and float(head.log_std.bias[0].detach()) == -1.5


def test_unsupported_action_space_is_refused() -> None:
    config = config_for("sac", "squashed_gaussian", ["sac_entropy"], "identity")
    config["env"] = "CartPole-v1"
    with pytest.raises(
        IncompatibleComponentsError, match="head 'squashed_gaussian' cannot act in env 'CartPole-v1'.*Box"
    ):
        make_model(config)


def test_bad_algo_kwargs_name_the_key() -> None:
    config = config_for("sac", "squashed_gaussian", ["sac_entropy"], "identity")
    config["algo_kwargs"] = {"learning_rat": 0.1}
    with pytest.raises(
        ConfigError,
        match="algo_kwargs.learning_rat: not a keyword argument of stable-baselines3's SAC; did you mean 'learning_rat",
    ):
        make_model(config)


def test_unknown_env_id_suggests_close_ids() -> None:
    config = config_for("sac", "squashed_gaussian", ["sac_entropy"], "identity")
    config["env"] = "Pendulum-v2"
    with pytest.raises(UnknownNameError, match="did you mean 'Pendulum-v1'"):
        make_model(config)


def test_missing_plugin_at_load_names_component_and_distribution(tmp_path: Path) -> None:
    model = make_model(config_for("sac", "squashed_gaussian", ["sac_entropy"], "identity"))
    model.save(tmp_path / "model")
    script = (
        "import sys\nfrom diffrl_core import load_model, MissingComponentError\n"
        "try:\n    load_model(sys.argv[1])\nexcept MissingComponentError as exc:\n    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "model.zip")],
        capture_output=True, text=True, check=True,
        env={**__import__("os").environ, "DIFFRL_DISABLE_PLUGINS": "gaussian"},
    )
    assert "unknown actor head 'squashed_gaussian'" in result.stdout
    assert "diffrl-plugin-gaussian" in result.stdout


def test_loading_onto_an_env_with_other_spaces_fails_clearly(tmp_path: Path) -> None:
    model = make_model(config_for("td3", "deterministic", ["q_value"], "identity"))
    model.save(tmp_path / "model")
    with pytest.raises(IncompatibleComponentsError, match="cannot load .* onto this env.*spaces do not match"):
        load_model(tmp_path / "model", env=make_vec_env("MountainCarContinuous-v0"))
    assert load_model(tmp_path / "model", env=make_vec_env("Pendulum-v1")).env.num_envs == 1


def test_saved_model_stores_names_not_classes(tmp_path: Path) -> None:
    import zipfile

    model = make_model(config_for("sac", "gaussian", ["sac_entropy", "bc"], "tanh"))
    model.save(tmp_path / "model")
    data = json.loads(zipfile.ZipFile(tmp_path / "model.zip").read("manifest.json"))
    saved = data["components"]
    assert (
        saved["head"] == {"name": "gaussian", "kwargs": {}} and saved["postprocess"] == {"name": "tanh", "kwargs": {}}
    )
    assert [spec["name"] for spec in saved["losses"]] == ["sac_entropy", "bc"]
    assert saved["provenance"]["actor_heads"]["gaussian"]["distribution"] == "diffrl-plugin-gaussian"
    assert "diffrl_plugin_gaussian" not in json.dumps(data)  # no pickled plugin class anywhere
    assert "composition" not in data["data"] and "head" not in data["data"]["policy_kwargs"]  # saved once


def _as_first_format(data: dict) -> None:
    """A saved model's data the way diffrl 0.1 saved it: names in policy_kwargs, ``unscale``."""
    saved = data["diffrl_components"]
    data["diffrl_components"] = {"algo": saved["algo"], **saved["provenance"]}
    data["policy_kwargs"].update(head=saved["head"]["name"], head_kwargs=saved["head"]["kwargs"],
                                 postprocess="unscale", postprocess_kwargs={})
    data["losses"] = saved["losses"]


def test_a_model_saved_by_diffrl_0_1_still_loads_with_its_former_names(tmp_path: Path, rewrite_saved_data) -> None:
    model = make_model(config_for("sac", "squashed_gaussian", ["sac_entropy", "bc"], "identity"))
    model.learn(120)
    BaseAlgorithm.save(model, tmp_path / "model")  # stable-baselines3's zip, as diffrl 0.1 saved
    rewrite_saved_data(tmp_path / "model.zip", tmp_path / "model.zip", _as_first_format)
    loaded = load_model(tmp_path / "model")
    assert loaded.diffrl_components["postprocess"]["name"] == "identity"  # 'unscale' is identity's alias
    assert [name for name, _, _ in loaded._loss_terms] == ["sac_entropy", "bc"]
    obs = model.env.reset()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


def test_training_loop_never_touches_the_plugin_system(monkeypatch) -> None:
    model = make_model(config_for("sac", "squashed_gaussian", ["sac_entropy", "bc"], "identity"))

    def forbidden(*args, **kwargs):
        raise AssertionError("the registry was used inside the training loop")

    monkeypatch.setattr(Registry, "resolve", forbidden)
    monkeypatch.setattr(Registry, "get", forbidden)
    monkeypatch.setattr("diffrl_core.plugins.load_plugins", forbidden)
    model.learn(120)
    assert model._n_updates > 0


@pytest.mark.slow
def test_subproc_vec_env_on_plugin_env() -> None:
    # SubprocVecEnv workers start with forkserver and load the plugins themselves
    config = config_for("sac", "squashed_gaussian", ["sac_entropy"], "identity", n_envs=2, vec_env="subproc")
    config["env"] = "diffrl/QuadraticBandit-v0"
    model = make_model(config)
    try:
        assert type(model.env).__name__ == "SubprocVecEnv" and model.env.num_envs == 2
        model.learn(120)
        assert model.num_timesteps >= 120
    finally:
        model.env.close()


class LinearTargetBandit(gym.Env):
    """One-step task: observe a context, act; reward -||a - W c||^2. Learnable in a few hundred steps."""

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = spaces.Box(-2.0, 2.0, (2,), np.float32)
        self.weights = np.array([[0.8, -0.4], [0.3, 0.6]], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.context = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return self.context, {}

    def step(self, action):
        reward = -float(np.sum((action - self.weights @ self.context) ** 2))
        return self.context, reward, True, False, {}


@pytest.mark.slow
@pytest.mark.parametrize(
    "algo,head,losses,post",
    [("sac", "squashed_gaussian", ["sac_entropy"], "identity"), ("td3", "deterministic", ["q_value"], "identity"),
     ("sac", "gaussian", ["sac_entropy"], "tanh")],
)
def test_short_learning_check(algo, head, losses, post) -> None:
    config = {
        "env": "unused", "algo": algo,
        "policy": {"net_arch": [32, 32], "head": head, "losses": [{"name": n} for n in losses], "postprocess": post},
        "algo_kwargs": {"learning_starts": 100, "batch_size": 64, "gradient_steps": 2,
                        **({"ent_coef": 0.01, "learning_rate": 3e-3} if algo == "sac" else
                           {"policy_delay": 1, "learning_rate": 1e-3})},
        "action_noise": {"type": "normal", "sigma": 0.2} if algo == "td3" else None,
        "seed": 0,
    }
    env = make_vec_env(LinearTargetBandit)
    model = make_model(config, env=env)
    eval_env = LinearTargetBandit()
    eval_env.reset(seed=123)

    def mean_reward() -> float:
        rewards = []
        for _ in range(200):
            obs, _ = eval_env.reset()
            rewards.append(eval_env.step(model.predict(obs, deterministic=True)[0])[1])
        return float(np.mean(rewards))

    before = mean_reward()
    model.learn(600)
    after = mean_reward()
    # acting 0 scores about -0.42 and a sign mistake worse; random actions about -2.9
    assert after > -0.05, (before, after)


def test_load_model_runs_the_compatibility_checks_of_make_model(tmp_path: Path, rewrite_manifest) -> None:
    """A saved model whose components do not fit (here edited to the pass-through post-processor) is refused."""
    model = make_model(config_for("sac", "gaussian", ["sac_entropy"], "tanh"))
    model.save(tmp_path / "model.zip")

    def to_identity(manifest: dict) -> None:
        saved = manifest["components"]
        saved["postprocess"]["name"] = "identity"
        saved["provenance"]["postprocessors"] = {"identity": saved["provenance"]["postprocessors"]["tanh"]}

    rewrite_manifest(tmp_path / "model.zip", tmp_path / "edited.zip", to_identity)
    with pytest.raises(IncompatibleComponentsError, match="post-processor 'identity'.*cannot follow head 'gaussian'"):
        load_model(tmp_path / "edited.zip")
    with pytest.raises(IncompatibleComponentsError, match="head 'gaussian' cannot act in env 'CartPole-v1'"):
        load_model(tmp_path / "model.zip", env=make_vec_env("CartPole-v1"))


def test_a_component_that_cannot_be_built_is_named_with_its_plugin(fresh_global_host, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """An abstract head, and a head whose constructor fails, are errors naming the head and its plugin."""
    import importlib

    import diffrl_core.plugins
    from diffrl_core import ComponentError

    (tmp_path / "broken_heads.py").write_text(
        "from diffrl_core import hookimpl\n"
        "from diffrl_core.components import ActorHead\n\n"
        "class Abstract(ActorHead):\n    stochastic = False\n\n"
        "class Crashing(ActorHead):\n"
        "    def __init__(self, latent_dim, action_dim):\n        raise RuntimeError('no GPU here')\n\n"
        "    def forward(self, latent, deterministic=False):\n        return latent\n\n"
        "@hookimpl\ndef register_actor_heads(register):\n"
        "    register('abstract_head', 'broken_heads:Abstract')\n"
        "    register('crashing_head', 'broken_heads:Crashing')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    host = diffrl_core.plugins.load_plugins()
    assert host.register_plugin(importlib.import_module("broken_heads"), "broken")
    config = config_for("td3", "abstract_head", ["q_value"], "tanh")
    with pytest.raises(IncompatibleComponentsError, match="head 'abstract_head' of plugin 'broken'.* is abstract"):
        make_model(config)
    config = config_for("td3", "crashing_head", ["q_value"], "tanh")
    with pytest.raises(ComponentError, match="head 'crashing_head' \\(plugin 'broken'.*RuntimeError: no GPU here"):
        make_model(config)

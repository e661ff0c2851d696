"""PPO and A2C composed from names: every combination trains, acts in bounds and loads in a fresh process; the
others are refused naming the component."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from diffrl_core import load_model, make_model
from diffrl_core.errors import ConfigError, IncompatibleComponentsError
from diffrl_core.plugins import load_plugins
from diffrl_core.testing import discrete_env

ALGOS = ("ppo", "a2c")
TINY: dict[str, dict[str, Any]] = {"ppo": {"n_steps": 16, "batch_size": 8, "n_epochs": 2}, "a2c": {"n_steps": 8}}
CONTINUOUS_ENV, DISCRETE_ENV = "Pendulum-v1", "CartPole-v1"


def _config(algo: str, env: str = CONTINUOUS_ENV, **policy: Any) -> dict[str, Any]:
    return {"env": env, "algo": algo, "seed": 0, "policy": {"net_arch": [8], **policy},
            "algo_kwargs": dict(TINY[algo])}


def _culprits(registry: Any, algo: str, head: str, post: str, loss: str) -> list[str]:
    """The components that make (head, post, loss) invalid under PPO/A2C, by the components' declarations."""
    head_cls = registry("actor_heads").resolve(head)
    post_cls = registry("postprocessors").resolve(post)
    culprits = [] if head_cls.evaluates_actions else [head]
    culprits += [] if registry("loss_terms").resolve(loss).check_compatible(head_cls, algo) is None else [loss]
    if head_cls.action_space_kind != "box":
        culprits += [] if post == "identity" else [post]
    elif post_cls.check_head(head_cls) is not None:
        culprits.append(post)
    return culprits


def _observations(env_id: str, n: int = 4) -> np.ndarray:
    env = gym.make(env_id)
    return np.stack([env.reset(seed=seed)[0] for seed in range(n)])


@pytest.mark.slow
@pytest.mark.parametrize("algo", ALGOS)
def test_every_combination_trains_acts_in_bounds_and_loads_in_a_fresh_process(algo: str, tmp_path: Path) -> None:
    host = load_plugins()
    names = {kind: sorted(r.name for r in host.registry(kind)) for kind in ("actor_heads", "postprocessors",
                                                                           "loss_terms")}
    saved: list[tuple[str, str, np.ndarray, list[Any]]] = []
    refused = 0
    for head in names["actor_heads"]:
        kind = host.registry("actor_heads").resolve(head).action_space_kind
        env_id = CONTINUOUS_ENV if kind == "box" else discrete_env(kind)  # CartPole, SB3's identity envs
        space, obs = gym.make(env_id).action_space, _observations(env_id)
        for post in names["postprocessors"]:
            for loss in names["loss_terms"]:
                config = _config(algo, env_id, head=head, postprocess=post, losses=[{"name": loss}])
                culprits = _culprits(host.registry, algo, head, post, loss)
                label = f"{algo} {head} + {post} + {loss}"
                if culprits:
                    with pytest.raises(IncompatibleComponentsError) as refusal:
                        make_model(config)
                    assert any(repr(name) in str(refusal.value) for name in culprits), (label, str(refusal.value))
                    refused += 1
                    continue
                model = make_model(config)
                model.learn(2 * TINY[algo]["n_steps"])
                assert model._n_updates > 0, label
                for deterministic in (True, False):
                    actions, _ = model.predict(obs, deterministic=deterministic)
                    assert all(space.contains(np.asarray(a, dtype=space.dtype)) for a in actions), (label, actions)
                path = tmp_path / f"{len(saved)}.zip"
                model.save(path)
                saved.append((label, str(path), obs, model.predict(obs, deterministic=True)[0].tolist()))
    # 4 continuous heads x their post-processors x their terms (ppo_clip is PPO's), + the 3 discrete heads
    assert refused > 0 and len(saved) >= (60 if algo == "ppo" else 40)
    script = (
        "import json, sys\nimport numpy as np\nfrom diffrl_core import load_model\n"
        "out = [load_model(path).predict(np.asarray(obs), deterministic=True)[0].tolist()\n"
        "       for path, obs in json.loads(sys.argv[1])]\n"
        "print('RESULT ' + json.dumps(out))\n"
    )
    # the same observations (SB3's identity envs draw theirs from an unseeded space)
    jobs = [(path, obs.tolist()) for _, path, obs, _ in saved]
    result = subprocess.run([sys.executable, "-c", script, json.dumps(jobs)], capture_output=True, text=True,
                            timeout=600, env={"OMP_NUM_THREADS": "1", **__import__("os").environ})
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))[7:])
    for (label, _, _, expected), actual in zip(saved, loaded, strict=True):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6, err_msg=label)


# -- what is refused, and where ------------------------------------------------------------------


@pytest.mark.parametrize("algo", ALGOS)
def test_off_policy_terms_are_refused_under_on_policy_algorithms_naming_them(algo: str) -> None:
    with pytest.raises(IncompatibleComponentsError, match=r"loss term 'q_value'.*is an off-policy term"):
        make_model(_config(algo, head="beta", losses=[{"name": "entropy_bonus"}, {"name": "q_value"}]))


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_on_policy_terms_are_refused_under_off_policy_algorithms(algo: str) -> None:
    config = {"env": CONTINUOUS_ENV, "algo": algo, "policy": {"head": "squashed_gaussian",
                                                              "losses": [{"name": "ppo_clip"}]}}
    with pytest.raises(IncompatibleComponentsError, match=r"loss term 'ppo_clip'.*is an on-policy term"):
        make_model(config)


def test_a_head_without_the_log_prob_of_given_actions_is_refused() -> None:
    with pytest.raises(IncompatibleComponentsError, match=r"algo 'ppo' cannot train head 'deterministic'.*"
                                                          r"evaluates_actions"):
        make_model(_config("ppo", head="deterministic"))


def test_a_discrete_head_needs_a_discrete_space_and_no_post_processor() -> None:
    with pytest.raises(IncompatibleComponentsError, match=r"head 'categorical' cannot act in env 'Pendulum-v1'"):
        make_model(_config("ppo", head="categorical"))
    with pytest.raises(IncompatibleComponentsError, match=r"post-processor 'tanh'.*Leave policy.postprocess unset"):
        make_model(_config("ppo", DISCRETE_ENV, head="categorical", postprocess="tanh"))
    with pytest.raises(IncompatibleComponentsError, match=r"algo 'sac' cannot train head 'categorical'"):
        make_model({"env": DISCRETE_ENV, "algo": "sac", "policy": {"head": "categorical"}})
    with pytest.raises(IncompatibleComponentsError, match=r"head 'diag_gaussian' cannot act in env 'CartPole-v1'"):
        make_model(_config("ppo", DISCRETE_ENV, head="diag_gaussian"))


def test_ent_coef_with_explicit_losses_is_refused_naming_the_term_to_weight() -> None:
    config = _config("ppo", losses=[{"name": "ppo_clip"}])
    config["algo_kwargs"]["ent_coef"] = 0.01
    with pytest.raises(ConfigError, match=r"algo_kwargs.ent_coef: with policy.losses set.*'entropy_bonus'"):
        make_model(config)


def test_ent_coef_that_no_term_carries_is_refused_from_python() -> None:
    from stable_baselines3.common.env_util import make_vec_env

    from diffrl_core.config import parse_config
    from diffrl_core.resolve import resolve_composition
    from diffrl_core.sb3.on_policy import ComposedPPO

    composition = resolve_composition(parse_config(_config("ppo", losses=[{"name": "ppo_clip"}])), load_plugins())
    with pytest.raises(ConfigError, match=r"ent_coef=0.05 would be ignored.*has none"):
        ComposedPPO("MlpPolicy", make_vec_env(CONTINUOUS_ENV), composition=composition, ent_coef=0.05)


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("rollout_buffer_class", "RolloutBuffer", r"algo_kwargs.rollout_buffer_class: not supported under algo 'ppo'"),
    ("buffer_size", 100, r"algo_kwargs.buffer_size: not a keyword argument of stable-baselines3's PPO"),
    ("clip_range", 0.0, r"algo_kwargs.clip_range: expected a positive number"),
    ("batch_size", 1, r"algo_kwargs.batch_size"),
    ("n_epochs", 0, r"algo_kwargs.n_epochs"),
])
def test_ppo_algo_kwargs_are_checked(key: str, value: Any, expected: str) -> None:
    config = _config("ppo")
    config["algo_kwargs"][key] = value
    with pytest.raises(ConfigError, match=expected):
        make_model(config)


@pytest.mark.parametrize(("policy", "expected"), [
    ({"n_critics": 3}, r"policy.n_critics: only for algo sac or td3"),
    ({"net_arch": {"pi": [8], "qf": [8]}}, r"policy.net_arch.qf: algo 'ppo' sizes its value function with 'vf'"),
    ({"head": "beta", "raw_log_prob": True}, r"policy.raw_log_prob: true has no effect"),
])
def test_policy_keys_of_another_algorithm_are_refused(policy: dict[str, Any], expected: str) -> None:
    with pytest.raises((ConfigError, IncompatibleComponentsError), match=expected):
        make_model(_config("ppo", **policy))


def test_ortho_init_is_refused_under_sac() -> None:
    with pytest.raises(ConfigError, match=r"policy.ortho_init: only for algo ppo or a2c"):
        make_model({"env": CONTINUOUS_ENV, "algo": "sac", "policy": {"ortho_init": False}})


# -- what a user sees ----------------------------------------------------------------------------


def test_the_default_post_processor_follows_the_head() -> None:
    """PPO/A2C: an unbounded head is clipped to the env's bounds as in SB3, a bounded one passes through."""
    assert make_model(_config("ppo", head="gaussian")).composition.postprocessor.name == "clip_to_bounds"
    assert make_model(_config("ppo", head="beta")).composition.postprocessor.name == "identity"
    assert make_model(_config("a2c", DISCRETE_ENV)).composition.postprocessor.name == "identity"


def test_each_loss_term_is_logged_under_its_name(tmp_path: Path) -> None:
    from stable_baselines3.common.logger import configure

    model = make_model(_config("ppo", head="beta", losses=[{"name": "ppo_clip"},
                                                           {"name": "entropy_bonus", "weight": 0.01}]))
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(32)
    columns = (tmp_path / "progress.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss/ppo_clip", "train/loss/entropy_bonus", "train/value_loss"} <= set(columns)


def test_a_saved_ppo_model_loads_with_its_components_and_stable_baselines3s_loader(tmp_path: Path) -> None:
    from diffrl_core.sb3.on_policy import ComposedPPO

    model = make_model(_config("ppo", head="beta", losses=[{"name": "ppo_clip"},
                                                           {"name": "entropy_bonus", "weight": 0.02}]))
    model.learn(32)
    model.save(tmp_path / "model.zip")
    obs = _observations(CONTINUOUS_ENV)
    expected = model.predict(obs, deterministic=True)[0]
    env = gym.make(CONTINUOUS_ENV)
    for loaded in (load_model(tmp_path / "model.zip", env=env), ComposedPPO.load(tmp_path / "model.zip", env=env)):
        assert loaded.composition.head.name == "beta"
        assert [(t.name, t.weight) for t in loaded.composition.loss_terms] == [("ppo_clip", 1.0),
                                                                                ("entropy_bonus", 0.02)]
        np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], expected)
        loaded.learn(32)  # and it trains on


def test_ppo_clip_takes_its_own_clip_range_and_is_refused_under_a2c() -> None:
    model = make_model(_config("ppo", head="beta", losses=[{"name": "ppo_clip", "kwargs": {"clip_range": 0.1}}]))
    model.learn(32)
    with pytest.raises(ConfigError, match=r"clip_range must be a positive number"):
        make_model(_config("ppo", head="beta", losses=[{"name": "ppo_clip", "kwargs": {"clip_range": -1}}]))
    with pytest.raises(IncompatibleComponentsError, match=r"loss term 'ppo_clip'.*A2C takes one gradient step"):
        make_model(_config("a2c", head="beta", losses=[{"name": "ppo_clip"}]))


# -- from the examples, through the CLI ----------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # CLI training runs and their evaluation in fresh processes
@pytest.mark.parametrize("example", ["pendulum_ppo_beta.yaml", "cart_pole_ppo.yaml"])
def test_diffrl_train_eval_and_resume_ppo_from_the_examples(example: str, tmp_path: Path) -> None:
    import os

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"
    short = ["--set", "total_timesteps=1024", "--set", "algo_kwargs.n_steps=64", "--set", "eval.freq=512",
             "--set", "eval.n_episodes=2", "--set", "checkpoint.freq=512"]
    if example.startswith("cart_pole"):
        short += ["--set", "algo_kwargs.batch_size=64"]
    train = subprocess.run([sys.executable, "-m", "diffrl_core.cli", "train", str(REPO / "examples" / example),
                            "--run-dir", str(run), *short], capture_output=True, text=True, env=env, timeout=600)
    assert train.returncode == 0, train.stderr
    assert json.loads((run / "status.json").read_text())["status"] == "finished"
    evaluated = subprocess.run([sys.executable, "-m", "diffrl_core.cli", "eval", str(run), "--episodes", "2",
                                "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr
    assert len(json.loads(evaluated.stdout)["returns"]) == 2
    resumed = subprocess.run([sys.executable, "-m", "diffrl_core.cli", "train", "--resume", str(run),
                              "--set", "total_timesteps=2048"], capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "status.json").read_text())["num_timesteps"] >= 2048


def test_a_bad_on_policy_combination_exits_2_from_the_cli_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("env: Pendulum-v1\nalgo: ppo\npolicy: {head: deterministic}\n")
    result = subprocess.run([sys.executable, "-m", "diffrl_core.cli", "train", str(config), "--run-dir",
                             str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "head 'deterministic'" in result.stderr and "Traceback" not in result.stderr


def test_the_default_head_of_a_discrete_env_needs_no_gaussian_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """PPO/A2C on CartPole with no head: categorical (core), even with diffrl-plugin-gaussian disabled."""
    from diffrl_core.config import parse_config
    from diffrl_core.plugins import PluginHost
    from diffrl_core.resolve import check_names

    monkeypatch.setenv("DIFFRL_DISABLE_PLUGINS", "gaussian")
    host = PluginHost().load()
    config = parse_config({"env": DISCRETE_ENV, "algo": "ppo", "policy": {"postprocess": "identity"}})
    check_names(config, host)
    model = make_model(config, host=host)
    assert model.composition.head.name == "categorical"


def test_action_noise_is_refused_under_on_policy_algorithms() -> None:
    config = _config("ppo")
    config["action_noise"] = {"type": "normal", "sigma": 0.1}
    with pytest.raises(ConfigError, match=r"action_noise: only for algo sac or td3"):
        make_model(config)


def test_gsde_with_a_head_that_does_not_support_it_is_refused_naming_it() -> None:
    config = _config("ppo", head="beta")
    config["algo_kwargs"]["use_sde"] = True
    with pytest.raises(IncompatibleComponentsError, match=r"use_sde: actor head 'beta'.*does not support .*gSDE"):
        make_model(config)


def test_a_squashed_gaussian_under_ppo_gsde_trains_and_evaluates_its_actions() -> None:
    """SAC's squashed gSDE head also under PPO: the log-prob of the buffer's (squashed) actions is its own."""
    import torch as th

    config = _config("ppo", head="squashed_gaussian", head_kwargs={"log_std_init": -1.0})
    config["algo_kwargs"].update(use_sde=True, sde_sample_freq=4)
    model = make_model(config)
    assert model.policy.head.use_sde and model.composition.postprocessor.name == "identity"
    model.learn(64)
    buffer = model.rollout_buffer
    obs = th.as_tensor(buffer.observations.reshape(-1, 3)[:8])
    actions = th.as_tensor(buffer.actions.reshape(-1, 1)[:8])
    _, evaluation = model.policy.evaluate(obs, actions)
    assert th.isfinite(evaluation.log_prob).all() and evaluation.entropy is None
    assert np.abs(buffer.actions).max() <= 1.0

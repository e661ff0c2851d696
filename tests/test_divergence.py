"""Divergence is caught, never saved: NaN from a head, a loss term, a post-processor or the env.

Each fault is injected by a component of a test plugin once it has been called a number of
times, under SAC and TD3, through ``diffrl train``. The run must stop naming the component
(or the env) and the step, be marked ``diverged``, keep a checkpoint with finite weights, and
continue from it with ``--resume`` and a changed learning rate once the fault is gone.
"""

from __future__ import annotations

import importlib
import json
import math
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import gymnasium
import pytest
import torch as th
from click.testing import CliRunner

import diffrl_core.plugins
from diffrl_core import DivergenceError, make_model
from diffrl_core.cli import main

FAULTY_PLUGIN = '''
import gymnasium
import torch as th

from diffrl_core import hookimpl
from diffrl_core.builtin.losses import PolicyGradientLoss, QValueLoss
from diffrl_core.builtin.postprocessors import Identity
from diffrl_plugin_gaussian.heads import SquashedGaussianHead

#: which component turns NaN ("head", "loss", "postprocess", "env"), after how many calls
FAULT = {"what": None, "after": 0, "calls": 0}


def fire(what):
    if FAULT["what"] != what:
        return False
    FAULT["calls"] += 1
    return FAULT["calls"] > FAULT["after"]


class NanHead(SquashedGaussianHead):
    def params(self, latent):
        params = super().params(latent)
        if fire("head"):
            params["mean"] = params["mean"] * float("nan")
        return params


class NanLoss(QValueLoss):
    def __call__(self, ctx):
        value = super().__call__(ctx)
        return value * float("nan") if fire("loss") else value


class NanGradientLoss(QValueLoss):
    """A finite value whose gradient is infinite: sqrt at 0."""

    def __call__(self, ctx):
        value = super().__call__(ctx)
        if fire("gradient"):
            value = value + th.sqrt(ctx.actions - ctx.actions.detach()).sum()
        return value


class NanPolicyGradient(PolicyGradientLoss):
    """On-policy: a NaN value, or a finite value whose gradient is infinite (sqrt at 0)."""

    def __call__(self, ctx):
        value = super().__call__(ctx)
        if fire("loss"):
            return value * float("nan")
        if fire("gradient"):
            return value + th.sqrt(ctx.log_prob - ctx.log_prob.detach()).sum()
        return value


class NanPostprocessor(Identity):
    def forward(self, raw_actions, explore=False):
        return raw_actions * float("nan") if fire("postprocess") else raw_actions


class NanPendulum(gymnasium.Wrapper):
    def __init__(self):
        super().__init__(gymnasium.make("Pendulum-v1"))

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return (obs * float("nan") if fire("env") else obs), reward, terminated, truncated, info


@hookimpl
def register_actor_heads(register):
    register("nan_head", "faulty_components:NanHead")


@hookimpl
def register_loss_terms(register):
    register("nan_loss", "faulty_components:NanLoss")
    register("nan_gradient_loss", "faulty_components:NanGradientLoss")
    register("nan_policy_gradient", "faulty_components:NanPolicyGradient")


@hookimpl
def register_postprocessors(register):
    register("nan_postprocess", "faulty_components:NanPostprocessor")


@hookimpl
def register_envs(register):
    register("faulty/NanPendulum-v0", "faulty_components:NanPendulum")
'''

CONFIG = """\
env: {env}
algo: {algo}
policy: {{net_arch: [16], head: {head}, postprocess: {post}, losses: {losses}}}
algo_kwargs: {{learning_starts: 100, batch_size: 16, buffer_size: 2000}}
total_timesteps: 600
seed: 0
eval: {{freq: 0, final: false}}
checkpoint: {{freq: 200}}
logging: {{tensorboard: false}}
"""

#: fault -> (the config's components, what the message must name); the fault fires at about step 300
FAULTS: dict[str, dict[str, Any]] = {
    "head": {"head": "nan_head", "named": "head 'nan_head' (plugin 'faulty'"},
    "loss": {"losses": ["nan_loss"], "named": "loss term 'nan_loss' (plugin 'faulty'"},
    "postprocess": {"post": "nan_postprocess", "named": "post-processor 'nan_postprocess' (plugin 'faulty'"},
    "env": {"env": "faulty/NanPendulum-v0", "named": "env 'faulty/NanPendulum-v0'"},
}


@pytest.fixture
def faulty(fresh_global_host: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    (tmp_path / "faulty_components.py").write_text(FAULTY_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("faulty_components")
    host = diffrl_core.plugins.load_plugins()
    assert host.register_plugin(module, "faulty")
    host._commit_envs()  # the env claims of a plugin registered after loading
    yield module
    module.FAULT.update(what=None, calls=0)


def _config(tmp_path: Path, algo: str, fault: str) -> Path:
    spec = FAULTS[fault]
    default_losses = ["sac_entropy"] if algo == "sac" else ["q_value"]
    extra = ["sac_entropy"] if algo == "sac" else []
    path = tmp_path / f"{algo}_{fault}.yaml"
    path.write_text(CONFIG.format(
        env=spec.get("env", "Pendulum-v1"), algo=algo,
        head=spec.get("head", "squashed_gaussian"), post=spec.get("post", "identity"),
        losses=json.dumps([{"name": name} for name in (extra + spec.get("losses", [])) or default_losses]),
    ))
    return path


def _finite_weights(model_zip: Path) -> bool:
    from safetensors.torch import load

    with zipfile.ZipFile(model_zip) as archive:
        state = load(archive.read("policy.safetensors"))
    return all(bool(th.isfinite(tensor).all()) for tensor in state.values())


@pytest.mark.slow
@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_nan_stops_the_run_naming_its_source_and_resume_continues(
    faulty: ModuleType, tmp_path: Path, algo: str, fault: str
) -> None:
    config, run = _config(tmp_path, algo, fault), tmp_path / "run"
    # after about 300 env steps (the env steps once per step, TD3's loss every other update; the head and the
    # post-processor run in rollouts and updates)
    faulty.FAULT.update(what=fault, calls=0, after={"env": 300, "loss": 100}.get(fault, 400))
    result = CliRunner().invoke(main, ["train", str(config), "--run-dir", str(run)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "training diverged at step" in result.output and FAULTS[fault]["named"] in result.output, result.output
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "diverged" and status["diverged_at"] >= 200
    assert status["checkpoint"] == "checkpoints/model_200.zip" or status["checkpoint_timesteps"] >= 200
    assert not (run / "model.zip").exists()
    for checkpoint in (run / "checkpoints").glob("model_*.zip"):
        assert _finite_weights(checkpoint), checkpoint
    assert f"diffrl train --resume {run}" in result.output

    faulty.FAULT.update(what=None)  # the fault is fixed: continue from the last finite checkpoint
    resumed = CliRunner().invoke(main, ["train", "--resume", str(run), "--set", "algo_kwargs.learning_rate=0.0001"])
    assert resumed.exit_code == 0, resumed.output
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "finished" and status["num_timesteps"] == 600
    assert _finite_weights(run / "model.zip")
    config_after = (run / "config.yaml").read_text()
    assert "learning_rate: 0.0001" in config_after


def test_an_infinite_loss_term_value_is_caught_in_process(faulty: ModuleType) -> None:
    """make_model(...).learn() (the Python API) stops too, naming the term, before any NaN update."""
    model = make_model({
        "env": "Pendulum-v1", "algo": "td3",
        "policy": {"net_arch": [8], "head": "deterministic", "losses": [{"name": "q_value"}, {"name": "nan_loss"}]},
        "algo_kwargs": {"learning_starts": 50, "batch_size": 8, "buffer_size": 500},
        "seed": 0,
    })
    faulty.FAULT.update(what="loss", calls=0, after=3)
    with pytest.raises(DivergenceError, match="loss term 'nan_loss'.*non-finite value") as info:
        model.learn(200)
    assert info.value.num_timesteps > 50
    assert all(bool(th.isfinite(p).all()) for p in model.policy.parameters())


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_a_non_finite_gradient_of_a_finite_loss_is_caught_before_the_step(faulty: ModuleType, algo: str) -> None:
    model = make_model({
        "env": "Pendulum-v1", "algo": algo,
        "policy": {"net_arch": [8], "losses": [{"name": "sac_entropy" if algo == "sac" else "q_value"},
                                              {"name": "nan_gradient_loss"}]},
        "algo_kwargs": {"learning_starts": 50, "batch_size": 8, "buffer_size": 500},
        "seed": 0,
    })
    faulty.FAULT.update(what="gradient", calls=0, after=3)
    with pytest.raises(DivergenceError, match="loss term 'nan_gradient_loss'.*non-finite gradient"):
        model.learn(200)
    assert all(bool(th.isfinite(p).all()) for p in model.policy.parameters())


def test_a_nan_observation_is_caught_before_the_replay_buffer(faulty: ModuleType) -> None:
    model = make_model({
        "env": "faulty/NanPendulum-v0", "algo": "sac", "policy": {"net_arch": [8]},
        "algo_kwargs": {"learning_starts": 500, "buffer_size": 500}, "seed": 0,
    })
    faulty.FAULT.update(what="env", calls=0, after=20)
    with pytest.raises(DivergenceError, match="training diverged at step 21: env 'faulty/NanPendulum-v0'"):
        model.learn(100)
    assert model.replay_buffer.size() == 20
    assert all(math.isfinite(x) for x in model.replay_buffer.observations[:20].ravel())


def test_a_diverged_model_is_never_saved_as_a_checkpoint(faulty: ModuleType, tmp_path: Path) -> None:
    from diffrl_core import runs
    from diffrl_core.callbacks import Checkpointer, TrainingOutput
    from diffrl_core.config import parse_config

    config = parse_config({"env": "Pendulum-v1", "policy": {"net_arch": [8]}})
    model = make_model(config)
    run = runs.create_run_dir(tmp_path / "run", runs.resolved_config(config), {"status": "running"})
    checkpointer = Checkpointer(run, config, TrainingOutput(bar=False))
    checkpointer.save(model)
    with th.no_grad():
        next(model.critic.parameters()).fill_(float("nan"))
    with pytest.raises(DivergenceError, match="the update of the critic produced a non-finite weights"):
        checkpointer.save(model, run.model_file)
    assert not run.model_file.exists()
    assert json.loads(run.status_file.read_text())["checkpoint"] == "checkpoints/model_0.zip"


def test_gymnasium_registry_is_left_clean(faulty: ModuleType) -> None:
    assert "faulty/NanPendulum-v0" in gymnasium.registry


# -- PPO and A2C ---------------------------------------------------------------------------------


def _on_policy(algo: str, env: str = "Pendulum-v1", **policy: Any) -> dict[str, Any]:
    return {"env": env, "algo": algo, "seed": 0, "policy": {"net_arch": [8], **policy},
            "algo_kwargs": {"n_steps": 32, **({"batch_size": 16, "n_epochs": 2} if algo == "ppo" else {})}}


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
@pytest.mark.parametrize("fault", ["loss", "gradient"])
def test_on_policy_a_non_finite_loss_term_or_gradient_stops_before_the_step(faulty: ModuleType, algo: str,
                                                                           fault: str) -> None:
    model = make_model(_on_policy(algo, losses=[{"name": "nan_policy_gradient"}]))
    faulty.FAULT.update(what=fault, calls=0, after=2)
    named = "loss term 'nan_policy_gradient'.*non-finite value" if fault == "loss" else "non-finite gradient"
    with pytest.raises(DivergenceError, match=named):
        model.learn(320)
    assert all(bool(th.isfinite(p).all()) for p in model.policy.parameters())


def test_on_policy_a_nan_observation_is_caught_before_the_rollout_buffer(faulty: ModuleType) -> None:
    model = make_model(_on_policy("ppo", env="faulty/NanPendulum-v0"))
    faulty.FAULT.update(what="env", calls=0, after=20)
    with pytest.raises(DivergenceError, match="training diverged at step 21: env 'faulty/NanPendulum-v0'.*"
                                              "non-finite observation"):
        model.learn(100)
    assert model.rollout_buffer.pos == 20


def test_on_policy_a_head_emitting_nan_is_named(faulty: ModuleType) -> None:
    model = make_model(_on_policy("ppo", head="nan_head"))
    faulty.FAULT.update(what="head", calls=0, after=5)
    with pytest.raises(DivergenceError, match="head 'nan_head' \\(plugin 'faulty'"):
        model.learn(100)


def test_on_policy_a_post_processor_emitting_nan_is_named_before_the_env_gets_it(faulty: ModuleType) -> None:
    model = make_model(_on_policy("a2c", head="beta", postprocess="nan_postprocess"))
    faulty.FAULT.update(what="postprocess", calls=0, after=5)
    with pytest.raises(DivergenceError, match="post-processor 'nan_postprocess' \\(plugin 'faulty'.*non-finite action"):
        model.learn(100)
    assert model.num_timesteps == 5

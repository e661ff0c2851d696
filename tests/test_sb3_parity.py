"""What a stable-baselines3 user has, the composed classes have too.

Policy aliases, Dict and image observations (with every head and post-processor of this
repo), HER, gSDE, feature extractors and optimizers by name, the actor and the policy saved
on their own, stable-baselines3's defaults per algorithm, and gymnasium's MuJoCo and Box2D
envs out of the box. stable-baselines3's own test suite runs against the composed classes in
``tests/test_sb3_suite.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.envs import FakeImageEnv, SimpleMultiObsEnv
from stable_baselines3.common.torch_layers import CombinedExtractor, FlattenExtractor, NatureCNN
from stable_baselines3.common.vec_env import VecTransposeImage
from stable_baselines3.her import HerReplayBuffer

from diffrl_core import load_model, make_model
from diffrl_core.config import parse_config
from diffrl_core.errors import ConfigError, DiffRLError, IncompatibleComponentsError, ModelFileError, ModelSaveError
from diffrl_core.model_data import allow_classes
from diffrl_core.plugins import load_plugins
from diffrl_core.resolve import resolve_composition
from diffrl_core.sb3.algorithms import ComposedSAC, ComposedTD3
from diffrl_core.sb3.policies import ComposedActor, ComposedSACPolicy, _ComposedPolicyMixin

GOAL_ENV = "diffrl/PointMassGoal-v0"
PIXEL_ENV = "diffrl/PointMassPixels-v0"
STOCK = {"sac": SAC, "td3": TD3}
COMPOSED = {"sac": ComposedSAC, "td3": ComposedTD3}
TINY = dict(learning_starts=10, batch_size=8, buffer_size=500)


def _stock_and_composed_envs() -> dict[str, Any]:
    return {
        "MlpPolicy": lambda: gym.make("Pendulum-v1"),
        "CnnPolicy": lambda: FakeImageEnv(action_dim=2, screen_height=36, screen_width=36, discrete=False),
        "MultiInputPolicy": lambda: SimpleMultiObsEnv(discrete_actions=False),
    }


def _parameters(module: th.nn.Module) -> list[np.ndarray]:
    return [p.detach().cpu().numpy().copy() for p in module.parameters()]


def _same_parameters(a: th.nn.Module, b: th.nn.Module) -> bool:
    pa, pb = _parameters(a), _parameters(b)
    return [p.shape for p in pa] == [p.shape for p in pb] and all(
        np.array_equal(x, y) for x, y in zip(pa, pb, strict=True)
    )


# -- policy aliases ------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["sac", "td3"])
@pytest.mark.parametrize("alias", ["MlpPolicy", "CnnPolicy", "MultiInputPolicy"])
def test_policy_aliases_build_sb3s_networks_with_a_composed_actor(algo: str, alias: str) -> None:
    make_env = _stock_and_composed_envs()[alias]
    stock = STOCK[algo](alias, make_env(), seed=0, **TINY)
    composed = COMPOSED[algo](alias, make_env(), seed=0, **TINY)
    assert isinstance(composed.policy, _ComposedPolicyMixin) and isinstance(composed.actor, ComposedActor)
    assert type(composed.actor.features_extractor) is type(stock.actor.features_extractor)
    # SB3's own actor as components: the same seed gives the same networks, weight for weight
    assert _same_parameters(composed.actor, stock.actor)
    assert _same_parameters(composed.critic, stock.critic)
    composed.learn(30)
    action, _ = composed.predict(composed.observation_space.sample() if alias == "MlpPolicy" else
                                 make_env().observation_space.sample(), deterministic=True)
    assert composed.action_space.contains(action.astype(np.float32))


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_a_stock_policy_class_is_refused_with_the_aliases(algo: str) -> None:
    with pytest.raises(DiffRLError, match="its actor is not composed.*'MlpPolicy', 'CnnPolicy', 'MultiInputPolicy'"):
        COMPOSED[algo](STOCK[algo].policy_aliases["MlpPolicy"], "Pendulum-v1")


def test_an_unknown_policy_alias_is_refused() -> None:
    with pytest.raises(ValueError, match="MlpPolicyy"):
        ComposedSAC("MlpPolicyy", "Pendulum-v1")


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_a_model_built_from_an_alias_saves_and_loads_with_both_loaders(algo: str, tmp_path: Path) -> None:
    model = COMPOSED[algo]("MultiInputPolicy", SimpleMultiObsEnv(discrete_actions=False), seed=0, **TINY)
    model.learn(20)
    model.save(tmp_path / "model")
    obs = SimpleMultiObsEnv(discrete_actions=False).reset(seed=1)[0]
    expected, _ = model.predict(obs, deterministic=True)
    for loaded in (COMPOSED[algo].load(tmp_path / "model"), load_model(tmp_path / "model")):
        assert type(loaded.policy) is type(model.policy)
        np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], expected)


# -- stable-baselines3's defaults ----------------------------------------------------------------

HYPERPARAMETERS = ("learning_rate", "buffer_size", "learning_starts", "batch_size", "tau", "gamma", "train_freq",
                   "gradient_steps", "n_steps", "optimize_memory_usage", "use_sde")
ALGO_HYPERPARAMETERS = {"sac": ("ent_coef", "target_update_interval", "target_entropy"),
                        "td3": ("policy_delay", "target_policy_noise", "target_noise_clip")}


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_a_config_with_only_env_and_algo_builds_sb3s_default_model(algo: str) -> None:
    composed = make_model({"env": "Pendulum-v1", "algo": algo})
    stock = STOCK[algo]("MlpPolicy", "Pendulum-v1", seed=0)
    for name in HYPERPARAMETERS + ALGO_HYPERPARAMETERS[algo]:
        assert getattr(composed, name) == getattr(stock, name), name
    assert composed.policy.net_arch == stock.policy.net_arch == ([400, 300] if algo == "td3" else [256, 256])
    assert composed.policy.critic_kwargs["n_critics"] == stock.policy.critic_kwargs["n_critics"]
    assert composed.policy.share_features_extractor == stock.policy.share_features_extractor
    for part in ("actor", "critic"):
        optimizer, reference = getattr(composed, part).optimizer, getattr(stock, part).optimizer
        assert type(optimizer) is type(reference)
        assert {k: v for k, v in optimizer.defaults.items()} == reference.defaults
    # the same seed: the same networks, weight for weight
    assert _same_parameters(composed.actor, stock.actor)
    assert _same_parameters(composed.critic, stock.critic)


# -- the config reaches what SB3 users use -------------------------------------------------------


def test_the_names_a_config_may_use_are_the_keys_of_the_tables_they_are_looked_up_in() -> None:
    """config.py and algo_kwargs.py write the names again (reading a config imports no torch): they must agree."""
    import typing

    from diffrl_core.algo_kwargs import REPLAY_BUFFER_KWARGS, ReplayBufferName
    from diffrl_core.config import FeaturesExtractorName, OptimizerName, PolicyConfig
    from diffrl_core.sb3.algorithms import REPLAY_BUFFERS
    from diffrl_core.sb3.policies import ACTIVATIONS, FEATURES_EXTRACTORS, OPTIMIZERS

    assert set(typing.get_args(FeaturesExtractorName)) == set(FEATURES_EXTRACTORS)
    assert set(typing.get_args(OptimizerName)) == set(OPTIMIZERS)
    assert set(typing.get_args(ReplayBufferName)) == set(REPLAY_BUFFERS) == set(REPLAY_BUFFER_KWARGS)
    activation = typing.get_args(PolicyConfig.model_fields["activation_fn"].annotation)[0]  # Literal[...] | None
    assert set(typing.get_args(activation)) == set(ACTIVATIONS)


def _config(env: str, algo: str = "sac", **policy: Any) -> dict[str, Any]:
    return {"env": env, "algo": algo, "policy": {"net_arch": [16], **policy}, "algo_kwargs": dict(TINY),
            "seed": 0}


def test_the_observation_space_picks_the_policy_as_sb3_users_pick_it() -> None:
    flat, goal, pixels = (make_model(_config(env)) for env in ("Pendulum-v1", GOAL_ENV, PIXEL_ENV))
    assert type(flat.actor.features_extractor) is FlattenExtractor
    assert type(goal.actor.features_extractor) is CombinedExtractor
    assert type(pixels.actor.features_extractor) is NatureCNN
    # SB3's image preprocessing: channel-last frames transposed for the CNN, as SB3 wraps its envs
    assert isinstance(pixels.get_env(), VecTransposeImage)
    assert pixels.observation_space.shape[0] == 3
    assert gym.make(PIXEL_ENV).observation_space.shape[-1] == 3


def test_features_extractor_optimizer_and_sharing_by_name() -> None:
    model = make_model(_config(PIXEL_ENV, features_extractor="nature_cnn",
                               features_extractor_kwargs={"features_dim": 32}, share_features_extractor=True,
                               optimizer="adamw", optimizer_kwargs={"weight_decay": 0.05}))
    assert model.actor.features_extractor is model.critic.features_extractor
    assert model.actor.features_dim == 32
    assert isinstance(model.actor.optimizer, th.optim.AdamW)
    assert model.actor.optimizer.defaults["weight_decay"] == 0.05
    model.learn(20)
    flat = make_model(_config(PIXEL_ENV, features_extractor="flatten", optimizer="sgd"))
    assert type(flat.actor.features_extractor) is FlattenExtractor
    assert isinstance(flat.critic.optimizer, th.optim.SGD)
    # the saved policy_kwargs are plain names: the file holds no class for them
    assert model.policy_kwargs["optimizer_class"] == "adamw"


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ({"features_extractor": "nature_cnn"}, r"policy.features_extractor: 'nature_cnn' takes image observations"),
        ({"features_extractor": "combined"}, r"policy.features_extractor: 'combined' takes Dict observations"),
        ({"optimizer_kwargs": {"bogus": 1}}, "bogus"),
        ({"features_extractor_kwargs": {"bogus": 1}}, "bogus"),
    ],
)
def test_a_network_the_env_or_sb3_refuses_is_a_config_error(policy: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        make_model(_config("Pendulum-v1", **policy))


def test_her_from_the_config_on_a_goal_env() -> None:
    config = _config(GOAL_ENV)
    config["algo_kwargs"].update(replay_buffer_class="HerReplayBuffer", learning_starts=60,
                                 replay_buffer_kwargs={"n_sampled_goal": 2, "goal_selection_strategy": "final"})
    model = make_model(config)
    assert isinstance(model.replay_buffer, HerReplayBuffer)
    assert model.replay_buffer.n_sampled_goal == 2
    model.learn(80)  # past one episode (50 steps) and learning_starts: HER samples virtual goals
    assert model._n_updates > 0


def test_her_on_an_env_without_goals_names_what_is_missing() -> None:
    config = _config("Pendulum-v1")
    config["algo_kwargs"]["replay_buffer_class"] = "HerReplayBuffer"
    with pytest.raises(ConfigError, match="replay_buffer_class: HerReplayBuffer needs a goal-conditioned env.*"
                                          "'Pendulum-v1'.*compute_reward"):
        make_model(config)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"goal_selection_strategy": "random"}, r"replay_buffer_kwargs.goal_selection_strategy: Input should be"),
        ({"n_sampled_goal": 0}, r"replay_buffer_kwargs.n_sampled_goal: Input should be greater"),
        ({"n_sample_goal": 4}, r"replay_buffer_kwargs.n_sample_goal: not a keyword.*valid: copy_info_dict"),
    ],
)
def test_her_kwargs_are_checked_with_the_config(kwargs: dict[str, Any], expected: str) -> None:
    config = _config(GOAL_ENV)
    config["algo_kwargs"].update(replay_buffer_class="HerReplayBuffer", replay_buffer_kwargs=kwargs)
    with pytest.raises(ConfigError, match=expected):
        parse_config(config)


# -- every head and post-processor with Dict and image observations ------------------------------


def _installed(kind: str) -> list[str]:
    return sorted(r.name for r in load_plugins().registry(kind))


def _continuous_heads() -> list[tuple[str, str]]:
    """(head, algo): every head of continuous actions under SAC or TD3, and under PPO where it evaluates actions."""
    registry = load_plugins().registry("actor_heads")
    pairs = []
    for head in _installed("actor_heads"):
        cls = registry.resolve(head)
        if cls.action_space_kind == "box":
            pairs.append((head, "sac" if cls.has_log_prob else "td3"))
            pairs += [(head, "ppo")] if cls.evaluates_actions else []
    return pairs


@pytest.mark.parametrize("env", [GOAL_ENV, PIXEL_ENV])
@pytest.mark.parametrize(("head", "algo"), _continuous_heads())
def test_every_head_acts_and_trains_on_dict_and_image_observations(head: str, algo: str, env: str) -> None:
    cls = load_plugins().registry("actor_heads").resolve(head)
    config = _config(env, algo, head=head, postprocess="identity" if cls.bounded else "tanh",
                     features_extractor_kwargs={"features_dim": 16} if env == PIXEL_ENV else {})
    if algo == "ppo":
        config["algo_kwargs"] = {"n_steps": 16, "batch_size": 8, "n_epochs": 1}
    model = make_model(config)
    model.learn(30)
    assert model._n_updates > 0
    obs = gym.make(env).reset(seed=0)[0]
    action, _ = model.predict(obs, deterministic=False)
    assert gym.make(env).action_space.contains(action)


@pytest.mark.parametrize("env", [GOAL_ENV, PIXEL_ENV])
@pytest.mark.parametrize("postprocess", _installed("postprocessors"))
def test_every_postprocessor_acts_and_trains_on_dict_and_image_observations(postprocess: str, env: str) -> None:
    model = make_model(_config(env, "td3", head="deterministic", postprocess=postprocess,
                               features_extractor_kwargs={"features_dim": 16} if env == PIXEL_ENV else {}))
    model.learn(30)
    assert model._n_updates > 0
    action, _ = model.predict(gym.make(env).reset(seed=0)[0], deterministic=False)
    assert gym.make(env).action_space.contains(action)


# -- gSDE ----------------------------------------------------------------------------------------


def test_gsde_trains_the_squashed_gaussian_from_the_config() -> None:
    config = _config("Pendulum-v1", head="squashed_gaussian", head_kwargs={"log_std_init": -2.0})
    config["algo_kwargs"].update(use_sde=True, sde_sample_freq=4)
    model = make_model(config)
    assert model.use_sde and model.actor.use_sde
    assert th.allclose(model.actor.head.log_std, th.full_like(model.actor.head.log_std, -2.0))
    model.learn(40)
    std = model.actor.get_std()
    assert std.shape == (16, 1) and th.all(std > 0)
    # the exploration noise is fixed between resets: the same observation, the same sampled action
    obs = np.zeros((1, 3), dtype=np.float32)
    model.actor.reset_noise(1)
    first, second = (model.predict(obs, deterministic=False)[0] for _ in range(2))
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ({"head": "gaussian", "postprocess": "tanh"}, r"use_sde: actor head 'gaussian' .*does not support"),
        ({"head": "squashed_gaussian", "head_kwargs": {"use_sde": True}}, r"'use_sde' is not a head kwarg"),
    ],
)
def test_gsde_is_refused_at_construction_where_the_head_cannot(policy: dict[str, Any], expected: str) -> None:
    config = _config("Pendulum-v1", **policy)
    config["algo_kwargs"]["use_sde"] = True
    with pytest.raises((IncompatibleComponentsError, ConfigError), match=expected):
        make_model(config)
    # and from Python, with stable-baselines3's constructor
    composition = resolve_composition(parse_config(config), load_plugins())
    with pytest.raises((IncompatibleComponentsError, ConfigError), match=expected):
        ComposedSAC("MlpPolicy", "Pendulum-v1", use_sde=True, composition=composition)


def test_td3_has_no_gsde_in_the_config() -> None:
    config = _config("Pendulum-v1", "td3")
    config["algo_kwargs"]["use_sde"] = True
    with pytest.raises(ConfigError, match="algo_kwargs.use_sde: not a keyword argument of stable-baselines3's TD3"):
        parse_config(config)


# -- the actor and the policy on their own -------------------------------------------------------


@pytest.mark.parametrize(
    ("algo", "policy", "use_sde"),
    [("sac", {}, False), ("sac", {}, True), ("td3", {}, False),
     ("sac", {"head": "beta", "postprocess": "identity"}, False),
     ("td3", {"head": "deterministic", "postprocess": "gaussian_noise", "postprocess_kwargs": {"sigma": 0.2}}, False)],
)
def test_the_actor_and_the_policy_save_and_load_on_their_own(algo: str, policy: dict[str, Any], use_sde: bool,
                                                            tmp_path: Path) -> None:
    config = _config(GOAL_ENV, algo, **policy)
    if use_sde:
        config["algo_kwargs"]["use_sde"] = True
    model = make_model(config)
    model.learn(20)
    obs = gym.make(GOAL_ENV).reset(seed=3)[0]
    model.actor.save(tmp_path / "actor.pth")
    model.policy.save(tmp_path / "policy.pth")
    actor = ComposedActor.load(tmp_path / "actor.pth")
    policy_class = type(model.policy)
    loaded_policy = policy_class.load(tmp_path / "policy.pth")
    assert actor.head_component.name == model.actor.head_component.name
    expected = model.predict(obs, deterministic=True)[0]
    np.testing.assert_array_equal(actor.predict(obs, deterministic=True)[0], expected)
    np.testing.assert_array_equal(loaded_policy.predict(obs, deterministic=True)[0], expected)
    assert _same_parameters(actor, model.actor)


# -- gymnasium's own envs out of the box ---------------------------------------------------------


@pytest.mark.parametrize("env_id", ["HalfCheetah-v5", "LunarLanderContinuous-v3"])
def test_gymnasiums_mujoco_and_box2d_envs_run_with_the_install(env_id: str) -> None:
    env = gym.make(env_id)
    env.reset(seed=0)
    obs, reward, *_ = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs) and np.isfinite(reward)
    env.close()


# -- from config files, through the CLI ----------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # two CLI training runs and their evaluation in fresh processes
@pytest.mark.parametrize("example", ["point_mass_goal_her.yaml", "point_mass_pixels_sac.yaml"])
def test_diffrl_train_her_and_pixels_from_the_examples_and_reload(example: str, tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"
    short = ["--set", "total_timesteps=300", "--set", "algo_kwargs.learning_starts=100",
             "--set", "eval.freq=150", "--set", "eval.n_episodes=2", "--set", "checkpoint.freq=150"]
    train = subprocess.run([sys.executable, "-m", "diffrl_core.cli", "train", str(REPO / "examples" / example),
                            "--run-dir", str(run), *short], capture_output=True, text=True, env=env, timeout=600)
    assert train.returncode == 0, train.stderr
    assert json.loads((run / "status.json").read_text())["status"] == "finished"
    # a fresh process loads the saved model (and its checkpoint) and acts in the env
    for target in (run, run / "checkpoints"):
        if target.name == "checkpoints":
            target = sorted(target.glob("model_*.zip"))[-1]
        evaluated = subprocess.run([sys.executable, "-m", "diffrl_core.cli", "eval", str(target), "--episodes", "2",
                                    "--json"],
                                   capture_output=True, text=True, env=env, timeout=300)
        assert evaluated.returncode == 0, evaluated.stderr
        assert len(json.loads(evaluated.stdout)["returns"]) == 2
    # and continues training from the checkpoint with its replay buffer (HER's included)
    resumed = subprocess.run([sys.executable, "-m", "diffrl_core.cli", "train", "--resume", str(run),
                              "--set", "total_timesteps=400"], capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr



def test_the_conformance_checks_exercise_gsde_of_heads_that_declare_it() -> None:
    from diffrl_core.conformance import ConformanceError
    from diffrl_core.testing import _check_sde
    from diffrl_plugin_gaussian.heads import SquashedGaussianHead

    class Built:  # stands for the resolved component: what _check_sde builds the head from
        def __init__(self, cls: type) -> None:
            self.cls = cls

        def build(self, *args: Any, **kwargs: Any) -> Any:
            return self.cls(*args, **kwargs)

    class FrozenNoise(SquashedGaussianHead):
        def reset_noise(self, batch_size: int = 1) -> None:  # declares gSDE, never draws new noise
            pass

    latent = th.randn(8, 16)
    _check_sde(Built(SquashedGaussianHead), latent, 2, "squashed_gaussian")
    with pytest.raises(ConformanceError, match=r"\[sde\].*same actions after reset_noise"):
        _check_sde(Built(FrozenNoise), latent, 2, "frozen")


class _MyPolicy(ComposedSACPolicy):
    """A user's subclass of a composed policy: no alias names it."""


def test_a_users_policy_subclass_is_kept_and_a_damaged_class_refused(tmp_path: Path, rewrite_manifest) -> None:
    model = ComposedSAC(_MyPolicy, "Pendulum-v1", seed=0, **TINY)
    assert model.diffrl_components["policy"] is None
    with pytest.raises(ModelSaveError, match="_MyPolicy is not one a model file may name"):
        model.save(tmp_path / "mine")
    allow_classes(_MyPolicy)  # the file names the class; loading finds it among the allowed ones
    model.save(tmp_path / "mine")
    assert type(load_model(tmp_path / "mine").policy) is _MyPolicy
    # a file naming a class that is not allowed is refused by name, nothing imported
    rewrite_manifest(tmp_path / "mine.zip", tmp_path / "damaged.zip",
                     lambda manifest: manifest["data"]["policy_class"].update(name="builtins.eval"))
    with pytest.raises(ModelFileError, match="the class builtins.eval is not one a model file may name"):
        load_model(tmp_path / "damaged.zip")


@pytest.mark.filterwarnings("ignore::diffrl_core.conformance.UncheckedWarning")
@pytest.mark.parametrize("algo", ["sac", "ppo"])
def test_a_gsde_composition_passes_the_conformance_checks_with_what_gsde_leaves_unchecked(algo: str) -> None:
    """Samples under gSDE share one noise draw: the i.i.d. checks are reported unchecked, property [sde] runs."""
    from diffrl_core.testing import check_composition

    report = check_composition({"env": "Pendulum-v1", "algo": algo, "algo_kwargs": {"use_sde": True}},
                               steps=120, fresh_process=False)
    assert report.n_updates > 0
    # SAC's sample() checks are left to [sde]; PPO never calls sample()
    assert len(report.unchecked) == (3 if algo == "sac" else 0) and all("gSDE" in t for t in report.unchecked)

"""diffrl_core.testing under PPO and A2C: on-policy loss terms and discrete heads are checked where they train, and
the log-prob a head gives of given actions (``[evaluate_actions]``) is checked against its own actions and samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch as th

from diffrl_core import conformance, hookimpl
from diffrl_core.builtin.heads import CategoricalHead
from diffrl_core.builtin.losses import PolicyGradientLoss
from diffrl_core.components import ActorHead, HeadEvaluation
from diffrl_core.conformance import ConformanceError
from diffrl_core.testing import (
    TINY,
    TINY_ON_POLICY,
    check_component,
    check_composition,
    conformance_config,
    registered_plugin,
)
from diffrl_plugin_beta.heads import BetaHead
from diffrl_plugin_gaussian.heads import DiagGaussianHead, GaussianHead, SquashedGaussianHead

LATENT_DIM, ACTION_DIM = 8, 2


class OffsetLogProbGaussian(GaussianHead):
    """``evaluate_actions`` adds a constant to the log-prob: ``act()`` (which calls it) agrees, ``sample()`` not."""

    def evaluate_actions(self, latent: th.Tensor, actions: th.Tensor) -> HeadEvaluation:
        evaluation = super().evaluate_actions(latent, actions)
        return HeadEvaluation(evaluation.log_prob + 0.5, evaluation.entropy, evaluation.params)


class DetachedEvaluationGaussian(GaussianHead):
    """The right log-prob of given actions, detached: the policy loss could not train the head."""

    def evaluate_actions(self, latent: th.Tensor, actions: th.Tensor) -> HeadEvaluation:
        evaluation = super().evaluate_actions(latent, actions)
        return HeadEvaluation(evaluation.log_prob.detach(), evaluation.entropy, evaluation.params)


class OtherActionCategorical(CategoricalHead):
    """``act()`` returns the log-prob of the other one of two actions than the one it took."""

    def act(self, latent: th.Tensor, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor]:
        actions, _ = super().act(latent, deterministic)
        return actions, self.evaluate_actions(latent, 1 - actions).log_prob


class A2COnlyLoss(PolicyGradientLoss):
    """A policy-gradient term that refuses PPO."""

    @classmethod
    def check_compatible(cls, head: type[ActorHead], algo: str) -> str | None:
        if algo == "ppo":
            return "is written for A2C"
        return super().check_compatible(head, algo)


class Fixtures:
    """The test plugin (registered_plugin takes any object with hook implementations)."""

    @staticmethod
    @hookimpl
    def register_actor_heads(register: Any) -> None:
        register("offset_log_prob_gaussian", OffsetLogProbGaussian)

    @staticmethod
    @hookimpl
    def register_loss_terms(register: Any) -> None:
        register("a2c_only_gradient", A2COnlyLoss)


@pytest.fixture
def fixtures_plugin():
    with registered_plugin(Fixtures, "on_policy_fixtures") as host:
        yield host


def latent(seed: int = 0, rows: int = 64) -> th.Tensor:
    return th.randn(rows, LATENT_DIM, generator=th.Generator().manual_seed(seed))


def head(cls: type, seed: int = 0) -> Any:
    th.manual_seed(seed)
    return cls(LATENT_DIM, ACTION_DIM)


def loss_names(config: dict[str, Any]) -> list[str]:
    return [spec["name"] for spec in config["policy"]["losses"]]


# -- partners: on-policy terms and discrete heads go to PPO (A2C) with the small on-policy settings ------------


@pytest.mark.parametrize(("term", "losses"), [
    ("ppo_clip", ["ppo_clip"]),
    ("policy_gradient", ["ppo_clip", "policy_gradient"]),
    ("entropy_bonus", ["ppo_clip", "entropy_bonus"]),
])
def test_an_on_policy_loss_term_is_paired_under_ppo(term: str, losses: list[str]) -> None:
    config = conformance_config("loss_terms", term)
    assert config["algo"] == "ppo" and loss_names(config) == losses
    # the first head, in the order of the off-policy terms, that evaluates_actions; bounded: identity after it
    assert config["policy"]["head"] == "squashed_gaussian" and config["policy"]["postprocess"] == "identity"
    assert config["env"] == "Pendulum-v1"
    assert config["algo_kwargs"] == TINY_ON_POLICY["ppo"]["algo_kwargs"]  # no learning_starts nor buffer_size
    assert config["policy"]["net_arch"] == [16, 16]


def test_a_term_that_refuses_ppo_is_paired_under_a2c(fixtures_plugin) -> None:
    config = conformance_config("loss_terms", "a2c_only_gradient")
    assert config["algo"] == "a2c" and loss_names(config) == ["policy_gradient", "a2c_only_gradient"]
    assert config["algo_kwargs"] == {"n_steps": 16}


def test_a_discrete_head_is_paired_under_ppo_on_cartpole() -> None:
    config = conformance_config("actor_heads", "categorical")
    assert (config["algo"], config["env"]) == ("ppo", "CartPole-v1")
    assert config["policy"]["postprocess"] == "identity" and loss_names(config) == ["ppo_clip"]


def test_overrides_still_win_over_the_on_policy_settings() -> None:
    config = conformance_config("actor_heads", "categorical",
                                overrides={"algo_kwargs": {"n_steps": 64}, "policy": {"net_arch": [8]}})
    assert config["algo_kwargs"] == {"n_steps": 64, "batch_size": 16, "n_epochs": 2}
    assert config["policy"]["net_arch"] == [8] and config["policy"]["head"] == "categorical"
    # another algorithm named by the overrides gets its own small settings
    assert conformance_config("actor_heads", "categorical", overrides={"algo": "a2c"})["algo_kwargs"] == {"n_steps": 16}


def test_the_off_policy_pairing_is_kept() -> None:
    assert conformance_config("loss_terms", "q_value")["algo_kwargs"] == TINY["algo_kwargs"]
    config = conformance_config("postprocessors", "clip_to_bounds")
    assert (config["algo"], config["policy"]["head"]) == ("td3", "deterministic")


# -- end to end ------------------------------------------------------------------------------------------------


def test_an_on_policy_loss_term_is_checked_under_ppo() -> None:
    report = check_component("loss_terms", "ppo_clip", fresh_process=False)
    assert report.label.startswith("ppo Pendulum-v1 head=squashed_gaussian losses=['ppo_clip']")
    assert report.n_updates > 0 and report.unchecked == []


def test_the_categorical_head_is_checked_under_ppo() -> None:
    report = check_component("actor_heads", "categorical", fresh_process=False)
    assert report.label == "ppo CartPole-v1 head=categorical losses=['ppo_clip'] postprocess=identity"
    assert report.n_updates > 0 and report.unchecked == []
    assert set(np.asarray(report.actions).tolist()) <= {0, 1}  # CartPole's Discrete(2), as indices


def test_a_term_that_refuses_ppo_is_checked_under_a2c(fixtures_plugin) -> None:
    report = check_component("loss_terms", "a2c_only_gradient", fresh_process=False)
    assert report.label.startswith("a2c Pendulum-v1 head=squashed_gaussian")


def test_an_unset_head_and_post_processor_are_named_as_composed() -> None:
    report = check_composition({"env": "Pendulum-v1", "algo": "a2c"}, fresh_process=False)
    assert "head=diag_gaussian" in report.label and "postprocess=clip_to_bounds" in report.label


# -- [evaluate_actions] ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [GaussianHead, SquashedGaussianHead, DiagGaussianHead, BetaHead, CategoricalHead])
@pytest.mark.parametrize("seed", range(3))
def test_the_repos_heads_evaluate_actions_as_they_act_and_sample(cls: type, seed: int) -> None:
    # wide latents: squashed heads reach their bounds, where only float64 recovers the pre-squash value
    conformance.check_evaluate_actions(head(cls, seed), 4.0 * latent(seed), cls.__name__, seed=seed)


@pytest.mark.parametrize(("cls", "pattern"), [
    (OffsetLogProbGaussian, r"evaluate_actions\(latent, sample\(\)\.actions\)\.log_prob differs from "
                            r"sample\(\)\.log_prob"),
    (DetachedEvaluationGaussian, r"does not depend differentiably on the head's parameters"),
    (OtherActionCategorical, r"differs from act\(deterministic=False\)'s own log-prob"),
])
def test_a_log_prob_of_given_actions_that_disagrees_fails(cls: type, pattern: str) -> None:
    with pytest.raises(ConformanceError, match=rf"head X fails \[evaluate_actions\] a head that evaluates_actions.*"
                                               rf"{pattern}"):
        conformance.check_evaluate_actions(head(cls), latent(), "head X")


@pytest.mark.parametrize("algo", ["sac", "ppo"])
def test_check_component_names_a_head_whose_evaluate_actions_disagrees_with_its_samples(fixtures_plugin,
                                                                                        algo: str) -> None:
    name = "offset_log_prob_gaussian"
    with pytest.raises(ConformanceError, match=rf"^{algo} Pendulum-v1 head={name}.*: actor head '{name}' "
                                               r"\(OffsetLogProbGaussian\) fails \[evaluate_actions\]"):
        if algo == "sac":  # where check_component trains a head with a log-prob
            check_component("actor_heads", name, fresh_process=False, steps=120)
        else:
            check_composition({"env": "Pendulum-v1", "algo": algo, "policy": {"head": name}}, fresh_process=False)

"""The built-in actor heads: ``deterministic`` (TD3's actor output layer); ``categorical``, ``multi_categorical``
and ``bernoulli`` (stable-baselines3's PPO/A2C distributions of Discrete, MultiDiscrete and MultiBinary actions)."""

from __future__ import annotations

from typing import Any

import torch as th
from stable_baselines3.common.distributions import (
    BernoulliDistribution,
    CategoricalDistribution,
    MultiCategoricalDistribution,
)
from torch import nn

from diffrl_core.components import ActorHead, HeadEvaluation


class DeterministicHead(ActorHead):
    """A linear layer, tanh-squashed by default (stable-baselines3's TD3 actor).

    :param latent_dim: size of the latent features
    :param action_dim: size of the action
    :param squash: apply tanh so the output lies in ``[-1, 1]``; without it the head is
        unbounded and needs a post-processor such as ``clip`` or ``tanh``
    """

    stochastic = False
    has_log_prob = False
    bounded = True

    def __init__(self, latent_dim: int, action_dim: int, squash: bool = True) -> None:
        super().__init__(latent_dim, action_dim)
        self.squash = squash
        self.mu = nn.Linear(latent_dim, action_dim)

    def forward(self, latent: th.Tensor, deterministic: bool = False) -> th.Tensor:
        actions = self.mu(latent)
        return th.tanh(actions) if self.squash else actions


class _SB3DistributionHead(ActorHead):
    """A head that is one of stable-baselines3's discrete distributions over logits from one linear layer."""

    stochastic = True
    has_log_prob = True
    bounded = False
    evaluates_actions = True
    distribution: Any
    action_net: nn.Module

    def params(self, latent: th.Tensor) -> dict[str, th.Tensor]:
        """``{"logits": ...}``."""
        return {"logits": self.action_net(latent)}

    def forward(self, latent: th.Tensor, deterministic: bool = False) -> th.Tensor:
        return self.distribution.proba_distribution(self.params(latent)["logits"]).get_actions(deterministic)

    def act(self, latent: th.Tensor, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor]:
        distribution = self.distribution.proba_distribution(self.params(latent)["logits"])
        actions = distribution.get_actions(deterministic)
        return actions, distribution.log_prob(actions)

    def evaluate_actions(self, latent: th.Tensor, actions: th.Tensor) -> HeadEvaluation:
        params = self.params(latent)
        distribution = self.distribution.proba_distribution(params["logits"])
        return HeadEvaluation(distribution.log_prob(actions), distribution.entropy(), params)


class CategoricalHead(_SB3DistributionHead):
    """A categorical distribution over ``Discrete(n)`` actions: stable-baselines3's ``CategoricalDistribution``.

    A linear layer gives the logits; the raw action is the chosen index (the env takes it as
    it is: Discrete action spaces have no post-processor). ``forward(deterministic=True)``
    returns the most probable action. It gives the log-prob and entropy of given actions
    (PPO, A2C); its sample is not differentiable, so the off-policy algorithms (SAC, TD3,
    continuous actions only) cannot use it.

    :param latent_dim: size of the latent features
    :param action_dim: the number of actions ``n``
    """

    action_space_kind = "discrete"

    def __init__(self, latent_dim: int, action_dim: int) -> None:
        super().__init__(latent_dim, action_dim)
        self.distribution = CategoricalDistribution(action_dim)
        # SB3's layer (named action_net there) in the same place, so the same seed gives the same weights
        self.action_net = self.distribution.proba_distribution_net(latent_dim)


class MultiCategoricalHead(_SB3DistributionHead):
    """Independent categoricals over ``MultiDiscrete(nvec)`` actions (SB3's ``MultiCategoricalDistribution``).

    One linear layer gives the logits of every dimension (``sum(nvec)`` outputs); the raw action
    is one index per dimension. Deterministic: the most probable choice of each.

    :param latent_dim: size of the latent features
    :param action_dim: the number of choices of each dimension (``nvec``)
    """

    action_space_kind = "multi_discrete"

    def __init__(self, latent_dim: int, action_dim: list[int]) -> None:
        super().__init__(latent_dim, len(action_dim))  # the action's size: one index per dimension
        self.nvec = list(action_dim)
        self.distribution = MultiCategoricalDistribution(self.nvec)
        self.action_net = self.distribution.proba_distribution_net(latent_dim)


class BernoulliHead(_SB3DistributionHead):
    """Independent Bernoulli distributions over ``MultiBinary(n)`` actions: SB3's ``BernoulliDistribution``.

    :param latent_dim: size of the latent features
    :param action_dim: the number of binary actions ``n``
    """

    action_space_kind = "multi_binary"

    def __init__(self, latent_dim: int, action_dim: int) -> None:
        super().__init__(latent_dim, action_dim)
        self.distribution = BernoulliDistribution(action_dim)
        self.action_net = self.distribution.proba_distribution_net(latent_dim)

"""The built-in actor head ``deterministic``: TD3's actor output layer."""

from __future__ import annotations

import torch as th
from torch import nn

from diffrl_core.components import ActorHead


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

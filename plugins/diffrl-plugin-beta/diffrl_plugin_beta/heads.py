"""The ``beta`` actor head: a Beta distribution per action dimension, for bounded actions.

A Gaussian must be squashed (tanh) or clipped to respect the action bounds, which biases
the log-prob near the bounds or puts probability mass outside them. A Beta distribution
lives on ``[0, 1]`` to begin with (Chou, Maturana and Scherer, "Improving Stochastic Policy
Gradients in Continuous Control with Deep Reinforcement Learning using the Beta
Distribution", ICML 2017): the head samples ``x ~ Beta(alpha, beta)`` and returns the raw
action ``a = 2 x - 1`` in ``[-1, 1]``, which the ``identity`` post-processor passes on.
"""

from __future__ import annotations

import math

import torch as th
from torch import nn
from torch.nn import functional as F

from diffrl_core.components import ActorHead, HeadEvaluation, HeadSample

LOG_2 = math.log(2.0)


class BetaHead(ActorHead):
    """Independent ``Beta(alpha, beta)`` per action dimension, mapped to ``[-1, 1]``.

    ``alpha, beta = 1 + softplus(linear(latent))``: both concentrations exceed 1, so each
    marginal is unimodal (never U-shaped) and its density vanishes at the bounds.

    - ``sample()`` uses ``rsample`` (torch's Beta is reparameterized through its Gamma
      samples), so SAC's actor loss differentiates through the sampled action.
    - The log-prob is that of the raw action ``a = 2 x - 1``: ``log p(a) = log Beta(x; alpha,
      beta) - action_dim * log 2`` (the Jacobian of ``x -> 2 x - 1`` is 2 per dimension).
    - ``x`` is kept in ``[eps, 1 - eps]`` before the log-prob, so ``log x`` and ``log(1 - x)``
      stay finite when a float32 sample rounds to 0 or 1. The clamp is straight-through:
      the value is clamped, the gradient is that of the unclamped sample.
    - ``forward(deterministic=True)`` returns the distribution's mean ``alpha / (alpha + beta)``
      (default) or its mode ``(alpha - 1) / (alpha + beta - 2)``, mapped to ``[-1, 1]``.
    - ``params`` of a sample: ``alpha``, ``beta`` (batch, action_dim) and ``entropy`` (batch,),
      the entropy of the raw action (``H(x) + log 2`` per dimension).
    - :meth:`params` returns the distribution parameters ``{"alpha": ..., "beta": ...}``, and
      the distribution is built from it only, so ``diffrl gradcheck --head beta`` can take
      gradients w.r.t. the concentrations.

    :param latent_dim: size of the latent features
    :param action_dim: size of the action
    :param deterministic_action: ``"mean"`` or ``"mode"``: the action of ``predict(deterministic=True)``
    :param eps: how far ``x`` is kept from 0 and 1
    """

    stochastic = True
    has_log_prob = True
    bounded = True
    evaluates_actions = True

    def __init__(self, latent_dim: int, action_dim: int, deterministic_action: str = "mean", eps: float = 1e-6) -> None:
        super().__init__(latent_dim, action_dim)
        if deterministic_action not in ("mean", "mode"):
            raise ValueError(f"deterministic_action must be 'mean' or 'mode', got {deterministic_action!r}")
        if not 0.0 < eps < 0.5:
            raise ValueError(f"eps must lie in (0, 0.5), got {eps}")
        self.deterministic_action = deterministic_action
        self.eps = eps
        self.concentrations = nn.Linear(latent_dim, 2 * action_dim)

    def params(self, latent: th.Tensor) -> dict[str, th.Tensor]:
        """The concentrations ``{"alpha": ..., "beta": ...}`` (``1 + softplus(...)``), each ``(batch, action_dim)``.

        :meth:`distribution` (so ``sample()`` and ``forward()``) is built from this method
        only (the contract ``diffrl gradcheck`` relies on: it differentiates w.r.t. these tensors).
        """
        alpha, beta = (1.0 + F.softplus(self.concentrations(latent))).chunk(2, dim=-1)
        return {"alpha": alpha, "beta": beta}

    def distribution(self, latent: th.Tensor) -> th.distributions.Beta:
        """The Beta distribution of ``x = (a + 1) / 2`` for each row of ``latent``."""
        params = self.params(latent)
        return th.distributions.Beta(params["alpha"], params["beta"])

    def _clamp(self, x: th.Tensor) -> th.Tensor:
        # straight-through: the value is clamped, the gradient passes as if it were not
        return x + (x.clamp(self.eps, 1.0 - self.eps) - x).detach()

    def forward(self, latent: th.Tensor, deterministic: bool = False) -> th.Tensor:
        dist = self.distribution(latent)
        if not deterministic:
            x = dist.sample()
        elif self.deterministic_action == "mean":
            x = dist.mean
        else:
            alpha, beta = dist.concentration1, dist.concentration0
            # alpha, beta > 1, so the mode is in (0, 1); the floor only guards alpha = beta = 1
            x = (alpha - 1.0) / (alpha + beta - 2.0).clamp_min(1e-6)
        return 2.0 * self._clamp(x) - 1.0

    def evaluate_actions(self, latent: th.Tensor, actions: th.Tensor) -> HeadEvaluation:
        """The log-prob and entropy of given raw actions ``a`` in ``[-1, 1]`` (PPO, A2C)."""
        dist = self.distribution(latent)
        x = ((actions + 1.0) / 2.0).clamp(self.eps, 1.0 - self.eps)  # as forward() kept its samples
        log_prob = dist.log_prob(x).sum(dim=-1) - self.action_dim * LOG_2
        entropy = dist.entropy().sum(dim=-1) + self.action_dim * LOG_2
        return HeadEvaluation(log_prob, entropy, {"alpha": dist.concentration1, "beta": dist.concentration0})

    def sample(self, latent: th.Tensor) -> HeadSample:
        dist = self.distribution(latent)
        x = self._clamp(dist.rsample())
        log_prob = dist.log_prob(x).sum(dim=-1) - self.action_dim * LOG_2
        entropy = dist.entropy().sum(dim=-1) + self.action_dim * LOG_2
        return HeadSample(
            2.0 * x - 1.0,
            log_prob,
            {"alpha": dist.concentration1, "beta": dist.concentration0, "entropy": entropy},
        )

"""Gaussian actor heads: ``latent -> (mean, log_std) -> rsample``."""

from __future__ import annotations

import math

import torch as th
from stable_baselines3.common.distributions import (
    DiagGaussianDistribution,
    SquashedDiagGaussianDistribution,
    StateDependentNoiseDistribution,
)
from torch import nn

from diffrl_core.components import ActorHead, HeadEvaluation, HeadSample

# stable-baselines3's SAC bounds (stable_baselines3.sac.policies.LOG_STD_MIN / MAX)
LOG_STD_MIN = -20.0
LOG_STD_MAX = 2.0
# stable-baselines3's SAC gSDE default (SACPolicy's log_std_init), for a head built for gSDE without one
SDE_LOG_STD_INIT = -3.0


class _GaussianParams(ActorHead):
    """Mean and clamped log-std from the latent features.

    :param latent_dim: size of the latent features
    :param action_dim: size of the action
    :param log_std_min: lower bound of the log-std
    :param log_std_max: upper bound of the log-std
    :param log_std_init: initial log-std (None keeps PyTorch's default initialization)
    :param state_dependent_std: the log-std is an output of the network (True) or one free
        parameter per action dimension (False)
    """

    def __init__(
        self,
        latent_dim: int,
        action_dim: int,
        log_std_min: float = LOG_STD_MIN,
        log_std_max: float = LOG_STD_MAX,
        log_std_init: float | None = None,
        state_dependent_std: bool = True,
    ) -> None:
        super().__init__(latent_dim, action_dim)
        if log_std_min >= log_std_max:
            raise ValueError(f"log_std_min ({log_std_min}) must be below log_std_max ({log_std_max})")
        self.log_std_min = log_std_min
        self.log_std_max = log_std_max
        self.state_dependent_std = state_dependent_std
        # Same layers and order as SB3's SAC actor (mu, then log_std), so same initial weights
        self.mu = nn.Linear(latent_dim, action_dim)
        if state_dependent_std:
            self.log_std = nn.Linear(latent_dim, action_dim)
            if log_std_init is not None:
                nn.init.constant_(self.log_std.bias, log_std_init)
        else:
            self.log_std = nn.Parameter(th.full((action_dim,), 0.0 if log_std_init is None else log_std_init))

    def params(self, latent: th.Tensor) -> dict[str, th.Tensor]:
        """The distribution parameters: ``{"mean": ..., "log_std": ...}``, each ``(batch, action_dim)``.

        ``sample()`` and ``forward()`` compute the distribution from this method only (the
        contract ``diffrl gradcheck`` relies on: it differentiates w.r.t. these tensors).
        """
        mean = self.mu(latent)
        log_std = self.log_std(latent) if self.state_dependent_std else self.log_std.expand_as(mean)
        return {"mean": mean, "log_std": th.clamp(log_std, self.log_std_min, self.log_std_max)}


class GaussianHead(_GaussianParams):
    """Diagonal Gaussian, sampled with ``rsample`` (``a = mean + std * eps``), not squashed.

    Raw actions are unbounded: pair it with the ``tanh`` or ``clip`` post-processor. The
    sample's ``params`` hold ``mean``, ``log_std`` and the standard normal ``noise`` eps.
    """

    stochastic = True
    has_log_prob = True
    bounded = False
    evaluates_actions = True

    def forward(self, latent: th.Tensor, deterministic: bool = False) -> th.Tensor:
        params = self.params(latent)
        mean, log_std = params["mean"], params["log_std"]
        if deterministic:
            return mean
        return mean + log_std.exp() * th.randn_like(mean)

    def evaluate_actions(self, latent: th.Tensor, actions: th.Tensor) -> HeadEvaluation:
        params = self.params(latent)
        normal = th.distributions.Normal(params["mean"], params["log_std"].exp())
        return HeadEvaluation(normal.log_prob(actions).sum(dim=-1), normal.entropy().sum(dim=-1), params)

    def sample(self, latent: th.Tensor) -> HeadSample:
        params = self.params(latent)
        mean, log_std = params["mean"], params["log_std"]
        std = log_std.exp()
        noise = th.randn_like(mean)
        actions = mean + std * noise  # rsample: differentiable in mean and std
        log_prob = th.distributions.Normal(mean, std).log_prob(actions).sum(dim=-1)
        return HeadSample(actions, log_prob, {"mean": mean, "log_std": log_std, "noise": noise})


class SquashedGaussianHead(_GaussianParams):
    """Diagonal Gaussian squashed by tanh: stable-baselines3's SAC actor output.

    Uses SB3's :class:`~stable_baselines3.common.distributions.SquashedDiagGaussianDistribution`,
    so the log-prob includes the tanh correction and the numbers equal SB3's. Raw actions lie
    in ``[-1, 1]``: pair it with ``identity``.

    With gSDE (``algo_kwargs.use_sde: true``) it is SB3's gSDE actor output instead: SB3's
    :class:`~stable_baselines3.common.distributions.StateDependentNoiseDistribution` (squashed,
    features learned), whose exploration noise is ``latent @ W`` with weights ``W`` drawn by
    :meth:`reset_noise`; the mean is bounded by ``clip_mean`` and the log-std is one learned
    matrix, not a function of the state (``log_std_min``/``log_std_max``/``state_dependent_std``
    do not apply).

    :param use_sde: gSDE (set by the algorithm from ``use_sde``, not in ``head_kwargs``)
    :param full_std: gSDE: one std per (latent feature, action) pair, not per latent feature
    :param use_expln: gSDE: ``expln`` instead of ``exp`` for the std
    :param clip_mean: gSDE: bound of the mean (``0``: none)
    """

    stochastic = True
    has_log_prob = True
    bounded = True
    supports_sde = True
    evaluates_actions = True

    def __init__(
        self,
        latent_dim: int,
        action_dim: int,
        log_std_min: float = LOG_STD_MIN,
        log_std_max: float = LOG_STD_MAX,
        log_std_init: float | None = None,
        state_dependent_std: bool = True,
        use_sde: bool = False,
        full_std: bool = True,
        use_expln: bool = False,
        clip_mean: float = 2.0,
    ) -> None:
        self.use_sde = use_sde
        if not use_sde:
            super().__init__(latent_dim, action_dim, log_std_min, log_std_max, log_std_init, state_dependent_std)
            self.distribution = SquashedDiagGaussianDistribution(action_dim)
            return
        ActorHead.__init__(self, latent_dim, action_dim)
        if clip_mean < 0:
            raise ValueError(f"clip_mean must be >= 0 (0: no bound), got {clip_mean}")
        self.sde_distribution = StateDependentNoiseDistribution(
            action_dim, full_std=full_std, use_expln=use_expln, learn_features=True, squash_output=True
        )
        # SB3's gSDE actor: the same layers in the same order, so the same seed gives the same weights
        log_std_init = SDE_LOG_STD_INIT if log_std_init is None else log_std_init
        self.mu, self.log_std = self.sde_distribution.proba_distribution_net(
            latent_dim=latent_dim, latent_sde_dim=latent_dim, log_std_init=log_std_init
        )
        if clip_mean > 0.0:  # bounds the mean against numerical problems, as SB3 does
            self.mu = nn.Sequential(self.mu, nn.Hardtanh(min_val=-clip_mean, max_val=clip_mean))

    def params(self, latent: th.Tensor) -> dict[str, th.Tensor]:
        """``{"mean", "log_std"}``; with gSDE only ``{"mean"}`` (gSDE's log-std is the state-free :attr:`log_std`)."""
        if self.use_sde:
            return {"mean": self.mu(latent)}
        return super().params(latent)

    def forward(self, latent: th.Tensor, deterministic: bool = False) -> th.Tensor:
        params = self.params(latent)
        if self.use_sde:
            return self.sde_distribution.actions_from_params(
                params["mean"], self.log_std, deterministic=deterministic, latent_sde=latent
            )
        return self.distribution.actions_from_params(params["mean"], params["log_std"], deterministic=deterministic)

    def sample(self, latent: th.Tensor) -> HeadSample:
        params = self.params(latent)
        if self.use_sde:
            actions, log_prob = self.sde_distribution.log_prob_from_params(params["mean"], self.log_std,
                                                                           latent_sde=latent)
            return HeadSample(actions, log_prob, params)
        mean, log_std = params["mean"], params["log_std"]
        actions, log_prob = self.distribution.log_prob_from_params(mean, log_std)
        return HeadSample(actions, log_prob, {"mean": mean, "log_std": log_std})

    def evaluate_actions(self, latent: th.Tensor, actions: th.Tensor) -> HeadEvaluation:
        """The log-prob of squashed actions (tanh inverted, as stable-baselines3 does); no closed-form entropy."""
        params = self.params(latent)
        if self.use_sde:  # the variance of gSDE's noise latent @ W, whatever W was drawn
            sde = self.sde_distribution.proba_distribution(params["mean"], self.log_std, latent)
            return HeadEvaluation(sde.log_prob(actions), None, params)
        distribution = self.distribution.proba_distribution(params["mean"], params["log_std"])
        return HeadEvaluation(distribution.log_prob(actions), None, params)

    def reset_noise(self, batch_size: int = 1) -> None:
        if not self.use_sde:
            super().reset_noise(batch_size)
        self.sde_distribution.sample_weights(self.log_std, batch_size=batch_size)

    def get_std(self) -> th.Tensor:
        if not self.use_sde:
            return super().get_std()
        return self.sde_distribution.get_std(self.log_std)


class DiagGaussianHead(ActorHead):
    """Diagonal Gaussian with a state-independent log-std: stable-baselines3's PPO/A2C ``DiagGaussianDistribution``.

    ``mean = linear(latent)`` and one learned log-std per action dimension (initialized to
    ``log_std_init``), not clamped. Raw actions are unbounded; under ``ppo`` and ``a2c`` its
    default post-processor is ``clip_to_bounds`` (the raw action in the env's units, clipped
    to its bounds), which makes it their ``MlpPolicy`` with the same weights and updates;
    ``tanh`` or ``clip`` use it in normalized units. It also works under SAC (after ``tanh``).

    With gSDE under PPO/A2C (``algo_kwargs.use_sde: true``) it is their gSDE policy instead:
    SB3's :class:`~stable_baselines3.common.distributions.StateDependentNoiseDistribution`
    (unsquashed, features not learned), whose noise is ``latent @ W`` with weights ``W`` drawn by
    :meth:`reset_noise`, and whose log-std is a ``(latent, action)`` matrix (or one column).

    :param latent_dim: size of the latent features
    :param action_dim: size of the action
    :param log_std_init: initial log-std (stable-baselines3's default 0.0)
    :param use_sde: gSDE (set by the algorithm from ``use_sde``, not in ``head_kwargs``)
    :param full_std: gSDE: one std per (latent feature, action) pair, not per latent feature
    :param use_expln: gSDE: ``expln`` instead of ``exp`` for the std
    """

    stochastic = True
    has_log_prob = True
    bounded = False
    evaluates_actions = True
    supports_sde = True

    def __init__(self, latent_dim: int, action_dim: int, log_std_init: float = 0.0, use_sde: bool = False,
                 full_std: bool = True, use_expln: bool = False) -> None:
        super().__init__(latent_dim, action_dim)
        if not (isinstance(log_std_init, (int, float)) and math.isfinite(log_std_init)):
            raise ValueError(f"log_std_init must be a finite number, got {log_std_init!r}")
        self.use_sde = use_sde
        self.distribution: DiagGaussianDistribution | StateDependentNoiseDistribution
        if use_sde:
            self.distribution = StateDependentNoiseDistribution(
                action_dim, full_std=full_std, use_expln=use_expln, squash_output=False, learn_features=False
            )
            # SB3's PPO/A2C gSDE layers, in its order (their exploration weights are drawn here, as SB3 does)
            self.action_net, self.log_std = self.distribution.proba_distribution_net(
                latent_dim, log_std_init=log_std_init, latent_sde_dim=latent_dim
            )
        else:
            self.distribution = DiagGaussianDistribution(action_dim)
            # SB3's layers (named action_net and log_std there) in the same order, so the same seed gives the
            # same weights
            self.action_net, self.log_std = self.distribution.proba_distribution_net(latent_dim,
                                                                                     log_std_init=log_std_init)

    def params(self, latent: th.Tensor) -> dict[str, th.Tensor]:
        """``{"mean": ..., "log_std": ...}``, each ``(batch, action_dim)`` (gSDE: only ``{"mean"}``)."""
        mean = self.action_net(latent)
        return {"mean": mean} if self.use_sde else {"mean": mean, "log_std": self.log_std.expand_as(mean)}

    def _distribution(self, latent: th.Tensor) -> DiagGaussianDistribution | StateDependentNoiseDistribution:
        if isinstance(self.distribution, StateDependentNoiseDistribution):
            return self.distribution.proba_distribution(self.action_net(latent), self.log_std, latent)
        return self.distribution.proba_distribution(self.action_net(latent), self.log_std)

    def forward(self, latent: th.Tensor, deterministic: bool = False) -> th.Tensor:
        return self._distribution(latent).get_actions(deterministic)

    def act(self, latent: th.Tensor, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor]:
        distribution = self._distribution(latent)
        actions = distribution.get_actions(deterministic)
        return actions, distribution.log_prob(actions)

    def evaluate_actions(self, latent: th.Tensor, actions: th.Tensor) -> HeadEvaluation:
        distribution = self._distribution(latent)
        params = {"mean": distribution.distribution.mean}
        return HeadEvaluation(distribution.log_prob(actions), distribution.entropy(), params)

    def sample(self, latent: th.Tensor) -> HeadSample:
        distribution = self._distribution(latent)
        actions = distribution.sample()  # rsample: differentiable in the mean and the log-std
        return HeadSample(actions, distribution.log_prob(actions), self.params(latent))

    def reset_noise(self, batch_size: int = 1) -> None:
        if not isinstance(self.distribution, StateDependentNoiseDistribution):
            super().reset_noise(batch_size)
            return
        self.distribution.sample_weights(self.log_std, batch_size=batch_size)

    def get_std(self) -> th.Tensor:
        if not isinstance(self.distribution, StateDependentNoiseDistribution):
            return super().get_std()
        return self.distribution.get_std(self.log_std)

"""Components for the conformance tests: a correct tanh-squashed mixture-of-Gaussians head, written
from docs/plugins.md as a plugin author would, and one deliberately broken component per property."""

from __future__ import annotations

import torch as th
from torch import nn

from diffrl_core import hookimpl
from diffrl_core.builtin.postprocessors import Tanh
from diffrl_core.components import ActorHead, ActorLossContext, HeadSample, LossOutput, LossTerm, PostProcessor


class SquashedMixtureHead(ActorHead):
    """``a = tanh(u)``, ``u`` from a mixture of ``components`` diagonal Gaussians.

    ``sample()`` picks a component (not differentiable), then samples it with rsample: the
    means and standard deviations get gradient through the sample, the mixture weights only
    through the log-prob.
    """

    stochastic = True
    has_log_prob = True
    bounded = True

    def __init__(self, latent_dim: int, action_dim: int, components: int = 3) -> None:
        super().__init__(latent_dim, action_dim)
        if components < 1:
            raise ValueError(f"components must be >= 1, got {components}")
        self.components = components
        self.logits = nn.Linear(latent_dim, components)
        self.mu = nn.Linear(latent_dim, components * action_dim)
        self.log_std = nn.Linear(latent_dim, components * action_dim)

    def params(self, latent: th.Tensor) -> dict[str, th.Tensor]:
        shape = (latent.shape[0], self.components, self.action_dim)
        return {"logits": self.logits(latent), "mean": 2.0 * self.mu(latent).reshape(shape),
                "log_std": self.log_std(latent).reshape(shape).clamp(-5.0, 1.0)}

    def mixture(self, params: dict[str, th.Tensor]) -> th.distributions.MixtureSameFamily:
        normal = th.distributions.Independent(th.distributions.Normal(params["mean"], params["log_std"].exp()), 1)
        return th.distributions.MixtureSameFamily(th.distributions.Categorical(logits=params["logits"]), normal)

    def pre_squash(self, latent: th.Tensor) -> tuple[dict[str, th.Tensor], th.Tensor]:
        params = self.params(latent)
        k = th.distributions.Categorical(logits=params["logits"]).sample()
        rows = th.arange(latent.shape[0])
        mean, std = params["mean"][rows, k], params["log_std"][rows, k].exp()
        return params, mean + std * th.randn_like(mean)

    def forward(self, latent: th.Tensor, deterministic: bool = False) -> th.Tensor:
        if deterministic:
            params = self.params(latent)
            best = params["logits"].argmax(dim=-1)
            return th.tanh(params["mean"][th.arange(latent.shape[0]), best])
        return th.tanh(self.pre_squash(latent)[1])

    def log_prob(self, params: dict[str, th.Tensor], u: th.Tensor, actions: th.Tensor) -> th.Tensor:
        return self.mixture(params).log_prob(u) - th.log(1.0 - actions**2 + 1e-6).sum(dim=-1)

    def sample(self, latent: th.Tensor) -> HeadSample:
        params, u = self.pre_squash(latent)
        actions = th.tanh(u)
        return HeadSample(actions, self.log_prob(params, u, actions), params)


class MissingJacobianMixtureHead(SquashedMixtureHead):
    """(a) The log-prob of ``u``, not of ``a = tanh(u)``: the tanh Jacobian is missing."""

    def log_prob(self, params: dict[str, th.Tensor], u: th.Tensor, actions: th.Tensor) -> th.Tensor:
        return self.mixture(params).log_prob(u)


class DetachedLogProbMixtureHead(SquashedMixtureHead):
    """(b) The log-prob evaluated at a detached sample: right values, wrong gradient."""

    def log_prob(self, params: dict[str, th.Tensor], u: th.Tensor, actions: th.Tensor) -> th.Tensor:
        return super().log_prob(params, u.detach(), actions.detach())


class WiderWhenActingMixtureHead(SquashedMixtureHead):
    """(f) ``forward(deterministic=False)`` explores with twice the standard deviation ``sample()`` uses."""

    def forward(self, latent: th.Tensor, deterministic: bool = False) -> th.Tensor:
        if deterministic:
            return super().forward(latent, deterministic=True)
        params = self.params(latent)
        k = th.distributions.Categorical(logits=params["logits"]).sample()
        rows = th.arange(latent.shape[0])
        mean, std = params["mean"][rows, k], params["log_std"][rows, k].exp()
        return th.tanh(mean + 2.0 * std * th.randn_like(mean))


class JitteryMixtureHead(SquashedMixtureHead):
    """(e) The deterministic action carries a little noise."""

    def forward(self, latent: th.Tensor, deterministic: bool = False) -> th.Tensor:
        actions = super().forward(latent, deterministic)
        return (actions + 1e-3 * th.randn_like(actions)).clamp(-1.0, 1.0) if deterministic else actions


class NoGradientLoss(LossTerm):
    """(c) SAC's actor loss, returned detached: it trains nothing."""

    requires = frozenset({"log_prob", "alpha"})

    def __call__(self, ctx: ActorLossContext) -> LossOutput:
        return (ctx.alpha * ctx.log_prob - ctx.q_pi).mean().detach()


class BufferOnlyLoss(LossTerm):
    """(c) A term of the buffer's actions only: a gradient-free constant for the actor."""

    def __call__(self, ctx: ActorLossContext) -> LossOutput:
        return (ctx.batch.actions**2).mean() + 0.0 * ctx.q_fn(ctx.batch.actions).mean()


class OvershootingPostProcessor(PostProcessor):
    """(d) ``1.5 * raw``: a fresh bounded head rarely emits raw actions beyond ±0.67, the range does."""

    accepts_unbounded = False

    def forward(self, raw_actions: th.Tensor, explore: bool = False) -> th.Tensor:
        return 1.5 * raw_actions


class NoisyPostProcessor(PostProcessor):
    """(e) Noise even when not exploring."""

    accepts_unbounded = False
    identity_when_bounded = True

    def forward(self, raw_actions: th.Tensor, explore: bool = False) -> th.Tensor:
        return (raw_actions + 0.01 * th.randn_like(raw_actions)).clamp(-1.0, 1.0)


class HalfJacobianTanh(Tanh):
    """A bijective post-processor whose declared log-abs-det-Jacobian is half the true one."""

    def log_abs_det_jacobian(self, raw_actions: th.Tensor, actions: th.Tensor) -> th.Tensor:
        return 0.5 * super().log_abs_det_jacobian(raw_actions, actions)


class UndeclaredJacobian(PostProcessor):
    """Declares bijective but has no log_abs_det_jacobian."""

    bijective = True

    def forward(self, raw_actions: th.Tensor, explore: bool = False) -> th.Tensor:
        return th.tanh(raw_actions)


class HalvingPostProcessor(PostProcessor):
    """Declares identity_when_bounded, but halves the action."""

    identity_when_bounded = True

    def forward(self, raw_actions: th.Tensor, explore: bool = False) -> th.Tensor:
        return 0.5 * raw_actions.clamp(-1.0, 1.0)


BROKEN_HEADS = {
    "missing_jacobian_mixture": MissingJacobianMixtureHead,
    "detached_log_prob_mixture": DetachedLogProbMixtureHead,
    "wider_when_acting_mixture": WiderWhenActingMixtureHead,
    "jittery_mixture": JitteryMixtureHead,
}


@hookimpl
def register_actor_heads(register) -> None:  # type: ignore[no-untyped-def]
    register("squashed_mixture", SquashedMixtureHead)
    for name, cls in BROKEN_HEADS.items():
        register(name, cls)


@hookimpl
def register_loss_terms(register) -> None:  # type: ignore[no-untyped-def]
    register("no_gradient", NoGradientLoss)
    register("buffer_only", BufferOnlyLoss)


@hookimpl
def register_postprocessors(register) -> None:  # type: ignore[no-untyped-def]
    register("overshooting", OvershootingPostProcessor)
    register("noisy", NoisyPostProcessor)
    register("half_jacobian_tanh", HalfJacobianTanh)
    register("undeclared_jacobian", UndeclaredJacobian)
    register("halving", HalvingPostProcessor)

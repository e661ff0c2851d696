"""SAC's entropy-regularized actor loss."""

from __future__ import annotations

from diffrl_core.components import ActorLossContext, LossOutput, LossTerm


class SACEntropyLoss(LossTerm):
    """``alpha * log pi(a|s) - Q(s, a)`` with ``a`` sampled by rsample: SAC's actor loss.

    ``alpha`` is SAC's entropy coefficient (``algo_kwargs.ent_coef``: a number, or
    ``"auto"`` to tune it as stable-baselines3 does). ``Q`` is the minimum over the critics.
    """

    requires = frozenset({"log_prob", "alpha"})

    def __call__(self, ctx: ActorLossContext) -> LossOutput:
        return (ctx.alpha * ctx.log_prob - ctx.q_pi).mean()

"""The actor loss term ${name}_action_l2."""

from __future__ import annotations

from diffrl_core.components import ActorLossContext, LossOutput, LossTerm


class ActionL2(LossTerm):
    """``scale * mean(a^2)``: penalizes large (normalized) actions.

    Add it after the algorithm's own term, e.g. ``losses: [{name: q_value}, {name:
    ${name}_action_l2, weight: 0.1}]``.

    :param scale: multiplies the penalty (``policy.losses[i].kwargs.scale``)
    """

    requires = frozenset()  # needs neither a log-prob nor SAC's alpha: fits any head and algo

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def __call__(self, ctx: ActorLossContext) -> LossOutput:
        penalty = self.scale * (ctx.actions**2).mean()
        # the scalar loss, and extra values logged as train/${name}_action_l2/<key>
        return penalty, {"mean_abs_action": ctx.actions.abs().mean().item()}

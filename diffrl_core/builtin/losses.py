"""The built-in actor loss terms ``q_value`` and ``bc``."""

from __future__ import annotations

import torch as th

from diffrl_core.components import ActorLossContext, LossOutput, LossTerm


class QValueLoss(LossTerm):
    """``-Q(s, pi(s))``: TD3's actor loss (SAC's too, without the entropy term)."""

    def __call__(self, ctx: ActorLossContext) -> LossOutput:
        return -ctx.q_pi.mean()


class BehaviourCloningLoss(LossTerm):
    """Mean squared distance between the policy's actions and the replay buffer's actions.

    Both are normalized actions in ``[-1, 1]``. With weights, ``q_value`` (weight 1) plus
    ``bc`` (weight lambda) gives a TD3+BC style actor loss.
    """

    def __call__(self, ctx: ActorLossContext) -> LossOutput:
        return th.mean((ctx.actions - ctx.batch.actions) ** 2)

"""The built-in actor loss terms: ``q_value`` and ``bc`` (SAC, TD3); ``ppo_clip``, ``policy_gradient`` and
``entropy_bonus`` (PPO, A2C)."""

from __future__ import annotations

import torch as th

from diffrl_core.components import ActorHead, ActorLossContext, LossOutput, LossTerm, OnPolicyLossContext


class QValueLoss(LossTerm):
    """``-Q(s, pi(s))``: TD3's actor loss (SAC's too, without the entropy term).

    :param normalize: divide by the batch's mean ``|Q|`` (held constant), as Diffusion-QL does, so that the
        term's scale does not follow the reward's and its weight sets the balance with a behaviour-cloning
        or denoising term (``diffusion_bc``) in any env; the gradient's direction is unchanged
    """

    def __init__(self, normalize: bool = False) -> None:
        if not isinstance(normalize, bool):
            raise ValueError(f"normalize must be true or false, got {normalize!r}")
        self.normalize = normalize

    def __call__(self, ctx: ActorLossContext) -> LossOutput:
        if not self.normalize:
            return -ctx.q_pi.mean()
        scale = ctx.q_pi.abs().mean().detach().clamp_min(1e-8)  # 1e-8: a critic that is exactly 0 at the start
        return -ctx.q_pi.mean() / scale, {"q_scale": scale.item()}


class BehaviourCloningLoss(LossTerm):
    """Mean squared distance between the policy's actions and the replay buffer's actions.

    Both are normalized actions in ``[-1, 1]``. With weights, ``q_value`` (weight 1) plus
    ``bc`` (weight lambda) gives a TD3+BC style actor loss.
    """

    def __call__(self, ctx: ActorLossContext) -> LossOutput:
        return th.mean((ctx.actions - ctx.batch.actions) ** 2)


# -- on-policy (PPO, A2C) ----------------------------------------------------------------------


class PPOClipLoss(LossTerm):
    """stable-baselines3's PPO clipped surrogate: ``-mean(min(A r, A clip(r, 1 - eps, 1 + eps)))``.

    ``r = exp(log_prob - old_log_prob)`` is the likelihood ratio of the buffer's raw actions
    under the current and the collecting policy, ``A`` the (normalized) advantages, ``eps``
    the clip range (PPO logs the share of clipped ratios as ``train/clip_fraction``).

    :param clip_range: a fixed clip range; None (the default) uses PPO's own
        (``algo_kwargs.clip_range`` and its schedule)
    """

    on_policy = True
    requires = frozenset({"log_prob"})

    @classmethod
    def check_compatible(cls, head: type[ActorHead], algo: str) -> str | None:
        if algo == "a2c":  # one gradient step per rollout: the ratio is always 1 and nothing is clipped
            return "is PPO's clipped surrogate; A2C takes one gradient step per rollout (the ratio is always 1): use " \
                   "its policy gradient term"
        return super().check_compatible(head, algo)

    def __init__(self, clip_range: float | None = None) -> None:
        if clip_range is not None and not (isinstance(clip_range, (int, float)) and clip_range > 0):
            raise ValueError(f"clip_range must be a positive number (or null for PPO's own), got {clip_range!r}")
        self.clip_range = clip_range

    def __call__(self, ctx: OnPolicyLossContext) -> LossOutput:
        clip_range = self.clip_range if self.clip_range is not None else ctx.clip_range
        assert clip_range is not None, "composition refuses ppo_clip outside PPO"
        advantages = ctx.advantages
        # the same operations as stable-baselines3's PPO.train, so the default composition is SB3's to the bit
        ratio = th.exp(ctx.log_prob - ctx.old_log_prob)
        policy_loss_1 = advantages * ratio
        policy_loss_2 = advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range)
        return -th.min(policy_loss_1, policy_loss_2).mean()


class PolicyGradientLoss(LossTerm):
    """A2C's (vanilla) policy gradient: ``-mean(A log_prob)``, with ``A`` the (normalized) advantages."""

    on_policy = True
    requires = frozenset({"log_prob"})

    def __call__(self, ctx: OnPolicyLossContext) -> LossOutput:
        return -(ctx.advantages * ctx.log_prob).mean()


class EntropyBonusLoss(LossTerm):
    """Minus the policy's entropy: with weight ``c`` it is stable-baselines3's ``ent_coef * entropy_loss``.

    The entropy is the head's closed form (:attr:`OnPolicyLossContext.entropy`), or, for a head
    without one (``squashed_gaussian``), the estimate ``-mean(log_prob)`` of the buffer's actions,
    as stable-baselines3 does. The weight is the entropy coefficient: when a config leaves
    ``policy.losses`` unset, the default terms carry this one with ``algo_kwargs.ent_coef``
    (stable-baselines3's default 0.0) as its weight.
    """

    on_policy = True
    requires = frozenset({"log_prob"})

    def __call__(self, ctx: OnPolicyLossContext) -> LossOutput:
        if ctx.entropy is None:
            return -th.mean(-ctx.log_prob)
        return -th.mean(ctx.entropy)

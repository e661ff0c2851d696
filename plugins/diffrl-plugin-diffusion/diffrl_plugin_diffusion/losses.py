"""The ``diffusion_bc`` loss term: Diffusion-QL's denoising loss toward the replay buffer's actions."""

from __future__ import annotations

from diffrl_core.components import ActorHead, ActorLossContext, LossOutput, LossTerm


class DiffusionBCLoss(LossTerm):
    """``E ||eps - eps(sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, t, s)||^2``, ``tanh(x_0)`` a buffer action.

    Diffusion-QL (Wang, Hunt and Zhou, ICLR 2023) trains its diffusion actor with this loss plus
    ``eta`` times a Q term: ``policy.losses: [{name: diffusion_bc}, {name: q_value, weight: eta, kwargs:
    {normalize: true}}]`` under TD3. It keeps the policy close to the actions that were taken, and
    the Q term pulls it toward better ones. The head must be ``diffusion`` (it provides the noise
    network). The buffer's actions are the normalized actions the env received, so they are the head's
    raw actions only after a post-processor that leaves bounded raw actions unchanged (``identity``,
    ``clip``).

    :param max_abs_action: buffer actions are clamped to ``[-max_abs_action, max_abs_action]`` before
        ``atanh`` (an action at the bound would map to infinity)
    """

    def __init__(self, max_abs_action: float = 0.999) -> None:
        number = isinstance(max_abs_action, int | float) and not isinstance(max_abs_action, bool)
        if not number or not 0 < max_abs_action < 1:
            raise ValueError(f"max_abs_action must be a number in (0, 1), got {max_abs_action!r}")
        self.max_abs_action = float(max_abs_action)

    def __call__(self, ctx: ActorLossContext) -> LossOutput:
        if ctx.head is None or ctx.latent is None:
            raise RuntimeError("diffusion_bc needs the context's head and latent (diffrl's training loops give them)")
        return ctx.head.denoising_loss(ctx.latent, ctx.batch.actions, self.max_abs_action)  # type: ignore[operator,no-any-return]

    @classmethod
    def check_compatible(cls, head: type[ActorHead], algo: str) -> str | None:
        reason = super().check_compatible(head, algo)
        if reason is None and not callable(getattr(head, "denoising_loss", None)):
            return ("needs a diffusion head, one with a denoising_loss(latent, actions) method (such as 'diffusion'), "
                    f"and {head.__name__} has none")
        return reason

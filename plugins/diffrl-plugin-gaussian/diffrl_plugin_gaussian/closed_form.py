"""SAC's actor loss with a hand-written backward pass, and its detached-log-prob variant.

For the ``gaussian`` head (``a = mu + sigma * eps``, ``sigma = exp(log_sigma)``, rsample), a
post-processor ``y = post(a)`` and the per-sample loss ``l = alpha * log p(y) - Q(y)``, where
``log p(y)`` is the log-density of the normalized action the critic sees (``ctx.log_prob``:
the head's log-prob minus the post-processor's log-abs-det-Jacobian ``J(a) = log |det dy/da|``
when it is bijective, e.g. ``J(a) = sum_i log(1 - tanh(a_i)^2 + epsilon)`` for ``tanh``; the
head's own log-prob otherwise, e.g. ``clip``), the *total* derivatives (``a`` moves with
``mu`` and ``sigma``), per action dimension ``i``, are::

    log p(y) = log pi(a | mu, sigma) - J(a)
    log pi(a | mu, sigma) = sum_i [-0.5 log(2 pi) - log_sigma_i - eps_i^2 / 2]   # (a - mu) / sigma = eps

    dl / dmu_i        = -g_i
    dl / dlog_sigma_i = -alpha - g_i * sigma_i * eps_i

with ``g = d/da [Q(post(a)) + alpha * J(a)]`` for a bijective post-processor, and
``g = d Q(post(a)) / d a`` (the critic's action gradient through the post-processor) for
one that is not (then ``J`` is absent from ``ctx.log_prob`` too). The Gaussian log-prob
contributes nothing to ``dl/dmu`` and exactly ``-alpha`` to ``dl/dlog_sigma``: once ``a`` is
reparameterized, ``log pi`` depends on ``mu`` not at all and on ``log_sigma`` only through
``-log_sigma``. The Jacobian term ``-alpha * J(a)`` depends on ``mu`` and ``sigma`` only
through ``a``, like ``-Q``, so it joins the critic's action gradient in ``g``. The batch loss
is the mean over the batch, so each row's gradient is divided by the batch size.
``docs/gradients.md`` compares this with the seed document's formulas, which are the
gradient of :class:`SACEntropyDetachedLoss` instead.
"""

from __future__ import annotations

from typing import Any

import torch as th

from diffrl_core.components import ActorHead, ActorLossContext, LossOutput, LossTerm, PostProcessor
from diffrl_plugin_gaussian.heads import GaussianHead


class _SACEntropyClosedForm(th.autograd.Function):
    """``mean(alpha * log p(post(a)) - Q(post(a)))`` as a function of ``(mean, log_std)``, backward by hand.

    ``g = d/da [Q(post(a)) + alpha * J(a)]`` (``J``: the post-processor's
    log-abs-det-Jacobian, when it is bijective) is computed in :meth:`forward`, on a detached
    copy of the raw action, with :func:`torch.autograd.grad` restricted to that copy: no
    gradient reaches the critic's parameters and the critic's graph is freed before
    ``forward`` returns. Only ``g`` (and ``sigma * eps``) are kept for :meth:`backward`.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        mean: th.Tensor,
        log_std: th.Tensor,
        noise: th.Tensor,
        alpha: th.Tensor,
        loss_ctx: ActorLossContext,
    ) -> th.Tensor:
        std = log_std.exp()
        raw = mean + std * noise  # the same rsample the head computed
        # The value, computed as the head, postprocess_sample and sac_entropy compute it (so it is equal to it)
        log_prob = th.distributions.Normal(mean, std).log_prob(raw).sum(dim=-1)
        post = loss_ctx.postprocess
        bijective = isinstance(post, PostProcessor) and post.bijective  # as postprocess_sample decides
        with th.enable_grad():
            raw_leaf = raw.detach().requires_grad_(True)
            # through the post-processor, so tanh / clip are differentiated as sac_entropy does
            actions = post(raw_leaf)
            q = loss_ctx.q_fn(actions)
            objective = q.sum()
            if bijective:
                assert isinstance(post, PostProcessor)
                ladj = post.log_abs_det_jacobian(raw_leaf, actions)
                objective = objective + (alpha * ladj).sum()
                log_prob = log_prob - ladj.detach()
            (grad,) = th.autograd.grad(objective, raw_leaf)
        q = q.detach()
        batch = mean.shape[0]
        ctx.save_for_backward(grad, std * noise, alpha)
        ctx.batch = batch
        return (alpha * log_prob.reshape(-1, 1) - q).mean()

    @staticmethod
    def backward(ctx: Any, grad_output: th.Tensor) -> tuple[th.Tensor | None, ...]:  # type: ignore[override]
        grad, std_noise, alpha = ctx.saved_tensors
        scale = grad_output / ctx.batch
        grad_mean = -grad * scale  # dl/dmu = -g
        grad_log_std = (-alpha - grad * std_noise) * scale  # dl/dlog_sigma = -alpha - g sigma eps
        return grad_mean, grad_log_std, None, None, None


def _gaussian_params(ctx: ActorLossContext, term: str) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    params = ctx.sample.params
    missing = [key for key in ("mean", "log_std", "noise") if key not in params]
    if missing:
        raise RuntimeError(
            f"loss term {term!r} needs the head sample's params mean, log_std and noise (the 'gaussian' head "
            f"provides them); missing: {', '.join(missing)}"
        )
    return params["mean"], params["log_std"], params["noise"]


def _reference_sac_entropy(ctx: ActorLossContext) -> th.Tensor:
    # sac_entropy by plain autograd (SACEntropyLoss's formula)
    return (ctx.alpha * ctx.log_prob - ctx.q_pi).mean()


class _GaussianHeadLoss(LossTerm):
    """A loss term whose math is that of the plugin's unsquashed ``gaussian`` head."""

    requires = frozenset({"log_prob", "alpha"})

    @classmethod
    def check_compatible(cls, head: type[ActorHead], algo: str) -> str | None:
        reason = super().check_compatible(head, algo)
        if reason:
            return reason
        if not (isinstance(head, type) and issubclass(head, GaussianHead)):
            return (
                "works with the unsquashed Gaussian log-prob of the 'gaussian' head (a = mean + std * noise); "
                "it is only valid for that head (or a subclass), use 'sac_entropy' for other heads"
            )
        return None


class SACEntropyClosedFormLoss(_GaussianHeadLoss):
    """``sac_entropy`` for the ``gaussian`` head, with the gradient w.r.t. mean and log-std by hand.

    Equal in value and in gradient to ``sac_entropy`` under rsample (``diffrl gradcheck
    sac_entropy_closed_form`` checks it). ``alpha`` receives no gradient (SAC detaches it).
    The critic's parameters receive no gradient from this term either (``sac_entropy``
    leaves one, which SAC's next critic step discards with ``zero_grad``).
    """

    def __call__(self, ctx: ActorLossContext) -> LossOutput:
        mean, log_std, noise = _gaussian_params(ctx, "sac_entropy_closed_form")
        alpha = th.as_tensor(ctx.alpha, dtype=mean.dtype, device=mean.device).detach()
        return _SACEntropyClosedForm.apply(mean, log_std, noise.detach(), alpha, ctx)

    def reference_loss(self, ctx: ActorLossContext) -> th.Tensor:
        return _reference_sac_entropy(ctx)


class SACEntropyDetachedLoss(_GaussianHeadLoss):
    """``alpha * log p(post(a.detach())) - Q(post(a))``: the log-prob evaluated at the detached sample.

    This is **not** SAC's actor loss: its gradient is the seed document's hand derivation
    (partial derivatives of ``log pi`` with ``a`` held fixed), whose log-prob part is a score
    function with zero expectation, so the entropy bonus vanishes from the expected
    gradient and the standard deviation collapses. Kept to train and show the difference
    (see ``docs/gradients.md``). For the ``gaussian`` head (log-prob of an unsquashed
    diagonal Gaussian).

    The log-prob is the same normalized quantity as ``ctx.log_prob`` (so the value equals
    ``sac_entropy``'s): the Gaussian log-prob minus the post-processor's
    log-abs-det-Jacobian when it is bijective, both evaluated at the detached action. The
    Jacobian term therefore contributes nothing to the gradient either: the gradient is
    exactly the seed's formulas, with ``Q'`` the critic's action gradient through the
    post-processor.
    """

    def __call__(self, ctx: ActorLossContext) -> LossOutput:
        params = ctx.sample.params
        if "mean" not in params or "log_std" not in params:
            raise RuntimeError("loss term 'sac_entropy_detached' needs the head sample's params mean and log_std")
        mean, log_std = params["mean"], params["log_std"]
        raw = ctx.sample.actions.detach()
        log_prob = th.distributions.Normal(mean, log_std.exp()).log_prob(raw).sum(dim=-1)
        post = ctx.postprocess
        if isinstance(post, PostProcessor) and post.bijective:  # as postprocess_sample decides
            log_prob = log_prob - post.log_abs_det_jacobian(raw, ctx.actions.detach())
        return (ctx.alpha * log_prob.reshape(-1, 1) - ctx.q_pi).mean()


__all__ = ["SACEntropyClosedFormLoss", "SACEntropyDetachedLoss"]

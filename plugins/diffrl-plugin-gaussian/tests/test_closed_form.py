"""``sac_entropy_closed_form`` against autograd, and ``sac_entropy_detached`` against the seed's formulas."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from torch import nn

from diffrl_core.builtin.postprocessors import Clip, Identity, Tanh
from diffrl_core.components import ActorLossContext, LossOutput, postprocess_sample
from diffrl_core.gradcheck import check_gradients
from diffrl_core.plugins import load_plugins
from diffrl_plugin_gaussian.closed_form import SACEntropyClosedFormLoss, SACEntropyDetachedLoss
from diffrl_plugin_gaussian.heads import GaussianHead, SquashedGaussianHead
from diffrl_plugin_gaussian.losses import SACEntropyLoss

BATCH, OBS, ACT, LATENT = 64, 5, 3, 8


class Setup:
    """A random float64 batch through a real ``gaussian`` head and a random critic."""

    def __init__(self, seed: int, postprocess: type = Tanh, state_dependent_std: bool = True,
                 **postprocess_kwargs: Any) -> None:
        th.manual_seed(seed)
        self.obs = th.randn(BATCH, OBS, dtype=th.float64)
        self.body = nn.Sequential(nn.Linear(OBS, LATENT), nn.Tanh()).double()
        self.head = GaussianHead(LATENT, ACT, state_dependent_std=state_dependent_std, log_std_init=-0.5).double()
        self.critic = nn.Sequential(nn.Linear(OBS + ACT, 32), nn.Tanh(), nn.Linear(32, 1)).double()
        self.post = postprocess(spaces.Box(-1.0, 1.0, (ACT,), dtype="float64"), **postprocess_kwargs)
        self.alpha = th.tensor(0.05 + 0.9 * th.rand(()).item(), dtype=th.float64)
        self.noise_seed = seed + 1000

    def context(self) -> ActorLossContext:
        with th.random.fork_rng(devices=[]):
            th.manual_seed(self.noise_seed)  # the same eps for every term
            sample = self.head.sample(self.body(self.obs))
        batch = ReplayBufferSamples(self.obs, th.zeros(BATCH, ACT, dtype=th.float64), self.obs,
                                    th.ones(BATCH, 1, dtype=th.float64), th.zeros(BATCH, 1, dtype=th.float64))
        # as training builds it: ctx.log_prob is that of the normalized action (with tanh's Jacobian)
        return ActorLossContext.from_sample(
            batch,
            postprocess_sample(sample, self.post, type(self.head), raw_log_prob=True),
            q_fn=lambda a: self.critic(th.cat([self.obs, a], dim=1)),
            postprocess=self.post,
            alpha=self.alpha,
            algo="sac",
        )

    def actor_params(self) -> list[nn.Parameter]:
        return [*self.body.parameters(), *self.head.parameters()]

    def grads(self, term: Any) -> tuple[th.Tensor, dict[str, th.Tensor], list[th.Tensor]]:
        """The loss value, its gradients w.r.t. the head's outputs and w.r.t. the actor's weights."""
        ctx = self.context()
        loss = term(ctx)
        outputs = {"mean": ctx.sample.params["mean"], "log_std": ctx.sample.params["log_std"]}
        params = self.actor_params()
        grads = th.autograd.grad(loss, [*outputs.values(), *params])
        return loss.detach(), dict(zip(outputs, grads[:2], strict=True)), list(grads[2:])


POSTPROCESSORS = [
    pytest.param(Tanh, {}, id="tanh"),
    pytest.param(Tanh, {"epsilon": 0.0}, id="tanh-exact"),  # the softplus form of the Jacobian
    pytest.param(Clip, {}, id="clip"),  # not bijective: ctx.log_prob is the head's raw one
    pytest.param(Identity, {}, id="identity"),  # bijective with a zero Jacobian
]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize(("postprocess", "kwargs"), POSTPROCESSORS)
def test_closed_form_equals_sac_entropy_in_value_and_gradient(seed: int, postprocess: type,
                                                              kwargs: dict[str, Any]) -> None:
    setup = Setup(seed, postprocess, **kwargs)
    value, out_grads, weight_grads = setup.grads(SACEntropyClosedFormLoss())
    ref_value, ref_out_grads, ref_weight_grads = setup.grads(SACEntropyLoss())
    assert value.item() == pytest.approx(ref_value.item(), abs=1e-12, rel=1e-12)
    for name in ("mean", "log_std"):
        assert th.allclose(out_grads[name], ref_out_grads[name], rtol=0.0, atol=1e-8), name
        assert (out_grads[name] - ref_out_grads[name]).abs().max().item() < 1e-12
    # ... and so the actor's weights receive the same gradient, through the log-std clamp too
    for got, want in zip(weight_grads, ref_weight_grads, strict=True):
        assert th.allclose(got, want, rtol=0.0, atol=1e-8)


def test_state_independent_std_gets_the_same_gradient() -> None:
    setup = Setup(7, Tanh, state_dependent_std=False)
    _, _, weight_grads = setup.grads(SACEntropyClosedFormLoss())
    _, _, ref_weight_grads = setup.grads(SACEntropyLoss())
    for got, want in zip(weight_grads, ref_weight_grads, strict=True):
        assert th.allclose(got, want, rtol=0.0, atol=1e-8)


def _q_grad(setup: Setup, ctx: ActorLossContext) -> th.Tensor:
    """Q'(a) = d Q(post(a)) / da, the critic's action gradient through the post-processor."""
    raw = ctx.sample.actions.detach().requires_grad_(True)
    return th.autograd.grad(ctx.q_fn(ctx.postprocess(raw)).sum(), raw)[0]


@pytest.mark.parametrize(("postprocess", "kwargs"), POSTPROCESSORS)
def test_closed_form_is_the_total_derivative_of_the_docs(postprocess: type, kwargs: dict[str, Any]) -> None:
    """dL/dmu = -g / B and dL/dlog sigma = (-alpha - g sigma eps) / B (docs/gradients.md).

    ``g = Q'(a) + alpha J'(a)`` for a bijective post-processor (``J``: its log-abs-det-Jacobian,
    which ``ctx.log_prob`` subtracts), ``g = Q'(a)`` otherwise.
    """
    setup = Setup(11, postprocess, **kwargs)
    ctx = setup.context()
    _, grads, _ = setup.grads(SACEntropyLoss())
    g = _q_grad(setup, ctx)
    a = ctx.sample.actions.detach()
    if postprocess is Tanh:  # J(a) = sum log(1 - tanh(a)^2 + epsilon): J'(a) = -2 y (1 - y^2) / (1 - y^2 + epsilon)
        y = th.tanh(a)
        g = g + setup.alpha * (-2.0 * y * (1.0 - y**2) / (1.0 - y**2 + setup.post.epsilon))
    sigma, eps = ctx.sample.params["log_std"].exp().detach(), ctx.sample.params["noise"]
    assert th.allclose(grads["mean"], -g / BATCH, rtol=0.0, atol=1e-12)
    assert th.allclose(grads["log_std"], (-setup.alpha - g * sigma * eps) / BATCH, rtol=0.0, atol=1e-12)


def test_the_log_prob_includes_the_tanh_jacobian() -> None:
    """With tanh, sac_entropy's value is alpha (log N(a) - sum log(1 - tanh(a)^2 + eps)) - Q(tanh(a)).

    So is the closed form's.
    """
    setup = Setup(13)
    ctx = setup.context()
    a = ctx.sample.actions.detach()
    mean, std = ctx.sample.params["mean"].detach(), ctx.sample.params["log_std"].exp().detach()
    log_prob = th.distributions.Normal(mean, std).log_prob(a).sum(dim=-1, keepdim=True)
    log_prob = log_prob - th.log(1.0 - th.tanh(a) ** 2 + 1e-6).sum(dim=-1, keepdim=True)
    with th.no_grad():
        expected = (setup.alpha * log_prob - setup.critic(th.cat([setup.obs, th.tanh(a)], dim=1))).mean()
    value, _, _ = setup.grads(SACEntropyClosedFormLoss())
    assert value.item() == pytest.approx(expected.item(), abs=1e-12, rel=1e-12)
    # and the raw (head) log-prob would give another value: the Jacobian is not negligible here
    raw_value = (setup.alpha * ctx.raw_log_prob - ctx.q_pi).mean().item()
    assert abs(raw_value - value.item()) > 1e-3


@pytest.mark.parametrize(("postprocess", "kwargs"), POSTPROCESSORS)
def test_detached_variant_gradient_is_the_seed_formulas(postprocess: type, kwargs: dict[str, Any]) -> None:
    """The seed's three formulas (partials of log pi with ``a`` held fixed) are sac_entropy_detached's gradient.

    Its log-prob subtracts the post-processor's Jacobian at the detached action too: the same
    value as sac_entropy, and no gradient from the Jacobian.
    """
    setup = Setup(12, postprocess, **kwargs)
    ctx = setup.context()
    _, grads, _ = setup.grads(SACEntropyDetachedLoss())
    g = _q_grad(setup, ctx)
    mu, sigma = ctx.sample.params["mean"].detach(), ctx.sample.params["log_std"].exp().detach()
    a, eps, alpha = ctx.sample.actions.detach(), ctx.sample.params["noise"], setup.alpha
    seed_dmu = alpha * (a - mu) / sigma**2 - g
    seed_dsigma = alpha * (-1 / sigma + (a - mu) ** 2 / sigma**3) - g * eps
    seed_dlog_sigma = sigma * seed_dsigma
    assert th.allclose(grads["mean"], seed_dmu / BATCH, rtol=1e-10, atol=1e-12)
    assert th.allclose(grads["log_std"], seed_dlog_sigma / BATCH, rtol=1e-10, atol=1e-12)
    # the same value as sac_entropy: only the gradient differs
    value, _, _ = setup.grads(SACEntropyDetachedLoss())
    ref_value, ref_grads, _ = setup.grads(SACEntropyLoss())
    assert value.item() == pytest.approx(ref_value.item(), rel=1e-12)
    assert not th.allclose(grads["log_std"], ref_grads["log_std"], atol=1e-6)


def test_no_gradient_reaches_the_critic_and_no_graph_is_kept() -> None:
    setup = Setup(3)
    ctx = setup.context()
    loss = SACEntropyClosedFormLoss()(ctx)
    loss.backward()
    assert all(p.grad is None for p in setup.critic.parameters())
    assert all(p.grad is not None for p in setup.head.parameters())


@pytest.mark.parametrize("postprocess", ["tanh", "clip", Tanh])
def test_gradcheck_api_passes_at_1e_8(postprocess: Any) -> None:
    result = check_gradients("sac_entropy_closed_form", head="gaussian", seeds=range(5), tolerance=1e-8,
                             postprocess=postprocess)
    assert result.ok, result.format()
    assert [c.parameter for c in result.checks] == ["mean", "log_std", "value"]
    assert all(c.max_abs_error < 1e-12 for c in result.checks)


def test_gradcheck_catches_a_closed_form_without_the_tanh_jacobian() -> None:
    """The former closed form (g = Q'(a) only, the head's raw log-prob) is wrong under tanh, right under clip."""

    class WithoutJacobian(SACEntropyClosedFormLoss):
        def __call__(self, ctx: ActorLossContext) -> LossOutput:
            post = ctx.postprocess
            # the same function, but not a PostProcessor: the closed form sees no Jacobian
            return super().__call__(dataclasses.replace(ctx, postprocess=lambda raw: post(raw)))

    result = check_gradients(WithoutJacobian, head="gaussian", postprocess="tanh")
    assert result.failing == ["mean", "log_std", "value"], result.format()
    assert check_gradients(WithoutJacobian, head="gaussian", postprocess="clip").ok


def test_gradcheck_refuses_identity_after_the_unbounded_gaussian() -> None:
    from diffrl_core.errors import IncompatibleComponentsError

    with pytest.raises(IncompatibleComponentsError, match="post-processor 'identity' cannot follow head 'gaussian'"):
        check_gradients("sac_entropy_closed_form", head="gaussian", postprocess="identity")


def test_registered_by_name() -> None:
    registry = load_plugins().registry("loss_terms")
    assert registry.resolve("sac_entropy_closed_form") is SACEntropyClosedFormLoss
    assert registry.resolve("sac_entropy_detached") is SACEntropyDetachedLoss
    assert registry.get("sac_entropy_closed_form").provenance.plugin == "gaussian"


def test_refuses_other_heads_and_td3() -> None:
    assert SACEntropyClosedFormLoss.check_compatible(GaussianHead, "sac") is None
    reason = SACEntropyClosedFormLoss.check_compatible(SquashedGaussianHead, "sac")
    assert reason and "'gaussian' head" in reason
    assert SACEntropyClosedFormLoss.check_compatible(GaussianHead, "td3")
    assert SACEntropyDetachedLoss.check_compatible(SquashedGaussianHead, "sac")

    class MyGaussian(GaussianHead):
        pass

    assert SACEntropyClosedFormLoss.check_compatible(MyGaussian, "sac") is None


def test_make_model_refuses_the_squashed_head() -> None:
    from diffrl_core import make_model
    from diffrl_core.errors import IncompatibleComponentsError

    config = {
        "env": "Pendulum-v1",
        "policy": {"head": "squashed_gaussian", "losses": [{"name": "sac_entropy_closed_form"}]},
    }
    with pytest.raises(IncompatibleComponentsError, match="sac_entropy_closed_form.*squashed_gaussian"):
        make_model(config)

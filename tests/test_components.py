"""The loss context shared by the loss terms of one gradient step."""

from __future__ import annotations

import torch as th

from diffrl_core.components import ActorLossContext, HeadSample


def make_context(calls: list[int]) -> ActorLossContext:
    actions = th.zeros(4, 2, requires_grad=True)
    weight = th.ones(2, requires_grad=True)

    def q(a: th.Tensor) -> th.Tensor:
        calls.append(1)
        return (a * weight).sum(dim=1, keepdim=True)

    return ActorLossContext(batch=None, sample=HeadSample(actions), actions=actions, q_fn=q,
                            postprocess=lambda raw: raw, alpha=None, algo="td3")


def test_q_pi_is_computed_once_per_step() -> None:
    calls: list[int] = []
    ctx = make_context(calls)
    assert ctx.q_pi is ctx.q_pi
    assert len(calls) == 1 and ctx.q_pi.requires_grad


def test_q_pi_first_read_under_no_grad_is_not_cached() -> None:
    calls: list[int] = []
    ctx = make_context(calls)
    with th.no_grad():
        assert not ctx.q_pi.requires_grad
    assert ctx.q_pi.requires_grad  # the next term still gets a critic gradient
    assert len(calls) == 2

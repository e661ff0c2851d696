"""Check a loss term's hand-written gradient against autograd, on random float64 inputs.

A loss term declares a closed-form gradient by overriding
:meth:`~diffrl_core.components.LossTerm.reference_loss` with the same loss computed by
plain autograd. :func:`check_gradients` builds a random actor-loss context in float64
(random observations, a small random critic MLP as ``q``, a random ``alpha``, the head's
distribution parameters as leaf tensors), then compares, for each seed, the value and the
gradients w.r.t. each distribution parameter of ``term(ctx)`` with those of
``term.reference_loss(ctx)``. ``diffrl gradcheck`` is its command-line face; a plugin's own
tests can call it directly::

    from diffrl_core.gradcheck import check_gradients

    result = check_gradients("sac_entropy_closed_form", head="gaussian")
    assert result.ok, result.format()

**The head's contract.** A head exposes its distribution parameters through a method
``params(latent) -> dict[str, torch.Tensor]`` (name -> tensor, e.g. ``mean`` and ``log_std``
for the Gaussian heads, ``alpha`` and ``beta`` for ``beta``), and its ``sample()`` computes
its distribution from ``self.params(latent)`` only. The check calls the head's real
``params`` once on a random latent (float64) for realistic values, detaches them into leaf
tensors, and replaces the head's ``params`` by a function returning those leaves, so that
``head.sample`` builds the context's sample from them. The context is then built as
training builds it: :func:`~diffrl_core.components.postprocess_sample` (the log-prob of the
normalized action, with the post-processor's Jacobian) and
:meth:`~diffrl_core.components.ActorLossContext.from_sample`.

torch is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from diffrl_core.errors import DiffRLError, IncompatibleComponentsError

if TYPE_CHECKING:
    from diffrl_core.components import ActorHead, LossTerm, PostProcessor
    from diffrl_core.plugins import PluginHost

#: The row of a result that compares the loss values, not gradients.
VALUE = "value"


@dataclass(frozen=True)
class ParameterCheck:
    """The worst disagreement over all seeds for one parameter (or for the loss value).

    :param parameter: the name of one of the head's distribution parameters (a key of
        ``head.params(latent)``, e.g. ``"mean"``), or ``"value"``
    :param max_abs_error: ``max |closed form - autograd|`` over elements and seeds
    :param max_rel_error: the same divided by ``max |autograd|`` (per seed; max over seeds)
    :param ok: ``max_abs_error <= tolerance`` or ``max_rel_error <= tolerance`` (and no NaN)
    """

    parameter: str
    max_abs_error: float
    max_rel_error: float
    ok: bool


@dataclass(frozen=True)
class GradcheckResult:
    """What :func:`check_gradients` found for one loss term.

    :param term: the term's name (its registered name, or its class name)
    :param head: the head's name (or class name)
    :param seeds: the seeds that were checked
    :param tolerance: the tolerance the checks used
    :param checks: one :class:`ParameterCheck` per distribution parameter (in the order of
        the head's ``params`` dict), then one for the value
    """

    term: str
    head: str
    seeds: tuple[int, ...]
    tolerance: float
    checks: tuple[ParameterCheck, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failing(self) -> list[str]:
        """The names of the parameters (or ``"value"``) that disagree."""
        return [check.parameter for check in self.checks if not check.ok]

    def format(self) -> str:
        return format_results([self])


def format_results(results: Iterable[GradcheckResult]) -> str:
    """A table: term, parameter, max abs err, max rel err, ok."""
    rows = [("term", "parameter", "max abs err", "max rel err", "ok")]
    for result in results:
        for check in result.checks:
            rows.append((result.term, check.parameter, f"{check.max_abs_error:.3e}", f"{check.max_rel_error:.3e}",
                         "ok" if check.ok else "FAIL"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


def has_closed_form(term: LossTerm | type[LossTerm]) -> bool:
    """Whether the term's class overrides :meth:`LossTerm.reference_loss`."""
    from diffrl_core.components import LossTerm

    cls = term if isinstance(term, type) else type(term)
    return getattr(cls, "reference_loss", None) is not LossTerm.reference_loss


def check_head(head: type[ActorHead] | str, host: PluginHost | None = None, action_dim: int = 3,
               obs_dim: int = 4) -> list[str]:
    """Check that ``head`` fulfils gradcheck's contract; return the names of its distribution parameters.

    The head (class or registered name) must be an :class:`~diffrl_core.components.ActorHead`
    with a method ``params(latent) -> dict[str, torch.Tensor]``; it is built as
    ``head(obs_dim, action_dim)`` in float64 and ``params`` is called on a random latent.

    :raises DiffRLError: an unknown name, not an ``ActorHead``, no ``params`` method, or a
        ``params`` that does not return a non-empty dict of floating-point tensors
    """
    import torch as th

    if host is None and isinstance(head, str):
        from diffrl_core.plugins import load_plugins

        host = load_plugins()
    head_name, head_cls = _resolve_head(head, host)
    with th.random.fork_rng(devices=[]), th.no_grad():
        th.manual_seed(0)
        module = head_cls(obs_dim, action_dim).to(th.float64)
        params = module.params(th.randn(2, obs_dim, dtype=th.float64))
    return list(_leaves(params, head_name, th.float64))


def check_gradients(
    term: LossTerm | type[LossTerm] | str,
    head: type[ActorHead] | str = "gaussian",
    seeds: Sequence[int] = (0, 1, 2),
    batch_size: int = 16,
    action_dim: int = 3,
    obs_dim: int = 4,
    postprocess: type[PostProcessor] | str = "tanh",
    tolerance: float = 1e-8,
    host: PluginHost | None = None,
) -> GradcheckResult:
    """Compare the gradients of ``term(ctx)`` with those of ``term.reference_loss(ctx)``.

    :param term: a loss term instance, class (built without kwargs) or registered name
    :param head: the head (class or registered name, built as ``head(obs_dim, action_dim)``)
        whose distribution parameters are the leaves; it must have a method
        ``params(latent) -> dict[str, torch.Tensor]`` from which its ``sample()`` computes
        its distribution. ``params`` is replaced by one returning leaf tensors (of the
        names and shapes the real one returns), one result row per name
    :param seeds: one random context per seed
    :param batch_size: rows per context
    :param action_dim: action size
    :param obs_dim: observation size (the critic's input is observation and action)
    :param postprocess: the post-processor (registered name or class) between raw and
        critic actions; the context's log-prob is that of the post-processed action
    :param tolerance: allowed max abs error, or max relative error
    :param host: the plugin host resolving names (default: :func:`diffrl_core.load_plugins`)
    :raises DiffRLError: unknown names, a term without a closed form, a term that cannot
        train the head, a post-processor that cannot follow the head, a head without
        ``params`` or whose ``params`` does not return a dict of floating-point tensors, or
        whose ``sample()`` does not call it
    """
    import torch as th

    from diffrl_core.components import PostProcessor

    if host is None and any(isinstance(x, str) for x in (term, head, postprocess)):
        from diffrl_core.plugins import load_plugins

        host = load_plugins()
    term_name, term_obj = _resolve_term(term, host)
    head_name, head_cls = _resolve_head(head, host)
    if not has_closed_form(term_obj):
        raise DiffRLError(
            f"loss term {term_name!r} declares no closed-form gradient: its class does not override "
            "LossTerm.reference_loss, so there is nothing to compare with autograd"
        )
    reason = type(term_obj).check_compatible(head_cls, "sac")
    if reason:
        raise IncompatibleComponentsError(f"loss term {term_name!r} cannot train head {head_name!r}: it {reason}")
    post_name, post_cls = _resolve(postprocess, "postprocessors", host)
    if not (isinstance(post_cls, type) and issubclass(post_cls, PostProcessor)):
        raise DiffRLError(
            f"post-processor {post_name!r} is {post_cls!r}, not a diffrl_core.components.PostProcessor subclass"
        )
    reason = post_cls.check_head(head_cls)
    if reason:
        raise IncompatibleComponentsError(f"post-processor {post_name!r} cannot follow head {head_name!r}: it {reason}")

    dtype = th.float64
    worst: dict[str, list[Any]] = {}
    for seed in seeds:
        inputs = _random_inputs(int(seed), head_name, head_cls, post_cls, batch_size, action_dim, obs_dim, dtype)
        if not worst:
            worst = {name: [0.0, 0.0, True] for name in (*inputs.leaves, VALUE)}
        closed = _loss_and_grads(lambda ctx: _scalar(term_obj(ctx), term_name), inputs, seed, head_name)
        reference = _loss_and_grads(lambda ctx: _scalar(term_obj.reference_loss(ctx), term_name), inputs, seed,
                                    head_name)
        for name in (*inputs.leaves, VALUE):
            got, want = closed[name], reference[name]
            abs_err = (got - want).abs().max().item()
            scale = want.abs().max().item()
            rel_err = abs_err / scale if scale > 0 else (0.0 if abs_err == 0 else float("inf"))
            finite = bool(th.isfinite(got).all() and th.isfinite(want).all())
            entry = worst[name]
            entry[0] = max(entry[0], abs_err) if finite else float("nan")
            entry[1] = max(entry[1], rel_err) if finite else float("nan")
            entry[2] = entry[2] and finite and (abs_err <= tolerance or rel_err <= tolerance)
    checks = tuple(ParameterCheck(name, abs_err, rel_err, bool(ok)) for name, (abs_err, rel_err, ok) in worst.items())
    return GradcheckResult(term_name, head_name, tuple(int(s) for s in seeds), tolerance, checks)


# -- internals -------------------------------------------------------------------------------


def _resolve(component: Any, kind: str, host: PluginHost | None) -> tuple[str, Any]:
    if isinstance(component, str):
        assert host is not None
        return component, host.registry(kind).resolve(component)
    return getattr(component, "__name__", repr(component)), component


def _resolve_head(head: Any, host: PluginHost | None) -> tuple[str, Any]:
    from diffrl_core.components import ActorHead

    head_name, head_cls = _resolve(head, "actor_heads", host)
    if not (isinstance(head_cls, type) and issubclass(head_cls, ActorHead)):
        raise DiffRLError(f"actor head {head_name!r} is {head_cls!r}, not a diffrl_core.components.ActorHead subclass")
    if not callable(getattr(head_cls, "params", None)):
        raise DiffRLError(
            f"gradcheck differentiates w.r.t. a head's distribution parameters: actor head {head_name!r} has no "
            "params(latent) method; it needs one returning a dict of its distribution parameters (name -> tensor), "
            "from which its sample() computes its distribution (e.g. --head gaussian)"
        )
    return head_name, head_cls


def _resolve_term(term: Any, host: PluginHost | None) -> tuple[str, Any]:
    from diffrl_core.components import LossTerm

    name, obj = _resolve(term, "loss_terms", host)
    if isinstance(obj, type):
        if not issubclass(obj, LossTerm):
            raise DiffRLError(f"loss term {name!r} is {obj!r}, not a diffrl_core.components.LossTerm subclass")
        obj = obj()
    elif not isinstance(obj, LossTerm):
        raise DiffRLError(f"loss term {name!r} is {obj!r}, not a diffrl_core.components.LossTerm")
    if not isinstance(term, (str, type)):
        name = type(obj).__name__
    return name, obj


@dataclass
class _Inputs:
    head: Any
    postprocessor: Any
    critic: Any
    batch: Any
    alpha: Any
    #: the head's distribution parameters as leaf tensors (name -> tensor), what ``head.params`` returns
    leaves: dict[str, Any]
    #: how many times ``head.params`` was called (``sample()`` must call it)
    calls: list[int]


def _random_inputs(seed: int, head_name: str, head_cls: type, post_cls: type, batch_size: int, action_dim: int,
                   obs_dim: int, dtype: Any) -> _Inputs:
    import numpy as np
    import torch as th
    from gymnasium import spaces
    from stable_baselines3.common.type_aliases import ReplayBufferSamples
    from torch import nn

    with th.random.fork_rng(devices=[]):  # leave the caller's RNG state alone
        th.manual_seed(seed)
        obs = th.randn(batch_size, obs_dim, dtype=dtype)
        batch = ReplayBufferSamples(
            observations=obs,
            actions=th.rand(batch_size, action_dim, dtype=dtype) * 2 - 1,
            next_observations=th.randn(batch_size, obs_dim, dtype=dtype),
            dones=th.zeros(batch_size, 1, dtype=dtype),
            rewards=th.randn(batch_size, 1, dtype=dtype),
        )
        # a smooth critic, so that its action gradient is not piecewise constant
        critic = nn.Sequential(
            nn.Linear(obs_dim + action_dim, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1)
        ).to(dtype)
        alpha = (0.05 + 0.95 * th.rand((), dtype=dtype)).detach()
        head = head_cls(obs_dim, action_dim).to(dtype)
        box = spaces.Box(-1.0, 1.0, (action_dim,), dtype=np.float64)
        postprocessor = post_cls(box).to(dtype)
        # realistic parameter values: the head's own params on a random latent
        with th.no_grad():
            params = head.params(th.randn(batch_size, obs_dim, dtype=dtype))
    leaves = _leaves(params, head_name, dtype)
    calls = [0]

    def leaf_params(latent: Any) -> dict[str, Any]:
        calls[0] += 1
        return dict(leaves)

    # head.sample(latent) builds its sample from these leaves, not from its own layers
    head.params = leaf_params
    return _Inputs(head, postprocessor, critic, batch, alpha, leaves, calls)


def _leaves(params: Any, head_name: str, dtype: Any) -> dict[str, Any]:
    """Leaf tensors of the names and shapes of ``params`` (what the head's ``params`` returned)."""
    import torch as th

    needed = (
        f"gradcheck needs actor head {head_name!r}'s params(latent) to return a dict of its distribution "
        "parameters, name -> floating-point tensor (e.g. {'mean': ..., 'log_std': ...}), from which its sample() "
        "computes its distribution"
    )
    if not isinstance(params, dict) or not params:
        got = "an empty dict" if isinstance(params, dict) else f"a {type(params).__name__}"
        raise DiffRLError(f"{needed}; it returned {got}")
    bad = [
        f"{name!r}: {type(value).__name__ if not isinstance(value, th.Tensor) else value.dtype}"
        for name, value in params.items()
        if not (isinstance(name, str) and isinstance(value, th.Tensor) and value.is_floating_point())
    ]
    if bad:
        raise DiffRLError(f"{needed}; it returned {', '.join(bad)}")
    if VALUE in params:
        raise DiffRLError(f"actor head {head_name!r}'s params(latent) names a parameter {VALUE!r}, the name of "
                          "gradcheck's value row: rename it")
    return {name: value.detach().to(dtype).clone().requires_grad_(True) for name, value in params.items()}


def _loss_and_grads(loss_fn: Any, inputs: _Inputs, seed: int, head_name: str) -> dict[str, Any]:
    """``{parameter name: d loss / d parameter, ..., "value": loss}`` for a fresh context with the seed's noise."""
    import torch as th

    from diffrl_core.components import ActorLossContext, postprocess_sample

    calls = inputs.calls[0]
    with th.random.fork_rng(devices=[]):
        th.manual_seed(10_000 + int(seed))  # the same sampling noise for the term and its reference
        sample = inputs.head.sample(inputs.batch.observations)
    if inputs.calls[0] == calls:
        raise DiffRLError(
            f"actor head {head_name!r}'s sample() does not call self.params(latent): gradcheck differentiates "
            "w.r.t. the tensors params returns, so sample() must compute its distribution from them"
        )
    postprocessor, critic, obs = inputs.postprocessor, inputs.critic, inputs.batch.observations
    # as training builds it: the log-prob of the normalized action, with the post-processor's Jacobian (the
    # head's raw one after a post-processor without one, as policy.raw_log_prob gives: both sides see the same)
    ctx = ActorLossContext.from_sample(
        inputs.batch,
        postprocess_sample(sample, postprocessor, type(inputs.head), raw_log_prob=True),
        q_fn=lambda actions: critic(th.cat([obs, actions], dim=1)),
        postprocess=postprocessor,
        alpha=inputs.alpha,
        algo="sac",
    )
    loss = loss_fn(ctx)
    names, leaves = list(inputs.leaves), list(inputs.leaves.values())
    grads: tuple[th.Tensor | None, ...]
    if loss.requires_grad:
        grads = th.autograd.grad(loss, leaves, allow_unused=True)
    else:
        grads = (None,) * len(leaves)
    result = {
        name: th.zeros_like(leaf) if g is None else g for name, g, leaf in zip(names, grads, leaves, strict=True)
    }
    result[VALUE] = loss.detach()
    return result


def _scalar(output: Any, term_name: str) -> Any:
    import torch as th

    value = output[0] if isinstance(output, tuple) else output
    if not isinstance(value, th.Tensor) or value.ndim != 0:
        shape = tuple(value.shape) if isinstance(value, th.Tensor) else type(value).__name__
        raise DiffRLError(f"loss term {term_name!r} returned {shape}, not a scalar tensor")
    return value

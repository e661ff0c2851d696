"""The properties a conformance check verifies on the components themselves: the math, not the plumbing.

:mod:`diffrl_core.testing` runs these on the components of a model it has composed and
trained briefly; each function raises :class:`ConformanceError` naming the component and the
property (one of :data:`PROPERTIES`) that failed. They can be called on bare components too.

Two of the checks are statistical (a Monte-Carlo estimate compared with what it must be).
Each uses a fixed seed, so a given component passes or fails the same way every time, and is
calibrated so that a correct component fails for at most :data:`FALSE_ALARM_RATE` of the
seeds (nominally: Bonferroni over the rows and dimensions it looks at, normal and
Kolmogorov approximations; the rates measured by ``bench/conformance_false_alarms.py`` are
in ``docs/plugins.md``, up to 0.007 for a heavily saturated mixture):

- ``density``: if ``log_prob`` is the log-density ``log p`` of what ``sample()`` draws,
  then for any density ``q`` that is zero where ``p`` is, ``E_p[q(x) / p(x)] = 1``. ``q`` is
  a mixture of small boxes around points of a first batch of samples (see
  :func:`density_estimate`); a second batch estimates the expectation, and ``|mean - 1|`` is
  compared with its standard error. A log-prob missing a Jacobian term, or not normalized,
  moves the mean away from 1.
- ``log_prob_gradient`` (not statistical): the derivative of ``sample().log_prob`` along a
  random direction of the head's parameters, by autograd, is compared with central finite
  differences taken with the same random numbers (float64, 24 batches of 8 samples): the
  finite differences move the sample with the parameters, so a log-prob evaluated at a
  detached sample disagrees. Batches where a discrete choice flips (a mixture component) are
  left out. Samplers whose reparameterization gradient is not the derivative of their own
  random draws (torch's Gamma, Beta and Dirichlet use implicit reparameterization) cannot be
  checked this way: the check says so with an :class:`UncheckedWarning` instead of passing
  silently.
- ``same_distribution``: ``forward(deterministic=False)`` and ``sample()`` are compared per
  action dimension with a two-sample Kolmogorov-Smirnov test.
- ``evaluate_actions`` (not statistical; heads that declare ``evaluates_actions``, which PPO and
  A2C need): :meth:`~diffrl_core.components.ActorHead.evaluate_actions` of given raw actions
  returns a finite log-prob of shape ``(batch,)`` and an entropy that is None or finite of that
  shape; its log-prob agrees with :meth:`~diffrl_core.components.ActorHead.act`'s for
  ``act()``'s own actions (what the rollout buffer stores as the old log-prob, so a wrong one
  biases every likelihood ratio) and, for a head whose ``sample()`` gives a log-prob, with
  ``sample().log_prob`` for ``sample().actions`` (compared in float64, away from the bounds of
  a squashed head); and it is differentiable w.r.t. the head's parameters.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import torch as th

    from diffrl_core.components import (
        ActorHead,
        ActorLossContext,
        HeadEvaluation,
        LossTerm,
        OnPolicyLossContext,
        PostProcessor,
    )

#: What each property means, by its key: the keys appear in every :class:`ConformanceError`.
PROPERTIES: dict[str, str] = {
    "density": "(a) the log-prob is a normalized density of what sample() draws",
    "log_prob_gradient": "(b) the log-prob's gradient is that of the reparameterized sample",
    "loss_gradient": "(c) every loss term sends gradient to the actor's parameters",
    "bounds": "(d) the post-processor returns actions in [-1, 1] for raw inputs across a wide range",
    "reproducible": "(e) deterministic actions are reproducible",
    "same_distribution": "(f) forward(deterministic=False) and sample() draw from the same distribution",
    "jacobian": "a bijective post-processor's log_abs_det_jacobian is log |det| of its Jacobian",
    "identity_when_bounded": "an identity_when_bounded post-processor returns raw actions in [-1, 1] unchanged",
    "declarations": "the head does what its class attributes declare",
    "sde": "a head that supports_sde builds for gSDE, and its exploration noise changes only with reset_noise()",
    "evaluate_actions": "a head that evaluates_actions gives the log-prob of given actions: finite, that of act() "
                        "and sample() for their own actions, and differentiable",
}

#: The nominal chance that a correct component fails one statistical check, for a given seed.
FALSE_ALARM_RATE = 1e-3

#: Samples per row of the density and same-distribution checks.
SAMPLES = 4000


class ConformanceError(AssertionError):
    """A component does not behave as a diffrl component must (a test failure)."""


def fail(component: str, prop: str, detail: str) -> ConformanceError:
    """The error for ``component`` failing property ``prop`` (a key of :data:`PROPERTIES`)."""
    return ConformanceError(f"{component} fails [{prop}] {PROPERTIES[prop]}: {detail}")


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """torch's global generator seeded for the block, and the caller's state restored after it."""
    import torch as th

    with th.random.fork_rng(devices=[]):
        th.manual_seed(seed)
        yield


def _rows(latent: th.Tensor, rows: int) -> list[th.Tensor]:
    """Up to ``rows`` distinct rows of ``latent`` (first, middle, last), each of shape (1, latent_dim)."""
    picks = sorted({0, latent.shape[0] // 2, latent.shape[0] - 1})[:rows]
    return [latent[i : i + 1] for i in picks]


# -- (a) the density -----------------------------------------------------------------------


@dataclass(frozen=True)
class DensityEstimate:
    """The estimate of ``E_p[q(x) / p(x)]`` (1 for a correct log-prob) for one latent row.

    :param mean: the Monte-Carlo mean
    :param stderr: its standard error
    :param inside: how many of the samples fell where ``q > 0``
    """

    mean: float
    stderr: float
    inside: int

    @property
    def z(self) -> float:
        if self.stderr == 0.0:
            return 0.0 if self.mean == 1.0 else math.inf
        return (self.mean - 1.0) / self.stderr


def density_estimate(head: ActorHead, latent_row: th.Tensor, seed: int, n: int = SAMPLES,
                     centers: int = 256) -> DensityEstimate | None:
    """The importance-sampling estimate of ``E_p[q(x) / p(x)]`` (1 for a correct log-prob; None: no spread).

    ``q`` is a mixture of small uniform boxes centred on ``centers`` samples of a first batch
    (those inside the 10%-90% quantile box of each dimension), each box clipped to the 5%-95%
    box: a density that follows ``p`` and lies where ``p`` has mass, so ``q / p`` stays
    moderate (a single large box would put ``q`` in the valleys of a multi-modal ``p``).
    """
    import torch as th

    with seeded(seed), th.no_grad():
        sample = head.sample(latent_row.expand(2 * n, -1))
    assert sample.log_prob is not None
    x = sample.actions.detach().double()
    log_prob = sample.log_prob.detach().double()
    reference, points, log_prob = x[:n], x[n:], log_prob[n:]
    quantiles = th.quantile(reference, th.tensor([0.05, 0.1, 0.9, 0.95], dtype=th.float64), dim=0)
    outer_low, inner_low, inner_high, outer_high = quantiles
    if head.bounded:  # float32 rounds a saturated tanh to exactly +-1: an atom no density describes
        outer_low, outer_high = outer_low.clamp(min=-1.0 + 1e-3), outer_high.clamp(max=1.0 - 1e-3)
    spread = inner_high - inner_low
    if bool((spread <= 1e-9 * (1.0 + inner_low.abs())).any()):
        return None
    inner = reference[((reference >= inner_low) & (reference <= inner_high)).all(dim=1)][:centers]
    inner = inner[((inner > outer_low) & (inner < outer_high)).all(dim=1)]
    if len(inner) == 0:
        return None
    half_width = spread / 32.0  # small: p is nearly constant across each box, so q / p stays moderate
    low = th.maximum(inner - half_width, outer_low)  # (centers, dim)
    high = th.minimum(inner + half_width, outer_high)
    volume = (high - low).prod(dim=1)
    inside = ((points[:, None, :] >= low) & (points[:, None, :] <= high)).all(dim=2)  # (n, centers)
    q = (inside.double() / volume).mean(dim=1)
    weights = q * th.exp(-log_prob)
    weights = th.where(q > 0, weights, th.zeros_like(weights))  # exp(-log p) may overflow where q = 0
    return DensityEstimate(float(weights.mean()), float(weights.std() / math.sqrt(n)), int((q > 0).sum()))


def check_density(head: ActorHead, latent: th.Tensor, name: str, seed: int = 0, rows: int = 3) -> None:
    """Property (a) for a head with a log-prob, on up to ``rows`` rows of ``latent``."""
    picked = _rows(latent, rows)
    z_crit = _normal_quantile(1.0 - FALSE_ALARM_RATE / (2 * len(picked)))
    checked = 0
    for i, row in enumerate(picked):
        estimate = density_estimate(head, row, seed=seed * 1_000 + i)
        if estimate is None:
            continue
        checked += 1
        if not math.isfinite(estimate.mean) or abs(estimate.z) > z_crit:
            side = "too low (a log-prob missing a Jacobian term, e.g. tanh's -log(1 - y^2)?)" if estimate.mean > 1 \
                else "too high (not normalized?)"
            raise fail(name, "density",
                       f"E[q(x) / p(x)] for a density q around its samples is {estimate.mean:.4f} +- "
                       f"{estimate.stderr:.4f} ({estimate.inside} of {SAMPLES} samples where q > 0), not 1: the "
                       "log-prob is "
                       f"{side} (|z| = {abs(estimate.z):.1f} > {z_crit:.2f})")
    if checked == 0:
        raise fail(name, "density", "sample() draws (nearly) the same action every time, so the density cannot be "
                                    "checked; a head with a log-prob must spread its samples")


# -- (b) the log-prob's gradient -------------------------------------------------------------


@dataclass(frozen=True)
class GradientComparison:
    """Directional derivatives along one random parameter direction, per small batch of samples.

    :param autograd_actions: ``d/dt sum_i w_i . actions_i`` by autograd (fixed random weights ``w``)
    :param fd_actions: the same by central finite differences with the same random numbers
    :param autograd_log_prob: ``d/dt sum_i log_prob_i`` by autograd
    :param fd_log_prob: the same by finite differences
    """

    autograd_actions: list[float]
    fd_actions: list[float]
    autograd_log_prob: list[float]
    fd_log_prob: list[float]

    #: relative tolerance of an agreement (float64 central differences with step 1e-4 are good to ~1e-7)
    RTOL: ClassVar[float] = 1e-4

    @classmethod
    def agree(cls, a: float, b: float) -> bool:
        return abs(a - b) <= cls.RTOL * (1.0 + abs(a) + abs(b))

    @property
    def pathwise_batches(self) -> list[int]:
        """The batches whose sample moves with the parameters as autograd says (no discrete jump inside)."""
        pairs = zip(self.autograd_actions, self.fd_actions, strict=True)
        return [i for i, (a, f) in enumerate(pairs) if self.agree(a, f)]

    @property
    def disagreeing_log_prob(self) -> list[int]:
        """Pathwise batches whose log-prob derivatives disagree."""
        return [i for i in self.pathwise_batches if not self.agree(self.autograd_log_prob[i], self.fd_log_prob[i])]


def compare_log_prob_gradient(head: ActorHead, latent: th.Tensor, seed: int, batches: int = 24,
                              batch_size: int = 8, step: float = 1e-4) -> GradientComparison | None:
    """Autograd against finite differences for ``sample()`` of a float64 copy of ``head`` (None: no parameters)."""
    import torch as th

    head64 = copy.deepcopy(head).double()
    params = [p for p in head64.parameters() if p.requires_grad]
    if not params:
        return None
    rows = latent.detach().double()
    lat = rows.repeat(math.ceil(batch_size / rows.shape[0]), 1)[:batch_size]
    with seeded(seed):
        direction = [th.randn_like(p) for p in params]
        norm = math.sqrt(sum(float((d**2).sum()) for d in direction))
        direction = [d / norm for d in direction]
        weights = th.randn(batch_size, head.action_dim, dtype=th.float64)
    originals = [p.detach().clone() for p in params]

    def directional(output: th.Tensor) -> float:
        if not output.requires_grad:
            return 0.0
        grads = th.autograd.grad(output, params, retain_graph=True, allow_unused=True)
        return sum(float((g * d).sum()) for g, d in zip(grads, direction, strict=True) if g is not None)

    def sample_at(offset: float, batch_seed: int) -> tuple[float, float]:
        with th.no_grad():
            for p, original, d in zip(params, originals, direction, strict=True):
                p.copy_(original + offset * d)
            with seeded(batch_seed):
                sample = head64.sample(lat)
            for p, original in zip(params, originals, strict=True):
                p.copy_(original)
        assert sample.log_prob is not None
        return float((sample.actions * weights).sum()), float(sample.log_prob.sum())

    out: tuple[list[float], list[float], list[float], list[float]] = ([], [], [], [])
    for b in range(batches):
        batch_seed = seed * 10_000 + b
        with seeded(batch_seed), th.enable_grad():
            sample = head64.sample(lat)
        assert sample.log_prob is not None
        # autograd first: the finite differences move the parameters in place, which a graph that saved them
        # for its backward pass (a chain of layers, each fed by the previous one's output) refuses
        autograd_actions = directional((sample.actions * weights).sum())
        autograd_log_prob = directional(sample.log_prob.sum())
        (a_plus, lp_plus), (a_minus, lp_minus) = sample_at(step, batch_seed), sample_at(-step, batch_seed)
        values = (autograd_actions, (a_plus - a_minus) / (2 * step),
                  autograd_log_prob, (lp_plus - lp_minus) / (2 * step))
        for column, value in zip(out, values, strict=True):
            column.append(value)
    return GradientComparison(*out)


class UncheckedWarning(UserWarning):
    """A conformance property that could not be checked for a component (the message says why)."""


def warn_unchecked(name: str, key: str, why: str) -> str:
    """Emit an :class:`UncheckedWarning` that property ``key`` of component ``name`` is not checked; its text."""
    import warnings

    text = f"{name}: {PROPERTIES[key]} is not checked: {why}"
    warnings.warn(UncheckedWarning(text), stacklevel=3)
    return text


def check_log_prob_gradient(head: ActorHead, latent: th.Tensor, name: str, seed: int = 0) -> bool:
    """Property (b) for a head with a log-prob; False (and an :class:`UncheckedWarning`) where it cannot be checked.

    It cannot be checked for samplers whose reparameterization gradient is not the derivative
    of their own random draws (torch's Gamma, Beta and Dirichlet use implicit
    reparameterization): moving the parameters with the same random numbers then moves the
    sample differently from what autograd says, in most batches.
    """
    comparison = compare_log_prob_gradient(head, latent, seed)
    if comparison is None:
        return True  # no trainable parameters: no gradient to get wrong
    pathwise = comparison.pathwise_batches
    if len(pathwise) < len(comparison.autograd_actions) // 2:
        warn_unchecked(name, "log_prob_gradient", "its sample does not move with the parameters as autograd says "
                       "when the random numbers are held fixed (implicit reparameterization, as torch's Gamma, Beta "
                       "and Dirichlet use, or a sampler with discrete choices), so finite differences cannot tell a "
                       "detached log-prob from a right one")
        return False
    bad = comparison.disagreeing_log_prob
    if bad:
        i = bad[0]
        raise fail(name, "log_prob_gradient",
                   f"along a random direction of the head's parameters, autograd gives d(sum log_prob) = "
                   f"{comparison.autograd_log_prob[i]:.6g}, but moving the parameters (with the same random numbers, "
                   f"so the sample moves with them) changes it at the rate {comparison.fd_log_prob[i]:.6g} "
                   f"({len(bad)} of {len(pathwise)} batches disagree): the log-prob does not follow the sample as the "
                   "parameters move (evaluated at a detached sample, sample.detach()?)")
    return True


# -- (c) loss terms' gradients ---------------------------------------------------------------


def check_loss_gradient(term: LossTerm, ctx: ActorLossContext | OnPolicyLossContext, parameters: Sequence[th.Tensor],
                        name: str) -> None:
    """Property (c): ``term(ctx)`` is a scalar whose gradient reaches ``parameters`` (the actor's).

    :param ctx: the context training builds: an :class:`~diffrl_core.components.ActorLossContext` for an
        off-policy term, an :class:`~diffrl_core.components.OnPolicyLossContext` for an ``on_policy`` one
    """
    import torch as th

    output = term(ctx)
    value = output[0] if isinstance(output, tuple) else output
    if not isinstance(value, th.Tensor) or value.ndim != 0:
        shape = tuple(value.shape) if isinstance(value, th.Tensor) else type(value).__name__
        raise fail(name, "loss_gradient", f"it returned {shape}, not a scalar tensor")
    if not value.requires_grad:
        raise fail(name, "loss_gradient", "its value has no gradient at all (computed under torch.no_grad(), from "
                                          ".detach()ed or .item() values, or a constant?)")
    grads = th.autograd.grad(value, list(parameters), retain_graph=True, allow_unused=True)
    if not any(g is not None and bool(g.abs().sum() > 0) for g in grads):
        raise fail(name, "loss_gradient", "its gradient w.r.t. every actor parameter is zero or missing: it would "
                                          "not train the actor (does it use only the buffer's actions or detached "
                                          "values?)")


# -- (d), (e) and the declarations of post-processors ----------------------------------------


def wide_raw_actions(action_dim: int, bounded_only: bool, seed: int = 0) -> th.Tensor:
    """Raw actions across a wide range (``[-1, 1]`` with its endpoints when the post-processor needs bounded ones)."""
    import torch as th

    with seeded(seed):
        if bounded_only:
            columns = [th.tensor([-1.0, 1.0, 0.0, -0.999999, 0.999999]), th.rand(500) * 2.0 - 1.0]
        else:
            scales = th.tensor([1e-3, 0.5, 1.0, 2.0, 10.0, 100.0, 1e4, 1e6])
            columns = [th.tensor([-1e6, -1.0, 0.0, 1.0, 1e6]), th.linspace(-50.0, 50.0, 101),
                       (th.randn(len(scales), 50) * scales[:, None]).flatten()]
        values = th.cat(columns)
        # every dimension sees every value, in a different order
        return th.stack([values[th.randperm(len(values))] for _ in range(action_dim)], dim=1)


def check_postprocessor(post: PostProcessor, action_dim: int, name: str, seed: int = 0) -> None:
    """Properties (d), (e) and the density declarations (``bijective``, ``identity_when_bounded``)."""
    import torch as th

    raw = wide_raw_actions(action_dim, bounded_only=not post.accepts_unbounded, seed=seed)
    with th.no_grad():
        for explore in (False, True):
            out = post(raw, explore=explore)
            if tuple(out.shape) != tuple(raw.shape):
                raise fail(name, "bounds", f"forward(explore={explore}) returned shape {tuple(out.shape)} for raw "
                                           f"actions of shape {tuple(raw.shape)}")
            bad = ~th.isfinite(out) | (out.abs() > 1.0 + 1e-6)
            if bool(bad.any()):
                row = int(bad.any(dim=1).nonzero()[0])
                raise fail(name, "bounds", f"forward(explore={explore}) maps the raw action {raw[row].tolist()} to "
                                           f"{out[row].tolist()}, outside [-1, 1] (or not finite)")
        with seeded(seed + 1):
            first = post(raw, explore=False)
        with seeded(seed + 2):
            again = post(raw, explore=False)
        if not th.equal(first, again):
            raise fail(name, "reproducible", "forward(explore=False) gives different actions for the same raw "
                                              "actions: it must not draw random numbers unless explore=True")
    inside = wide_raw_actions(action_dim, bounded_only=True, seed=seed)
    if post.identity_when_bounded:
        with th.no_grad():
            out = post(inside, explore=False)
        if not th.allclose(out, inside, atol=1e-6, rtol=0.0):
            row = int(((out - inside).abs() > 1e-6).any(dim=1).nonzero()[0])
            raise fail(name, "identity_when_bounded", f"it declares identity_when_bounded = True but maps "
                                                      f"{inside[row].tolist()} to {out[row].tolist()}")
    if post.bijective:
        _check_jacobian(post, action_dim, name, seed)


def _check_jacobian(post: PostProcessor, action_dim: int, name: str, seed: int) -> None:
    import torch as th

    post64 = copy.deepcopy(post).double()
    with seeded(seed):
        # where a squashing map is well conditioned: its Jacobian is then known to ~1e-10
        scale = 2.0 if post.accepts_unbounded else 0.95
        raw = ((th.rand(64, action_dim, dtype=th.float64) * 2.0 - 1.0) * scale).requires_grad_(True)
    out = post64(raw, explore=False)
    rows = []
    for j in range(action_dim):  # the rows' Jacobians, one output dimension at a time
        (grad,) = th.autograd.grad(out[:, j].sum(), raw, retain_graph=True)
        rows.append(grad)
    jacobians = th.stack(rows, dim=1)  # (batch, out dim, in dim): rows do not mix, so this is each row's Jacobian
    _, expected = th.linalg.slogdet(jacobians)
    try:
        with th.no_grad():
            declared = post64.log_abs_det_jacobian(raw, out)
    except NotImplementedError as exc:
        raise fail(name, "jacobian", f"it declares bijective = True but does not implement log_abs_det_jacobian "
                                     f"({exc})") from None
    if tuple(declared.shape) != (raw.shape[0],):
        raise fail(name, "jacobian", f"log_abs_det_jacobian returned shape {tuple(declared.shape)}, expected "
                                     f"({raw.shape[0]},): one value per row, summed over the action dimensions")
    error = (declared - expected).abs()
    if not bool(th.isfinite(declared).all()) or float(error.max()) > 1e-4 * (1.0 + float(expected.abs().max())):
        row = int(error.argmax()) if bool(th.isfinite(declared).all()) else int((~th.isfinite(declared)).nonzero()[0])
        raise fail(name, "jacobian", f"at the raw action {raw[row].tolist()} it declares {float(declared[row]):.6g}, "
                                     f"but log |det J| of forward() is {float(expected[row]):.6g}")


# -- (e), (f) and the declarations of heads --------------------------------------------------


def check_deterministic(forward: Callable[[], th.Tensor], name: str, what: str) -> None:
    """Property (e): ``forward()`` returns the same actions whatever the state of torch's generator."""
    import torch as th

    with th.no_grad():
        with seeded(1):
            first = forward()
        with seeded(2):
            again = forward()
    if not th.equal(first, again):
        raise fail(name, "reproducible", f"{what} gives different actions on two calls with the same input "
                                          "(does it draw random numbers, or keep state between calls?)")


def ks_statistic(a: th.Tensor, b: th.Tensor) -> float:
    """The two-sample Kolmogorov-Smirnov statistic ``sup |F_a - F_b|`` of two 1-D samples."""
    import torch as th

    a, b = th.sort(a.double()).values, th.sort(b.double()).values
    points = th.cat([a, b])
    cdf_a = th.searchsorted(a, points, right=True).double() / len(a)
    cdf_b = th.searchsorted(b, points, right=True).double() / len(b)
    return float((cdf_a - cdf_b).abs().max())


def ks_critical_value(n: int, m: int, alpha: float) -> float:
    """The asymptotic two-sample KS critical value at level ``alpha``."""
    return math.sqrt(-0.5 * math.log(alpha / 2.0)) * math.sqrt((n + m) / (n * m))


def check_same_distribution(head: ActorHead, latent: th.Tensor, name: str, seed: int = 0, rows: int = 3,
                            max_dims: int = 8) -> None:
    """Property (f): per action dimension and latent row, a two-sample KS test (Bonferroni over both)."""
    import torch as th

    picked = _rows(latent, rows)
    dims = min(head.action_dim, max_dims)
    critical = ks_critical_value(SAMPLES, SAMPLES, FALSE_ALARM_RATE / (len(picked) * dims))
    for i, row in enumerate(picked):
        batch = row.expand(SAMPLES, -1)
        with th.no_grad():
            with seeded(seed * 1_000 + 2 * i):
                acted = head(batch, deterministic=False)
            with seeded(seed * 1_000 + 2 * i + 1):
                sampled = head.sample(batch).actions
        for j in range(dims):
            d = ks_statistic(acted[:, j], sampled[:, j])
            if d > critical:
                raise fail(name, "same_distribution",
                           f"action dimension {j}: the Kolmogorov-Smirnov distance between {SAMPLES} draws of "
                           f"forward(deterministic=False) (mean {float(acted[:, j].mean()):.4g}, std "
                           f"{float(acted[:, j].std()):.4g}) and of sample() (mean {float(sampled[:, j].mean()):.4g}, "
                           f"std {float(sampled[:, j].std()):.4g}) is {d:.4f} > {critical:.4f}")


# -- the log-prob of given actions (PPO, A2C) ------------------------------------------------

#: Tolerances of ``evaluate_actions``' agreement with ``act()`` (``allclose``): the same density of the same
#: actions, computed along two code paths, differs by rounding only (~1e-6 in float32); a wrong one by far more.
EVALUATE_RTOL = 1e-4
EVALUATE_ATOL = 1e-4

#: Tolerances of its agreement with ``sample()``, looser (see :func:`_check_against_sample`): a squashed head's
#: ``evaluate_actions`` recovers the pre-squash value from the action, which rounding moves by up to ~1e-10
#: (float64), and a log-prob ``log N(u; mean, std)`` amplifies that by ``|u - mean| / std^2`` (~1e7 when a
#: trained std reaches 1e-6 or less). Still far below what a constant or a missing Jacobian term moves it.
SAMPLE_RTOL = 1e-3
SAMPLE_ATOL = 1e-3

#: ``sample()`` is compared only on rows whose raw actions all lie this far inside ``[-1, 1]`` (bounded heads).
BOUND_MARGIN = 1e-6


def check_evaluate_actions(head: ActorHead, latent: th.Tensor, name: str, seed: int = 0) -> None:
    """Property ``evaluate_actions`` for a head that declares ``evaluates_actions`` (see the module's docstring).

    :param head: the head
    :param latent: latent features, shape ``(batch, latent_dim)``
    :param name: how messages name the head
    :param seed: the seed of the actions drawn
    """
    import torch as th

    latent = latent.detach()
    n = latent.shape[0]
    acted: dict[bool, tuple[th.Tensor, th.Tensor]] = {}
    evaluated: dict[bool, HeadEvaluation] = {}
    try:
        with th.no_grad():
            mode = head(latent, deterministic=True)
            for deterministic in (False, True):
                with seeded(seed):
                    acted[deterministic] = head.act(latent, deterministic=deterministic)
                evaluated[deterministic] = head.evaluate_actions(latent, acted[deterministic][0])
    except Exception as exc:
        raise fail(name, "evaluate_actions", f"act() or evaluate_actions() raised {type(exc).__name__}: {exc}") from exc
    for deterministic, (actions, act_log_prob) in acted.items():
        act = f"act(deterministic={deterministic})"
        if tuple(actions.shape) != tuple(mode.shape):
            raise fail(name, "evaluate_actions", f"{act} returned actions of shape {tuple(actions.shape)}, but "
                                                 f"forward() returns {tuple(mode.shape)}")
        _check_finite_per_row(act_log_prob, n, name, f"{act}'s log-prob")
        evaluation = evaluated[deterministic]
        _check_finite_per_row(evaluation.log_prob, n, name, f"evaluate_actions(latent, {act}'s actions).log_prob")
        if evaluation.entropy is not None:
            _check_finite_per_row(evaluation.entropy, n, name, "evaluate_actions().entropy (or None)")
        _check_agreement(evaluation.log_prob, act_log_prob, name, f"evaluate_actions(latent, {act}'s actions)",
                         f"{act}'s own log-prob (what the rollout buffer stores: every likelihood ratio would be off)")
    if head.has_log_prob:
        _check_against_sample(head, latent, name, seed)
    parameters = [p for p in head.parameters() if p.requires_grad]
    if parameters:
        with th.enable_grad():
            log_prob = head.evaluate_actions(latent, acted[False][0]).log_prob
            grads = th.autograd.grad(log_prob.sum(), parameters, allow_unused=True) if log_prob.requires_grad else ()
        if not any(g is not None and bool(g.abs().sum() > 0) for g in grads):
            raise fail(name, "evaluate_actions", "evaluate_actions().log_prob does not depend differentiably on the "
                                                 "head's parameters, so the policy loss cannot train the head "
                                                 "(computed under torch.no_grad(), or from .detach()ed parameters?)")


def _check_finite_per_row(values: th.Tensor, n: int, name: str, what: str) -> None:
    import torch as th

    if not isinstance(values, th.Tensor) or tuple(values.shape) != (n,) or not bool(th.isfinite(values).all()):
        got = (tuple(values.shape), "finite" if bool(th.isfinite(values).all()) else "not finite") \
            if isinstance(values, th.Tensor) else type(values).__name__
        raise fail(name, "evaluate_actions", f"{what} must be finite with shape ({n},), got {got}")


def _check_agreement(evaluated: th.Tensor, expected: th.Tensor, name: str, what: str, other: str,
                     rtol: float = EVALUATE_RTOL, atol: float = EVALUATE_ATOL) -> None:
    import torch as th

    if not th.allclose(evaluated, expected.to(evaluated.dtype), rtol=rtol, atol=atol):
        error = (evaluated - expected).abs()
        row = int(error.argmax())
        raise fail(name, "evaluate_actions", f"{what}.log_prob differs from {other}: {float(evaluated[row]):.6g} vs "
                                             f"{float(expected[row]):.6g} at row {row} (max |difference| "
                                             f"{float(error.max()):.3g} over {len(error)} rows)")


def _check_against_sample(head: ActorHead, latent: th.Tensor, name: str, seed: int) -> None:
    """``evaluate_actions`` of ``sample().actions`` agrees with ``sample().log_prob`` (where sample() gives one).

    Both are computed in float64 on a copy of the head, within :data:`SAMPLE_RTOL` and
    :data:`SAMPLE_ATOL`. Why float64: a squashed head's ``sample()`` computes the log-prob from the
    pre-squash value ``u`` it drew, while ``evaluate_actions`` must recover ``u`` from the action
    ``a = tanh(u)`` (``atanh``; ``beta``'s ``x = (a + 1) / 2`` likewise), which loses about
    ``eps / (1 - |a|)`` of it near the bounds. In float32 (eps ~ 6e-8) that moves a unit Gaussian's
    log-prob by ~1e-4 already at ``|a| = 0.999``: a correct head would fail the tolerances. In float64
    (eps ~ 1e-16) the loss stays below ~1e-10 on rows whose actions all lie :data:`BOUND_MARGIN` inside
    the bounds, the only rows compared for a bounded head (a float64 tanh rounds to exactly 1 beyond
    ``|u| ~ 19``, where nothing can recover ``u``).
    """
    import torch as th

    sde = getattr(head, "use_sde", False)
    if sde:  # gSDE's exploration weights hold the graph of their draw, which deepcopy refuses: draw plain ones
        with th.no_grad():
            head.reset_noise()
    head64 = copy.deepcopy(head).double()
    latent64 = latent.double()
    try:
        with seeded(seed), th.no_grad():
            if sde:
                head64.reset_noise()  # float64 weights
            sample = head64.sample(latent64)
            if sample.log_prob is None:
                return  # no density of its own sample to agree with (e.g. a discrete head's default sample())
            evaluation = head64.evaluate_actions(latent64, sample.actions)
    except Exception as exc:
        raise fail(name, "evaluate_actions", f"in float64, sample() or evaluate_actions() raised "
                                             f"{type(exc).__name__}: {exc}") from exc
    _check_finite_per_row(evaluation.log_prob, latent.shape[0], name, "evaluate_actions(latent, sample().actions)"
                                                                      ".log_prob")
    keep = th.ones(latent.shape[0], dtype=th.bool)
    if head.bounded:
        keep = sample.actions.reshape(latent.shape[0], -1).abs().amax(dim=1) < 1.0 - BOUND_MARGIN
    if bool(keep.any()):
        _check_agreement(evaluation.log_prob[keep], sample.log_prob[keep], name,
                         "evaluate_actions(latent, sample().actions)",
                         "sample().log_prob: the two describe different densities (a constant or a Jacobian term "
                         "in one of them only?)", rtol=SAMPLE_RTOL, atol=SAMPLE_ATOL)


# -- quantiles without scipy -----------------------------------------------------------------


def _normal_quantile(p: float) -> float:
    """The standard normal quantile (inverse CDF) at ``p``."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


__all__ = [
    "FALSE_ALARM_RATE",
    "PROPERTIES",
    "ConformanceError",
    "DensityEstimate",
    "GradientComparison",
    "UncheckedWarning",
    "check_deterministic",
    "check_density",
    "check_evaluate_actions",
    "check_log_prob_gradient",
    "check_loss_gradient",
    "check_postprocessor",
    "check_same_distribution",
    "compare_log_prob_gradient",
    "density_estimate",
    "ks_critical_value",
    "ks_statistic",
    "wide_raw_actions",
    "warn_unchecked",
]

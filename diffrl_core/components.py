"""The interfaces of the three kinds of policy component: heads, loss terms, post-processors.

Conventions (the same for every component):

- The actor computes ``features -> latent`` with stable-baselines3's MLP (``net_arch``),
  then the **head** maps ``latent -> raw action`` (a sample or a deterministic action).
- The **post-processor** maps ``raw action -> normalized action`` in ``[-1, 1]``. The
  normalized action is what the critic sees (in the actor loss and in the replay buffer);
  the env receives it rescaled to ``[low, high]`` by stable-baselines3
  (``policy.unscale_action``). ``predict()`` and experience collection use the same
  mapping, so the buffer always holds the action the critic should learn on.
- A **loss term** receives an :class:`ActorLossContext` once per actor update and returns a
  scalar; the actor loss is the weighted sum of the configured terms, in config order.
- **Log-probs are of the normalized action.** A head's log-prob is the density of its raw
  action; the log-prob that loss terms and SAC see (``ctx.log_prob``, SAC's entropy tuning
  and soft Q-target) is the density of the normalized action, by change of variables
  through the post-processor's :meth:`PostProcessor.log_abs_det_jacobian` (as
  ``torch.distributions.TransformedDistribution`` does). A post-processor without one
  (``clip``, exploration noise, dead zones) cannot follow a head whose log-prob is needed,
  unless it is the identity on the head's actions (``clip`` after a bounded head) or the
  config opts in with ``policy.raw_log_prob: true``.

On-policy algorithms (PPO, A2C) use the same components differently (see
:class:`OnPolicyLossContext`): the rollout buffer stores the head's **raw** action and its
log-prob, the env gets the post-processed action (``explore=True``) rescaled to its bounds,
and the loss terms see the head's log-prob of the stored raw actions under the current
policy (:meth:`ActorHead.evaluate_actions`). The post-processor is then part of the env as
the policy gradient sees it: the likelihood ratio is exact after any post-processor (after a
bijective one it equals the ratio of the normalized actions' densities, the Jacobian cancels).

Components are constructed with their config kwargs (``head_kwargs``, ``postprocess_kwargs``,
``losses[i].kwargs``); a saved model stores names and kwargs, never the classes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from torch import nn

from diffrl_core.config import ON_POLICY_ALGOS

if TYPE_CHECKING:
    from stable_baselines3.common.type_aliases import ReplayBufferSamples, RolloutBufferSamples


#: What a loss term returns: the scalar loss, or the loss and extra values to log.
LossOutput = th.Tensor | tuple[th.Tensor, Mapping[str, float]]


@dataclass
class HeadSample:
    """A reparameterized sample of a head, for the actor loss.

    :param actions: raw actions, shape ``(batch, action_dim)``, differentiable w.r.t. the
        head's parameters (``rsample``)
    :param log_prob: log-probability of ``actions``, shape ``(batch,)``, or None for heads
        without one
    :param params: the distribution parameters the head computed (e.g. ``mean``, ``log_std``),
        for loss terms that work with them directly
    """

    actions: th.Tensor
    log_prob: th.Tensor | None = None
    params: dict[str, th.Tensor] = field(default_factory=dict)


#: :attr:`ActorHead.action_space_kind` -> the gymnasium space it names
ACTION_SPACE_KINDS: dict[str, type[spaces.Space]] = {
    "box": spaces.Box, "discrete": spaces.Discrete, "multi_discrete": spaces.MultiDiscrete,
    "multi_binary": spaces.MultiBinary,
}


def head_action_dim(action_space: spaces.Space) -> int | list[int]:
    """What a head gets as ``action_dim`` for ``action_space`` (see :attr:`ActorHead.action_space_kind`)."""
    if isinstance(action_space, spaces.Discrete):
        return int(action_space.n)
    if isinstance(action_space, spaces.MultiDiscrete):
        return [int(n) for n in action_space.nvec.ravel()]
    return int(np.prod(action_space.shape or ()))  # MultiBinary(n), a Box (flattened, as SB3's distributions)


@dataclass
class HeadEvaluation:
    """What a head says of *given* raw actions (on-policy: the rollout buffer's), under its current parameters.

    :param log_prob: log-probability of the actions, shape ``(batch,)``, differentiable w.r.t. the head
    :param entropy: the distribution's entropy, shape ``(batch,)``, or None where it has no closed form
        (the ``entropy_bonus`` term then estimates it with ``-log_prob``, as stable-baselines3 does)
    :param params: the distribution parameters the head computed
    """

    log_prob: th.Tensor
    entropy: th.Tensor | None = None
    params: dict[str, th.Tensor] = field(default_factory=dict)


class ActorHead(nn.Module, ABC):
    """Turns the actor's latent features into actions.

    Subclasses set the class attributes that say what they offer; :mod:`diffrl_core.compose`
    checks them against the loss terms, the post-processor and the algorithm before
    anything is built.

    :param latent_dim: size of the latent features (last layer of ``net_arch``)
    :param action_dim: size of the (flat) action
    """

    #: samples actions (``forward(deterministic=False)`` differs from ``deterministic=True``)
    stochastic: ClassVar[bool] = False
    #: ``sample()`` returns a log-probability
    has_log_prob: ClassVar[bool] = False
    #: raw actions always lie in ``[-1, 1]`` (e.g. tanh-squashed)
    bounded: ClassVar[bool] = False
    #: supports stable-baselines3's gSDE (``algo_kwargs.use_sde``): the head is then built with
    #: ``use_sde=True`` and the algorithm's gSDE options as keyword arguments (its config kwargs take
    #: precedence): ``log_std_init``, ``full_std``, ``use_expln``, and ``clip_mean`` under SAC
    #: (:data:`diffrl_core.sb3.policies.SDE_OPTIONS`; a constructor lacking one is refused for that
    #: algorithm), and implements :meth:`reset_noise` and :meth:`get_std`
    supports_sde: ClassVar[bool] = False
    #: :meth:`evaluate_actions` gives the log-prob (and entropy) of given raw actions: what PPO and
    #: A2C need of a head; heads without it are refused under those algorithms
    evaluates_actions: ClassVar[bool] = False
    #: the action spaces the head acts in: ``"box"`` (a continuous Box, flattened: ``action_dim`` is its
    #: size, and the post-processor gets the flat raw action), ``"discrete"`` (Discrete(n):
    #: ``action_dim`` is ``n`` and the raw action an index), ``"multi_discrete"`` (MultiDiscrete: ``action_dim``
    #: is the list of choice counts ``nvec``, the raw action one index per dimension) or ``"multi_binary"``
    #: (MultiBinary(n): ``action_dim`` is ``n``, the raw action ``n`` zeros and ones); see :func:`head_action_dim`
    action_space_kind: ClassVar[str] = "box"
    #: ``sample()``'s log-prob is the exact log-density of its actions. False: an estimate (e.g. a diffusion
    #: chain's bound on it), which SAC and the loss terms use as given; the conformance checks then report the
    #: density property (a) unchecked instead of testing it
    exact_log_prob: ClassVar[bool] = True

    def __init__(self, latent_dim: int, action_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.action_dim = action_dim

    @abstractmethod
    def forward(self, latent: th.Tensor, deterministic: bool = False) -> th.Tensor:
        """Raw actions for acting: the mode when ``deterministic``, a sample otherwise."""

    def sample(self, latent: th.Tensor) -> HeadSample:
        """A differentiable sample for the actor loss (with its log-prob when the head has one)."""
        return HeadSample(self(latent, deterministic=False))

    def evaluate_actions(self, latent: th.Tensor, actions: th.Tensor) -> HeadEvaluation:
        """The log-prob (and entropy) of given raw ``actions`` at ``latent`` (heads that ``evaluates_actions``).

        On-policy algorithms call it on the rollout buffer's raw actions: it must be the density
        of the same distribution :meth:`forward` samples from, so that a likelihood ratio of the
        current and the old policy is exact.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot evaluate given actions (evaluates_actions is False)")

    def act(self, latent: th.Tensor, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor]:
        """Raw actions for acting and their log-prob (on-policy rollouts); a head may compute both at once."""
        actions = self(latent, deterministic=deterministic)
        return actions, self.evaluate_actions(latent, actions).log_prob

    def after_update(self, ctx: Any) -> Mapping[str, float] | None:
        """Called after each actor update (the actor optimizer's step), for a head that adapts itself.

        Only heads that override it are called, so the others cost nothing. A head may adjust what
        gradient descent does not train (DACER's noise scale from an entropy estimate, a schedule
        following :attr:`ActorLossContext.progress`); it runs under ``torch.no_grad()`` unless it enables
        gradients itself (for an optimizer of its own).

        :param ctx: the update's :class:`ActorLossContext` (SAC, TD3: its batch, its sample, more samples
            through :meth:`~ActorLossContext.samples`, the training progress) or :class:`OnPolicyLossContext`
            (PPO, A2C: once per minibatch)
        :return: values to log, as ``train/head/<key>`` (their mean over the updates of a ``train()`` call), or None
        """
        return None

    def reset_noise(self, batch_size: int = 1) -> None:
        """gSDE: sample new exploration weights for ``batch_size`` envs (heads that ``supports_sde``)."""
        raise NotImplementedError(f"{type(self).__name__} does not support gSDE (supports_sde is False)")

    def get_std(self) -> th.Tensor:
        """gSDE: the standard deviation of the exploration weights (heads that ``supports_sde``)."""
        raise NotImplementedError(f"{type(self).__name__} does not support gSDE (supports_sde is False)")

    @classmethod
    def check_action_space(cls, action_space: spaces.Space) -> str | None:
        """Why this head cannot act in ``action_space``, or None if it can."""
        if cls.action_space_kind != "box":
            expected = ACTION_SPACE_KINDS[cls.action_space_kind]
            if not isinstance(action_space, expected):
                kind = expected.__name__
                return f"needs a {kind} action space (gymnasium.spaces.{kind}), got {action_space}"
            return None
        if not isinstance(action_space, spaces.Box):
            return f"needs a continuous action space (gymnasium.spaces.Box), got {action_space}"
        if not (action_space.is_bounded("both")):
            return f"needs finite action bounds to rescale to, got low={action_space.low}, high={action_space.high}"
        return None


class PostProcessor(nn.Module, ABC):
    """Maps raw head output to the normalized action in ``[-1, 1]``.

    It must be differentiable where the loss terms need it: the actor loss evaluates the
    critic at ``postprocessor(raw)``, the same action the replay buffer stores.

    What it does to the density (see the module's conventions) is declared by two class
    attributes: a ``bijective`` post-processor implements :meth:`log_abs_det_jacobian`; one
    that is ``identity_when_bounded`` leaves raw actions in ``[-1, 1]`` unchanged. Neither
    (the default) means the log-prob of the normalized action is unknown.

    :param action_space: the env's action space
    """

    #: accepts raw actions outside ``[-1, 1]`` (if False, only ``bounded`` heads fit)
    accepts_unbounded: ClassVar[bool] = True
    #: ``forward(raw, explore=False)`` is a smooth bijection (onto its image) with the
    #: log-abs-det-Jacobian :meth:`log_abs_det_jacobian`
    bijective: ClassVar[bool] = False
    #: ``forward(raw, explore=False)`` returns raw actions in ``[-1, 1]`` unchanged (``clip``
    #: does): after a ``bounded`` head it is the identity, and the head's log-prob stands
    identity_when_bounded: ClassVar[bool] = False

    def __init__(self, action_space: spaces.Box) -> None:
        super().__init__()
        self.action_space = action_space

    @abstractmethod
    def forward(self, raw_actions: th.Tensor, explore: bool = False) -> th.Tensor:
        """Normalized actions in ``[-1, 1]``.

        :param raw_actions: the head's output
        :param explore: True when collecting experience (``predict(deterministic=False)``);
            a post-processor may add exploration here, and the buffer then stores it
        """

    def log_abs_det_jacobian(self, raw_actions: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """``log |det d actions / d raw_actions|`` per row, shape ``(batch,)``: bijective post-processors only.

        The log-prob of the normalized action is then ``head log-prob - log_abs_det_jacobian``.

        :param raw_actions: the head's raw actions
        :param actions: ``self(raw_actions)`` (``explore=False``), passed so it is not recomputed
        """
        raise NotImplementedError(
            f"{type(self).__name__} declares bijective = True but does not implement log_abs_det_jacobian"
        )

    @classmethod
    def keeps_log_prob(cls, head: type[ActorHead]) -> bool:
        """Whether the log-prob of the normalized action is known after ``head`` (see the class attributes)."""
        return cls.bijective or (cls.identity_when_bounded and head.bounded)

    @classmethod
    def check_head(cls, head: type[ActorHead]) -> str | None:
        """Why this post-processor cannot follow ``head``, or None if it can."""
        if not cls.accepts_unbounded and not head.bounded:
            return "needs raw actions in [-1, 1] (a bounded head such as 'squashed_gaussian' or 'deterministic')"
        return None


@dataclass(frozen=True)
class TrainingProgress:
    """Where training stands at an update, for loss terms and heads that follow a schedule.

    :param num_timesteps: env steps collected so far (stable-baselines3's ``num_timesteps``)
    :param total_timesteps: env steps the current ``learn()`` call trains to (``_total_timesteps``)
    :param n_updates: gradient steps done before this one (stable-baselines3's ``n_updates`` counts them;
        PPO and A2C count one per epoch or ``train()`` call)
    :param fraction: the fraction of training done, ``1 - progress_remaining`` as stable-baselines3's
        learning-rate and clip-range schedules see it (0 at the start of ``learn()``, 1 at its end)
    """

    num_timesteps: int
    total_timesteps: int
    n_updates: int
    fraction: float


@dataclass
class ActionSample:
    """A head sample carried through the post-processor: what the actor loss works with.

    :param head: the head's reparameterized sample (raw actions, their log-prob, parameters)
    :param actions: the normalized actions the critic sees, differentiable
    :param log_prob: the log-density of ``actions``, shape ``(batch,)``: the head's log-prob
        minus the post-processor's log-abs-det-Jacobian (or the head's own log-prob where the
        post-processor keeps it, or the config opted in to the raw one); None for heads
        without a log-prob
    """

    head: HeadSample
    actions: th.Tensor
    log_prob: th.Tensor | None
    #: the latent features the head sampled from
    #: (:meth:`ComposedActor.sample <diffrl_core.sb3.policies.ComposedActor.sample>`)
    latent: th.Tensor | None = None


def postprocess_sample(
    sample: HeadSample, postprocessor: PostProcessor, head: type[ActorHead], raw_log_prob: bool = False
) -> ActionSample:
    """Carry a head sample through the post-processor (``explore=False``), with its log-prob.

    The log-prob becomes that of the normalized action: by change of variables when the
    post-processor is bijective, unchanged where it keeps the head's log-prob
    (``identity_when_bounded`` after a bounded head). Otherwise it is unknown (None), unless
    the config opted in to the head's raw log-prob (``raw_log_prob``).

    :param sample: the head's sample
    :param postprocessor: the post-processor
    :param head: the head's class (whether it is ``bounded``)
    :param raw_log_prob: pass the head's log-prob on where the normalized one is unknown
    """
    actions = postprocessor(sample.actions)
    log_prob = sample.log_prob
    # an action the post-processor left as it was keeps its density: no (zero) Jacobian to compute per step
    unchanged = postprocessor.identity_when_bounded and head.bounded
    if log_prob is not None and not unchanged:
        if postprocessor.bijective:
            log_prob = log_prob - postprocessor.log_abs_det_jacobian(sample.actions, actions)
        elif not raw_log_prob:
            log_prob = None
    return ActionSample(sample, actions, log_prob)


def repeat_observations(observations: Any, n: int) -> Any:
    """``n`` copies of a batch of observations stacked along the batch dimension (a dict's entries each)."""
    if isinstance(observations, Mapping):
        return {key: repeat_observations(value, n) for key, value in observations.items()}
    return observations.repeat(n, *([1] * (observations.ndim - 1)))


@dataclass
class ActorLossContext:
    """Everything an actor loss term may use, for one gradient step.

    :param batch: the replay buffer sample (``observations``, ``actions`` as stored in the
        buffer, normalized to ``[-1, 1]``, ``rewards``, ``next_observations``, ``dones``)
    :param sample: the head's reparameterized sample at ``batch.observations`` (raw actions,
        their log-prob, distribution parameters)
    :param actions: ``sample.actions`` after the post-processor: the normalized actions the
        critic sees, differentiable
    :param q_fn: the Q estimate the algorithm trains the actor on, a function of normalized
        actions at ``batch.observations``: SAC's minimum over its critics, TD3's first critic.
        Returns shape ``(batch, 1)``; :attr:`q_pi` is its value at :attr:`actions`
    :param postprocess: the post-processor (raw -> normalized actions), for terms that
        evaluate the critic at other raw actions
    :param alpha: SAC's entropy coefficient (a tensor, fixed or tuned by SAC), None under TD3
    :param algo: ``"sac"`` or ``"td3"``
    :param action_log_prob: the log-density of :attr:`actions`, shape ``(batch,)`` (see
        :class:`ActionSample`); read it as :attr:`log_prob`
    :param progress: where training stands (:class:`TrainingProgress`); None outside training
    :param head: the actor's head module, for terms that work with its networks (a denoising loss)
    :param latent: the latent features at ``batch.observations`` the head sampled from, ``(batch, latent_dim)``
    :param draw: ``n -> ActionSample`` of ``n`` more samples per row of ``latent``, stacked along the batch
        dimension (``n * batch`` rows, sample-major); what :meth:`samples` calls
    :param q_at: the Q estimate of :attr:`q_fn` at given observations: ``(observations, actions) -> (batch, 1)``;
        what :meth:`q_values` calls
    """

    batch: ReplayBufferSamples
    sample: HeadSample
    actions: th.Tensor
    q_fn: Callable[[th.Tensor], th.Tensor]
    postprocess: Callable[[th.Tensor], th.Tensor]
    alpha: th.Tensor | None
    algo: str
    action_log_prob: th.Tensor | None = None
    progress: TrainingProgress | None = None
    head: ActorHead | None = None
    latent: th.Tensor | None = None
    draw: Callable[[int], ActionSample] | None = None
    q_at: Callable[[Any, th.Tensor], th.Tensor] | None = None
    _q_pi: th.Tensor | None = field(default=None, init=False, repr=False)
    _samples: dict[int, ActionSample] = field(default_factory=dict, init=False, repr=False)

    @property
    def observations(self) -> th.Tensor:
        return self.batch.observations

    @property
    def q(self) -> Callable[[th.Tensor], th.Tensor]:
        """The former name of :attr:`q_fn` (kept for plugins written against diffrl 0.1)."""
        return self.q_fn

    @classmethod
    def from_sample(
        cls,
        batch: ReplayBufferSamples,
        sample: ActionSample,
        q_fn: Callable[[th.Tensor], th.Tensor],
        postprocess: Callable[[th.Tensor], th.Tensor],
        alpha: th.Tensor | None,
        algo: str,
        progress: TrainingProgress | None = None,
        head: ActorHead | None = None,
        draw: Callable[[th.Tensor, int], ActionSample] | None = None,
        q_at: Callable[[Any, th.Tensor], th.Tensor] | None = None,
    ) -> ActorLossContext:
        """The context of an :class:`ActionSample` (what ``ComposedActor.sample`` returns).

        :param draw: ``(latent, n) -> ActionSample`` (``ComposedActor.sample_latent``), bound here to the
            sample's latent
        """
        latent = sample.latent
        bound = None if draw is None or latent is None else partial(draw, latent)
        return cls(batch, sample.head, sample.actions, q_fn, postprocess, alpha, algo, sample.log_prob,
                   progress=progress, head=head, latent=latent, draw=bound, q_at=q_at)

    def samples(self, n: int) -> ActionSample:
        """``n`` more reparameterized samples at every state of the batch, drawn once per context and ``n``.

        For terms that need several actions per state (an expectation over the policy, an entropy
        estimate). Nothing is drawn unless a term asks, and terms asking for the same ``n`` share one draw.

        :param n: samples per state
        :return: normalized actions of shape ``(n, batch, action_dim)``, their log-prob ``(n, batch)`` (None
            where :attr:`log_prob` is unknown) and the head's samples (``head``: raw, stacked ``(n * batch, ...)``)
        """
        if n not in self._samples:
            if self.draw is None:
                raise RuntimeError("this context cannot draw more samples: it was built without draw (a context of "
                                   "diffrl's own training loops can)")
            drawn = self.draw(n)
            batch = self.actions.shape[0]
            log_prob = None if drawn.log_prob is None else drawn.log_prob.reshape(n, batch)
            self._samples[n] = ActionSample(drawn.head, drawn.actions.reshape(n, batch, *self.actions.shape[1:]),
                                            log_prob, drawn.latent)
        return self._samples[n]

    def q_values(self, actions: th.Tensor) -> th.Tensor:
        """The actor's Q estimate (:attr:`q_fn`'s) at ``n`` normalized actions per state, e.g. :meth:`samples`' actions.

        :param actions: shape ``(n, batch, action_dim)``
        :return: shape ``(n, batch, 1)``
        """
        if self.q_at is None:
            raise RuntimeError("this context has no q_at: it was built without one (diffrl's training loops give it)")
        n, batch = actions.shape[:2]
        observations = repeat_observations(self.batch.observations, n)
        return self.q_at(observations, actions.reshape(n * batch, *actions.shape[2:])).reshape(n, batch, -1)

    @property
    def log_prob(self) -> th.Tensor:
        """The log-density of :attr:`actions` (the normalized actions the critic sees), shape ``(batch, 1)``."""
        if self.action_log_prob is None:
            raise RuntimeError(
                "this context has no log-prob of the normalized actions: the head has none, or the post-processor "
                "does not say what it does to the density (a loss term that reads it declares requires={'log_prob'}, "
                "so that such compositions are refused), or the context was built without action_log_prob"
            )
        return self.action_log_prob.reshape(-1, 1)

    @property
    def raw_log_prob(self) -> th.Tensor:
        """The head's log-prob of its raw actions :attr:`sample.actions <HeadSample.actions>`, shape ``(batch, 1)``."""
        if self.sample.log_prob is None:
            raise RuntimeError("this head has no log-prob; the loss term should declare requires={'log_prob'}")
        return self.sample.log_prob.reshape(-1, 1)

    @property
    def q_pi(self) -> th.Tensor:
        """``q_fn(actions)``, computed once per step however many terms use it.

        Only a value computed with gradients enabled is kept: a term that first reads it
        under ``torch.no_grad()`` must not leave the other terms without a critic gradient.
        """
        if self._q_pi is None:
            q_pi = self.q_fn(self.actions)
            if not th.is_grad_enabled():
                return q_pi
            self._q_pi = q_pi
        return self._q_pi


@dataclass
class OnPolicyLossContext:
    """Everything an on-policy (PPO, A2C) loss term may use, for one minibatch of the rollout buffer.

    The buffer stores the head's raw actions and their log-prob when they were taken; the
    terms see the log-prob of those same actions under the current policy (see the module's
    conventions). Per-sample tensors have shape ``(batch,)``, as in stable-baselines3.

    :param batch: the rollout buffer's minibatch (``observations``, ``actions``: the head's raw
        actions, ``old_values``, ``old_log_prob``, ``advantages`` as stored, ``returns``)
    :param evaluation: the head's :meth:`~ActorHead.evaluate_actions` of ``batch.actions`` under the
        current policy (log-prob, entropy, distribution parameters), differentiable
    :param advantages: the advantages the policy loss uses: normalized over the minibatch when
        the algorithm's ``normalize_advantage`` is on (stable-baselines3's), else as stored
    :param values: the value function's current predictions, shape ``(batch,)`` (its loss is the algorithm's)
    :param clip_range: PPO's clip range at this update (from its schedule, ``algo_kwargs.clip_range``);
        None under A2C
    :param algo: ``"ppo"`` or ``"a2c"``
    """

    batch: RolloutBufferSamples
    evaluation: HeadEvaluation
    advantages: th.Tensor
    values: th.Tensor
    clip_range: float | None
    algo: str
    #: where training stands (:class:`TrainingProgress`); None outside training
    progress: TrainingProgress | None = None

    @property
    def observations(self) -> th.Tensor:
        return self.batch.observations

    @property
    def log_prob(self) -> th.Tensor:
        """The current policy's log-prob of the buffer's raw actions, shape ``(batch,)``."""
        return self.evaluation.log_prob

    @property
    def old_log_prob(self) -> th.Tensor:
        """Their log-prob under the policy that took them (stored in the buffer), shape ``(batch,)``."""
        return self.batch.old_log_prob

    @property
    def entropy(self) -> th.Tensor | None:
        """The current policy's entropy at ``observations``, shape ``(batch,)``; None without a closed form."""
        return self.evaluation.entropy

    @property
    def returns(self) -> th.Tensor:
        """The value targets (GAE's lambda-returns), shape ``(batch,)``."""
        return self.batch.returns


class LossTerm(ABC):
    """One term of the actor loss.

    Subclasses take their config kwargs in ``__init__`` and hold no trained state (a saved
    model stores the term's name, weight and kwargs).
    """

    #: what the term needs from the context: ``"log_prob"`` (a head with a log-prob),
    #: ``"alpha"`` (SAC's entropy coefficient)
    requires: ClassVar[frozenset[str]] = frozenset()
    #: the term is written for on-policy algorithms (``ppo``, ``a2c``) and receives an
    #: :class:`OnPolicyLossContext`; otherwise (the default) it is an off-policy term (``sac``,
    #: ``td3``) and receives an :class:`ActorLossContext`
    on_policy: ClassVar[bool] = False

    @abstractmethod
    def __call__(self, ctx: Any) -> LossOutput:
        """The scalar loss to minimize (and optionally a mapping of values to log).

        :param ctx: an :class:`ActorLossContext` (off-policy terms) or an :class:`OnPolicyLossContext`
            (terms that are ``on_policy``)
        """

    def reference_loss(self, ctx: ActorLossContext) -> th.Tensor | None:
        """For a term whose backward pass is written by hand: the same loss by plain autograd.

        ``diffrl gradcheck`` (and :func:`diffrl_core.gradcheck.check_gradients`) compare the
        gradients of ``self(ctx)`` with those of this reference. None (the default): the
        term declares no closed-form gradient.
        """
        return None

    @classmethod
    def check_compatible(cls, head: type[ActorHead], algo: str) -> str | None:
        """Why this term cannot train ``head`` under ``algo``, or None if it can."""
        if cls.on_policy and algo not in ON_POLICY_ALGOS:
            return (f"is an on-policy term (it needs a rollout buffer's advantages: algo "
                    f"{' or '.join(ON_POLICY_ALGOS)}), and algo {algo!r} is off-policy")
        if not cls.on_policy and algo in ON_POLICY_ALGOS:
            return (f"is an off-policy term (it needs a critic's Q-values on replay batches: algo sac or td3), and "
                    f"algo {algo!r} is on-policy: it takes on-policy terms (on_policy = True)")
        if "log_prob" in cls.requires and not head.has_log_prob:
            return "needs a head with a log-prob"
        if "alpha" in cls.requires and algo != "sac":
            return f"needs SAC's entropy coefficient alpha, which algo {algo!r} does not have"
        return None



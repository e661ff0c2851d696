"""The built-in post-processors: raw head output -> normalized action in ``[-1, 1]``.

stable-baselines3 then rescales the normalized action to ``[low, high]`` for the env and
stores the normalized one in the replay buffer. Each declares what it does to the density
(:class:`~diffrl_core.components.PostProcessor`): ``identity`` and ``tanh`` are bijective,
``clip`` is the identity on ``[-1, 1]`` and so keeps a bounded head's log-prob.
"""

from __future__ import annotations

import math

import torch as th
from gymnasium import spaces
from torch.nn import functional as F

from diffrl_core.components import PostProcessor


class Identity(PostProcessor):
    """The raw action already lies in ``[-1, 1]`` (a squashed head): pass it through.

    stable-baselines3 then rescales it for the env (``unscale_action``), as it does with
    the output of its own squashed actors. Registered as ``identity``; ``unscale``, its
    former name, still resolves to it. The log-abs-det-Jacobian is zero.
    """

    accepts_unbounded = False
    bijective = True
    identity_when_bounded = True

    def forward(self, raw_actions: th.Tensor, explore: bool = False) -> th.Tensor:
        return raw_actions

    def log_abs_det_jacobian(self, raw_actions: th.Tensor, actions: th.Tensor) -> th.Tensor:
        return raw_actions.new_zeros(raw_actions.shape[:-1])


class Clip(PostProcessor):
    """Clip raw actions to ``[-1, 1]``.

    Unlike stable-baselines3's unsquashed branch (which clips to ``[low, high]`` and treats
    the raw output as an env action), the clipped action is the one the critic sees and the
    buffer stores, so the critic and the env agree. The gradient is zero outside the bounds.

    Not bijective: every raw action beyond a bound becomes that bound, so the normalized
    action has no density there. After a bounded head it changes nothing and the head's
    log-prob stands; after an unbounded head a log-prob is only available by opting in to
    the raw one (``policy.raw_log_prob``); ``tanh`` gives the exact one.
    """

    identity_when_bounded = True

    def forward(self, raw_actions: th.Tensor, explore: bool = False) -> th.Tensor:
        return raw_actions.clamp(-1.0, 1.0)


class Tanh(PostProcessor):
    """Squash raw actions with tanh (then stable-baselines3 rescales them), for unbounded heads.

    Bijective: the log-prob of the normalized action ``y = tanh(x)`` is the head's log-prob
    minus ``sum_i log(1 - y_i^2 + epsilon)``. With the default ``epsilon`` that is exactly
    stable-baselines3's correction in ``SquashedDiagGaussianDistribution``, so ``gaussian`` +
    ``tanh`` is SAC's squashed Gaussian (``squashed_gaussian`` + ``identity``) to the bit.

    :param action_space: the env's action space
    :param epsilon: added inside the log so that it stays finite where ``tanh`` rounds to
        ``±1`` in float32 (stable-baselines3's value); ``0`` uses the exact form
        ``2 (log 2 - x - softplus(-2 x))``, finite for every ``x``
    """

    bijective = True

    def __init__(self, action_space: spaces.Box, epsilon: float = 1e-6) -> None:
        super().__init__(action_space)
        if not (isinstance(epsilon, (int, float)) and 0.0 <= epsilon < 1.0):
            raise ValueError(f"epsilon must be a number in [0, 1), got {epsilon!r}")
        self.epsilon = float(epsilon)

    def forward(self, raw_actions: th.Tensor, explore: bool = False) -> th.Tensor:
        return th.tanh(raw_actions)

    def log_abs_det_jacobian(self, raw_actions: th.Tensor, actions: th.Tensor) -> th.Tensor:
        if self.epsilon > 0.0:
            return th.log(1.0 - actions**2 + self.epsilon).sum(dim=-1)
        return (2.0 * (math.log(2.0) - raw_actions - F.softplus(-2.0 * raw_actions))).sum(dim=-1)


class ClipToBounds(PostProcessor):
    """The raw action is an env action: clip it to the action space's ``[low, high]`` (stable-baselines3's PPO/A2C).

    stable-baselines3's on-policy algorithms sample an unbounded Gaussian in the env's own
    units and clip it to the bounds only for the env. This post-processor does the same and
    returns the clipped action normalized to ``[-1, 1]`` (which stable-baselines3 rescales back
    for the env), so ``diag_gaussian`` + ``clip_to_bounds`` is their ``MlpPolicy``. It is the
    default post-processor of an unbounded head under ``ppo`` and ``a2c``.

    Not bijective, and not the identity on ``[-1, 1]`` (unless the bounds are ``[-1, 1]``): the
    off-policy algorithms cannot use it where a log-prob is needed. On-policy losses do not
    need one (they use the head's log-prob of its raw action).
    """

    def __init__(self, action_space: spaces.Box) -> None:
        super().__init__(action_space)
        # float64: the normalized action of a float32 env action x is then exact wherever it can be (x / 2 for
        # Pendulum's [-2, 2]), and the env gets back the very action stable-baselines3 would send
        self.low = th.as_tensor(action_space.low.ravel(), dtype=th.float64)  # raw actions come flattened
        self.high = th.as_tensor(action_space.high.ravel(), dtype=th.float64)

    def forward(self, raw_actions: th.Tensor, explore: bool = False) -> th.Tensor:
        low, high = self.low.to(raw_actions.device), self.high.to(raw_actions.device)
        clipped = th.clamp(raw_actions.to(th.float64), low, high)
        # stable-baselines3's scale_action, in its order of operations
        return (2.0 * ((clipped - low) / (high - low)) - 1.0).to(raw_actions.dtype)

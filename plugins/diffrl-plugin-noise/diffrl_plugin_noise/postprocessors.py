"""Exploration noise added by the post-processor, in normalized action space.

Both post-processors map a raw action to ``clip(raw, -1, 1)`` (the ``clip`` post-processor),
and, only when collecting experience (``explore=True``), add noise and clip again:

    normalized = clip(clip(raw, -1, 1) + noise, -1, 1)

The env receives that action rescaled to its bounds and the replay buffer stores it as it
is, so the critic learns on exactly the action that was taken. The actor loss, TD3's target
policy and ``predict(deterministic=True)`` call the post-processor with ``explore=False``
and see no noise. The noise is drawn from torch's global generator, which
stable-baselines3 seeds with the model's seed.

What they do to the density: they are not bijective (``clip`` is not), but with
``explore=False`` they leave raw actions in ``[-1, 1]`` unchanged (``identity_when_bounded``).
After a bounded head (``squashed_gaussian``, ``beta``, ``deterministic``) the head's
log-prob is therefore that of the normalized action the actor loss sees, and SAC may use
them; after an unbounded head a composition that needs a log-prob is refused unless the
config sets ``policy.raw_log_prob: true``. The noise itself only shapes which actions the
replay buffer holds (exploration), not the policy whose log-prob the losses read.
"""

from __future__ import annotations

import math

import torch as th
from gymnasium import spaces

from diffrl_core.components import PostProcessor


class GaussianNoise(PostProcessor):
    """Independent Gaussian noise ``N(0, sigma^2)`` per action dimension and step.

    The same exploration as stable-baselines3's ``NormalActionNoise`` (TD3's ``action_noise``),
    but part of the policy: ``predict(deterministic=False)`` explores as training did.

    :param action_space: the env's action space
    :param sigma: standard deviation of the noise, in normalized units (the action range is 2)
    """

    identity_when_bounded = True

    def __init__(self, action_space: spaces.Box, sigma: float = 0.1) -> None:
        super().__init__(action_space)
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        self.sigma = float(sigma)

    def forward(self, raw_actions: th.Tensor, explore: bool = False) -> th.Tensor:
        actions = raw_actions.clamp(-1.0, 1.0)
        if not explore or self.sigma == 0.0:
            return actions
        return (actions + self.sigma * th.randn_like(actions)).clamp(-1.0, 1.0)


class OUNoise(PostProcessor):
    """Temporally correlated Ornstein-Uhlenbeck noise, as stable-baselines3's
    ``OrnsteinUhlenbeckActionNoise``: ``n <- n + theta * (-n) * dt + sigma * sqrt(dt) * N(0, 1)``.

    One noise state per row of the batch (per env of a vectorized env). The state is not
    part of the saved model. It is reset to zero when the batch size changes, or by
    :meth:`reset`; it is **not** reset at episode ends, because a post-processor is not told
    when an episode ends: the process runs on across episodes (its stationary standard
    deviation is ``sigma / sqrt(2 theta)``), where stable-baselines3's action noise restarts
    from zero.

    :param action_space: the env's action space
    :param sigma: scale of the noise increments
    :param theta: rate of mean reversion
    :param dt: time step of the process
    """

    identity_when_bounded = True

    def __init__(self, action_space: spaces.Box, sigma: float = 0.1, theta: float = 0.15, dt: float = 1e-2) -> None:
        super().__init__(action_space)
        if sigma < 0 or theta < 0 or dt <= 0:
            raise ValueError(f"need sigma >= 0, theta >= 0, dt > 0; got sigma={sigma}, theta={theta}, dt={dt}")
        self.sigma, self.theta, self.dt = float(sigma), float(theta), float(dt)
        self.state: th.Tensor | None = None  # a plain attribute: never saved with the weights

    def reset(self) -> None:
        """Restart the process from zero (at the next exploring call)."""
        self.state = None

    def forward(self, raw_actions: th.Tensor, explore: bool = False) -> th.Tensor:
        actions = raw_actions.clamp(-1.0, 1.0)
        if not explore:
            return actions
        with th.no_grad():
            if self.state is None or self.state.shape != actions.shape or self.state.device != actions.device:
                self.state = th.zeros_like(actions)
            self.state = (
                self.state
                - self.theta * self.state * self.dt
                + self.sigma * math.sqrt(self.dt) * th.randn_like(actions)
            )
        return (actions + self.state).clamp(-1.0, 1.0)

"""The built-in post-processors: raw head output -> normalized action in ``[-1, 1]``.

stable-baselines3 then rescales the normalized action to ``[low, high]`` for the env and
stores the normalized one in the replay buffer.
"""

from __future__ import annotations

import torch as th

from diffrl_core.components import PostProcessor


class Identity(PostProcessor):
    """The raw action already lies in ``[-1, 1]`` (a squashed head): pass it through.

    stable-baselines3 then rescales it for the env (``unscale_action``), as it does with
    the output of its own squashed actors. Registered as ``identity``; ``unscale``, its
    former name, still resolves to it.
    """

    accepts_unbounded = False

    def forward(self, raw_actions: th.Tensor, explore: bool = False) -> th.Tensor:
        return raw_actions


class Clip(PostProcessor):
    """Clip raw actions to ``[-1, 1]``.

    Unlike stable-baselines3's unsquashed branch (which clips to ``[low, high]`` and treats
    the raw output as an env action), the clipped action is the one the critic sees and the
    buffer stores, so the critic and the env agree. The gradient is zero outside the bounds.
    """

    def forward(self, raw_actions: th.Tensor, explore: bool = False) -> th.Tensor:
        return raw_actions.clamp(-1.0, 1.0)


class Tanh(PostProcessor):
    """Squash raw actions with tanh (then stable-baselines3 rescales them), for unbounded heads.

    A log-prob from the head is that of the raw (pre-tanh) action: the entropy term then
    regularizes the unsquashed distribution. For the exact squashed log-prob use the
    ``squashed_gaussian`` head with ``unscale``.
    """

    def forward(self, raw_actions: th.Tensor, explore: bool = False) -> th.Tensor:
        return th.tanh(raw_actions)

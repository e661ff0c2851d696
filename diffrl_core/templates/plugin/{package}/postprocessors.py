"""The post-processor ${name}_scale: raw actions -> normalized actions in [-1, 1]."""

from __future__ import annotations

import torch as th
from gymnasium import spaces

from diffrl_core.components import PostProcessor


class Scale(PostProcessor):
    """``clip(gain * raw, -1, 1)``.

    The result is what the critic sees and the replay buffer stores; the env gets it
    rescaled to its action bounds.

    :param action_space: the env's action space (given by diffrl)
    :param gain: multiplies the raw action (``policy.postprocess_kwargs.gain``)
    """

    accepts_unbounded = True  # it clips, so unbounded heads fit too

    def __init__(self, action_space: spaces.Box, gain: float = 1.0) -> None:
        super().__init__(action_space)
        self.gain = gain

    def forward(self, raw_actions: th.Tensor, explore: bool = False) -> th.Tensor:
        return (self.gain * raw_actions).clamp(-1.0, 1.0)

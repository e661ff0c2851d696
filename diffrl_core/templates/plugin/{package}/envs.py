"""The env ${name}/Reach-v0 (numpy only: making it imports no torch)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class ReachEnv(gym.Env):
    """Move a point on ``[-1, 1]`` to a random target; reward ``-|position - target|``.

    Observation: ``(position, target)``; action: a velocity in ``[-0.1, 0.1]``.
    """

    metadata = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-0.1, 0.1, shape=(1,), dtype=np.float32)
        self._position = 0.0
        self._target = 0.0

    def _obs(self) -> np.ndarray:
        return np.array([self._position, self._target], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._position, self._target = (float(x) for x in self.np_random.uniform(-1.0, 1.0, size=2))
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        velocity = float(np.clip(action, self.action_space.low, self.action_space.high)[0])
        self._position = float(np.clip(self._position + velocity, -1.0, 1.0))
        reward = -abs(self._position - self._target)
        return self._obs(), reward, False, False, {}

"""Contextual bandit with a quadratic reward and a closed-form maximum-entropy solution."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium import Env, spaces


class QuadraticBanditEnv(Env):
    r"""
    ## Description

    A one-step contextual bandit.  At reset a context vector ``c`` is drawn uniformly from
    ``[-1, 1]^context_dim``; the agent answers with one action ``a`` and the episode ends.
    The best action is a fixed linear function of the context,

    ``a*(c) = W c``,

    where ``W`` (shape ``(action_dim, context_dim)``) is drawn once from ``target_seed``
    (entries uniform in ``[-1, 1]``) and each row is divided by its L1 norm and multiplied
    by ``target_scale``, so that ``|a*_i(c)| <= target_scale`` for every context.  A linear
    policy can therefore represent ``a*`` exactly.  ``W`` is exposed as ``target_matrix``.

    ## Closed form of the maximum-entropy optimum

    The reward is ``r(a) = -k ||a - a*(c)||^2``.  For a fixed temperature ``alpha > 0`` the
    policy maximising ``E_{a~pi}[r(a)] + alpha * H(pi)`` is the Boltzmann distribution
    ``pi(a|c) ∝ exp(r(a) / alpha)``, i.e. the Gaussian

    ``pi*(.|c) = N(a*(c), sigma*^2 I)`` with ``sigma* = sqrt(alpha / (2 k))`` per dimension.

    (For ``N(a* + mu, s^2 I)``: ``E[r] + alpha H = -k (||mu||^2 + d s^2) + alpha d (log s +
    log sqrt(2 pi e))``, maximised at ``mu = 0`` and ``s^2 = alpha / (2k)``.)  The optimal
    objective value is ``d * alpha / 2 * (log(2 pi e sigma*^2) - 1)``, see
    :meth:`optimal_std` and :meth:`optimal_objective`.  This holds as long as the action
    bounds are wide enough that the Gaussian is essentially not truncated: with the
    defaults (``k = 1``, ``target_scale = 1``, bounds ``[-3, 3]``) a* is at least 2 away
    from the bounds, i.e. at least 3 standard deviations for ``alpha <= 0.88``.

    ## Action Space

    ``Box(action_low, action_high, (action_dim,), float32)``, default ``[-3, 3]^2``.
    Actions outside the bounds are clipped before the reward is computed.

    ## Observation Space

    ``Box(-1, 1, (context_dim,), float32)``: the context ``c`` (default ``context_dim = 2``).
    The observation returned by ``step`` is the same context (the episode is over).

    ## Rewards

    ``r = -k * ||a - a*(c)||^2`` (``k = 1`` by default); the maximum, 0, is reached at
    ``a = a*(c)``.

    ## Starting State

    A fresh context uniformly drawn from ``[-1, 1]^context_dim`` with ``self.np_random``.

    ## Episode End

    Every episode lasts exactly one step: ``terminated = True`` after the first step
    (registered with ``max_episode_steps=1``).

    ## Info

    ``reset`` and ``step`` both return ``info["optimal_action"]`` (``a*(c)``, float32);
    ``step`` also returns ``info["squared_error"]`` (``||a - a*(c)||^2``).

    ## Arguments

    ``gymnasium.make("diffrl_envs:diffrl/QuadraticBandit-v0", action_dim=2, context_dim=2,
    k=1.0, action_low=-3.0, action_high=3.0, target_seed=0, target_scale=1.0)``
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(
        self,
        action_dim: int = 2,
        context_dim: int = 2,
        k: float = 1.0,
        action_low: float = -3.0,
        action_high: float = 3.0,
        target_seed: int = 0,
        target_scale: float = 1.0,
        render_mode: str | None = None,
    ) -> None:
        if action_dim < 1 or context_dim < 1:
            raise ValueError("action_dim and context_dim must be >= 1")
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        if not action_low < action_high:
            raise ValueError("action_low must be < action_high")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"Unsupported render_mode {render_mode!r}")
        self.action_dim = int(action_dim)
        self.context_dim = int(context_dim)
        self.k = float(k)
        self.render_mode = render_mode

        target_rng = np.random.default_rng(target_seed)
        matrix = target_rng.uniform(-1.0, 1.0, size=(self.action_dim, self.context_dim))
        matrix /= np.abs(matrix).sum(axis=1, keepdims=True)
        self.target_matrix = (float(target_scale) * matrix).astype(np.float32)

        self.action_space = spaces.Box(
            low=np.float32(action_low), high=np.float32(action_high), shape=(self.action_dim,), dtype=np.float32
        )
        self.observation_space = spaces.Box(low=-1.0, high=1.0, shape=(self.context_dim,), dtype=np.float32)
        self._context = np.zeros(self.context_dim, dtype=np.float32)
        self._optimal_action = self.optimal_action(self._context)
        self._last_action: np.ndarray | None = None

    # ------------------------------------------------------------------ closed form
    def optimal_action(self, context: np.ndarray) -> np.ndarray:
        """``a*(c) = W c`` (float32) for a context (or a batch of contexts, shape ``(..., context_dim)``)."""
        context = np.asarray(context, dtype=np.float32)
        return (context @ self.target_matrix.T).astype(np.float32)

    def optimal_std(self, alpha: float) -> float:
        """Per-dimension std ``sqrt(alpha / (2 k))`` of the max-entropy optimal Gaussian policy at temperature alpha."""
        if alpha <= 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        return math.sqrt(alpha / (2.0 * self.k))

    def optimal_objective(self, alpha: float) -> float:
        """Optimal value of ``E[r] + alpha * H(pi)`` (differential entropy in nats), ignoring the bounds."""
        std = self.optimal_std(alpha)
        return self.action_dim * alpha / 2.0 * (math.log(2.0 * math.pi * math.e * std**2) - 1.0)

    def reward(self, action: np.ndarray, optimal_action: np.ndarray) -> float:
        """``-k ||clip(a) - a*||^2`` for one action."""
        action = np.clip(np.asarray(action, dtype=np.float32), self.action_space.low, self.action_space.high)
        diff = action.astype(np.float64) - np.asarray(optimal_action, dtype=np.float64)
        return float(-self.k * np.dot(diff, diff))

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._context = self.np_random.uniform(-1.0, 1.0, size=self.context_dim).astype(np.float32)
        self._optimal_action = self.optimal_action(self._context)
        self._last_action = None
        return self._context.copy(), {"optimal_action": self._optimal_action.copy()}

    def step(self, action):
        action = np.asarray(action, dtype=np.float32).reshape(self.action_dim)
        reward = self.reward(action, self._optimal_action)
        self._last_action = np.clip(action, self.action_space.low, self.action_space.high)
        info = {"optimal_action": self._optimal_action.copy(), "squared_error": -reward / self.k}
        return self._context.copy(), reward, True, False, info

    def render(self):
        """``rgb_array``: a 128x128 plot of the first two action dims (grey: a*, red: last action)."""
        if self.render_mode != "rgb_array":
            return None
        size = 128
        img = np.full((size, size, 3), 255, dtype=np.uint8)
        img[size // 2, :, :] = 200
        img[:, size // 2, :] = 200
        low, high = float(self.action_space.low[0]), float(self.action_space.high[0])

        def to_pixel(point: np.ndarray) -> tuple[int, int]:
            xy = np.zeros(2)
            xy[: min(2, point.shape[0])] = point[:2]
            frac = (np.clip(xy, low, high) - low) / (high - low)
            return int(frac[0] * (size - 1)), int((1.0 - frac[1]) * (size - 1))

        def dot(point: np.ndarray, colour: tuple[int, int, int]) -> None:
            col, row = to_pixel(point)
            img[max(row - 3, 0) : row + 4, max(col - 3, 0) : col + 4] = colour

        dot(self._optimal_action, (90, 90, 90))
        if self._last_action is not None:
            dot(self._last_action, (220, 30, 30))
        return img

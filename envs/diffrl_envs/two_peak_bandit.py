"""One-step bandit whose maximum-entropy optimum is bimodal, in closed form."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium import Env, spaces


class TwoPeakBanditEnv(Env):
    r"""
    ## Description

    A one-step bandit with two equally good actions, ``+p`` and ``-p`` (``p = peak * (1, ..., 1)``),
    far apart in a bounded action space. The observation carries no information (always 0):
    the policy is one distribution over actions, and the question is its shape. The best
    maximum-entropy policy puts half its mass around each peak, so a unimodal head (a Gaussian,
    squashed or not) can only cover one peak or smear over both, while a multimodal head (a
    diffusion chain, a mixture) can represent it exactly. The env is the picture of why
    diffusion actors exist.

    ## Closed form of the maximum-entropy optimum

    The reward is a soft maximum of two quadratic bowls, scaled by ``temperature`` (``tau``):

    ``r(a) = tau * log(exp(-k ||a - p||^2) + exp(-k ||a + p||^2))``.

    Writing ``exp(-k ||a - c||^2) = (pi / k)^(d/2) N(a; c, sigma^2 I)`` with ``sigma^2 = 1 / (2k)``,

    ``r(a) = tau * (log m(a) + C)``,  ``m = 1/2 N(p, sigma^2 I) + 1/2 N(-p, sigma^2 I)``,
    ``C = log 2 + d/2 log(pi / k)``.

    For a temperature ``alpha = tau``, ``E_pi[r] + alpha H(pi) = tau * (C - KL(pi || m))``, so the
    policy maximising it is the equal mixture ``m`` itself (:meth:`optimal_density`), and the
    optimal value is ``tau * C`` (:meth:`optimal_objective`). For another ``alpha`` the optimum is
    ``pi ∝ exp(r / alpha) ∝ m^(tau / alpha)``: still two peaks at ``+-p``, sharper for
    ``alpha < tau``. A single Gaussian, by contrast, at best covers one peak and loses about
    ``tau * log 2`` against ``m`` (the entropy of the choice between the peaks); spread over
    both, it puts mass in the valley between them and loses more.

    This ignores the action bounds: with the defaults (``peak = 0.5``, ``k = 18``, so
    ``sigma = 1/6``, bounds ``[-1, 1]``) each peak is 3 sigma from the nearest bound and the
    mixture puts 0.13% of its mass outside, and the two peaks are 6 sigma apart, so the density
    at 0 is 2.2% of that at a peak. The peaks are the reward's maxima to within about
    ``exp(-4 k d peak^2)`` (1.5e-8 with the defaults).

    ## Action Space

    ``Box(-1, 1, (action_dim,), float32)``, default ``action_dim = 1``. Actions outside the
    bounds are clipped before the reward is computed.

    ## Observation Space

    ``Box(-1, 1, (1,), float32)``, always ``[0.0]``.

    ## Rewards

    ``r(a)`` above; its maximum, at ``a = +-p``, is ``tau * log(1 + exp(-4 k d peak^2))``, about 0.

    ## Starting State

    The observation ``[0.0]``.

    ## Episode End

    Every episode lasts exactly one step: ``terminated = True`` after the first step
    (registered with ``max_episode_steps=1``).

    ## Info

    ``reset`` and ``step`` return ``info["optimal_actions"]`` (shape ``(2, action_dim)``:
    ``+p`` and ``-p``, float32); ``step`` also returns ``info["nearest_peak"]`` (0 for ``+p``,
    1 for ``-p``) and ``info["distance"]`` (to that peak).

    ## Arguments

    ``gymnasium.make("diffrl_envs:diffrl/TwoPeakBandit-v0", action_dim=1, peak=0.5, k=18.0,
    temperature=1.0)``
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(
        self,
        action_dim: int = 1,
        peak: float = 0.5,
        k: float = 18.0,
        temperature: float = 1.0,
        render_mode: str | None = None,
    ) -> None:
        if action_dim < 1:
            raise ValueError(f"action_dim must be >= 1, got {action_dim}")
        if not 0.0 < peak < 1.0:
            raise ValueError(f"peak must be in (0, 1) so that both peaks are inside the bounds, got {peak}")
        if k <= 0 or temperature <= 0:
            raise ValueError(f"k and temperature must be positive, got k={k}, temperature={temperature}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"Unsupported render_mode {render_mode!r}")
        self.action_dim = int(action_dim)
        self.peak = float(peak)
        self.k = float(k)
        self.temperature = float(temperature)
        self.render_mode = render_mode
        self.optimal_actions = np.stack([np.full(self.action_dim, self.peak), np.full(self.action_dim, -self.peak)]
                                        ).astype(np.float32)
        self.action_space = spaces.Box(low=-1.0, high=1.0, shape=(self.action_dim,), dtype=np.float32)
        self.observation_space = spaces.Box(low=-1.0, high=1.0, shape=(1,), dtype=np.float32)
        self._last_action: np.ndarray | None = None

    # ------------------------------------------------------------------ closed form
    @property
    def optimal_std(self) -> float:
        """``sigma = 1 / sqrt(2 k)``: the std of each component of the optimal mixture (at ``alpha = temperature``)."""
        return 1.0 / math.sqrt(2.0 * self.k)

    def reward(self, actions: np.ndarray) -> np.ndarray:
        """``r(a)`` of clipped actions, shape ``(..., action_dim)`` -> ``(...)``, in float64."""
        actions = np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0)
        squared = ((actions[..., None, :] - self.optimal_actions.astype(np.float64)) ** 2).sum(axis=-1)
        return self.temperature * np.logaddexp(-self.k * squared[..., 0], -self.k * squared[..., 1])

    def optimal_density(self, actions: np.ndarray) -> np.ndarray:
        """``m(a)``, the maximum-entropy optimum at ``alpha = temperature`` (bounds ignored), shape ``(...)``."""
        actions = np.asarray(actions, dtype=np.float64)
        var = self.optimal_std**2
        squared = ((actions[..., None, :] - self.optimal_actions.astype(np.float64)) ** 2).sum(axis=-1)
        normal = np.exp(-squared / (2.0 * var)) / (2.0 * math.pi * var) ** (self.action_dim / 2)
        return normal.mean(axis=-1)

    def optimal_objective(self) -> float:
        """``max_pi E[r] + tau H(pi) = tau * (log 2 + d/2 log(pi / k))``, reached by :meth:`optimal_density`."""
        return self.temperature * (math.log(2.0) + self.action_dim / 2.0 * math.log(math.pi / self.k))

    def sample_optimal(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` actions from the optimal mixture (bounds ignored), shape ``(n, action_dim)``, float32."""
        peaks = self.optimal_actions[rng.integers(0, 2, size=n)]
        return (peaks + rng.normal(0.0, self.optimal_std, size=(n, self.action_dim))).astype(np.float32)

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._last_action = None
        return np.zeros(1, dtype=np.float32), {"optimal_actions": self.optimal_actions.copy()}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float32).reshape(self.action_dim), -1.0, 1.0)
        self._last_action = action
        distances = np.linalg.norm(action.astype(np.float64) - self.optimal_actions, axis=-1)
        nearest = int(np.argmin(distances))
        info = {"optimal_actions": self.optimal_actions.copy(), "nearest_peak": nearest,
                "distance": float(distances[nearest])}
        return np.zeros(1, dtype=np.float32), float(self.reward(action)), True, False, info

    def render(self):
        """``rgb_array``: a 128x128 plot of the reward along the first action dimension (grey), the two peaks
        (dark ticks) and the last action (red)."""
        if self.render_mode != "rgb_array":
            return None
        size = 128
        img = np.full((size, size, 3), 255, dtype=np.uint8)
        xs = np.linspace(-1.0, 1.0, size)
        line = np.zeros((size, self.action_dim))
        line[:, 0] = xs
        line[:, 1:] = self.peak  # through the +p peak in the other dimensions
        rewards = self.reward(line)
        low = self.reward(np.full(self.action_dim, 0.0)) - 1.0
        high = float(rewards.max())
        rows = ((1.0 - (np.clip(rewards, low, high) - low) / (high - low)) * (size - 1)).astype(int)
        img[rows, np.arange(size)] = (120, 120, 120)
        for peak in (self.peak, -self.peak):
            col = int((peak + 1.0) / 2.0 * (size - 1))
            img[size - 8 :, max(col - 1, 0) : col + 2] = (40, 40, 40)
        if self._last_action is not None:
            col = int((float(self._last_action[0]) + 1.0) / 2.0 * (size - 1))
            img[:, max(col - 1, 0) : col + 2] = (220, 30, 30)
        return img

"""The MuJoCo point-mass reaching task observed through a small top-down image drawn with NumPy."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from diffrl_envs.point_mass_reach import PointMassReachEnv

#: Half width (m) of the square the image shows: the mass moves within +/-0.31 m (joint range 0.3 m
#: plus the soft limit) and the discs have a radius of 0.08 m, so they are never cut by the border.
_EXTENT = 0.40


class PointMassPixelsEnv(PointMassReachEnv):
    """
    ## Description

    The ``diffrl/PointMassReach-v0`` task (same MJCF model, dynamics, reward, start and
    episode length: a 0.1 kg point mass in a 0.6 m x 0.6 m square with damping 1 N s/m,
    pushed by two motors towards a goal drawn at reset) observed only through a small
    top-down RGB image, for image-based agents such as stable-baselines3's ``CnnPolicy``.
    The image is drawn with NumPy (no OpenGL, no ``mujoco.Renderer``), so it works on any
    headless machine.

    ## Action Space

    ``Box(-1, 1, (2,), float32)``: force along x and y in newtons (motor gear 1).  Actions
    are clipped to the bounds.

    ## Observation Space

    ``Box(0, 255, (size, size, 3), uint8)``, channel-last (``size`` defaults to 36, the
    smallest image SB3's ``NatureCNN`` accepts; SB3's ``VecTransposeImage`` moves the
    channels first).  The image is the square ``[-0.4, 0.4]^2`` m seen from above
    (x to the right, y up; one pixel is ``0.8 / size`` m, 2.2 cm at 36 px) on a black
    background, with three anti-aliased discs of radius 0.08 m (3.6 px at 36 px), one per
    channel, so that they never hide each other, are never cut by the border, and
    sub-pixel positions stay readable through the grey levels of the disc edges:

    | Channel   | Disc                                                         |
    |-----------|--------------------------------------------------------------|
    | 0 (red)   | the goal                                                     |
    | 1 (green) | the mass                                                     |
    | 2 (blue)  | the mass one step earlier (its position before the last step) |

    One frame carries no velocity; the blue "trail" disc does: the offset from the blue to
    the green disc is the displacement over the last step (velocity x 0.05 s, up to about
    2.3 px at full speed).  After a reset the mass is at rest and both discs coincide.

    ## Rewards

    As in PointMassReach: ``r = -||goal - mass||_2 - ctrl_cost_weight * ||a||^2``
    (``ctrl_cost_weight`` defaults to 0.01).  The step info holds ``reward_dist``,
    ``reward_ctrl``, ``distance`` and ``is_success`` (distance below ``success_radius``,
    0.02 m).

    ## Starting State

    As in PointMassReach: the mass starts at rest at a position uniform in
    ``[-0.25, 0.25]^2``; the goal is drawn uniformly from the same square.

    ## Episode End

    Never terminates; registered with ``max_episode_steps=100`` (5 s), which truncates.

    ## Rendering

    ``rgb_array`` returns the observation image enlarged ``render_scale`` times (default 8,
    so 288x288 at ``size`` 36) by repeating pixels; NumPy only, no OpenGL needed.

    ## Arguments

    ``gymnasium.make("diffrl_envs:diffrl/PointMassPixels-v0", size=36, ctrl_cost_weight=0.01,
    success_radius=0.02, frame_skip=5, render_mode=None, render_scale=8)``
    """

    disc_radius = 0.08  # m; larger discs than the 0.02 m sphere make the position easier to learn

    def __init__(
        self,
        size: int = 36,
        ctrl_cost_weight: float = 0.01,
        success_radius: float = 0.02,
        frame_skip: int = 5,
        render_mode: str | None = None,
        render_scale: int = 8,
    ) -> None:
        super().__init__(
            ctrl_cost_weight=ctrl_cost_weight,
            success_radius=success_radius,
            frame_skip=frame_skip,
            render_mode=render_mode,
        )
        self.size = int(size)
        self.render_scale = int(render_scale)
        if self.size < 8:
            raise ValueError(f"size must be at least 8 pixels, got {self.size}")
        if self.render_scale < 1:
            raise ValueError(f"render_scale must be at least 1, got {self.render_scale}")
        self.observation_space = spaces.Box(low=0, high=255, shape=(self.size, self.size, 3), dtype=np.uint8)
        # Pixel centres in metres: columns run along +x, rows along -y (row 0 is the top, y = +0.4).
        self._metres_per_pixel = 2 * _EXTENT / self.size
        centres = -_EXTENT + (np.arange(self.size) + 0.5) * self._metres_per_pixel
        self._pixel_x = centres[np.newaxis, :]
        self._pixel_y = centres[::-1, np.newaxis]
        self._radius_px = self.disc_radius / self._metres_per_pixel
        self._trail: np.ndarray | None = None

    def _disc(self, centre: np.ndarray) -> np.ndarray:
        """Anti-aliased disc coverage in [0, 1] (size x size) around ``centre`` (x, y in metres)."""
        dist_px = np.hypot(self._pixel_x - centre[0], self._pixel_y - centre[1]) / self._metres_per_pixel
        return np.clip(self._radius_px + 0.5 - dist_px, 0.0, 1.0)

    def _get_obs(self) -> np.ndarray:
        pos = self.data.qpos[:2]
        trail = pos if self._trail is None else self._trail
        coverage = np.stack([self._disc(self.goal), self._disc(pos), self._disc(trail)], axis=-1)
        return np.rint(coverage * 255.0).astype(np.uint8)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._trail = None  # at rest: the trail disc coincides with the mass
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self._trail = self.data.qpos[:2].copy()
        return super().step(action)

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        image = self._get_obs()
        return np.repeat(np.repeat(image, self.render_scale, axis=0), self.render_scale, axis=1)

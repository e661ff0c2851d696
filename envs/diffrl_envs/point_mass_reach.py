"""MuJoCo planar point mass that has to reach a goal drawn at reset."""

from __future__ import annotations

from importlib import resources
from typing import Any

import mujoco
import numpy as np
from gymnasium import Env, spaces

_MODEL_FILE = "point_mass_reach.xml"


def _model_xml() -> str:
    return resources.files("diffrl_envs").joinpath("assets", _MODEL_FILE).read_text(encoding="utf-8")


class PointMassReachEnv(Env):
    """
    ## Description

    A point mass (0.1 kg sphere) moves in a horizontal 0.6 m x 0.6 m square (two slide
    joints with limits at +/-0.3 m and viscous damping 1 N s/m, no gravity in the plane).
    Two motors push it along x and y.  A goal (red disc, a mocap body) is drawn at reset;
    the agent has to drive the mass onto it and keep it there.  The model is the package's
    own MJCF file ``diffrl_envs/assets/point_mass_reach.xml`` (timestep 0.01 s,
    ``frame_skip`` 5, so one env step is 0.05 s).

    ## Action Space

    ``Box(-1, 1, (2,), float32)``: force along x and y in newtons (motor gear 1).  Actions
    are clipped to the bounds.

    ## Observation Space

    ``Box(low, high, (6,), float32)``; the declared bounds are generous and the observation
    is clipped to them (which never happens in practice):

    | Num | Observation                | Declared bounds | Actual range  |
    |-----|----------------------------|-----------------|---------------|
    | 0   | x position of the mass (m) | [-0.4, 0.4]     | [-0.31, 0.31] |
    | 1   | y position of the mass (m) | [-0.4, 0.4]     | [-0.31, 0.31] |
    | 2   | x velocity (m/s)           | [-5, 5]         | about [-1, 1] |
    | 3   | y velocity (m/s)           | [-5, 5]         | about [-1, 1] |
    | 4   | goal x - mass x (m)        | [-0.8, 0.8]     | [-0.55, 0.55] |
    | 5   | goal y - mass y (m)        | [-0.8, 0.8]     | [-0.55, 0.55] |

    ## Rewards

    Dense: ``r = -||goal - mass||_2 - ctrl_cost_weight * ||a||^2`` (``ctrl_cost_weight``
    defaults to 0.01).  The step info holds ``reward_dist``, ``reward_ctrl``, ``distance``
    and ``is_success`` (distance below ``success_radius``, 0.02 m).

    ## Starting State

    The mass starts at rest at a position uniform in ``[-0.25, 0.25]^2``; the goal is drawn
    uniformly from the same square (both with ``self.np_random``).

    ## Episode End

    Never terminates; registered with ``max_episode_steps=100`` (5 s), which truncates.

    ## Rendering

    ``rgb_array`` renders offscreen from a top-down camera with ``mujoco.Renderer``
    (``width`` x ``height``, default 480x480).  Headless machines need ``MUJOCO_GL=egl`` (or
    ``osmesa``) set before ``mujoco`` is first imported.

    ## Arguments

    ``gymnasium.make("diffrl_envs:diffrl/PointMassReach-v0", ctrl_cost_weight=0.01,
    success_radius=0.02, frame_skip=5, render_mode=None, width=480, height=480)``
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        ctrl_cost_weight: float = 0.01,
        success_radius: float = 0.02,
        frame_skip: int = 5,
        render_mode: str | None = None,
        width: int = 480,
        height: int = 480,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"Unsupported render_mode {render_mode!r}")
        self.ctrl_cost_weight = float(ctrl_cost_weight)
        self.success_radius = float(success_radius)
        self.frame_skip = int(frame_skip)
        self.render_mode = render_mode
        self.width, self.height = int(width), int(height)

        self.model = mujoco.MjModel.from_xml_string(_model_xml())
        self.model.vis.global_.offwidth = max(self.model.vis.global_.offwidth, self.width)
        self.model.vis.global_.offheight = max(self.model.vis.global_.offheight, self.height)
        self.data = mujoco.MjData(self.model)
        self._goal_mocap = self.model.body("goal").mocapid[0]
        self._goal_z = float(self.model.body("goal").pos[2])
        # Render fps follows the simulated step duration (default 0.05 s -> 20 fps).
        self.metadata = {**self.metadata, "render_fps": int(round(1.0 / self.dt))}

        ctrl_range = self.model.actuator_ctrlrange.astype(np.float32)
        self.action_space = spaces.Box(low=ctrl_range[:, 0], high=ctrl_range[:, 1], dtype=np.float32)
        obs_high = np.array([0.4, 0.4, 5.0, 5.0, 0.8, 0.8], dtype=np.float32)
        self.observation_space = spaces.Box(low=-obs_high, high=obs_high, dtype=np.float32)
        self.goal = np.zeros(2, dtype=np.float64)
        self._renderer: mujoco.Renderer | None = None

    @property
    def dt(self) -> float:
        """Duration of one env step in seconds."""
        return self.model.opt.timestep * self.frame_skip

    def _get_obs(self) -> np.ndarray:
        pos = self.data.qpos[:2]
        obs = np.concatenate([pos, self.data.qvel[:2], self.goal - pos]).astype(np.float32)
        return np.clip(obs, self.observation_space.low, self.observation_space.high)

    def _distance(self) -> float:
        return float(np.linalg.norm(self.goal - self.data.qpos[:2]))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:2] = self.np_random.uniform(-0.25, 0.25, size=2)
        self.goal = self.np_random.uniform(-0.25, 0.25, size=2)
        self.data.mocap_pos[self._goal_mocap] = [self.goal[0], self.goal[1], self._goal_z]
        mujoco.mj_forward(self.model, self.data)
        return self._get_obs(), {"distance": self._distance()}

    def _simulate(self, action) -> np.ndarray:
        """Clip ``action`` to the bounds, apply it for ``frame_skip`` physics steps, return the clipped action."""
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(2), self.action_space.low, self.action_space.high)
        self.data.ctrl[:] = action
        mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)
        return action

    def step(self, action):
        action = self._simulate(action)
        distance = self._distance()
        reward_dist = -distance
        reward_ctrl = -self.ctrl_cost_weight * float(np.dot(action, action))
        info = {
            "reward_dist": reward_dist,
            "reward_ctrl": reward_ctrl,
            "distance": distance,
            "is_success": distance < self.success_radius,
        }
        return self._get_obs(), reward_dist + reward_ctrl, False, False, info

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, height=self.height, width=self.width)
        self._renderer.update_scene(self.data, camera="top")
        return self._renderer.render().copy()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

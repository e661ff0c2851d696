"""Goal-conditioned version of the MuJoCo point mass (Dict observation, sparse reward, for HER)."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from diffrl_envs.point_mass_reach import PointMassReachEnv


class PointMassGoalEnv(PointMassReachEnv):
    """
    ## Description

    The point mass of ``diffrl/PointMassReach-v0`` (same MJCF model
    ``diffrl_envs/assets/point_mass_reach.xml``, same dynamics: a 0.1 kg sphere in a
    0.6 m x 0.6 m square, viscous damping 1 N s/m, two motors, timestep 0.01 s,
    ``frame_skip`` 5, so one env step is 0.05 s) as a goal-conditioned task in the
    convention of gymnasium-robotics' ``GoalEnv``: a ``Dict`` observation with
    ``observation``, ``achieved_goal`` and ``desired_goal``, a sparse reward and a
    vectorised ``compute_reward``, which is what stable-baselines3's ``HerReplayBuffer``
    needs to relabel goals.

    ## Action Space

    ``Box(-1, 1, (2,), float32)``: force along x and y in newtons (motor gear 1).  Actions
    are clipped to the bounds.

    ## Observation Space

    ``Dict`` of three float32 ``Box`` spaces; the declared bounds are generous and the
    values are clipped to them (which never happens in practice):

    | Key             | Shape | Content                           | Declared bounds          | Actual range            |
    |-----------------|-------|-----------------------------------|--------------------------|-------------------------|
    | `observation`   | (4,)  | x, y position (m), x, y vel (m/s) | [-0.4, 0.4], [-5, 5]     | [-0.31, 0.31], [-1, 1]  |
    | `achieved_goal` | (2,)  | x, y position of the mass (m)     | [-0.4, 0.4]              | [-0.31, 0.31]           |
    | `desired_goal`  | (2,)  | x, y position of the goal (m)     | [-0.4, 0.4]              | [-0.25, 0.25]           |

    ## Rewards

    Sparse: ``r = -(||achieved_goal - desired_goal||_2 > distance_threshold)``, i.e. 0 when
    the mass is within ``distance_threshold`` (default 0.05 m) of the goal and -1 otherwise;
    no control cost.  ``compute_reward(achieved_goal, desired_goal, info)`` returns the same
    reward for one pair of goals (a float32 scalar) or for batches (shape ``(n, 2)`` ->
    ``(n,)``); ``info`` is ignored and may be a dict or a list/array of dicts.  The step
    reward is computed by ``compute_reward`` from the float32 goals of the returned
    observation, so relabelled rewards are bit-identical.  The step info holds
    ``distance`` and ``is_success`` (``reward == 0``).

    ## Starting State

    As in PointMassReach: the mass starts at rest at a position uniform in
    ``[-0.25, 0.25]^2``, the goal is drawn uniformly from the same square (both with
    ``self.np_random``).  About 3% of the episodes start already within the threshold.

    ## Episode End

    Never terminates (the mass has to stay on the goal); registered with
    ``max_episode_steps=50`` (2.5 s, several times the 0.7 s the mass needs to cross the
    square at full force), which truncates.

    ## Rendering

    ``rgb_array`` renders with ``mujoco.Renderer`` as PointMassReach does (the red disc is
    the desired goal); headless machines need ``MUJOCO_GL=egl`` or ``osmesa``.

    ## Arguments

    ``gymnasium.make("diffrl_envs:diffrl/PointMassGoal-v0", distance_threshold=0.05,
    frame_skip=5, render_mode=None, width=480, height=480)``
    """

    def __init__(
        self,
        distance_threshold: float = 0.05,
        frame_skip: int = 5,
        render_mode: str | None = None,
        width: int = 480,
        height: int = 480,
    ) -> None:
        super().__init__(
            ctrl_cost_weight=0.0,
            success_radius=distance_threshold,
            frame_skip=frame_skip,
            render_mode=render_mode,
            width=width,
            height=height,
        )
        self.distance_threshold = float(distance_threshold)
        obs_high = np.array([0.4, 0.4, 5.0, 5.0], dtype=np.float32)
        goal_high = np.full(2, 0.4, dtype=np.float32)
        self.observation_space = spaces.Dict(
            {
                "observation": spaces.Box(low=-obs_high, high=obs_high, dtype=np.float32),
                "achieved_goal": spaces.Box(low=-goal_high, high=goal_high, dtype=np.float32),
                "desired_goal": spaces.Box(low=-goal_high, high=goal_high, dtype=np.float32),
            }
        )

    def _get_obs(self) -> dict[str, np.ndarray]:
        pos = self.data.qpos[:2]
        boxes = self.observation_space.spaces
        raw = {
            "observation": np.concatenate([pos, self.data.qvel[:2]]),
            "achieved_goal": pos,
            "desired_goal": self.goal,
        }
        return {key: np.clip(value.astype(np.float32), boxes[key].low, boxes[key].high) for key, value in raw.items()}

    def compute_reward(self, achieved_goal, desired_goal, info: Any = None) -> np.ndarray:
        """Sparse reward ``-(distance > distance_threshold)`` as float32, vectorised over leading axes.

        ``achieved_goal`` and ``desired_goal`` have shape ``(2,)`` (returns a 0-d float32 value)
        or ``(n, 2)`` (returns shape ``(n,)``); ``info`` is not used.
        """
        diff = np.asarray(achieved_goal, dtype=np.float64) - np.asarray(desired_goal, dtype=np.float64)
        distance = np.sqrt(np.sum(diff * diff, axis=-1))
        return np.where(distance > self.distance_threshold, np.float32(-1.0), np.float32(0.0)).astype(np.float32)

    def step(self, action):
        self._simulate(action)
        obs = self._get_obs()
        info = {"distance": self._distance()}
        reward = float(self.compute_reward(obs["achieved_goal"], obs["desired_goal"], info))
        info["is_success"] = reward == 0.0
        return obs, reward, False, False, info

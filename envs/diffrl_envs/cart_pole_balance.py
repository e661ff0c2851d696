"""Box2D pole on a cart with a continuous force: keep the pole upright."""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import numpy as np
from gymnasium import Env, spaces

# Box2D's SWIG extension emits "builtin type Swig... has no __module__ attribute"
# DeprecationWarnings while it is imported; if warnings are turned into errors at that
# point (python -W error, pytest filterwarnings=error) the import segfaults.  Silence them.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from Box2D import b2FixtureDef, b2PolygonShape, b2World


class CartPoleBalanceEnv(Env):
    """
    ## Description

    A cart (0.5 m x 0.25 m, 1 kg) slides without friction along a horizontal track (a
    Box2D prismatic joint to a static ground body); a pole (1 m x 0.1 m, 0.1 kg) is hinged
    on top of it (a Box2D revolute joint).  The agent pushes the cart with a horizontal
    force and has to keep the pole upright and the cart near the centre.  Gravity is
    9.8 m/s^2, one env step is ``dt = 0.02`` s simulated as ``substeps`` (2) Box2D steps.
    The world is built from the package's own Box2D bodies and joints and rebuilt at every
    reset (so no solver warm-start state leaks between episodes).

    ## Action Space

    ``Box(-1, 1, (1,), float32)``: horizontal force on the cart, in units of
    ``force_mag`` (default 10 N).  Actions are clipped to the bounds.

    ## Observation Space

    ``Box(low, high, (4,), float32)``; the observation is clipped to the declared bounds
    (twice the termination thresholds for x and theta, which the last observation of an
    episode only slightly exceeds; generous bounds for the velocities):

    | Num | Observation                                  | Declared bounds | Before the episode ends |
    |-----|----------------------------------------------|-----------------|-------------------------|
    | 0   | cart position x (m)                          | [-4.0, 4.0]     | [-2.0, 2.0]             |
    | 1   | pole angle from vertical (rad, + = ccw/left) | [-0.8, 0.8]     | [-0.4, 0.4]             |
    | 2   | cart velocity (m/s)                          | [-20, 20]       | a few m/s               |
    | 3   | pole angular velocity (rad/s)                | [-20, 20]       | a few rad/s             |

    ## Rewards

    Dense, in ``[0.39, 1]`` for every step taken (including the last one):
    ``r = 1 - 0.5 (theta / theta_threshold)^2 - 0.1 (x / x_threshold)^2 - 0.01 a^2``.

    ## Starting State

    ``x``, ``theta``, ``x_dot`` and ``theta_dot`` are drawn uniformly from
    ``[-0.05, 0.05]`` with ``self.np_random``.

    ## Episode End

    ``terminated`` when ``|theta| > theta_threshold`` (0.4 rad) or ``|x| > x_threshold``
    (2.0 m).  Registered with ``max_episode_steps=200`` (4 s), which truncates.

    ## Rendering

    ``rgb_array``: a 600x400 image drawn with pygame on an offscreen ``pygame.Surface``
    (no display or window is needed).

    ## Arguments

    ``gymnasium.make("diffrl_envs:diffrl/CartPoleBalance-v0", force_mag=10.0,
    theta_threshold=0.4, x_threshold=2.0, render_mode=None)``
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    dt = 0.02
    substeps = 2
    gravity = 9.8
    cart_size = (0.5, 0.25)
    cart_mass = 1.0
    pole_length = 1.0
    pole_width = 0.1
    pole_mass = 0.1
    screen_size = (600, 400)

    def __init__(
        self,
        force_mag: float = 10.0,
        theta_threshold: float = 0.4,
        x_threshold: float = 2.0,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"Unsupported render_mode {render_mode!r}")
        self.force_mag = float(force_mag)
        self.theta_threshold = float(theta_threshold)
        self.x_threshold = float(x_threshold)
        self.render_mode = render_mode

        self.action_space = spaces.Box(low=-1.0, high=1.0, shape=(1,), dtype=np.float32)
        obs_high = np.array([2 * self.x_threshold, 2 * self.theta_threshold, 20.0, 20.0], dtype=np.float32)
        self.observation_space = spaces.Box(low=-obs_high, high=obs_high, dtype=np.float32)

        self.world: b2World | None = None
        self.cart = None
        self.pole = None
        self._surface = None
        self._build_world(np.zeros(4))

    # ------------------------------------------------------------------ Box2D world
    def _destroy(self) -> None:
        if self.world is None:
            return
        for body in list(self.world.bodies):
            self.world.DestroyBody(body)
        self.world = self.cart = self.pole = None

    def _build_world(self, state: np.ndarray) -> None:
        """(Re)build the world with ``state = (x, theta, x_dot, theta_dot)``."""
        self._destroy()
        x, theta, x_dot, theta_dot = (float(v) for v in state)
        half_w, half_h = self.cart_size[0] / 2, self.cart_size[1] / 2
        half_len = self.pole_length / 2

        world = b2World(gravity=(0.0, -self.gravity))
        ground = world.CreateStaticBody(position=(0.0, 0.0))
        cart = world.CreateDynamicBody(
            position=(x, 0.0),
            fixtures=b2FixtureDef(
                shape=b2PolygonShape(box=(half_w, half_h)),
                density=self.cart_mass / (self.cart_size[0] * self.cart_size[1]),
            ),
        )
        pivot = (x, half_h)
        # Pole centre: half a length from the pivot, along the pole direction (-sin, cos).
        offset = (-half_len * math.sin(theta), half_len * math.cos(theta))
        pole = world.CreateDynamicBody(
            position=(pivot[0] + offset[0], pivot[1] + offset[1]),
            angle=theta,
            fixtures=b2FixtureDef(
                shape=b2PolygonShape(box=(self.pole_width / 2, half_len)),
                density=self.pole_mass / (self.pole_width * self.pole_length),
            ),
        )
        world.CreatePrismaticJoint(bodyA=ground, bodyB=cart, anchor=(x, 0.0), axis=(1.0, 0.0))
        world.CreateRevoluteJoint(bodyA=cart, bodyB=pole, anchor=pivot)
        cart.linearVelocity = (x_dot, 0.0)
        # Rigid-body velocity of the pole centre: v_cart + omega x offset.
        pole.linearVelocity = (x_dot - theta_dot * offset[1], theta_dot * offset[0])
        pole.angularVelocity = theta_dot
        self.world, self.cart, self.pole = world, cart, pole

    def _obs(self, state: np.ndarray) -> np.ndarray:
        return np.clip(state.astype(np.float32), self.observation_space.low, self.observation_space.high)

    def _state(self) -> np.ndarray:
        return np.array(
            [self.cart.position[0], self.pole.angle, self.cart.linearVelocity[0], self.pole.angularVelocity],
            dtype=np.float64,
        )

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._build_world(self.np_random.uniform(-0.05, 0.05, size=4))
        return self._obs(self._state()), {}

    def step(self, action):
        force = float(np.clip(np.asarray(action, dtype=np.float64).reshape(1)[0], -1.0, 1.0))
        sub_dt = self.dt / self.substeps
        for _ in range(self.substeps):
            self.cart.ApplyForceToCenter((force * self.force_mag, 0.0), True)
            self.world.Step(sub_dt, 10, 10)
        x, theta, _, _ = state = self._state()
        terminated = bool(abs(theta) > self.theta_threshold or abs(x) > self.x_threshold)
        reward = (
            1.0
            - 0.5 * (theta / self.theta_threshold) ** 2
            - 0.1 * (x / self.x_threshold) ** 2
            - 0.01 * force**2
        )
        # Clamp so that the documented range holds on the (slightly overshooting) last step.
        reward = float(max(reward, 0.39))
        return self._obs(state), reward, terminated, False, {}

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        import pygame  # lazy: only needed for rendering

        width, height = self.screen_size
        scale = width / (2 * (self.x_threshold + 1.0))  # pixels per metre
        track_y = height * 0.7

        def to_screen(point) -> tuple[float, float]:
            return width / 2 + point[0] * scale, track_y - point[1] * scale

        if self._surface is None:
            self._surface = pygame.Surface((width, height))
        surf = self._surface
        surf.fill((255, 255, 255))
        pygame.draw.line(surf, (0, 0, 0), (0, track_y), (width, track_y), 2)
        for limit in (-self.x_threshold, self.x_threshold):
            sx = to_screen((limit, 0.0))[0]
            pygame.draw.line(surf, (200, 60, 60), (sx, track_y - 10), (sx, track_y + 10), 2)
        for body, colour in ((self.cart, (40, 40, 40)), (self.pole, (202, 152, 101))):
            for fixture in body.fixtures:
                vertices = [to_screen(body.transform * v) for v in fixture.shape.vertices]
                pygame.draw.polygon(surf, colour, vertices)
        pivot = self.pole.transform * (0.0, -self.pole_length / 2)
        px, py = to_screen(pivot)
        pygame.draw.circle(surf, (129, 132, 203), (int(px), int(py)), max(2, int(0.04 * scale)))
        return np.transpose(np.array(pygame.surfarray.pixels3d(surf)), axes=(1, 0, 2)).copy()

    def close(self) -> None:
        self._destroy()
        self._surface = None

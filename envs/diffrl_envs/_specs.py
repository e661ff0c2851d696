"""Registration specs of the diffrl environments.

Every entry is a plain ``dict`` whose ``"id"`` is the gymnasium id and whose other keys
are keyword arguments of :func:`gymnasium.register`.  The entry points are *strings*, so
nothing heavy (NumPy env code, MuJoCo, Box2D, pygame) is imported before
:func:`gymnasium.make`.  This module must stay free of heavy imports.
"""

from __future__ import annotations

SPECS: tuple[dict, ...] = (
    {
        "id": "diffrl/QuadraticBandit-v0",
        "entry_point": "diffrl_envs.quadratic_bandit:QuadraticBanditEnv",
        "max_episode_steps": 1,
        "kwargs": {},
    },
    {
        "id": "diffrl/PointMassReach-v0",
        "entry_point": "diffrl_envs.point_mass_reach:PointMassReachEnv",
        "max_episode_steps": 100,
        "kwargs": {},
    },
    {
        "id": "diffrl/CartPoleBalance-v0",
        "entry_point": "diffrl_envs.cart_pole_balance:CartPoleBalanceEnv",
        "max_episode_steps": 200,
        "kwargs": {},
    },
    {
        "id": "diffrl/PointMassGoal-v0",
        "entry_point": "diffrl_envs.point_mass_goal:PointMassGoalEnv",
        "max_episode_steps": 50,
        "kwargs": {},
    },
    {
        "id": "diffrl/TwoPeakBandit-v0",
        "entry_point": "diffrl_envs.two_peak_bandit:TwoPeakBanditEnv",
        "max_episode_steps": 1,
        "kwargs": {},
    },
    {
        "id": "diffrl/PointMassPixels-v0",
        "entry_point": "diffrl_envs.point_mass_pixels:PointMassPixelsEnv",
        "max_episode_steps": 100,
        "kwargs": {},
    },
)

#: All env ids, in registration order.
ENV_IDS: tuple[str, ...] = tuple(spec["id"] for spec in SPECS)


def spec_kwargs(spec: dict) -> tuple[str, dict]:
    """Split a spec into ``(env_id, register_kwargs)``, deep enough copied not to alias ``SPECS``."""
    rest = {key: value for key, value in spec.items() if key != "id"}
    if isinstance(rest.get("kwargs"), dict):
        rest["kwargs"] = dict(rest["kwargs"])
    return spec["id"], rest

"""diffrl environments: small gymnasium environments for the diffrl plugin registry.

Importing this package registers every environment of :data:`diffrl_envs._specs.SPECS`
with gymnasium, so ``gymnasium.make("diffrl_envs:diffrl/QuadraticBandit-v0")`` works
without ``diffrl_core``.  Only gymnasium and the specs are imported here; the env
modules (and MuJoCo, Box2D, pygame) are imported lazily by :func:`gymnasium.make`.
"""

from __future__ import annotations

import gymnasium

from diffrl_envs._specs import ENV_IDS, SPECS, spec_kwargs

__all__ = ["ENV_IDS", "SPECS", "register_all"]
__version__ = "0.1.0"


def register_all() -> None:
    """Register every spec with gymnasium, skipping ids already registered with the same entry point."""
    for spec in SPECS:
        env_id, rest = spec_kwargs(spec)
        existing = gymnasium.registry.get(env_id)
        if existing is not None and existing.entry_point == rest["entry_point"]:
            continue
        gymnasium.register(env_id, **rest)


register_all()

"""diffrl plugin entry point (entry-point group ``diffrl``, name ``envs``).

Importing this module imports :mod:`diffrl_envs`, which already registers the
environments with gymnasium directly; ``diffrl_core`` treats an id registered with the
same entry point as the same registration, so registering again through the hook is a no-op.
"""

from __future__ import annotations

from diffrl_core import hookimpl
from diffrl_envs._specs import SPECS, spec_kwargs


@hookimpl
def register_envs(register) -> None:
    """Register every diffrl environment through the core's ``register`` callback."""
    for spec in SPECS:
        env_id, rest = spec_kwargs(spec)
        register(env_id, **rest)

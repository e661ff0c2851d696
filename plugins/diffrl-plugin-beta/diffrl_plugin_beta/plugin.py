"""Registers the ``beta`` head by import path, so listing plugins imports no torch."""

from __future__ import annotations

from diffrl_core import hookimpl
from diffrl_core.hookspecs import RegisterComponent


@hookimpl
def register_actor_heads(register: RegisterComponent) -> None:
    register("beta", "diffrl_plugin_beta.heads:BetaHead")

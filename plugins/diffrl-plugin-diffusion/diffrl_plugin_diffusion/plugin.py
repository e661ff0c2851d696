"""Registers the plugin's components by import path, so listing them imports no torch."""

from __future__ import annotations

from diffrl_core import hookimpl
from diffrl_core.hookspecs import RegisterComponent


@hookimpl
def register_actor_heads(register: RegisterComponent) -> None:
    register("diffusion", "diffrl_plugin_diffusion.heads:DiffusionHead")


@hookimpl
def register_loss_terms(register: RegisterComponent) -> None:
    register("diffusion_bc", "diffrl_plugin_diffusion.losses:DiffusionBCLoss")

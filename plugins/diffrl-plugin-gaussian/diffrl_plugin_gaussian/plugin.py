"""Registers the plugin's components by import path, so listing them imports no torch."""

from __future__ import annotations

from diffrl_core import hookimpl
from diffrl_core.hookspecs import RegisterComponent


@hookimpl
def register_actor_heads(register: RegisterComponent) -> None:
    register("gaussian", "diffrl_plugin_gaussian.heads:GaussianHead")
    register("squashed_gaussian", "diffrl_plugin_gaussian.heads:SquashedGaussianHead")
    register("diag_gaussian", "diffrl_plugin_gaussian.heads:DiagGaussianHead")


@hookimpl
def register_loss_terms(register: RegisterComponent) -> None:
    register("sac_entropy", "diffrl_plugin_gaussian.losses:SACEntropyLoss")
    register("sac_entropy_closed_form", "diffrl_plugin_gaussian.closed_form:SACEntropyClosedFormLoss")
    register("sac_entropy_detached", "diffrl_plugin_gaussian.closed_form:SACEntropyDetachedLoss")

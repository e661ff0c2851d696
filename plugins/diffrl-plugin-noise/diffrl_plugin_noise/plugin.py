"""Registers the noise post-processors by import path, so listing plugins imports no torch."""

from __future__ import annotations

from diffrl_core import hookimpl
from diffrl_core.hookspecs import RegisterComponent


@hookimpl
def register_postprocessors(register: RegisterComponent) -> None:
    register("gaussian_noise", "diffrl_plugin_noise.postprocessors:GaussianNoise")
    register("ou_noise", "diffrl_plugin_noise.postprocessors:OUNoise")

"""The plugin's hooks: each registers names -> "module:Class" strings.

Strings keep `diffrl plugins` fast: nothing here imports torch; a class is imported when a
model that uses it is composed.
"""

from __future__ import annotations

from diffrl_core import hookimpl


@hookimpl
def register_actor_heads(register):
    register("${name}_head", "${package}.heads:${Camel}Head")


@hookimpl
def register_loss_terms(register):
    register("${name}_action_l2", "${package}.losses:ActionL2")


@hookimpl
def register_postprocessors(register):
    register("${name}_scale", "${package}.postprocessors:Scale")


@hookimpl
def register_envs(register):
    register("${name}/Reach-v0", entry_point="${package}.envs:ReachEnv", max_episode_steps=50)

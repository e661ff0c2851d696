"""The built-in plugin ``diffrl_core``: registers the core's components by import path.

Targets are strings so that listing plugins never imports torch.
"""

from __future__ import annotations

from diffrl_core.hookspecs import RegisterComponent, hookimpl


@hookimpl
def register_actor_heads(register: RegisterComponent) -> None:
    register("deterministic", "diffrl_core.builtin.heads:DeterministicHead")
    register("categorical", "diffrl_core.builtin.heads:CategoricalHead")
    register("multi_categorical", "diffrl_core.builtin.heads:MultiCategoricalHead")
    register("bernoulli", "diffrl_core.builtin.heads:BernoulliHead")


@hookimpl
def register_loss_terms(register: RegisterComponent) -> None:
    register("q_value", "diffrl_core.builtin.losses:QValueLoss")
    register("bc", "diffrl_core.builtin.losses:BehaviourCloningLoss")
    register("ppo_clip", "diffrl_core.builtin.losses:PPOClipLoss")
    register("policy_gradient", "diffrl_core.builtin.losses:PolicyGradientLoss")
    register("entropy_bonus", "diffrl_core.builtin.losses:EntropyBonusLoss")


@hookimpl
def register_postprocessors(register: RegisterComponent) -> None:
    register("identity", "diffrl_core.builtin.postprocessors:Identity", aliases=("unscale",))
    register("clip", "diffrl_core.builtin.postprocessors:Clip")
    register("tanh", "diffrl_core.builtin.postprocessors:Tanh")
    register("clip_to_bounds", "diffrl_core.builtin.postprocessors:ClipToBounds")

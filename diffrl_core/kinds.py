"""The kinds of thing a plugin registers: one table, used by the registries, the hooks,
the error messages, the CLI and :mod:`diffrl_core.testing`.

Torch-free: the base classes are named by import path and imported only when a component
is resolved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: A kind's key, as in ``diffrl list KIND`` and ``diffrl plugins --json``.
KindName = Literal["envs", "actor_heads", "loss_terms", "postprocessors"]


@dataclass(frozen=True)
class Kind:
    """One kind of registration.

    :param name: the key (``"actor_heads"``), used in ``diffrl list`` and JSON output
    :param label: how a message names one of them (``"actor head"``)
    :param hook: the hook a plugin implements to register them
    :param base_class: ``"module:Class"`` every component of the kind subclasses (None for envs)
    :param config_key: the config key that names a component of this kind
    """

    name: KindName
    label: str
    hook: str
    base_class: str | None
    config_key: str


ENVS = Kind("envs", "env id", "register_envs", None, "env")
ACTOR_HEADS = Kind(
    "actor_heads", "actor head", "register_actor_heads", "diffrl_core.components:ActorHead", "policy.head"
)
LOSS_TERMS = Kind("loss_terms", "loss term", "register_loss_terms", "diffrl_core.components:LossTerm", "policy.losses")
POSTPROCESSORS = Kind(
    "postprocessors", "post-processor", "register_postprocessors", "diffrl_core.components:PostProcessor",
    "policy.postprocess",
)

#: Every kind, in the order they are listed.
KINDS: dict[str, Kind] = {kind.name: kind for kind in (ENVS, ACTOR_HEADS, LOSS_TERMS, POSTPROCESSORS)}

#: The kinds that are policy components (everything but env ids).
COMPONENT_KINDS: tuple[Kind, ...] = (ACTOR_HEADS, LOSS_TERMS, POSTPROCESSORS)


def label(kind: str) -> str:
    """``"actor_heads"`` -> ``"actor head"`` (an unknown kind is returned as it is)."""
    return KINDS[kind].label if kind in KINDS else kind

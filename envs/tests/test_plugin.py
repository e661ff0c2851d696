"""The ``diffrl`` entry point of diffrl-envs and its ``register_envs`` hook implementation."""

from __future__ import annotations

import importlib.metadata

import gymnasium
import pytest

from diffrl_envs._specs import SPECS


def test_entry_point_declared():
    eps = [ep for ep in importlib.metadata.entry_points(group="diffrl") if ep.name == "envs"]
    assert [ep.value for ep in eps] == ["diffrl_envs.plugin"]
    assert eps[0].dist is not None and eps[0].dist.name == "diffrl-envs"


def test_register_envs_hook_forwards_every_spec():
    pytest.importorskip("diffrl_core")
    from diffrl_envs import plugin

    assert hasattr(plugin.register_envs, "diffrl_impl"), "register_envs must be marked with diffrl_core.hookimpl"
    calls = []
    plugin.register_envs(register=lambda env_id, **kwargs: calls.append((env_id, kwargs)))
    assert [env_id for env_id, _ in calls] == [spec["id"] for spec in SPECS]
    for (env_id, kwargs), spec in zip(calls, SPECS, strict=True):
        assert isinstance(kwargs["entry_point"], str)
        assert kwargs == {key: value for key, value in spec.items() if key != "id"}
        # Forwarding to gymnasium.register with the same entry point is what the core does;
        # the ids are already registered by ``import diffrl_envs`` with that entry point.
        assert gymnasium.registry[env_id].entry_point == kwargs["entry_point"]
    # The callback received copies: mutating them must not alter the specs.
    calls[0][1]["kwargs"]["k"] = 99.0
    assert "k" not in SPECS[0]["kwargs"]

"""Shared fixtures of the core's tests."""

from __future__ import annotations

import importlib.metadata
import json
import sys
import textwrap
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium
import pytest

import diffrl_core.plugins


@dataclass
class FakeDistribution:
    name: str
    version: str


@dataclass
class FakeEntryPoint:
    """Quacks like :class:`importlib.metadata.EntryPoint`, with a distribution attached."""

    name: str
    value: str
    dist: FakeDistribution | None = None
    group: str = "diffrl"

    def load(self) -> Any:
        return importlib.metadata.EntryPoint(self.name, self.value, self.group).load()


#: ``rewrite(source, target, edit)``: see :func:`rewrite_saved_data`
RewriteSavedData = Callable[[Path, Path, Callable[[dict[str, Any]], None]], Path]


def _rewrite_json_entry(entry: str, source: Path, target: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """Copy the zip ``source`` to ``target``, its JSON entry ``entry`` changed by ``edit``."""
    with zipfile.ZipFile(source) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    content = json.loads(entries[entry])
    edit(content)
    entries[entry] = json.dumps(content).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return target


@pytest.fixture
def rewrite_manifest() -> RewriteSavedData:
    """Copy a model file to ``target``, its ``manifest.json`` changed by ``edit`` (damaged or edited files)."""
    return partial(_rewrite_json_entry, "manifest.json")


@pytest.fixture
def rewrite_saved_data() -> RewriteSavedData:
    """Copy a stable-baselines3 zip (``BaseAlgorithm.save(model, path)``) to ``target``, its ``data`` JSON
    changed by ``edit`` (the formats diffrl saved before its own)."""
    return partial(_rewrite_json_entry, "data")


@pytest.fixture(autouse=True)
def clean_gym_registry() -> Iterator[None]:
    """Env ids registered by a test do not leak into the next one.

    The process-wide plugins load first, so their envs are part of the baseline.
    """
    diffrl_core.plugins.load_plugins()
    before = set(gymnasium.registry)
    yield
    for env_id in set(gymnasium.registry) - before:
        del gymnasium.registry[env_id]


@pytest.fixture
def fresh_global_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make :func:`diffrl_core.load_plugins` build a new host for this test."""
    monkeypatch.setattr(diffrl_core.plugins, "_host", None)


@pytest.fixture
def make_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeEntryPoint]:
    """Write a plugin module into a temporary folder on ``sys.path``; return its entry point.

    Module names are unique per test so that ``sys.modules`` checks are meaningful.
    """
    monkeypatch.syspath_prepend(str(tmp_path))
    created: list[str] = []

    def make(name: str, source: str, dist: str | None = None, version: str = "1.0") -> FakeEntryPoint:
        module = f"fake_diffrl_plugin_{name}_{len(created)}_{abs(hash(tmp_path)) % 10**8}"
        (tmp_path / f"{module}.py").write_text("from diffrl_core import hookimpl\n" + textwrap.dedent(source))
        created.append(module)
        return FakeEntryPoint(name, module, FakeDistribution(dist or f"diffrl-plugin-{name}", version))

    yield make
    for module in created:
        sys.modules.pop(module, None)


@pytest.fixture
def fake_entry_points(monkeypatch: pytest.MonkeyPatch) -> Callable[[list[FakeEntryPoint]], None]:
    """Replace the installed ``diffrl`` entry points by the given fakes."""

    real = importlib.metadata.entry_points

    def install(entry_points: list[FakeEntryPoint]) -> None:
        def entry_points_(**params: Any) -> Any:
            if params != {"group": "diffrl"}:  # e.g. torch's own backends, imported meanwhile
                return real(**params)
            return list(entry_points)

        monkeypatch.setattr(importlib.metadata, "entry_points", entry_points_)

    return install

"""Facts about the code's shape that reviews rely on: one resolution path, defaults written once."""

from __future__ import annotations

import ast
from pathlib import Path

from diffrl_core.config import (
    DEFAULT_HEADS,
    DEFAULT_LOSSES,
    DEFAULT_POSTPROCESSOR,
    DISCRETE_HEADS,
    ENTROPY_LOSS,
    ON_POLICY_UNBOUNDED_POSTPROCESSOR,
)

CORE = Path(__file__).resolve().parents[1] / "diffrl_core"
GLOBAL_HOST = {"load_plugins", "default_host", "use_host", "_host"}


def _modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "templates" not in p.parts)


def test_nothing_under_sb3_reaches_the_global_plugin_host() -> None:
    # the host is passed in with the composition; stable-baselines3's own entry points, which cannot
    # pass one (ComposedSAC("MlpPolicy", env), ComposedSAC.load), go through diffrl_core.resolve's *_for_sb3
    for path in _modules(CORE / "sb3"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "diffrl_core.plugins", f"{path.name} imports the plugin host"
                assert not GLOBAL_HOST & {alias.name for alias in node.names}, f"{path.name} imports {node.names}"
            if isinstance(node, (ast.Name, ast.Attribute)):
                name = node.id if isinstance(node, ast.Name) else node.attr
                assert name not in GLOBAL_HOST, f"{path.name}:{node.lineno} uses {name}"


def test_each_default_component_name_is_written_once() -> None:
    defaults = {*DEFAULT_HEADS.values(), *DEFAULT_LOSSES.values(), DEFAULT_POSTPROCESSOR, *DISCRETE_HEADS.values(),
                ENTROPY_LOSS, ON_POLICY_UNBOUNDED_POSTPROCESSOR}
    # where a name may stand: the defaults table, and the built-in plugin that registers its own names
    allowed = {CORE / "config.py", CORE / "builtin" / "plugin.py"}
    found = []
    for path in _modules(CORE):
        tree = ast.parse(path.read_text())
        # dict keys ({"deterministic": ...}) and words in messages (f-strings) are not component names
        skip = {id(key) for node in ast.walk(tree) if isinstance(node, ast.Dict) for key in node.keys}
        skip |= {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in ast.walk(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in defaults and id(node) not in skip:
                found.append((path, node.lineno, node.value))
    assert [f for f in found if f[0] not in allowed] == []
    in_config = sorted(value for path, _, value in found if path == CORE / "config.py")
    assert in_config == sorted(defaults)  # each exactly once

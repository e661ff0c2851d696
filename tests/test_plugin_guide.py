"""docs/plugins.md cannot go stale: its files are extracted from the page and run.

Every ``python``, ``toml`` and ``yaml`` block of the page starts with ``# file: <path>``;
the blocks are written into a temporary folder, the plugin is registered from there, and
the page's own tests (``tests/test_mylab.py``) and config (``mylab.yaml``) are run.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import tomllib
from pathlib import Path

import pytest

import diffrl_core
from diffrl_core.config import safe_load
from diffrl_core.testing import TINY, check_composition, registered_plugin

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
EXECUTED = {"python", "toml", "yaml"}
FILES = {
    "pyproject.toml",
    "diffrl_plugin_mylab/__init__.py",
    "diffrl_plugin_mylab/plugin.py",
    "diffrl_plugin_mylab/heads.py",
    "diffrl_plugin_mylab/losses.py",
    "diffrl_plugin_mylab/postprocessors.py",
    "diffrl_plugin_mylab/envs.py",
    "tests/test_mylab.py",
    "mylab.yaml",
}


def guide_files() -> dict[str, str]:
    files: dict[str, str] = {}
    for lang, body in BLOCK.findall(GUIDE.read_text()):
        first, _, rest = body.partition("\n")
        if lang not in EXECUTED:
            assert not first.startswith("# file:"), f"a '# file:' block must be python, toml or yaml, got {lang!r}"
            continue
        assert first.startswith("# file: "), (
            f"every {lang} block of docs/plugins.md must start with '# file: PATH':\n{body[:200]}"
        )
        path = first.removeprefix("# file: ").strip()
        assert path not in files, f"two blocks of docs/plugins.md write {path}"
        files[path] = body
    return files


@pytest.fixture
def guide_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for path, text in guide_files().items():
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    plugin = importlib.import_module("diffrl_plugin_mylab.plugin")
    with registered_plugin(plugin, "mylab") as host:
        yield tmp_path, host
    for name in [
        m for m in sys.modules if m == "diffrl_plugin_mylab" or m.startswith(("diffrl_plugin_mylab.", "test_mylab"))
    ]:
        del sys.modules[name]


def test_the_guide_holds_every_file_of_its_plugin() -> None:
    assert set(guide_files()) == FILES


def test_the_guides_pyproject_declares_the_entry_point() -> None:
    pyproject = tomllib.loads(guide_files()["pyproject.toml"])
    assert pyproject["project"]["name"] == "diffrl-plugin-mylab"
    assert pyproject["project"]["entry-points"]["diffrl"] == {"mylab": "diffrl_plugin_mylab.plugin"}


@pytest.mark.slow  # the page's tests run check_plugin: training, and a fresh process for the loads
def test_the_guides_plugin_registers_its_components_and_passes_its_own_tests(guide_plugin) -> None:
    folder, host = guide_plugin
    assert host.plugins["mylab"].components == {
        "envs": ["mylab/Servo-v0"],
        "actor_heads": ["squashed_laplace"],
        "loss_terms": ["awbc"],
        "postprocessors": ["eps_uniform"],
    }
    # the page's tests, as pytest would run them
    spec = importlib.util.spec_from_file_location("test_mylab", folder / "tests" / "test_mylab.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tests = [getattr(module, name) for name in dir(module) if name.startswith("test_")]
    assert len(tests) == 3
    for test in tests:
        test()


def test_the_guides_config_composes_and_trains(guide_plugin) -> None:
    folder, _ = guide_plugin
    config = safe_load((folder / "mylab.yaml").read_text())
    assert config["policy"]["head"] == "squashed_laplace"
    # the page's config, with the tiny networks and short warm-up of the conformance checks
    config["policy"]["net_arch"] = TINY["policy"]["net_arch"]
    config["algo_kwargs"].update(TINY["algo_kwargs"])
    report = check_composition(config, fresh_process=False)
    assert report.n_updates > 0


# -- what the guide says diffrl_core.testing reports ---------------------------------------------

BROKEN = '''
import torch as th
from torch import nn

from diffrl_core import hookimpl
from diffrl_core.components import ActorHead, HeadSample


class DetachedHead(ActorHead):
    """Samples with sample() instead of rsample(): the actor loss cannot reach it."""

    stochastic = True
    has_log_prob = True
    bounded = True

    def __init__(self, latent_dim, action_dim):
        super().__init__(latent_dim, action_dim)
        self.mu = nn.Linear(latent_dim, action_dim)

    def dist(self, latent):
        return th.distributions.Normal(self.mu(latent), 0.3)

    def forward(self, latent, deterministic=False):
        d = self.dist(latent)
        return th.tanh(d.mean if deterministic else d.sample())

    def sample(self, latent):
        d = self.dist(latent)
        u = d.sample()
        return HeadSample(th.tanh(u), d.log_prob(u).sum(-1))


class UnboundedHead(DetachedHead):
    """Claims bounded = True but returns raw actions beyond [-1, 1]."""

    stochastic = False
    has_log_prob = False

    def forward(self, latent, deterministic=False):
        return 5.0 * self.mu(latent) + 3.0

    def sample(self, latent):
        return HeadSample(self(latent))


@hookimpl
def register_actor_heads(register):
    register("detached_head", DetachedHead)
    register("unbounded_head", UnboundedHead)
'''


@pytest.fixture
def broken_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "broken_diffrl_plugin_for_guide.py").write_text(BROKEN)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("broken_diffrl_plugin_for_guide")
    with registered_plugin(module, "broken") as host:
        yield host
    sys.modules.pop("broken_diffrl_plugin_for_guide", None)
    assert "detached_head" not in host.registry("actor_heads")  # gone after the block


def test_a_detached_sample_is_reported(broken_plugin) -> None:
    from diffrl_core.testing import ConformanceError, check_component

    with pytest.raises(ConformanceError, match=r"sample\(\).actions do not depend differentiably .* rsample"):
        check_component("actor_heads", "detached_head", fresh_process=False, steps=80)


def test_a_head_that_breaks_its_bounds_is_reported(broken_plugin) -> None:
    from diffrl_core.testing import ConformanceError, check_component

    with pytest.raises(ConformanceError, match=r"declares bounded = True but .* outside \[-1, 1\]"):
        check_component("actor_heads", "unbounded_head", fresh_process=False, steps=80)


def test_registering_a_taken_name_fails_and_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffrl_core import PluginLoadError

    (tmp_path / "clashing_diffrl_plugin_for_guide.py").write_text(
        "from diffrl_core import hookimpl\n\n"
        "@hookimpl\ndef register_postprocessors(register):\n"
        "    register('clip', 'diffrl_core.builtin.postprocessors:Clip')\n"
        "    register('guide_unique_clip', 'diffrl_core.builtin.postprocessors:Clip')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("clashing_diffrl_plugin_for_guide")
    with pytest.raises(PluginLoadError, match="'clip' .* already registered by built-in plugin 'diffrl_core'"):
        with registered_plugin(module, "clash"):
            pass
    host = diffrl_core.load_plugins()
    assert "clash" not in host.plugins and "guide_unique_clip" not in host.registry("postprocessors")
    assert not any(failure.name == "clash" for failure in host.errors)
    sys.modules.pop("clashing_diffrl_plugin_for_guide", None)

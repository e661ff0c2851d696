"""Plain gymnasium sees the plugins' envs through ``diffrl_core.envs`` (issue 12).

Every test runs a fresh interpreter: what is under test is what a first import does. The
third-party plugin ``acme`` is a real distribution (a ``*.dist-info`` folder on PYTHONPATH),
found through ``importlib.metadata`` like any installed one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TARGET_ENV = '''\
"""A tiny env of the third-party plugin: walk a scalar towards zero."""

from __future__ import annotations

import numpy as np
from gymnasium import Env, spaces


class TargetEnv(Env):
    observation_space = spaces.Box(-10.0, 10.0, (1,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = self.np_random.uniform(-1.0, 1.0, (1,)).astype(np.float32)
        return self.x.copy(), {}

    def step(self, action):
        self.x = np.clip(self.x + np.asarray(action, np.float32), -10.0, 10.0)
        return self.x.copy(), -float(abs(self.x[0])), False, False, {}
'''

ACME_PLUGIN = '''\
from diffrl_core import hookimpl


@hookimpl
def register_envs(register):
    register("acme/Target-v0", entry_point="acme_envs.target:TargetEnv", max_episode_steps=10)
'''


def _dist_info(site: Path, module: str, dist: str, entry_points: str) -> None:
    info = site / f"{module}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[diffrl]\n{entry_points}\n")


def _install_acme(site: Path) -> None:
    """The distribution ``acme-envs``: plugin ``acme`` registering ``acme/Target-v0``."""
    package = site / "acme_envs"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "target.py").write_text(TARGET_ENV)
    (package / "plugin.py").write_text(ACME_PLUGIN)
    _dist_info(site, "acme_envs", "acme-envs", "acme = acme_envs.plugin")


def _install_broken(site: Path) -> None:
    """The distribution ``broken-envs``: plugin ``broken``, whose import raises."""
    (site / "broken_envs_plugin.py").write_text("raise RuntimeError('the broken plugin blew up')\n")
    _dist_info(site, "broken_envs", "broken-envs", "broken = broken_envs_plugin")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    _install_acme(tmp_path)
    return tmp_path


def _python(code: str, site: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter, with all installed plugins allowed and ``site`` on PYTHONPATH."""
    env = dict(os.environ)
    env.pop("DIFFRL_LOAD_PLUGINS", None)
    env.pop("DIFFRL_DISABLE_PLUGINS", None)
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


#: makes the env ENV_ID, runs one episode with random actions, prints what happened as JSON
MAKE_AND_STEP = """
import json
import gymnasium

env = gymnasium.make(ENV_ID)
env.reset(seed=0)
steps, terminated, truncated = 0, False, False
while not (terminated or truncated):
    _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    steps += 1
print(json.dumps({"id": env.spec.id, "steps": steps, "truncated": truncated}))
"""


def _make_and_step(env_id: str, site: Path | None = None, prelude: str = "") -> dict[str, object]:
    code = prelude + MAKE_AND_STEP.replace("ENV_ID", repr(env_id))
    proc = _python(code, site)
    assert "PluginLoadWarning" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_import_then_make_a_diffrl_env() -> None:
    result = _make_and_step("diffrl/PointMassReach-v0", prelude="import diffrl_core.envs\n")
    assert result == {"id": "diffrl/PointMassReach-v0", "steps": 100, "truncated": True}


def test_make_with_the_module_prefix_and_no_import() -> None:
    result = _make_and_step("diffrl_core.envs:diffrl/QuadraticBandit-v0")
    assert result == {"id": "diffrl/QuadraticBandit-v0", "steps": 1, "truncated": True}


def test_import_then_make_a_third_party_env(site: Path) -> None:
    result = _make_and_step("acme/Target-v0", site, prelude="import diffrl_core.envs\n")
    assert result == {"id": "acme/Target-v0", "steps": 10, "truncated": True}


def test_make_a_third_party_env_with_the_module_prefix(site: Path) -> None:
    result = _make_and_step("diffrl_core.envs:acme/Target-v0", site)
    assert result == {"id": "acme/Target-v0", "steps": 10, "truncated": True}


def test_without_the_import_plain_gymnasium_does_not_know_the_ids(site: Path) -> None:
    # the symptom; `import diffrl_core` alone loads no plugin, by design
    proc = _python("""
        import gymnasium
        import diffrl_core
        try:
            gymnasium.make("acme/Target-v0")
        except gymnasium.error.NamespaceNotFound as exc:
            print("NamespaceNotFound:", exc)
    """, site)
    assert "NamespaceNotFound: Namespace acme not found" in proc.stdout


def test_the_import_is_light(site: Path) -> None:
    proc = _python("""
        import json, sys
        import gymnasium
        import diffrl_core.envs

        heavy = ["torch", "stable_baselines3", "mujoco", "acme_envs.target", "diffrl_envs.point_mass_reach",
                 "diffrl_envs.quadratic_bandit", "diffrl_envs.cart_pole_balance"]
        print(json.dumps({
            "imported": [name for name in heavy if name in sys.modules],
            "registered": diffrl_core.envs.registered(),
            "in_gymnasium": [env_id for env_id in diffrl_core.envs.registered() if env_id in gymnasium.registry],
            "all": diffrl_core.envs.__all__,
        }))
    """, site)
    result = json.loads(proc.stdout)
    assert result["imported"] == []
    assert {"acme/Target-v0", "diffrl/PointMassReach-v0", "diffrl/QuadraticBandit-v0"} <= set(result["registered"])
    assert result["in_gymnasium"] == result["registered"]
    assert result["all"] == ["PluginLoadWarning", "registered"]


def test_a_broken_plugin_warns_and_the_others_still_load(site: Path) -> None:
    _install_broken(site)
    # default warning filters: what a plain-gymnasium user sees on stderr
    proc = _python("""
        import gymnasium
        import diffrl_core.envs
        gymnasium.make("acme/Target-v0").reset(seed=0)
        gymnasium.make("diffrl/QuadraticBandit-v0").reset(seed=0)
        print("made")
    """, site)
    assert proc.stdout.strip() == "made"
    warnings = [line for line in proc.stderr.splitlines() if "PluginLoadWarning" in line]
    assert len(warnings) == 1, proc.stderr
    assert "PluginLoadWarning: diffrl plugin 'broken' failed to load: " in warnings[0]
    assert "broken_envs_plugin" in warnings[0] and "RuntimeError: the broken plugin blew up" in warnings[0]
    assert warnings[0].startswith("<string>:3: "), warnings[0]  # the importing line

    # through gymnasium's "module:" prefix: attributed to gymnasium.make's import, not to importlib
    proc = _python("""
        import gymnasium
        gymnasium.make("diffrl_core.envs:acme/Target-v0")
    """, site)
    warnings = [line for line in proc.stderr.splitlines() if "PluginLoadWarning" in line]
    assert len(warnings) == 1, proc.stderr
    assert "diffrl plugin 'broken' failed to load" in warnings[0]
    location = warnings[0].split(": PluginLoadWarning")[0]
    assert Path(location.rsplit(":", 1)[0]).parts[-3:] == ("gymnasium", "envs", "registration.py"), location

    # recorded: one warning of the module's category, for the broken plugin only
    proc = _python("""
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import diffrl_core.envs
        print(repr([(w.category.__name__, str(w.message).split(":")[0]) for w in caught]))
        print(issubclass(diffrl_core.envs.PluginLoadWarning, UserWarning))
    """, site)
    assert proc.stdout.splitlines() == ["[('PluginLoadWarning', \"diffrl plugin 'broken' failed to load\")]", "True"]

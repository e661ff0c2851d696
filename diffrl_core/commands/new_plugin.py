"""``diffrl new-plugin NAME``: write a ready-to-install plugin distribution from a template.

The distribution ``diffrl-plugin-<name>`` gets a ``pyproject.toml`` with the ``diffrl``
entry point, a package ``diffrl_plugin_<name>`` registering one component of each kind
(an actor head, a loss term, a post-processor, an env) by import path, a config that uses
them by name, and tests built on :mod:`diffrl_core.testing` that pass as generated. See
``docs/plugins.md`` for what each part means.
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from diffrl_core.errors import DiffRLError

NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


def plugin_files(name: str) -> dict[str, str]:
    """The files of the plugin distribution ``diffrl-plugin-<name>``: relative path -> text.

    :param name: the plugin's name, lowercase snake_case (the entry-point name, and the prefix of
        its component names and the namespace of its env ids)
    """
    dist = f"diffrl-plugin-{name.replace('_', '-')}"
    package = f"diffrl_plugin_{name}"
    camel = "".join(part.capitalize() for part in name.split("_"))
    values = {"name": name, "dist": dist, "package": package, "Camel": camel}
    return {path.format(**values): _fill(text, values) for path, text in _TEMPLATES.items()}


def _fill(text: str, values: dict[str, str]) -> str:
    # "{{key}}" placeholders, so that the templates' own braces (dicts, f-strings) stay as they are
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text.lstrip("\n")


def create_plugin(name: str, directory: str | Path = ".") -> Path:
    """Write the plugin distribution into ``directory/diffrl-plugin-<name>``; return that folder.

    :raises DiffRLError: for a name that is not lowercase snake_case, or a folder that exists
    """
    if not NAME.match(name):
        raise DiffRLError(
            f"plugin name {name!r} is not lowercase snake_case: start with a letter, then letters, digits and "
            "single underscores (e.g. 'my_heads'); it becomes the entry-point name, the package "
            f"diffrl_plugin_<name> and the distribution diffrl-plugin-<name>"
        )
    root = Path(directory) / f"diffrl-plugin-{name.replace('_', '-')}"
    if root.exists():
        raise DiffRLError(f"{str(root)!r} already exists; diffrl new-plugin never overwrites files (pick another --dir or name)")
    files = plugin_files(name)
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@click.command("new-plugin")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Folder in which the distribution's folder diffrl-plugin-<name> is created.")
def new_plugin(name: str, directory: Path) -> None:
    """Create the plugin distribution diffrl-plugin-NAME, ready to pip install.

    NAME is lowercase snake_case. The distribution registers, under the entry point NAME in
    the `diffrl` group, an actor head NAME_head, a loss term NAME_action_l2, a post-processor
    NAME_scale and an env NAME/Reach-v0, and has tests that pass as generated:

    \b
        diffrl new-plugin my_heads && cd diffrl-plugin-my-heads
        pip install -e . && python -m pytest
        diffrl train examples/my_heads.yaml

    See docs/plugins.md ("Writing a plugin").
    """
    root = create_plugin(name, directory)
    click.echo(f"Created {root}/ (plugin {name!r}, distribution {root.name}, package diffrl_plugin_{name}).")
    click.echo(f"Next: pip install -e {root} && python -m pytest {root}/tests && diffrl train {root}/examples/{name}.yaml")


_TEMPLATES: dict[str, str] = {}

_TEMPLATES["pyproject.toml"] = '''
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{{dist}}"
version = "0.1.0"
description = "A diffrl plugin: an actor head, a loss term, a post-processor and an env."
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["diffrl-core", "torch>=2.3", "gymnasium>=1.0", "numpy>=1.26"]

[project.optional-dependencies]
test = ["pytest>=8"]

# diffrl finds the plugin through this entry point: the name ({{name}}) is the plugin's name
# (DIFFRL_LOAD_PLUGINS / DIFFRL_DISABLE_PLUGINS use it), the value the module with the hooks.
[project.entry-points.diffrl]
{{name}} = "{{package}}.plugin"

[tool.setuptools.packages.find]
include = ["{{package}}*"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

_TEMPLATES["README.md"] = '''
# {{dist}}

A diffrl plugin (entry point `{{name}}` in the `diffrl` group):

| kind | name | what |
| --- | --- | --- |
| actor head | `{{name}}_head` | a linear layer and tanh (deterministic; kwarg `init_gain`) |
| loss term | `{{name}}_action_l2` | `scale * mean(a^2)` on the policy's normalized actions (kwarg `scale`) |
| post-processor | `{{name}}_scale` | `clip(gain * raw, -1, 1)` (kwarg `gain`) |
| env | `{{name}}/Reach-v0` | move a point on a line to a target |

    pip install -e .                  # then `diffrl plugins` lists {{name}}
    python -m pytest                  # the conformance checks of diffrl_core.testing
    diffrl train examples/{{name}}.yaml

Component names are what configs and saved models store: renaming one breaks saved models.
'''

_TEMPLATES["{package}/__init__.py"] = '''
"""{{dist}}: a diffrl plugin."""

__version__ = "0.1.0"
'''

_TEMPLATES["{package}/plugin.py"] = '''
"""The plugin's hooks: each registers names -> "module:Class" strings.

Strings keep `diffrl plugins` fast: nothing here imports torch; a class is imported when a
model that uses it is composed.
"""

from __future__ import annotations

from diffrl_core import hookimpl


@hookimpl
def register_actor_heads(register):
    register("{{name}}_head", "{{package}}.heads:{{Camel}}Head")


@hookimpl
def register_loss_terms(register):
    register("{{name}}_action_l2", "{{package}}.losses:ActionL2")


@hookimpl
def register_postprocessors(register):
    register("{{name}}_scale", "{{package}}.postprocessors:Scale")


@hookimpl
def register_envs(register):
    register("{{name}}/Reach-v0", entry_point="{{package}}.envs:ReachEnv", max_episode_steps=50)
'''

_TEMPLATES["{package}/heads.py"] = '''
"""The actor head {{name}}_head: latent features -> raw actions."""

from __future__ import annotations

import torch as th
from torch import nn

from diffrl_core.components import ActorHead


class {{Camel}}Head(ActorHead):
    """A linear layer and tanh: TD3's actor output, deterministic.

    To make it stochastic, set ``stochastic = True`` and ``has_log_prob = True``, sample in
    ``forward(deterministic=False)`` and override ``sample(latent)`` to return a
    ``HeadSample(actions, log_prob)`` drawn with ``rsample`` (see docs/plugins.md).

    :param latent_dim: size of the latent features (given by diffrl)
    :param action_dim: size of the action (given by diffrl)
    :param init_gain: scale of the initial output weights (``policy.head_kwargs.init_gain``)
    """

    stochastic = False
    has_log_prob = False
    bounded = True  # tanh keeps raw actions in [-1, 1]: the `unscale` post-processor fits

    def __init__(self, latent_dim: int, action_dim: int, init_gain: float = 1.0) -> None:
        super().__init__(latent_dim, action_dim)
        self.linear = nn.Linear(latent_dim, action_dim)
        with th.no_grad():
            self.linear.weight.mul_(init_gain)

    def forward(self, latent: th.Tensor, deterministic: bool = False) -> th.Tensor:
        return th.tanh(self.linear(latent))
'''

_TEMPLATES["{package}/losses.py"] = '''
"""The actor loss term {{name}}_action_l2."""

from __future__ import annotations

from diffrl_core.components import ActorLossContext, LossOutput, LossTerm


class ActionL2(LossTerm):
    """``scale * mean(a^2)``: penalizes large (normalized) actions.

    Add it after the algorithm's own term, e.g. ``losses: [{name: q_value}, {name:
    {{name}}_action_l2, weight: 0.1}]``.

    :param scale: multiplies the penalty (``policy.losses[i].kwargs.scale``)
    """

    requires = frozenset()  # needs neither a log-prob nor SAC's alpha: fits any head and algo

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def __call__(self, ctx: ActorLossContext) -> LossOutput:
        penalty = self.scale * (ctx.actions**2).mean()
        # the scalar loss, and extra values logged as train/{{name}}_action_l2/<key>
        return penalty, {"mean_abs_action": ctx.actions.abs().mean().item()}
'''

_TEMPLATES["{package}/postprocessors.py"] = '''
"""The post-processor {{name}}_scale: raw actions -> normalized actions in [-1, 1]."""

from __future__ import annotations

import torch as th
from gymnasium import spaces

from diffrl_core.components import PostProcessor


class Scale(PostProcessor):
    """``clip(gain * raw, -1, 1)``.

    The result is what the critic sees and the replay buffer stores; the env gets it
    rescaled to its action bounds.

    :param action_space: the env's action space (given by diffrl)
    :param gain: multiplies the raw action (``policy.postprocess_kwargs.gain``)
    """

    accepts_unbounded = True  # it clips, so unbounded heads fit too

    def __init__(self, action_space: spaces.Box, gain: float = 1.0) -> None:
        super().__init__(action_space)
        self.gain = gain

    def forward(self, raw_actions: th.Tensor, explore: bool = False) -> th.Tensor:
        return (self.gain * raw_actions).clamp(-1.0, 1.0)
'''

_TEMPLATES["{package}/envs.py"] = '''
"""The env {{name}}/Reach-v0 (numpy only: making it imports no torch)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class ReachEnv(gym.Env):
    """Move a point on ``[-1, 1]`` to a random target; reward ``-|position - target|``.

    Observation: ``(position, target)``; action: a velocity in ``[-0.1, 0.1]``.
    """

    metadata = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-0.1, 0.1, shape=(1,), dtype=np.float32)
        self._position = 0.0
        self._target = 0.0

    def _obs(self) -> np.ndarray:
        return np.array([self._position, self._target], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._position, self._target = (float(x) for x in self.np_random.uniform(-1.0, 1.0, size=2))
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        velocity = float(np.clip(action, self.action_space.low, self.action_space.high)[0])
        self._position = float(np.clip(self._position + velocity, -1.0, 1.0))
        reward = -abs(self._position - self._target)
        return self._obs(), reward, False, False, {}
'''

_TEMPLATES["examples/{name}.yaml"] = '''
# Uses every component of the plugin by name:  diffrl train examples/{{name}}.yaml
env: {{name}}/Reach-v0
algo: td3
policy:
  net_arch: [64, 64]
  head: {{name}}_head
  losses:
    - {name: q_value}
    - {name: {{name}}_action_l2, weight: 0.1, kwargs: {scale: 1.0}}
  postprocess: {{name}}_scale
  postprocess_kwargs: {gain: 1.0}
algo_kwargs: {learning_starts: 500, batch_size: 64}
action_noise: {type: normal, sigma: 0.1}
total_timesteps: 5000
seed: 0
eval: {freq: 1000, n_episodes: 5}
'''

_TEMPLATES["tests/test_{name}.py"] = '''
"""The plugin's tests: it is loaded, and each component passes diffrl's conformance checks.

Install the plugin first (pip install -e .): diffrl finds it through its entry point.
"""

from __future__ import annotations

import gymnasium
import pytest

import diffrl_core
from diffrl_core.testing import check_composition, check_plugin

PLUGIN = "{{name}}"


@pytest.fixture(scope="module", autouse=True)
def plugin_is_installed() -> None:
    host = diffrl_core.load_plugins()
    if PLUGIN not in host.plugins:
        errors = [e["error"] for e in host.report()["errors"] if e["name"] == PLUGIN]
        pytest.fail(f"plugin {PLUGIN!r} is not loaded: {errors or 'not installed? run: pip install -e .'}")


def test_the_plugin_registers_one_component_of_each_kind() -> None:
    components = diffrl_core.load_plugins().plugins[PLUGIN].components
    assert components == {
        "envs": ["{{name}}/Reach-v0"],
        "actor_heads": ["{{name}}_head"],
        "loss_terms": ["{{name}}_action_l2"],
        "postprocessors": ["{{name}}_scale"],
    }


def test_the_env_steps() -> None:
    env = gymnasium.make("{{name}}/Reach-v0")
    obs, _ = env.reset(seed=0)
    obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert obs.shape == (2,) and reward <= 0.0


def test_every_component_conforms() -> None:
    # each component composed with partners that fit it: trained briefly, predict in bounds,
    # saved, and loaded in a fresh process with the same actions
    reports = check_plugin(PLUGIN)
    assert len(reports) == 4


def test_the_components_work_together() -> None:
    check_composition({
        "env": "{{name}}/Reach-v0",
        "algo": "td3",
        "policy": {
            "head": "{{name}}_head",
            "head_kwargs": {"init_gain": 0.5},
            "losses": [{"name": "q_value"}, {"name": "{{name}}_action_l2", "weight": 0.1, "kwargs": {"scale": 2.0}}],
            "postprocess": "{{name}}_scale",
            "postprocess_kwargs": {"gain": 1.5},
        },
    }, fresh_process=False)
'''

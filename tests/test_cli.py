"""The ``diffrl`` command as a user runs it, import costs, and a real pip install of a plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HELLO = REPO / "tests" / "fixtures" / "diffrl-plugin-hello"

# Prints which heavy modules a command imported, when the process exits.
WATCH = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('IMPORTED', sorted(m for m in ('torch', 'stable_baselines3') if m in sys.modules), "
    "file=sys.stderr))\n"
)


def run(*args: str, python: str = sys.executable, env: dict | None = None) -> subprocess.CompletedProcess:
    code = WATCH + "from diffrl_core.cli import main\nsys.argv = ['diffrl', *sys.argv[1:]]\nmain()\n"
    return subprocess.run(
        [python, "-c", code, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


def imported(result: subprocess.CompletedProcess) -> list[str]:
    line = next(line for line in result.stderr.splitlines() if line.startswith("IMPORTED"))
    return json.loads(line.removeprefix("IMPORTED ").replace("'", '"'))


def test_plugins_json_lists_every_repo_distribution_without_torch() -> None:
    result = run("plugins", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["errors"] == []
    plugins = {p["name"]: p for p in report["plugins"]}
    assert plugins["diffrl_core"]["builtin"] is True and plugins["diffrl_core"]["version"] is None
    assert plugins["gaussian"]["version"] == "0.1.0" and plugins["gaussian"]["builtin"] is False
    assert "squashed_gaussian" in plugins["gaussian"]["components"]["actor_heads"]
    assert "diffrl/QuadraticBandit-v0" in plugins["envs"]["components"]["envs"]
    assert set(plugins["diffrl_core"]["components"]) == {"envs", "actor_heads", "loss_terms", "postprocessors"}
    assert imported(result) == []


def test_plugins_table_is_readable() -> None:
    result = run("plugins")
    assert result.returncode == 0
    assert "diffrl_core" in result.stdout and "built-in" in result.stdout and "squashed_gaussian" in result.stdout


def test_list_prints_name_tab_plugin() -> None:
    result = run("list", "actor_heads")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert "deterministic\tdiffrl_core" in lines and "squashed_gaussian\tgaussian" in lines
    assert all(len(line.split("\t")) == 2 for line in lines)
    assert imported(result) == []


def test_list_unknown_kind_is_a_usage_error() -> None:
    result = run("list", "heads")
    assert result.returncode == 2
    assert "actor_heads" in result.stderr and "Traceback" not in result.stderr


def test_load_and_disable_lists_apply_to_the_cli() -> None:
    result = run("plugins", "--json", env={"DIFFRL_LOAD_PLUGINS": ""})
    assert [p["name"] for p in json.loads(result.stdout)["plugins"]] == ["diffrl_core"]
    result = run("plugins", "--json", env={"DIFFRL_DISABLE_PLUGINS": "gaussian"})
    names = [p["name"] for p in json.loads(result.stdout)["plugins"]]
    assert "gaussian" not in names and "envs" in names


def test_every_subcommand_has_help() -> None:
    from click.testing import CliRunner

    from diffrl_core.cli import main

    for name in main.commands:
        result = CliRunner().invoke(main, [name, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output, name


def test_import_diffrl_core_loads_nothing_heavy() -> None:
    code = (
        "import sys, diffrl_core, diffrl_core.plugins as p\n"
        "print(sorted(m for m in ('torch', 'stable_baselines3', 'diffrl_plugin_gaussian', 'diffrl_envs') "
        "if m in sys.modules), p._host)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[] None"


def test_importtime_shows_no_torch() -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import diffrl_core"], capture_output=True, text=True, check=True
    )
    modules = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert "diffrl_core" in modules and "torch" not in modules and "stable_baselines3" not in modules


def test_making_a_registered_env_imports_no_torch() -> None:
    code = WATCH + (
        "import diffrl_core, gymnasium\n"
        "diffrl_core.load_plugins()\n"
        "assert 'diffrl_envs.quadratic_bandit' not in sys.modules\n"
        "env = gymnasium.make('diffrl/QuadraticBandit-v0')\n"
        "env.reset(seed=0); env.step(env.action_space.sample())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert imported(result) == []


@pytest.mark.slow
def test_real_pip_install_of_a_plugin_distribution(tmp_path: Path) -> None:
    """pip installs diffrl-core and a plugin into a fresh venv; the plugin then shows up.

    Heavy dependencies (torch...) are taken from the test environment through a .pth file
    rather than installed again; diffrl-core and the plugin are built and installed by pip.
    """
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    venv_site = subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
    ).strip()
    outer_site = sysconfig.get_paths()["purelib"]
    Path(venv_site, "zz_outer_site.pth").write_text(f"import site; site.addsitedir({outer_site!r})\n")

    before = run("plugins", "--json", python=python)
    assert "hello" not in {p["name"] for p in json.loads(before.stdout)["plugins"]}

    install = subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--quiet", str(REPO), str(HELLO)],
        capture_output=True, text=True,
    )
    assert install.returncode == 0, install.stderr
    location = subprocess.check_output(
        [python, "-c", "import diffrl_plugin_hello; print(diffrl_plugin_hello.__file__)"], text=True
    )
    assert location.startswith(venv_site)

    result = run("plugins", "--json", python=python)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["errors"] == []
    hello = next(p for p in report["plugins"] if p["name"] == "hello")
    assert hello["version"] == "0.3.0" and hello["distribution"] == "diffrl-plugin-hello"
    assert hello["components"]["postprocessors"] == ["hello_clip"]
    assert hello["components"]["envs"] == ["hello/Pendulum-v0"]
    assert imported(result) == []

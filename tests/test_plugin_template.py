"""``diffrl new-plugin``: the generated distribution installs with pip and works by name.

The install test makes a fresh virtual environment that sees the test environment's
packages (torch, stable-baselines3, ...) through a .pth file, except this repository's
plugin distributions, which pip then installs into it (``--no-deps``) together with
diffrl-core and the generated plugin. There the generated plugin is listed by ``diffrl
plugins --json``, its own tests pass, ``diffrl train`` trains a config that uses its
components by name, and after ``pip uninstall`` loading the models that used a plugin
fails naming the component and the distribution.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from diffrl_core.cli import main
from diffrl_core.commands.new_plugin import create_plugin, plugin_files

REPO = Path(__file__).resolve().parents[1]
PLUGINS = REPO / "plugins"
NAME = "tmpl_lab"
DIST = "diffrl-plugin-tmpl-lab"


def test_new_plugin_writes_a_distribution(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["new-plugin", "my_heads", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    root = tmp_path / "diffrl-plugin-my-heads"
    files = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert files == {
        "pyproject.toml", "README.md", "examples/my_heads.yaml", "tests/test_my_heads.py",
        *(
            f"diffrl_plugin_my_heads/{m}.py"
            for m in ("__init__", "plugin", "heads", "losses", "postprocessors", "envs")
        ),
    }
    pyproject = (root / "pyproject.toml").read_text()
    assert 'name = "diffrl-plugin-my-heads"' in pyproject
    assert '[project.entry-points.diffrl]\nmy_heads = "diffrl_plugin_my_heads.plugin"' in pyproject
    for text in plugin_files("my_heads").values():
        assert not re.search(r"\{\{\w+\}\}", text)  # every placeholder filled
    for path in root.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")


@pytest.mark.parametrize("name", ["MyLab", "my-lab", "1lab", "my__lab", "_lab", "lab_", ""])
def test_new_plugin_refuses_names_that_are_not_snake_case(tmp_path: Path, name: str) -> None:
    result = CliRunner().invoke(main, ["new-plugin", name, "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "snake_case" in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_new_plugin_never_overwrites(tmp_path: Path) -> None:
    create_plugin("lab", tmp_path)
    (tmp_path / "diffrl-plugin-lab" / "README.md").write_text("mine")
    result = CliRunner().invoke(main, ["new-plugin", "lab", "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "already exists" in result.output
    assert (tmp_path / "diffrl-plugin-lab" / "README.md").read_text() == "mine"


# -- a real install ----------------------------------------------------------------------------


class Venv:
    def __init__(self, root: Path, cwd: Path) -> None:
        self.root, self.cwd = root, cwd
        self.bin = root / "bin"

    def run(self, *args: str, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        for var in ("PYTHONPATH", "DIFFRL_LOAD_PLUGINS", "DIFFRL_DISABLE_PLUGINS"):
            env.pop(var, None)
        result = subprocess.run([str(self.bin / args[0]), *args[1:]], capture_output=True, text=True, cwd=self.cwd,
                                env=env, timeout=timeout)
        if check:
            assert result.returncode == 0, (
                f"{' '.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def plugins(self, command: tuple[str, ...] = ("diffrl",)) -> dict[str, dict]:
        report = json.loads(self.run(*command, "plugins", "--json").stdout)
        assert report["errors"] == [], report["errors"]
        return {p["name"]: p for p in report["plugins"]}


def _outer_site_view(view: Path, hide: tuple[str, ...]) -> None:
    """Links to the test environment's site-packages, without the distributions named in ``hide``."""
    view.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not any(h in entry.name for h in hide):
            (view / entry.name).symlink_to(entry)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    tmp = tmp_path_factory.mktemp("template")
    plugin = create_plugin(NAME, tmp)
    root = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    venv = Venv(root, tmp)
    site = subprocess.check_output(
        [str(venv.bin / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
    ).strip()
    # the plugins of this repo may be installed (editable) in the test environment: hide them, so
    # that the fresh venv has them only as pip installs them there (and uninstalls them)
    _outer_site_view(tmp / "outer-site", hide=("diffrl_plugin_beta", "diffrl_plugin_noise"))
    Path(site, "zz_outer_site.pth").write_text(f"import site; site.addsitedir({str(tmp / 'outer-site')!r})\n")
    assert "beta" not in venv.plugins(("python", "-m", "diffrl_core.cli"))  # hidden; no `diffrl` script here yet
    # pip comes from the outer site; setuptools too (--no-build-isolation)
    venv.run("python", "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
             str(REPO), str(plugin), str(PLUGINS / "diffrl-plugin-beta"), str(PLUGINS / "diffrl-plugin-noise"))
    location = venv.run(
        "python", "-c", f"import diffrl_plugin_{NAME}, diffrl_plugin_beta as b; print(b.__file__)"
    ).stdout
    assert location.startswith(site)
    venv.plugin = plugin  # type: ignore[attr-defined]
    return venv


@pytest.mark.slow
def test_the_installed_plugin_is_listed(venv: Venv) -> None:
    plugins = venv.plugins()
    mine = plugins[NAME]
    assert mine["distribution"] == DIST and mine["version"] == "0.1.0" and mine["builtin"] is False
    assert mine["components"] == {
        "envs": [f"{NAME}/Reach-v0"], "actor_heads": [f"{NAME}_head"],
        "loss_terms": [f"{NAME}_action_l2"], "postprocessors": [f"{NAME}_scale"],
    }
    assert plugins["beta"]["distribution"] == "diffrl-plugin-beta"
    assert plugins["noise"]["components"]["postprocessors"] == ["gaussian_noise", "ou_noise"]


@pytest.mark.slow
def test_a_non_editable_install_ships_the_templates(venv: Venv, tmp_path: Path) -> None:
    # pip installed diffrl-core from a wheel: the templates are package data, read with importlib.resources
    venv.run("diffrl", "new-plugin", "shipped", "--dir", str(tmp_path / "installed"))
    installed = tmp_path / "installed" / "diffrl-plugin-shipped"
    here = create_plugin("shipped", tmp_path / "here")
    files = sorted(p.relative_to(here) for p in here.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(installed) for p in installed.rglob("*") if p.is_file())
    for path in files:
        assert (installed / path).read_bytes() == (here / path).read_bytes(), path


@pytest.mark.slow
def test_the_generated_tests_pass_as_generated(venv: Venv) -> None:
    result = venv.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", str(venv.plugin / "tests"), check=False)  # type: ignore[attr-defined]
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "4 passed" in result.stdout


@pytest.mark.slow
def test_train_uses_its_components_and_uninstalling_breaks_loading_by_name(venv: Venv, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    config = venv.plugin / "examples" / f"{NAME}.yaml"  # type: ignore[attr-defined]
    venv.run("diffrl", "train", str(config), "--run-dir", str(run_dir), "--threads", "1",
             "--set", "total_timesteps=300", "--set", "algo_kwargs.learning_starts=100",
             "--set", "policy.net_arch=[16]", "--set", "eval.freq=0", "--set", "eval.n_episodes=2",
             "--set", "checkpoint.freq=0", "--set", "logging.tensorboard=false")
    assert (run_dir / "model.zip").is_file()
    saved = json.loads(zipfile.ZipFile(run_dir / "model.zip").read("manifest.json"))["components"]
    assert saved["head"]["name"] == f"{NAME}_head" and saved["postprocess"]["name"] == f"{NAME}_scale"
    assert [spec["name"] for spec in saved["losses"]] == ["q_value", f"{NAME}_action_l2"]
    assert saved["provenance"]["actor_heads"][f"{NAME}_head"]["distribution"] == DIST

    # a model with the beta head, saved here (where diffrl-plugin-beta is installed as well)
    from diffrl_core import make_model

    beta = make_model({"env": "Pendulum-v1", "algo": "sac", "policy": {"net_arch": [8], "head": "beta"}})
    beta.save(tmp_path / "beta.zip")

    venv.run("python", "-m", "pip", "uninstall", "--yes", "--quiet", DIST, "diffrl-plugin-beta")
    plugins = venv.plugins()
    assert NAME not in plugins and "beta" not in plugins and "noise" in plugins
    script = (
        "import json, sys\n"
        "from diffrl_core import load_model, MissingComponentError\n"
        "out = []\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        load_model(path)\n"
        "        out.append('loaded')\n"
        "    except MissingComponentError as exc:\n"
        "        out.append(str(exc))\n"
        "print(json.dumps(out))\n"
    )
    result = venv.run("python", "-c", script, str(run_dir / "model.zip"), str(tmp_path / "beta.zip"))
    mine, beta_error = json.loads(result.stdout.splitlines()[-1])
    assert f"actor head '{NAME}_head'" in mine and f"pip install {DIST}" in mine
    assert "actor head 'beta'" in beta_error and "pip install diffrl-plugin-beta" in beta_error

"""Real installs: a plugin installed by its distribution name pulls in the core it declares.

The core, ``envs/`` and every plugin under ``plugins/`` are built into one wheel folder (from
copies of their source trees, so that setuptools' ``build/`` and ``*.egg-info`` land in a
temporary folder, and no stale ``build/lib`` of the checkout ends up in a wheel). A fresh
virtual environment sees the test environment's packages (torch, stable-baselines3, ...)
through a .pth file, except every distribution of this repository; there ``pip install
--no-index --find-links WHEELS diffrl-plugin-beta`` resolves ``diffrl-core`` from the wheel
folder, ``diffrl plugins`` lists the plugin and ``diffrl train`` trains with its head. Without
a core in the folder, or with one outside the declared range, pip refuses to install the plugin.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from diffrl_core.commands.new_plugin import plugin_files

REPO = Path(__file__).resolve().parents[1]
PLUGIN_DIRS = sorted(p for p in (REPO / "plugins").iterdir() if (p / "pyproject.toml").is_file())
CORE_RANGE = SpecifierSet(">=0.1,<0.2")
# what a build writes into a source tree, and what a copy of the checkout does not need
LITTER = ("build", "dist", "*.egg-info", "__pycache__")
NOT_SOURCE = (*LITTER, ".git", ".mypy_cache", ".ruff_cache", ".pytest_cache", "runs")


def _clean_env() -> dict[str, str]:
    """The environment of pip and of the venv's commands: no pip configuration, no PYTHONPATH.

    The machine's pip configuration (``PIP_FIND_LINKS``, index URLs, config files) would add
    other wheel folders to ``--no-index --find-links WHEELS``.
    """
    drop = ("PYTHONPATH", "DIFFRL_LOAD_PLUGINS", "DIFFRL_DISABLE_PLUGINS")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k not in drop}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", OMP_NUM_THREADS="1")
    return env


def _run(args: list[str], cwd: Path, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Run ``args`` in ``cwd`` with :func:`_clean_env`; with ``check``, fail the test on a non-zero exit."""
    result = subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=_clean_env(), timeout=timeout)
    if check:
        assert result.returncode == 0, (
            f"{' '.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def _is_ours(entry: Path) -> bool:
    """Whether a site-packages entry belongs to one of this repository's distributions.

    Packages, ``.dist-info``, ``.egg-link``, ``__editable__`` finders and .pth files are named
    after the distribution; a .pth file of another name counts when it points into the checkout.
    """
    if "diffrl" in entry.name.lower():
        return True
    if entry.suffix == ".pth" and entry.is_file():
        text = entry.read_text(errors="replace")
        return "diffrl" in text.lower() or str(REPO) in text
    return False


@pytest.fixture(scope="module")
def outer_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Links to the test environment's site-packages, without this repository's distributions."""
    view = tmp_path_factory.mktemp("outer-site")
    for folder in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}:
        for entry in Path(folder).iterdir():
            if not _is_ours(entry) and not (view / entry.name).exists():
                (view / entry.name).symlink_to(entry)
    return view


class Venv:
    """A fresh virtual environment whose Python also sees ``outer_site`` (after its own site-packages)."""

    def __init__(self, root: Path, outer_site: Path) -> None:
        self.root, self.bin, self.cwd = root, root / "bin", root.parent
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
        self.site = Path(self.python("-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
        # pip itself (and setuptools) come from the outer site as well
        (self.site / "zz_outer_site.pth").write_text(f"import site; site.addsitedir({str(outer_site)!r})\n")

    def run(self, *args: str, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess[str]:
        """Run one of the venv's scripts (``python``, ``diffrl``) outside the checkout."""
        return _run([str(self.bin / args[0]), *args[1:]], self.cwd, check=check, timeout=timeout)

    def python(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the venv's ``python``."""
        return self.run("python", *args, check=check)

    def pip_install(self, wheels: Path, *requirements: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``pip install --no-index --find-links wheels REQUIREMENTS``: only the folder and what is installed."""
        return self.python("-m", "pip", "install", "--no-index", "--find-links", str(wheels), *requirements,
                           check=check)


def _build_wheels(sources: list[Path], out: Path) -> list[Path]:
    """``pip wheel --no-deps --no-build-isolation`` of the source trees into ``out``; return the new wheels."""
    before = set(out.glob("*.whl"))
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out),
          *map(str, sources)], out)
    return sorted(set(out.glob("*.whl")) - before)


def _litter(sources: list[Path]) -> set[Path]:
    """The build outputs at the top of each source tree."""
    return {path for src in sources for pattern in LITTER for path in src.glob(pattern)}


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the checkout (core, envs, plugins) without build outputs and caches."""
    copy = tmp_path_factory.mktemp("src") / "diffrl"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(*NOT_SOURCE), symlinks=True)
    return copy


@pytest.fixture(scope="module")
def wheels(source_copy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One wheel folder: diffrl-core, diffrl-envs and every plugin, built from the copy."""
    out = tmp_path_factory.mktemp("wheels")
    checkout = [REPO, REPO / "envs", *PLUGIN_DIRS]
    litter = _litter(checkout)
    built = _build_wheels([source_copy, source_copy / "envs", *(source_copy / "plugins" / p.name for p in PLUGIN_DIRS)],
                          out)
    assert len(built) == 2 + len(PLUGIN_DIRS), built
    assert _litter(checkout) == litter, "building the wheels wrote into the checkout"
    return out


def _wheel(wheels: Path, dist: str) -> Path:
    """The one wheel of distribution ``dist`` in the folder."""
    found = [w for w in wheels.glob("*.whl") if canonicalize_name(w.name.split("-")[0]) == canonicalize_name(dist)]
    assert len(found) == 1, (dist, sorted(w.name for w in wheels.iterdir()))
    return found[0]


def _requires(wheel: Path) -> list[Requirement]:
    """The ``Requires-Dist`` entries of a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(name).decode())
    return [Requirement(r) for r in metadata.get_all("Requires-Dist") or []]


def _dist_name(plugin_dir: Path) -> str:
    """The distribution name of a source tree, from its pyproject.toml."""
    return tomllib.loads((plugin_dir / "pyproject.toml").read_text())["project"]["name"]


@pytest.fixture(scope="module")
def installed(wheels: Path, outer_site: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A fresh venv where ``pip install diffrl-plugin-beta`` (by name, from the wheel folder) succeeded."""
    venv = Venv(tmp_path_factory.mktemp("installed") / "venv", outer_site)
    hidden = venv.python("-c", "import importlib.util as u; print(u.find_spec('diffrl_core'))").stdout.strip()
    assert hidden == "None", f"the fresh venv still sees the test environment's diffrl_core: {hidden}"
    result = venv.pip_install(wheels, "diffrl-plugin-beta")
    assert re.search(r"Successfully installed diffrl-core-0\.1\.0 diffrl-plugin-beta-0\.1\.0\s*$", result.stdout), (
        result.stdout
    )
    return venv


# -- the declared range ------------------------------------------------------------------------


def test_the_sources_declare_the_core_range() -> None:
    """Every plugin's pyproject, the template's, and envs' ``diffrl`` extra declare ``diffrl-core>=0.1,<0.2``."""
    for plugin_dir in PLUGIN_DIRS:
        project = tomllib.loads((plugin_dir / "pyproject.toml").read_text())["project"]
        cores = [Requirement(r) for r in project["dependencies"] if Requirement(r).name == "diffrl-core"]
        assert [r.specifier for r in cores] == [CORE_RANGE], plugin_dir.name
    generated = tomllib.loads(plugin_files("lab")["pyproject.toml"])["project"]
    assert "diffrl-core>=0.1,<0.2" in generated["dependencies"]
    envs = tomllib.loads((REPO / "envs" / "pyproject.toml").read_text())["project"]
    assert not any(Requirement(r).name == "diffrl-core" for r in envs["dependencies"])  # a plain gymnasium package
    assert envs["optional-dependencies"]["diffrl"] == ["diffrl-core>=0.1,<0.2"]


@pytest.mark.slow
def test_every_plugin_wheel_requires_the_core_range(wheels: Path) -> None:
    """The built METADATA: ``Requires-Dist: diffrl-core<0.2,>=0.1`` (envs: only with its ``diffrl`` extra)."""
    for plugin_dir in PLUGIN_DIRS:
        cores = [r for r in _requires(_wheel(wheels, _dist_name(plugin_dir))) if r.name == "diffrl-core"]
        assert len(cores) == 1 and cores[0].specifier == CORE_RANGE and cores[0].marker is None, (plugin_dir, cores)
    cores = [r for r in _requires(_wheel(wheels, "diffrl-envs")) if r.name == "diffrl-core"]
    assert len(cores) == 1 and cores[0].specifier == CORE_RANGE, cores
    assert cores[0].marker is not None and cores[0].marker.evaluate({"extra": "diffrl"})
    assert not cores[0].marker.evaluate({"extra": ""})


# -- an install by name ------------------------------------------------------------------------


@pytest.mark.slow
def test_pip_installs_the_plugin_and_its_core_from_the_wheel_folder(installed: Venv) -> None:
    """Both distributions are real (non-editable) installs in the venv's own site-packages."""
    script = (
        "import importlib.metadata as m, json, diffrl_core, diffrl_plugin_beta\n"
        "out = {}\n"
        "for name in ('diffrl-core', 'diffrl-plugin-beta'):\n"
        "    found = [d for d in m.distributions() if d.metadata['Name'] == name]\n"
        "    out[name] = [[d.version, str(d.locate_file('')), d.read_text('INSTALLER'),\n"
        "                  d.read_text('direct_url.json')] for d in found]\n"
        "out['modules'] = [diffrl_core.__file__, diffrl_plugin_beta.__file__]\n"
        "print(json.dumps(out))\n"
    )
    out = json.loads(installed.python("-c", script).stdout)
    site = str(installed.site)
    for name in ("diffrl-core", "diffrl-plugin-beta"):
        ((version, location, installer, direct_url),) = out[name]  # one copy, the venv's
        assert version == "0.1.0" and location == site, (name, location)
        assert installer.strip() == "pip" and direct_url is None, (name, direct_url)  # from a wheel, not a path
    assert all(module.startswith(site) for module in out["modules"]), out["modules"]
    show = installed.python("-m", "pip", "show", "diffrl-core").stdout
    assert f"Location: {site}\n" in show and "Editable project location" not in show


@pytest.mark.slow
def test_diffrl_plugins_lists_the_installed_plugin(installed: Venv) -> None:
    """The venv's ``diffrl`` script (from the core's wheel) lists ``beta`` with its distribution."""
    report = json.loads(installed.run("diffrl", "plugins", "--json").stdout)
    assert report["errors"] == [], report["errors"]
    plugins = {p["name"]: p for p in report["plugins"]}
    assert plugins["beta"]["distribution"] == "diffrl-plugin-beta" and plugins["beta"]["version"] == "0.1.0"
    assert plugins["beta"]["components"]["actor_heads"] == ["beta"]
    assert set(plugins) == {"diffrl_core", "beta"}  # none of the test environment's plugins leaked in


@pytest.mark.slow
def test_diffrl_train_trains_with_the_installed_head(installed: Venv, tmp_path: Path) -> None:
    """A short SAC run with ``policy.head: beta``; its ``versions`` credit diffrl-plugin-beta."""
    config = tmp_path / "beta.yaml"
    # the core's own loss term and post-processor: diffrl-plugin-gaussian (sac_entropy) is not installed
    config.write_text(
        "env: Pendulum-v1\nalgo: sac\n"
        "policy: {net_arch: [16], head: beta, losses: [{name: q_value}], postprocess: identity}\n"
        "algo_kwargs: {learning_starts: 50, batch_size: 32, buffer_size: 1000}\n"
        "total_timesteps: 200\nseed: 0\n"
        "eval: {freq: 0, n_episodes: 1}\ncheckpoint: {freq: 0}\nlogging: {tensorboard: false}\n"
    )
    run_dir = tmp_path / "run"
    installed.run("diffrl", "train", str(config), "--run-dir", str(run_dir), "--threads", "1")
    assert (run_dir / "model.zip").is_file()
    assert json.loads((run_dir / "status.json").read_text())["status"] == "finished"
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["policy"]["head"] == "beta"
    versions = saved["versions"]
    assert versions["diffrl-core"] == "0.1.0"
    assert versions["plugins"]["beta"] == {"distribution": "diffrl-plugin-beta", "version": "0.1.0",
                                           "components": ["beta"]}


# -- the declared dependency is enforced -------------------------------------------------------


@pytest.fixture(scope="module")
def core_0_2(source_copy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of diffrl-core 0.2.0: the copy of the core with its version bumped."""
    pyproject = source_copy / "pyproject.toml"
    text = pyproject.read_text()
    assert text.count('\nversion = "0.1.0"\n') == 1
    pyproject.write_text(text.replace('\nversion = "0.1.0"\n', '\nversion = "0.2.0"\n'))
    try:
        (wheel,) = _build_wheels([source_copy], tmp_path_factory.mktemp("core-0.2"))
    finally:
        pyproject.write_text(text)
    return wheel


@pytest.mark.slow
@pytest.mark.parametrize("core", ["none", "0.2.0"])
def test_pip_refuses_the_plugin_without_a_core_in_range(
    core: str, wheels: Path, outer_site: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A wheel folder with no diffrl-core, or only a 0.2.0: pip's resolution fails naming diffrl-core."""
    folder = tmp_path / "wheels"
    folder.mkdir()
    shutil.copy(_wheel(wheels, "diffrl-plugin-beta"), folder)
    if core == "0.2.0":
        shutil.copy(request.getfixturevalue("core_0_2"), folder)
    venv = Venv(tmp_path / "venv", outer_site)
    result = venv.pip_install(folder, "diffrl-plugin-beta", check=False)
    assert result.returncode != 0, result.stdout
    message = result.stdout + result.stderr
    assert "No matching distribution found for diffrl-core" in message, message
    assert re.search(r"diffrl-core(<0\.2,>=0\.1|>=0\.1,<0\.2)", message), message  # the declared range
    if core == "0.2.0":
        assert "(from versions: 0.2.0)" in message, message
    listed = venv.python("-m", "pip", "list", "--path", str(venv.site), "--format", "json").stdout
    assert json.loads(listed) == []  # nothing was installed

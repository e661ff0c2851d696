"""Plugins a user can trust, tried as a user meets them: broken or rival plugins installed as real
distributions (a ``*.dist-info`` on ``PYTHONPATH``, found by ``importlib.metadata`` like a pip
install), next to this repository's own plugins, driven through the ``diffrl`` command.

Each case asserts the exit code, that the culprit is named, that every other plugin still
loads, that ``--json`` output parses, and which class actually ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

#: The plugins of this repository, installed (editable) in the test environment.
OURS = {"diffrl_core", "beta", "diffusion", "envs", "gaussian", "noise"}

ENV = {key: value for key, value in os.environ.items() if not key.startswith("DIFFRL_")}
ENV.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

# built-in components only (the env is gymnasium's own)
BUILTINS_ONLY = """\
env: Pendulum-v1
algo: td3
policy: {head: deterministic, net_arch: [8]}
algo_kwargs: {learning_starts: 10, batch_size: 8, buffer_size: 100}
total_timesteps: 30
seed: 0
eval: {freq: 0, n_episodes: 1}
checkpoint: {freq: 0}
logging: {tensorboard: false}
"""


def install(site: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str],
            requires: tuple[str, ...] = ()) -> None:
    """A distribution as pip leaves it: its modules and a ``.dist-info`` with its entry points."""
    site.mkdir(exist_ok=True)
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    metadata = f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n"
    (info / "METADATA").write_text(metadata + "".join(f"Requires-Dist: {r}\n" for r in requires))
    (info / "entry_points.txt").write_text(
        "[diffrl]\n" + "".join(f"{name} = {module}\n" for name, module in entry_points.items())
    )


def run(*args: str, site: Path | None = None, cwd: Path, python: str | None = None,
        **env: str) -> subprocess.CompletedProcess:
    environ = {**ENV, **env}
    if site is not None:
        environ["PYTHONPATH"] = str(site)
    command = [sys.executable, "-c", python] if python else [sys.executable, "-m", "diffrl_core.cli", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=environ, timeout=300)


def plugins_json(site: Path, cwd: Path, **env: str) -> dict:
    """``diffrl plugins --json``: exit 0 and stdout that parses, whatever the plugins do."""
    result = run("plugins", "--json", site=site, cwd=cwd, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def loaded(report: dict) -> set[str]:
    return {plugin["name"] for plugin in report["plugins"]}


def errors(report: dict, name: str) -> str:
    found = [e["error"] for e in report["errors"] if e["name"] == name]
    assert found, report["errors"]
    return " ".join(found)


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def train(config: str, run_dir: Path, site: Path | None, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    path = cwd / f"{run_dir.name}.yaml"
    path.write_text(config)
    return run("train", str(path), "--run-dir", str(run_dir), site=site, cwd=cwd, **env)


def versions(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / "config.yaml").read_text())["versions"]["plugins"]


# -- name ownership --------------------------------------------------------------------------------

RIVAL_HEAD = """
from diffrl_core import hookimpl

@hookimpl
def register_actor_heads(register):
    register("squashed_gaussian", "rival_heads:RivalHead")
"""


@pytest.mark.slow
def test_a_component_name_two_plugins_claim_is_ambiguous_and_the_qualified_name_chooses(tmp_path: Path) -> None:
    # "aaa" sorts before "gaussian": it used to win silently, and "gaussian" was listed as the failure
    install(tmp_path / "site", "rival-heads", {"aaa": "rival_plugin"},
            {"rival_plugin": RIVAL_HEAD, "rival_heads": "raise RuntimeError('the rival head was imported')\n"})
    site = tmp_path / "site"
    report = plugins_json(site, tmp_path)
    assert report["errors"] == [] and loaded(report) == OURS | {"aaa"}
    (conflict,) = report["conflicts"]
    assert conflict["name"] == "squashed_gaussian" and sorted(conflict["plugins"]) == ["aaa", "gaussian"]
    text = run("plugins", site=site, cwd=tmp_path).stdout
    assert "ambiguous name(s)" in text and "actor head 'squashed_gaussian': aaa, gaussian" in text

    # SAC's default head is squashed_gaussian: refused, naming both plugins and both ways out
    config = BUILTINS_ONLY.replace("algo: td3", "algo: sac").replace("head: deterministic, ", "")
    result = train(config, tmp_path / "default", site, tmp_path)
    assert_user_error(result, "actor head 'squashed_gaussian' (in policy.head) is ambiguous",
                      "plugin 'aaa' (rival-heads 1.0)", "plugin 'gaussian' (diffrl-plugin-gaussian",
                      "'aaa:squashed_gaussian' or 'gaussian:squashed_gaussian'", "DIFFRL_DISABLE_PLUGINS=aaa")
    assert not (tmp_path / "default").exists()

    # the qualified name trains with gaussian's class (the rival's module raises if imported)
    qualified = config.replace("policy: {", "policy: {head: 'gaussian:squashed_gaussian', ")
    result = train(qualified, tmp_path / "qualified", site, tmp_path)
    assert result.returncode == 0, result.stderr
    assert versions(tmp_path / "qualified")["gaussian"]["components"] == ["sac_entropy", "squashed_gaussian"]
    assert "aaa" not in versions(tmp_path / "qualified")
    # the saved model loads from the plugin it was trained with, while the name stays ambiguous
    result = run("eval", str(tmp_path / "qualified"), "-n", "1", "--json", site=site, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["episodes"] == 1


@pytest.mark.slow
def test_an_entry_point_name_two_distributions_declare_loads_neither(tmp_path: Path) -> None:
    site = tmp_path / "site"
    install(site, "evil-gaussian", {"gaussian": "evil_gaussian"},
            {"evil_gaussian": RIVAL_HEAD.replace("rival_heads", "evil_heads")})
    report = plugins_json(site, tmp_path)
    error = errors(report, "gaussian")
    assert "'gaussian' is declared by" in error and "evil-gaussian 1.0" in error
    assert "diffrl-plugin-gaussian" in error and "DIFFRL_DISABLE_PLUGINS=evil-gaussian" in error
    assert loaded(report) == OURS - {"gaussian"}  # the others load

    # a command that needs gaussian's names says that the plugin failed to load
    config = BUILTINS_ONLY.replace("algo: td3", "algo: sac").replace("head: deterministic, ", "")
    result = train(config, tmp_path / "run", site, tmp_path)
    assert_user_error(result, "unknown actor head 'squashed_gaussian'", "failed to load and may have provided it",
                      "'gaussian': the entry-point name 'gaussian' is declared by")

    # choosing one by distribution name; the disabled one is listed as disabled
    report = plugins_json(site, tmp_path, DIFFRL_DISABLE_PLUGINS="evil-gaussian")
    assert report["errors"] == [] and loaded(report) == OURS
    gaussian = next(p for p in report["plugins"] if p["name"] == "gaussian")
    assert gaussian["distribution"] == "diffrl-plugin-gaussian"
    assert report["disabled"] == [{"name": "gaussian", "distribution": "evil-gaussian", "version": "1.0",
                                   "reason": "DIFFRL_DISABLE_PLUGINS"}]


RIVAL_CART_POLE = {
    "hook": """
        from diffrl_core import hookimpl

        @hookimpl
        def register_envs(register):
            register("diffrl/CartPoleBalance-v0", entry_point="gymnasium.envs.classic_control:CartPoleEnv")
    """,
    "import": """
        import gymnasium
        from diffrl_core import hookimpl

        gymnasium.register("diffrl/CartPoleBalance-v0", entry_point="gymnasium.envs.classic_control:CartPoleEnv")

        @hookimpl
        def register_loss_terms(register):
            pass
    """,
}


@pytest.mark.slow
@pytest.mark.parametrize("how", ["hook", "import"])
def test_an_env_id_two_plugins_claim_is_ambiguous(tmp_path: Path, how: str) -> None:
    site = tmp_path / "site"
    install(site, "rival-envs", {"aaa_envs": "rival_envs"}, {"rival_envs": RIVAL_CART_POLE[how]})
    report = plugins_json(site, tmp_path)
    assert report["errors"] == [] and loaded(report) == OURS | {"aaa_envs"}
    (conflict,) = report["conflicts"]
    assert conflict == {**conflict, "kind": "envs", "name": "diffrl/CartPoleBalance-v0",
                        "plugins": ["aaa_envs", "envs"]}

    config = BUILTINS_ONLY.replace("Pendulum-v1", "diffrl/CartPoleBalance-v0")
    assert_user_error(train(config, tmp_path / "refused", site, tmp_path),
                      "env id 'diffrl/CartPoleBalance-v0' (in env) is ambiguous", "plugin 'aaa_envs' (rival-envs 1.0)",
                      "plugin 'envs' (diffrl-envs", "DIFFRL_DISABLE_PLUGINS=aaa_envs")
    # plain gymnasium sees it too, whichever way it gets the plugins' envs
    probe = run(site=site, cwd=tmp_path, python=(
        "import diffrl_core.envs, gymnasium\n"
        "try:\n    gymnasium.make('diffrl/CartPoleBalance-v0')\n"
        "except diffrl_core.AmbiguousNameError as exc:\n    print(exc)\n"))
    assert "is ambiguous" in probe.stdout and "rival-envs" in probe.stdout, probe.stderr

    # disabling the rival: diffrl-envs' class runs, and the run credits diffrl-envs
    result = train(config, tmp_path / "run", site, tmp_path, DIFFRL_DISABLE_PLUGINS="aaa_envs")
    assert result.returncode == 0, result.stderr
    assert versions(tmp_path / "run")["envs"]["distribution"] == "diffrl-envs"
    probe = run(site=site, cwd=tmp_path, DIFFRL_DISABLE_PLUGINS="aaa_envs", python=(
        "import diffrl_core.envs, gymnasium\nprint(type(gymnasium.make('diffrl/CartPoleBalance-v0').unwrapped))"))
    assert "diffrl_envs.cart_pole_balance.CartPoleBalanceEnv" in probe.stdout, probe.stderr


def test_a_plugin_replacing_a_gymnasium_env_at_import_is_reported_and_undone(tmp_path: Path) -> None:
    site = tmp_path / "site"
    install(site, "pendulum-hijack", {"hijack": "hijack_plugin"}, {"hijack_plugin": """
        import gymnasium
        from diffrl_core import hookimpl

        gymnasium.register("Pendulum-v1", entry_point="gymnasium.envs.classic_control:CartPoleEnv")
        gymnasium.register("hijack/Extra-v0", entry_point="gymnasium.envs.classic_control:CartPoleEnv")

        @hookimpl
        def register_loss_terms(register):
            register("hijack_loss", "collections:OrderedDict")
    """})
    report = plugins_json(site, tmp_path)
    error = errors(report, "hijack")
    assert "gymnasium env id 'Pendulum-v1'" in error and "replaced it" in error and "restored" in error
    assert loaded(report) == OURS  # the culprit is not half-loaded; the others load
    probe = run(site=site, cwd=tmp_path, python=(
        "import diffrl_core.envs, gymnasium\n"
        "print(gymnasium.spec('Pendulum-v1').entry_point, 'hijack/Extra-v0' in gymnasium.registry)"))
    assert probe.stdout.split() == ["gymnasium.envs.classic_control.pendulum:PendulumEnv", "False"], probe.stderr


# -- isolation ------------------------------------------------------------------------------------

HOSTILE = {
    "exit_on_import": ("import sys\nsys.exit(3)\n", "called sys.exit(3)"),
    "exit_in_hook": ("""
        import sys
        from diffrl_core import hookimpl

        @hookimpl
        def register_actor_heads(register):
            sys.exit("bye")
    """, "hook register_actor_heads called sys.exit('bye')"),
    "interrupt_on_import": ("raise KeyboardInterrupt\n", "raised KeyboardInterrupt (not a Ctrl-C of the user's)"),
    "interrupt_in_hook": ("""
        from diffrl_core import hookimpl

        @hookimpl
        def register_loss_terms(register):
            raise KeyboardInterrupt
    """, "hook register_loss_terms raised KeyboardInterrupt"),
    "error_on_import": ("raise ImportError('no such thing')\n", "raised ImportError: no such thing"),
    "newline_name": ("""
        from diffrl_core import hookimpl

        @hookimpl
        def register_actor_heads(register):
            register("bad_head\\n", "collections:OrderedDict")
    """, "'bad_head\\n' is not a valid actor head name"),
    "spaced_env_id": ("""
        from diffrl_core import hookimpl

        @hookimpl
        def register_envs(register):
            register("spaced/Env-v0 ", entry_point="gymnasium.envs.classic_control:CartPoleEnv")
    """, "env id 'spaced/Env-v0 ' is malformed"),
    "optional_typo": ("""
        from diffrl_core import hookimpl

        @hookimpl(optionalhook=True)
        def register_actor_head(register):
            register("never", "collections:OrderedDict")
    """, "optional hook 'register_actor_head' is not a diffrl hook; did you mean 'register_actor_heads'?"),
}

CHATTY = """
from diffrl_core import hookimpl

print("hello from the chatty plugin's import")

@hookimpl
def register_loss_terms(register):
    print("hello from the chatty plugin's hook")
    register("chatty_loss", "collections:OrderedDict")
"""


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One distribution per hostile plugin, plus one that prints, all installed at once."""
    site = tmp_path_factory.mktemp("hostile") / "site"
    for name, (source, _) in HOSTILE.items():
        install(site, f"hostile-{name.replace('_', '-')}", {name: f"hostile_{name}"}, {f"hostile_{name}": source})
    install(site, "chatty", {"chatty": "chatty_plugin"}, {"chatty_plugin": CHATTY})
    return site


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_plugin_is_named_and_the_others_load(hostile_site: Path, tmp_path: Path, name: str) -> None:
    report = plugins_json(hostile_site, tmp_path)
    assert HOSTILE[name][1] in errors(report, name)
    assert loaded(report) >= OURS | {"chatty"}
    if name in ("newline_name", "spaced_env_id"):  # only the bad registration is refused, and named
        (plugin,) = [p for p in report["plugins"] if p["name"] == name]
        assert plugin["components"]["actor_heads"] == [] and plugin["components"]["envs"] == []
    else:  # nothing of the plugin is registered
        assert name not in loaded(report)


def test_what_plugins_print_goes_to_stderr(hostile_site: Path, tmp_path: Path) -> None:
    result = run("plugins", "--json", site=hostile_site, cwd=tmp_path)
    assert result.returncode == 0
    assert "chatty" in {p["name"] for p in json.loads(result.stdout)["plugins"]}  # stdout is the JSON only
    assert "hello from the chatty plugin's import" in result.stderr
    assert "hello from the chatty plugin's hook" in result.stderr


@pytest.mark.slow
def test_hostile_plugins_do_not_take_train_and_eval_down(hostile_site: Path, tmp_path: Path) -> None:
    result = train(BUILTINS_ONLY, tmp_path / "run", hostile_site, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "finished"
    result = run("eval", str(tmp_path / "run"), "-n", "1", "--json", site=hostile_site, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["episodes"] == 1
    assert "hello from the chatty plugin's import" in result.stderr


def test_a_name_the_failed_plugin_would_have_provided_mentions_the_failure(hostile_site: Path,
                                                                          tmp_path: Path) -> None:
    result = run("gradcheck", "--head", "hostile_head", site=hostile_site, cwd=tmp_path)
    assert_user_error(result, "unknown actor head 'hostile_head'", "failed to load and may have provided it",
                      "'exit_on_import': import of 'hostile_exit_on_import' (hostile-exit-on-import) "
                      "called sys.exit(3)")


# -- allow / deny lists, the core's range ---------------------------------------------------------


def test_env_list_typos_warn_and_disabled_plugins_are_listed(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    report = plugins_json(site, tmp_path, DIFFRL_DISABLE_PLUGINS="gausian,beta")
    (warning,) = report["warnings"]
    assert warning["name"] == "gausian" and "DIFFRL_DISABLE_PLUGINS" in warning["error"]
    assert "did you mean 'gaussian'" in warning["error"]
    assert loaded(report) == OURS - {"beta"}
    assert [(p["name"], p["distribution"], p["reason"]) for p in report["disabled"]] == [
        ("beta", "diffrl-plugin-beta", "DIFFRL_DISABLE_PLUGINS")]
    text = run("plugins", site=site, cwd=tmp_path, DIFFRL_LOAD_PLUGINS="gaussian,envs").stdout
    assert "beta" in text and "disabled (not in DIFFRL_LOAD_PLUGINS)" in text


def test_a_plugin_for_another_core_is_reported_and_never_imported(tmp_path: Path) -> None:
    site = tmp_path / "site"
    marker = tmp_path / "imported"
    install(site, "future-plugin", {"future": "future_plugin"},
            {"future_plugin": f"open({str(marker)!r}, 'w').close()\n"},
            requires=("diffrl-core<0.3,>=0.2", "numpy"))
    report = plugins_json(site, tmp_path)
    error = errors(report, "future")
    assert "future-plugin requires diffrl-core<0.3,>=0.2 (its plugin API), but diffrl-core 0.1.0 is installed" in error
    assert not marker.exists() and loaded(report) == OURS


# -- a run's env, when its plugin is gone ---------------------------------------------------------


@pytest.mark.slow
def test_eval_of_a_run_whose_env_plugin_is_missing_names_its_distribution(tmp_path: Path) -> None:
    config = BUILTINS_ONLY.replace("Pendulum-v1", "diffrl/QuadraticBandit-v0")
    result = train(config, tmp_path / "run", None, tmp_path)
    assert result.returncode == 0, result.stderr
    assert versions(tmp_path / "run")["envs"]["components"] == ["env"]
    result = run("eval", str(tmp_path / "run"), "-n", "1", cwd=tmp_path, DIFFRL_DISABLE_PLUGINS="envs")
    assert_user_error(result, "unknown env id 'diffrl/QuadraticBandit-v0' (in env)",
                      "the run had it from plugin 'envs' (diffrl-envs 0.1.0)", "pip install diffrl-envs")
    assert "Reacher" not in result.stderr


@pytest.mark.slow
def test_the_users_ctrl_c_while_plugins_load_still_stops_the_command(tmp_path: Path) -> None:
    """Only a KeyboardInterrupt the plugin raises itself is the plugin's failure; Ctrl-C is the user's."""
    import signal
    import time

    site = tmp_path / "site"
    started = tmp_path / "started"
    install(site, "slow-plugin", {"slow": "slow_plugin"},
            {"slow_plugin": f"import time\nopen({str(started)!r}, 'w').close()\ntime.sleep(30)\n"})
    process = subprocess.Popen([sys.executable, "-m", "diffrl_core.cli", "plugins", "--json"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**ENV, "PYTHONPATH": str(site)})
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stdout  # stopped, not reported as the plugin's failure
    assert stdout == "" and stderr == "diffrl plugins: interrupted by SIGINT\n", stderr

"""The plugin host: entry-point loading, isolation of failures, allow/deny lists, provenance."""

from __future__ import annotations

import sys

import gymnasium
import pytest

from diffrl_core import AmbiguousNameError, DuplicateNameError, UnknownNameError
from diffrl_core.plugins import PluginHost, load_plugins
from diffrl_core.registry import Provenance

GOOD = """
@hookimpl
def register_actor_heads(register):
    register("good_head", "collections:OrderedDict")

@hookimpl
def register_loss_terms(register):
    register("good_loss", "collections:OrderedDict")
"""


@pytest.fixture(autouse=True)
def no_env_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIFFRL_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("DIFFRL_DISABLE_PLUGINS", raising=False)


def load(fake_entry_points, *entry_points) -> PluginHost:
    fake_entry_points(list(entry_points))
    return PluginHost().load()


def errors_of(host: PluginHost, name: str) -> list[str]:
    return [failure.error for failure in host.errors if failure.name == name]


def test_builtins_register_through_the_hooks(fake_entry_points) -> None:
    host = load(fake_entry_points)
    assert host.errors == []
    builtin = host.plugins["diffrl_core"]
    assert builtin.provenance.builtin and builtin.provenance.version is None
    assert builtin.components["actor_heads"] == ["deterministic", "categorical", "multi_categorical", "bernoulli"]
    assert set(builtin.components["loss_terms"]) == {"q_value", "bc", "ppo_clip", "policy_gradient", "entropy_bonus"}
    assert set(builtin.components["postprocessors"]) == {"identity", "clip", "tanh", "clip_to_bounds"}
    assert host.registry("postprocessors").get("clip").provenance.plugin == "diffrl_core"


def test_a_renamed_component_keeps_its_former_name_as_an_alias(fake_entry_points, make_plugin) -> None:
    host = load(fake_entry_points)
    postprocessors = host.registry("postprocessors")
    assert postprocessors.get("unscale").name == "identity"
    assert postprocessors.resolve("unscale") is postprocessors.resolve("identity")
    assert "unscale" in postprocessors and "unscale" not in postprocessors.names()
    assert host.report()["plugins"][0]["aliases"] == {"postprocessors": {"unscale": "identity"}}

    # an alias is taken like a name: a plugin cannot claim it
    clash = make_plugin("clash", """
@hookimpl
def register_postprocessors(register):
    register("unscale", "collections:OrderedDict")
""")
    host = load(fake_entry_points, clash)
    assert "already registered by built-in plugin 'diffrl_core'" in host.errors[0].error
    assert host.registry("postprocessors").get("unscale").name == "identity"


def test_entry_point_plugin_components_have_provenance(fake_entry_points, make_plugin) -> None:
    ep = make_plugin("good", GOOD, dist="diffrl-plugin-good", version="2.5")
    host = load(fake_entry_points, ep)
    assert host.errors == []
    registration = host.registry("actor_heads").get("good_head")
    assert registration.provenance == Provenance("good", "diffrl-plugin-good", "2.5")
    report = host.report()
    good = next(p for p in report["plugins"] if p["name"] == "good")
    assert good["version"] == "2.5" and good["builtin"] is False
    assert good["components"]["loss_terms"] == ["good_loss"]


def test_components_resolve_lazily_from_strings(fake_entry_points, make_plugin) -> None:
    host = load(fake_entry_points, make_plugin("good", GOOD))
    import collections

    assert host.registry("actor_heads").resolve("good_head") is collections.OrderedDict


def test_plugin_whose_import_raises_is_reported_and_others_load(fake_entry_points, make_plugin) -> None:
    broken = make_plugin("broken", "raise RuntimeError('boom at import')\n")
    host = load(fake_entry_points, broken, make_plugin("good", GOOD))
    (error,) = errors_of(host, "broken")
    assert "RuntimeError: boom at import" in error and "diffrl-plugin-broken" in error
    assert "broken" not in host.plugins
    assert "good_head" in host.registry("actor_heads")


def test_plugin_whose_hook_raises_registers_nothing(fake_entry_points, make_plugin) -> None:
    source = """
    @hookimpl
    def register_loss_terms(register):
        register("half_registered", "collections:OrderedDict")

    @hookimpl
    def register_postprocessors(register):
        raise ValueError("cannot register")
    """
    host = load(fake_entry_points, make_plugin("raising", source), make_plugin("good", GOOD))
    (error,) = errors_of(host, "raising")
    assert "register_postprocessors raised ValueError: cannot register" in error
    assert "half_registered" not in host.registry("loss_terms")
    assert "good_loss" in host.registry("loss_terms")


def test_hookimpl_with_bad_signature_is_reported(fake_entry_points, make_plugin) -> None:
    source = """
    @hookimpl
    def register_actor_heads(register, extra):
        register("never", "collections:OrderedDict")
    """
    host = load(fake_entry_points, make_plugin("badsig", source), make_plugin("good", GOOD))
    (error,) = errors_of(host, "badsig")
    assert "invalid hook implementation" in error and "extra" in error
    assert "never" not in host.registry("actor_heads")
    assert "good_head" in host.registry("actor_heads")


def test_misspelled_hook_is_reported_with_suggestion(fake_entry_points, make_plugin) -> None:
    source = """
    @hookimpl
    def register_actor_head(register):
        register("never", "collections:OrderedDict")
    """
    host = load(fake_entry_points, make_plugin("typo", source), make_plugin("good", GOOD))
    (error,) = errors_of(host, "typo")
    assert "'register_actor_head' is not a diffrl hook" in error
    assert "did you mean 'register_actor_heads'" in error
    assert "good" in host.plugins and "typo" not in host.plugins


def test_duplicate_of_a_builtin_names_both_owners(fake_entry_points, make_plugin) -> None:
    source = """
    @hookimpl
    def register_postprocessors(register):
        register("clip", "collections:OrderedDict")
        register("soft_clip", "collections:OrderedDict")
    """
    host = load(fake_entry_points, make_plugin("clipper", source))
    (error,) = errors_of(host, "clipper")
    assert "post-processor 'clip'" in error
    assert "built-in plugin 'diffrl_core'" in error and "plugin 'clipper'" in error
    # never shadowed: the built-in keeps the name; the plugin's other names still register
    assert host.registry("postprocessors").get("clip").provenance.builtin
    assert host.registry("postprocessors").get("soft_clip").provenance.plugin == "clipper"


def test_a_name_two_plugins_claim_is_ambiguous_whatever_the_load_order(fake_entry_points, make_plugin) -> None:
    source = """
    @hookimpl
    def register_loss_terms(register):
        register("shared_name", "collections:OrderedDict")
    """
    first = make_plugin("alpha", source, dist="dist-alpha")
    second = make_plugin("beta", source.replace("OrderedDict", "Counter"), dist="dist-beta")
    for order in ((first, second), (second, first)):
        host = load(fake_entry_points, *order)
        assert host.errors == [] and {"alpha", "beta"} <= set(host.plugins)  # both load; neither wins
        with pytest.raises(AmbiguousNameError) as excinfo:
            host.registry("loss_terms").get("shared_name", where="policy.losses[0].name")
        message = str(excinfo.value)
        assert "loss term 'shared_name' (in policy.losses[0].name) is ambiguous" in message
        assert "plugin 'alpha' (dist-alpha 1.0)" in message and "plugin 'beta' (dist-beta 1.0)" in message
        assert "'alpha:shared_name' or 'beta:shared_name'" in message and "DIFFRL_DISABLE_PLUGINS=" in message
        import collections

        assert host.registry("loss_terms").resolve("alpha:shared_name") is collections.OrderedDict
        assert host.registry("loss_terms").resolve("beta:shared_name") is collections.Counter
        (conflict,) = host.report()["conflicts"]
        assert conflict["kind"] == "loss_terms" and conflict["name"] == "shared_name"
        assert sorted(conflict["plugins"]) == ["alpha", "beta"]


def test_a_qualified_name_of_the_wrong_plugin_says_who_has_it(fake_entry_points, make_plugin) -> None:
    host = load(fake_entry_points, make_plugin("good", GOOD))
    assert host.registry("actor_heads").get("good:good_head").provenance.plugin == "good"
    assert host.registry("postprocessors").get("diffrl_core:clip").provenance.builtin
    with pytest.raises(UnknownNameError, match="registered by plugin 'good'.*not by a plugin named 'bad'"):
        host.registry("actor_heads").get("bad:good_head")
    assert "bad:good_head" not in host.registry("actor_heads") and "good:good_head" in host.registry("actor_heads")


def test_an_env_id_two_plugins_claim_is_ambiguous(fake_entry_points, make_plugin) -> None:
    source = """
    @hookimpl
    def register_envs(register):
        register("dupns/Thing-v0", entry_point="{module}:Env", max_episode_steps=5)
    """
    one = make_plugin("envs_one", source.replace("{module}", "mod_one"))
    two = make_plugin("envs_two", source.replace("{module}", "mod_two"))
    host = load(fake_entry_points, one, two)
    assert host.errors == []
    (conflict,) = host.report()["conflicts"]
    assert conflict["kind"] == "envs" and conflict["plugins"] == ["envs_one", "envs_two"]
    with pytest.raises(AmbiguousNameError, match="env id 'dupns/Thing-v0' is ambiguous.*plugin 'envs_one'.*envs_two"):
        gymnasium.make("dupns/Thing-v0")  # plain gymnasium sees the ambiguity too
    with pytest.raises(AmbiguousNameError, match="DIFFRL_DISABLE_PLUGINS=envs_one"):
        host.registry("envs").get("dupns/Thing-v0")


def test_env_id_shadowing_gymnasium_is_reported(fake_entry_points, make_plugin) -> None:
    shadowed = next(env_id for env_id in gymnasium.registry if "/" in env_id)
    original = gymnasium.registry[shadowed].entry_point
    source = f"""
    @hookimpl
    def register_envs(register):
        register("{shadowed}", entry_point="elsewhere:Env")
        register("Pendulum-v1", entry_point="elsewhere:Env")
        register("okns/Fine-v0", entry_point="elsewhere:Env")
    """
    host = load(fake_entry_points, make_plugin("shadow", source))
    errors = errors_of(host, "shadow")
    assert any(f"env id {shadowed!r}" in e and "gymnasium's registry" in e for e in errors)
    assert any("'Pendulum-v1' has no namespace" in e for e in errors)
    assert gymnasium.registry[shadowed].entry_point == original
    assert gymnasium.registry["okns/Fine-v0"].entry_point == "elsewhere:Env"


def test_env_entry_point_must_be_a_string(fake_entry_points, make_plugin) -> None:
    source = """
    @hookimpl
    def register_envs(register):
        register("objns/Obj-v0", entry_point=dict)
    """
    host = load(fake_entry_points, make_plugin("objenv", source))
    (error,) = errors_of(host, "objenv")
    assert "'module:Class' string entry point" in error
    assert "objns/Obj-v0" not in gymnasium.registry


def test_env_registration_is_lazy_and_makes(fake_entry_points, make_plugin, tmp_path) -> None:
    (tmp_path / "lazy_env_module_for_test.py").write_text(
        "import gymnasium\n"
        "from gymnasium.envs.classic_control.pendulum import PendulumEnv as Env\n"
    )
    source = """
    @hookimpl
    def register_envs(register):
        register("lazyns/Lazy-v0", entry_point="lazy_env_module_for_test:Env", max_episode_steps=7)
    """
    host = load(fake_entry_points, make_plugin("lazy", source))
    assert host.errors == []
    assert "lazy_env_module_for_test" not in sys.modules
    env = gymnasium.make("lazyns/Lazy-v0")
    assert env.spec.max_episode_steps == 7
    assert "lazy_env_module_for_test" in sys.modules
    sys.modules.pop("lazy_env_module_for_test")


def test_same_env_registered_by_its_own_package_is_not_a_duplicate(fake_entry_points, make_plugin) -> None:
    # a package may register its envs on import (for gymnasium's "pkg:ns/Env-v0" form)
    gymnasium.register("selfns/Self-v0", entry_point="selfmod:Env")
    source = """
    @hookimpl
    def register_envs(register):
        register("selfns/Self-v0", entry_point="selfmod:Env")
    """
    host = load(fake_entry_points, make_plugin("selfreg", source))
    assert host.errors == []
    assert host.registry("envs").get("selfns/Self-v0").provenance.plugin == "selfreg"


def test_invalid_component_names_are_rejected(fake_entry_points, make_plugin) -> None:
    source = """
    @hookimpl
    def register_actor_heads(register):
        register("BetaHead", "collections:OrderedDict")
        register("ok_head", 42)
    """
    host = load(fake_entry_points, make_plugin("names", source))
    errors = errors_of(host, "names")
    assert any("'BetaHead' is not a valid actor head name" in e and "snake_case" in e for e in errors)
    assert any("'ok_head' must be registered with a class or a 'module:Class' string" in e for e in errors)
    assert len(host.registry("actor_heads")) == 4  # only the built-ins


def test_two_distributions_with_one_entry_point_name(fake_entry_points, make_plugin, monkeypatch) -> None:
    first = make_plugin("same", GOOD, dist="dist-a")
    second = make_plugin("same", GOOD.replace("good_", "other_"), dist="dist-b")
    host = load(fake_entry_points, first, second)
    (error,) = errors_of(host, "same")
    assert "'same' is declared by dist-a 1.0 and dist-b 1.0, so neither was loaded" in error
    assert "DIFFRL_DISABLE_PLUGINS=dist-a" in error
    assert first.value not in sys.modules and second.value not in sys.modules
    # choosing one by its distribution name
    monkeypatch.setenv("DIFFRL_DISABLE_PLUGINS", "dist-a")
    host = load(fake_entry_points, first, second)
    assert host.errors == [] and "other_head" in host.registry("actor_heads")
    assert host.report()["disabled"] == [{"name": "same", "distribution": "dist-a", "version": "1.0",
                                          "reason": "DIFFRL_DISABLE_PLUGINS"}]


@pytest.mark.parametrize("variable", ["DIFFRL_LOAD_PLUGINS", "DIFFRL_DISABLE_PLUGINS"])
def test_allow_and_deny_lists_never_import_blocked_plugins(
    variable, monkeypatch, fake_entry_points, make_plugin
) -> None:
    allowed = make_plugin("allowed", GOOD)
    blocked = make_plugin("blocked", GOOD.replace("good_", "blocked_"))
    monkeypatch.setenv(variable, "allowed" if variable == "DIFFRL_LOAD_PLUGINS" else " blocked ")
    host = load(fake_entry_points, allowed, blocked)
    assert host.errors == []
    assert "allowed" in host.plugins and "blocked" not in host.plugins
    assert blocked.value not in sys.modules
    assert allowed.value in sys.modules
    assert "blocked_head" not in host.registry("actor_heads")


def test_empty_load_list_loads_only_builtins(monkeypatch, fake_entry_points, make_plugin) -> None:
    monkeypatch.setenv("DIFFRL_LOAD_PLUGINS", "")
    ep = make_plugin("good", GOOD)
    host = load(fake_entry_points, ep)
    assert list(host.plugins) == ["diffrl_core"]
    assert ep.value not in sys.modules


@pytest.mark.parametrize("variable", ["DIFFRL_LOAD_PLUGINS", "DIFFRL_DISABLE_PLUGINS"])
def test_a_name_in_the_env_lists_that_is_not_installed_gets_a_warning(
    variable, monkeypatch, fake_entry_points, make_plugin
) -> None:
    monkeypatch.setenv(variable, "good,gaussain")
    host = load(fake_entry_points, make_plugin("good", GOOD), make_plugin("gaussian", GOOD.replace("good_", "g_")))
    (warning,) = host.report()["warnings"]
    assert warning["name"] == "gaussain" and variable in warning["error"]
    assert "did you mean 'gaussian'" in warning["error"]
    assert host.errors == []


def test_builtins_cannot_be_disabled(monkeypatch, fake_entry_points) -> None:
    monkeypatch.setenv("DIFFRL_DISABLE_PLUGINS", "diffrl_core")
    host = load(fake_entry_points)
    assert "diffrl_core" in host.plugins
    assert "cannot be disabled" in errors_of(host, "diffrl_core")[0]


def test_unknown_name_suggests_close_names(fake_entry_points) -> None:
    host = load(fake_entry_points)
    with pytest.raises(UnknownNameError) as excinfo:
        host.registry("postprocessors").get("unsacle", where="policy.postprocess")
    message = str(excinfo.value)
    assert "unknown post-processor 'unsacle' (in policy.postprocess)" in message
    assert "did you mean 'unscale'" in message
    assert "diffrl list postprocessors" in message


def test_unknown_name_without_close_match_lists_names(fake_entry_points) -> None:
    host = load(fake_entry_points)
    with pytest.raises(UnknownNameError, match="registered: bernoulli, categorical, deterministic, multi_categorical"):
        host.registry("actor_heads").get("zzzzzz")


def test_registering_and_unregistering_an_inline_plugin(fake_entry_points) -> None:
    from diffrl_core import hookimpl

    class InlinePlugin:
        @hookimpl
        def register_loss_terms(self, register):
            register("inline_loss", "collections:OrderedDict")

    host = load(fake_entry_points)
    assert host.register_plugin(InlinePlugin(), "inline")
    assert "inline_loss" in host.registry("loss_terms")
    host.unregister_plugin("inline")
    assert "inline_loss" not in host.registry("loss_terms")
    with pytest.raises(DuplicateNameError):
        host.registry("loss_terms").add(host.registry("loss_terms").get("bc"))


def test_load_plugins_is_idempotent(fresh_global_host, fake_entry_points, make_plugin) -> None:
    fake_entry_points([make_plugin("good", GOOD)])
    host = load_plugins()
    assert load_plugins() is host
    assert list(host.plugins) == ["diffrl_core", "good"]


def test_every_hook_is_documented_with_an_example() -> None:
    from diffrl_core import hookspecs
    from diffrl_core.plugins import HOOK_NAMES

    for hook in HOOK_NAMES.values():
        doc = getattr(hookspecs, hook).__doc__
        assert doc and "Example::" in doc and ":param register:" in doc, hook


def test_every_hook_is_exercised_by_a_test_plugin() -> None:
    from pathlib import Path

    from diffrl_core.plugins import HOOK_NAMES

    sources = Path(__file__).read_text()
    for hook in HOOK_NAMES.values():
        assert f"def {hook}(register)" in sources, f"no test plugin implements {hook}"


def test_the_core_version_is_the_distributions() -> None:
    import importlib.metadata

    import diffrl_core

    assert diffrl_core.__version__ == importlib.metadata.version("diffrl-core")


@pytest.mark.parametrize(("specifiers", "version", "expected"), [
    (">=0.1,<0.2", "0.1.0", True), (">=0.1,<0.2", "0.2.0", False), (">=0.2", "0.1.0", False),
    ("~=0.1.0", "0.1.5", True), ("~=0.1.0", "0.2.0", False), ("==0.1.*", "0.1.3", True), ("!=0.1.0", "0.1.0", False),
    ("<0.2.0rc1", "0.1.0", True),
])
def test_the_core_range_check_agrees_with_packaging(specifiers: str, version: str, expected: bool) -> None:
    from packaging.specifiers import SpecifierSet

    from diffrl_core.plugins import _version_in

    assert _version_in(specifiers, version) is expected
    assert SpecifierSet(specifiers).contains(version, prereleases=True) is expected

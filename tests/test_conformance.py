"""diffrl_core.testing checks the math of components: each property against a deliberately broken component.

The property checks (:mod:`diffrl_core.conformance`) are tested on bare components (fast), and
end to end through ``check_component``, whose error must name the component and the property.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import warnings
from pathlib import Path

import pytest
import torch as th
from gymnasium import spaces

from diffrl_core import conformance
from diffrl_core.builtin.postprocessors import Clip, Identity, Tanh
from diffrl_core.conformance import FALSE_ALARM_RATE, ConformanceError
from diffrl_core.testing import check_component, check_composition, check_plugin, registered_plugin


def _load_components():
    """tests/conformance_components.py as the module ``conformance_components`` (pytest's importlib mode)."""
    spec = importlib.util.spec_from_file_location("conformance_components",
                                                  Path(__file__).with_name("conformance_components.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


cc = _load_components()
LATENT_DIM, ACTION_DIM = 8, 2
BOX = spaces.Box(-1.0, 1.0, (ACTION_DIM,))


def latent(seed: int = 0, rows: int = 6) -> th.Tensor:
    generator = th.Generator().manual_seed(seed)
    return th.randn(rows, LATENT_DIM, generator=generator)


def head(cls: type, seed: int = 0, **kwargs) -> th.nn.Module:
    th.manual_seed(seed)
    return cls(LATENT_DIM, ACTION_DIM, **kwargs)


def repo_heads() -> dict[str, type]:
    from diffrl_plugin_beta.heads import BetaHead
    from diffrl_plugin_gaussian.heads import GaussianHead, SquashedGaussianHead

    return {"gaussian": GaussianHead, "squashed_gaussian": SquashedGaussianHead, "beta": BetaHead,
            "squashed_mixture": cc.SquashedMixtureHead}


# -- each property fails for its broken component, and the message names it --------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_a_missing_tanh_jacobian_fails_the_density_check(seed: int) -> None:
    with pytest.raises(ConformanceError, match=r"head X fails \[density\] \(a\) the log-prob is a normalized density"
                                               r".*missing a Jacobian term"):
        conformance.check_density(head(cc.MissingJacobianMixtureHead, seed), latent(seed), "head X", seed=seed)


@pytest.mark.parametrize("seed", range(5))
def test_a_log_prob_at_a_detached_sample_fails_the_gradient_check(seed: int) -> None:
    broken = head(cc.DetachedLogProbMixtureHead, seed)
    with pytest.raises(ConformanceError, match=r"head X fails \[log_prob_gradient\] \(b\).*detached sample"):
        conformance.check_log_prob_gradient(broken, latent(seed), "head X", seed=seed)
    # its values are right: the density check cannot see it, only the gradient check
    conformance.check_density(broken, latent(seed), "head X", seed=seed)


def test_an_implicitly_reparameterized_head_is_reported_unchecked_not_passed() -> None:
    """Finite differences cannot check beta's log-prob gradient (torch's Beta uses implicit reparameterization)."""
    from diffrl_plugin_beta.heads import BetaHead

    with pytest.warns(conformance.UncheckedWarning, match=r"beta: .*\(b\).* is not checked: .*implicit"):
        assert conformance.check_log_prob_gradient(head(BetaHead), latent(), "beta") is False


@pytest.mark.parametrize("term", [cc.NoGradientLoss(), cc.BufferOnlyLoss()])
def test_a_loss_term_without_gradient_to_the_actor_fails(term) -> None:
    from stable_baselines3.common.type_aliases import ReplayBufferSamples

    from diffrl_core.components import ActorLossContext, postprocess_sample

    actor = head(cc.SquashedMixtureHead)
    critic = th.nn.Linear(ACTION_DIM, 1)
    batch = ReplayBufferSamples(latent(), th.rand(6, ACTION_DIM) * 2 - 1, latent(1), th.zeros(6, 1), th.zeros(6, 1))
    sample = postprocess_sample(actor.sample(batch.observations), Identity(BOX), type(actor))
    ctx = ActorLossContext.from_sample(batch, sample, critic, Identity(BOX), th.tensor(0.2), "sac")
    with pytest.raises(ConformanceError, match=r"term T fails \[loss_gradient\] \(c\) every loss term sends gradient"):
        conformance.check_loss_gradient(term, ctx, list(actor.parameters()), "term T")


def test_a_post_processor_overshooting_the_bounds_fails_though_a_fresh_head_never_shows_it() -> None:
    from diffrl_plugin_gaussian.heads import SquashedGaussianHead

    post = cc.OvershootingPostProcessor(BOX)
    with th.no_grad():
        fresh = head(SquashedGaussianHead)(0.2 * latent(), deterministic=True)  # a fresh MLP's small latent
    assert bool((post(fresh).abs() <= 1.0).all())  # what the old check looked at
    with pytest.raises(ConformanceError, match=r"post P fails \[bounds\] \(d\).*outside \[-1, 1\]"):
        conformance.check_postprocessor(post, ACTION_DIM, "post P")


def test_noise_without_explore_fails_the_deterministic_check() -> None:
    with pytest.raises(ConformanceError, match=r"post P fails \[reproducible\] \(e\)"):
        conformance.check_postprocessor(cc.NoisyPostProcessor(BOX), ACTION_DIM, "post P")


def test_a_jittery_deterministic_action_fails_the_deterministic_check() -> None:
    jittery, lat = head(cc.JitteryMixtureHead), latent()
    with pytest.raises(ConformanceError, match=r"head X fails \[reproducible\] \(e\)"):
        conformance.check_deterministic(lambda: jittery(lat, deterministic=True), "head X", "forward")


@pytest.mark.parametrize("seed", range(5))
def test_acting_with_another_distribution_than_sample_fails(seed: int) -> None:
    with pytest.raises(ConformanceError, match=r"head X fails \[same_distribution\] \(f\).*Kolmogorov-Smirnov"):
        conformance.check_same_distribution(head(cc.WiderWhenActingMixtureHead, seed), latent(seed), "head X",
                                            seed=seed)


@pytest.mark.parametrize(("post", "pattern"), [
    (cc.HalfJacobianTanh(BOX), r"\[jacobian\].*declares .* but log \|det J\| of forward\(\) is"),
    (cc.UndeclaredJacobian(BOX), r"\[jacobian\].*does not implement log_abs_det_jacobian"),
    (cc.HalvingPostProcessor(BOX), r"\[identity_when_bounded\].*maps"),
])
def test_wrong_density_declarations_of_post_processors_fail(post, pattern: str) -> None:
    with pytest.raises(ConformanceError, match=pattern):
        conformance.check_postprocessor(post, ACTION_DIM, "post P")


# -- every component of this repo passes ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gaussian", "squashed_gaussian", "beta", "squashed_mixture"])
def test_the_repos_heads_pass_every_property(name: str) -> None:
    h, lat = head(repo_heads()[name]), latent()
    conformance.check_density(h, lat, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if name == "beta" else "error", conformance.UncheckedWarning)
        assert conformance.check_log_prob_gradient(h, lat, name) is (name != "beta")
    conformance.check_same_distribution(h, lat, name)
    conformance.check_deterministic(lambda: h(lat, deterministic=True), name, "forward")


@pytest.mark.parametrize("post", [Identity(BOX), Clip(BOX), Tanh(BOX), Tanh(BOX, epsilon=0.0)])
def test_the_builtin_post_processors_pass(post) -> None:
    conformance.check_postprocessor(post, ACTION_DIM, type(post).__name__)


def test_the_noise_post_processors_pass() -> None:
    from diffrl_plugin_noise.postprocessors import GaussianNoise, OUNoise

    for post in (GaussianNoise(BOX, sigma=0.3), OUNoise(BOX, sigma=0.3)):
        conformance.check_postprocessor(post, ACTION_DIM, type(post).__name__)


# -- the statistical checks' false-alarm rate ----------------------------------------------------------------


SEEDS = range(100)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gaussian", "squashed_gaussian", "beta", "squashed_mixture"])
def test_correct_heads_rarely_fail_the_statistical_checks(name: str) -> None:
    """Over 100 seeds (each a fresh head, latent and sampling seed), at most 1 false alarm per check.

    The stated rate is FALSE_ALARM_RATE = 0.001 per check and seed; 2 or more in 100 would
    have probability 0.005 at that rate (bench/conformance_false_alarms.py measures it over
    more seeds). The gradient check is not statistical: it must never fail a correct head.
    """
    assert FALSE_ALARM_RATE == 1e-3
    checks = {"density": conformance.check_density, "same_distribution": conformance.check_same_distribution,
              "log_prob_gradient": conformance.check_log_prob_gradient}
    failures = dict.fromkeys(checks, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", conformance.UncheckedWarning)  # beta's gradient
        for seed in SEEDS:
            h, lat = head(repo_heads()[name], seed), latent(seed)
            for key, check in checks.items():
                try:
                    check(h, lat, name, seed=seed)
                except ConformanceError:
                    failures[key] += 1
    assert failures["density"] <= 1 and failures["same_distribution"] <= 1, failures
    assert failures["log_prob_gradient"] == 0, failures


@pytest.mark.slow
def test_the_density_check_has_power_against_every_seed() -> None:
    missed = 0
    for seed in range(50):
        try:
            conformance.check_density(head(cc.MissingJacobianMixtureHead, seed), latent(seed), "x", seed=seed)
            missed += 1
        except ConformanceError:
            pass
    assert missed == 0


def test_density_estimate_is_one_for_a_known_density() -> None:
    estimates = [conformance.density_estimate(head(cc.SquashedMixtureHead), latent()[:1], seed=s) for s in range(20)]
    mean = sum(e.mean for e in estimates if e is not None) / len(estimates)
    assert abs(mean - 1.0) < 0.02


def test_ks_critical_value_matches_the_textbook() -> None:
    # c(0.05) = 1.358 for the two-sample test
    assert conformance.ks_critical_value(100, 100, 0.05) == pytest.approx(1.358 * math.sqrt(2 / 100), rel=1e-3)


# -- end to end: check_component names the component and the property ------------------------------------


@pytest.fixture
def components_plugin():
    with registered_plugin(cc, "conformance_fixtures") as host:
        yield host


def test_the_correct_mixture_head_conforms(components_plugin) -> None:
    check_component("actor_heads", "squashed_mixture", fresh_process=False, steps=120)


@pytest.mark.parametrize(("kind", "name", "prop"), [
    ("actor_heads", "missing_jacobian_mixture", "density"),
    ("actor_heads", "detached_log_prob_mixture", "log_prob_gradient"),
    ("actor_heads", "wider_when_acting_mixture", "same_distribution"),
    ("actor_heads", "jittery_mixture", "reproducible"),
    ("postprocessors", "overshooting", "bounds"),
    ("postprocessors", "half_jacobian_tanh", "jacobian"),
])
def test_check_component_names_the_component_and_the_property(components_plugin, kind, name, prop) -> None:
    with pytest.raises(ConformanceError, match=rf"{name}.* fails \[{prop}\]"):
        check_component(kind, name, fresh_process=False, steps=120)


@pytest.mark.parametrize("term", ["no_gradient", "buffer_only"])
def test_a_loss_term_that_trains_nothing_is_named(components_plugin, term: str) -> None:
    config = {"env": "Pendulum-v1", "algo": "sac",
              "policy": {"head": "squashed_gaussian", "postprocess": "identity",
                         "losses": [{"name": "sac_entropy"}, {"name": term}]}}
    with pytest.raises(ConformanceError, match=rf"loss term '{term}'.* fails \[loss_gradient\]"):
        check_composition(config, steps=120, fresh_process=False)


@pytest.mark.slow
@pytest.mark.parametrize("plugin", ["diffrl_core", "gaussian"])  # beta and noise: in their own tests
def test_every_component_of_the_repo_conforms(plugin: str) -> None:
    reports = check_plugin(plugin)
    assert reports and all(report.reloaded for report in reports)
    assert all(report.unchecked == [] for report in reports)

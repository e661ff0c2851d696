"""The ``beta`` head: its math, the conformance checks, and what users without the plugin see."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch as th

from diffrl_core import MissingComponentError, load_model, make_model
from diffrl_core.testing import UncheckedWarning, check_plugin, disabled_plugins
from diffrl_plugin_beta.heads import BetaHead


def make_head(seed: int = 0, **kwargs) -> BetaHead:
    th.manual_seed(seed)
    return BetaHead(latent_dim=5, action_dim=3, **kwargs).double()


@pytest.mark.slow
def test_the_plugin_passes_the_conformance_checks() -> None:
    # SAC + sac_entropy + identity on Pendulum-v1: trained, predict in bounds, saved, loaded in a fresh process
    with pytest.warns(UncheckedWarning, match="implicit reparameterization"):
        (report,) = check_plugin("beta")
    assert "head=beta" in report.label and "sac_entropy" in report.label and "identity" in report.label
    # torch's Beta is reparameterized implicitly: finite differences cannot check its log-prob gradient,
    # and the report says so rather than passing it
    assert len(report.unchecked) == 1 and "(b)" in report.unchecked[0]


def test_log_prob_is_that_of_the_affinely_mapped_beta() -> None:
    head = make_head()
    latent = th.randn(200, 5, dtype=th.float64)
    sample = head.sample(latent)
    dist = head.distribution(latent)
    # a = 2 x - 1: torch's own change of variables
    mapped = th.distributions.TransformedDistribution(dist, [th.distributions.AffineTransform(-1.0, 2.0)])
    expected = mapped.log_prob(sample.actions).sum(dim=-1)
    assert sample.log_prob.shape == (200,)
    assert th.allclose(sample.log_prob, expected, atol=1e-8)


def test_entropy_matches_a_monte_carlo_estimate() -> None:
    head = make_head(1)
    latent = th.randn(1, 5, dtype=th.float64).expand(20_000, 5)
    with th.no_grad():
        sample = head.sample(latent)
    assert abs(-sample.log_prob.mean().item() - sample.params["entropy"][0].item()) < 0.05


def test_samples_are_reparameterized_and_within_bounds() -> None:
    head = make_head(2)
    latent = th.randn(64, 5, dtype=th.float64)
    sample = head.sample(latent)
    assert sample.actions.abs().max() <= 1.0
    assert (sample.params["alpha"] > 1).all() and (sample.params["beta"] > 1).all()  # unimodal
    (sample.actions.sum() + sample.log_prob.sum()).backward()
    assert head.concentrations.weight.grad is not None and head.concentrations.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", ["mean", "mode"])
def test_the_deterministic_action_is_the_mean_or_the_mode(mode: str) -> None:
    head = make_head(3, deterministic_action=mode)
    latent = th.randn(16, 5, dtype=th.float64)
    dist = head.distribution(latent)
    alpha, beta = dist.concentration1, dist.concentration0
    x = alpha / (alpha + beta) if mode == "mean" else (alpha - 1) / (alpha + beta - 2)
    assert th.allclose(head(latent, deterministic=True), 2 * x - 1)
    assert th.equal(head(latent, deterministic=True), head(latent, deterministic=True))


def test_the_log_prob_stays_finite_when_samples_reach_the_bounds() -> None:
    head = make_head(4)
    with th.no_grad():  # one concentration huge: float32 samples round to 0 or 1
        head.concentrations.bias[:3] = 60.0
        head.concentrations.weight.zero_()
    head = head.float()
    sample = head.sample(th.zeros(1000, 5))
    assert th.isfinite(sample.log_prob).all()
    assert sample.actions.abs().max() <= 1.0 - 2 * head.eps + 1e-7


def test_bad_kwargs_are_refused() -> None:
    with pytest.raises(ValueError, match="deterministic_action"):
        BetaHead(4, 1, deterministic_action="median")
    with pytest.raises(ValueError, match="eps"):
        BetaHead(4, 1, eps=0.0)


def test_loading_a_beta_model_without_the_plugin_names_the_head_and_the_distribution(tmp_path: Path) -> None:
    model = make_model({"env": "Pendulum-v1", "algo": "sac", "policy": {"net_arch": [8], "head": "beta"}})
    model.save(tmp_path / "beta_model")
    with disabled_plugins("beta"):
        with pytest.raises(MissingComponentError) as excinfo:
            load_model(tmp_path / "beta_model")
    message = str(excinfo.value)
    assert "actor head 'beta'" in message and "diffrl-plugin-beta" in message
    assert "pip install diffrl-plugin-beta" in message
    assert math.isfinite(load_model(tmp_path / "beta_model").predict(model.observation_space.sample())[0][0])

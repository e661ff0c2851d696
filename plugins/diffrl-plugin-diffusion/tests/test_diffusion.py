"""The ``diffusion`` head and ``diffusion_bc``: the log-density estimate, conformance, training, the two-peak bandit."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch as th
from diffrl_plugin_diffusion.heads import DiffusionHead, log_tanh_derivative, vp_betas

from diffrl_core import IncompatibleComponentsError, make_model
from diffrl_core.errors import ConfigError
from diffrl_core.testing import UncheckedWarning, check_plugin


def make_head(seed: int = 0, trained_like: bool = True, **kwargs) -> DiffusionHead:
    """A float64 head; ``trained_like``: its output layer drawn at random (a new head's is zero)."""
    th.manual_seed(seed)
    head = DiffusionHead(latent_dim=3, **{"action_dim": 2, **kwargs}).double()
    if trained_like:
        with th.no_grad():
            output = head.noise_net[-1]
            output.weight.normal_(0.0, 0.5)
            output.bias.normal_(0.0, 0.2)
            head.log_sigma.add_(0.3 * th.randn_like(head.log_sigma))
    return head


def test_the_schedule_discretizes_the_vp_sde() -> None:
    betas = vp_betas(8)
    assert betas.shape == (8,) and bool((betas > 0).all()) and bool((betas[1:] > betas[:-1]).all())
    # alpha_bar_T = exp(-(beta_min + beta_max) / 2) whatever the number of steps
    for steps in (1, 5, 16):
        assert math.isclose(th.prod(1 - vp_betas(steps)).item(), math.exp(-5.05), rel_tol=1e-9)


def test_the_estimate_is_its_definition() -> None:
    # l = log p(x_T) + sum_t [log p(x_{t-1} | x_t) - log q(x_t | x_{t-1})] - log |tanh'(x_0)|, every density
    # computed here by torch.distributions from the same draws
    head = make_head()
    latent = th.randn(64, 3, dtype=th.float64)
    th.manual_seed(7)
    sample = head.sample(latent)
    th.manual_seed(7)
    normal = th.distributions.Normal
    x = th.randn(64, 2, dtype=th.float64)
    expected = normal(0.0, 1.0).log_prob(x).sum(-1)
    for i in reversed(range(head.steps)):
        alpha, beta = 1 - head.betas[i].double(), head.betas[i].double()
        alpha_bar = th.prod(1 - head.betas[: i + 1].double())
        eps = head.epsilon(x, i, latent)
        mean = (x - beta / th.sqrt(1 - alpha_bar) * eps) / th.sqrt(alpha)
        sigma = head.log_sigma[i].exp()
        previous = mean + sigma * th.randn(64, 2, dtype=th.float64)
        expected = (expected + normal(mean, sigma).log_prob(previous).sum(-1)
                    - normal(th.sqrt(alpha) * previous, th.sqrt(beta)).log_prob(x).sum(-1))
        x = previous
    actions = th.tanh(x)
    expected = expected - th.log(1 - actions**2).sum(-1)
    assert th.allclose(sample.actions, actions, atol=1e-12)
    assert th.allclose(sample.log_prob, expected, atol=1e-7)


def test_a_new_head_samples_squashed_normal_actions_with_their_exact_log_density() -> None:
    # f = 0 at initialization: each reverse step is the time reversal of the stationary noising of N(0, I),
    # so the chain's x_0 is N(0, I) and the estimate is the exact log-density of tanh(N(0, I))
    head = make_head(trained_like=False, learn_sigma=True)
    latent = th.randn(20_000, 3, dtype=th.float64)
    with th.no_grad():
        sample = head.sample(latent)
    x0 = sample.params["x0"]
    assert abs(x0.mean().item()) < 0.03 and abs(x0.std().item() - 1.0) < 0.02
    exact = th.distributions.Normal(0.0, 1.0).log_prob(x0).sum(-1) - log_tanh_derivative(x0)
    assert th.allclose(sample.log_prob, exact, atol=1e-9)
    squashed = th.distributions.TransformedDistribution(th.distributions.Normal(0.0, 1.0),
                                                        [th.distributions.TanhTransform()])
    rows = (sample.actions.abs() < 0.999).all(-1)
    assert th.allclose(sample.log_prob[rows], squashed.log_prob(sample.actions[rows]).sum(-1), atol=1e-6)


def test_with_one_step_the_estimate_exceeds_the_log_density_by_the_posterior_kl_on_average() -> None:
    # T = 1, one action dimension: pi(x_0) = integral N(x_1; 0, 1) p(x_0 | x_1) dx_1 by quadrature. Per sample,
    # l - log pi(x_0) = log p(x_1 | x_0) - log q(x_1 | x_0), whose mean over x_1 ~ p(. | x_0) is
    # KL(p(. | x_0) || q(. | x_0)) >= 0: the estimate is a bound in expectation, off by exactly that KL
    head = make_head(seed=3, steps=1, action_dim=1)
    latent = th.randn(1, 3, dtype=th.float64)
    grid = th.linspace(-8, 8, 4001, dtype=th.float64)[:, None]  # x_1
    width = (grid[1] - grid[0]).item()
    normal = th.distributions.Normal
    with th.no_grad():
        sigma, sqrt_alpha, sqrt_beta = head.log_sigma[0, 0].exp(), head.sqrt_alphas[0], head.sqrt_betas[0]
        mean = mean_step(head, grid, 0, latent.expand(len(grid), 3)).squeeze(1)  # the reverse step's mean at each x_1
        th.manual_seed(11)
        sample = head.sample(latent.expand(1000, 3))
        x0 = sample.params["x0"]  # (1000, 1)
        estimate = sample.log_prob + log_tanh_derivative(x0)  # l without tanh's term: that of x_0
        joint = normal(0.0, 1.0).log_prob(grid.squeeze(1)) + normal(mean, sigma).log_prob(x0)  # (1000, grid)
        log_pi = th.logsumexp(joint, dim=1) + math.log(width)
        posterior = joint - log_pi[:, None]  # log p(x_1 | x_0) on the grid
        log_q = normal(sqrt_alpha * x0, sqrt_beta).log_prob(grid.squeeze(1))  # log q(x_1 | x_0) on the grid
        kl = (posterior.exp() * (posterior - log_q)).sum(dim=1) * width
    assert th.allclose((posterior.exp().sum(dim=1) * width), th.ones(1000, dtype=th.float64), atol=1e-6)
    gap = estimate - log_pi
    assert bool((kl >= 0).all()) and kl.mean().item() > 0.01
    standard_error = gap.std().item() / math.sqrt(len(gap))
    assert abs(gap.mean().item() - kl.mean().item()) < 4 * standard_error, (gap.mean(), kl.mean(), standard_error)


def test_samples_are_reparameterized_through_the_whole_chain() -> None:
    head = make_head(steps=4)
    latent = th.randn(32, 3, dtype=th.float64)
    sample = head.sample(latent)
    assert sample.actions.abs().max() < 1.0
    (sample.actions.sum() + sample.log_prob.sum()).backward()
    first_layer = head.input_layer.weight.grad
    assert first_layer is not None and first_layer.abs().sum() > 0
    assert head.log_sigma.grad is not None and bool((head.log_sigma.grad != 0).all())  # every step's noise scale


def test_the_deterministic_action_is_the_noise_free_path() -> None:
    head = make_head()
    latent = th.randn(16, 3, dtype=th.float64)
    with th.no_grad():
        first = head(latent, deterministic=True)
        th.manual_seed(123)
        again = head(latent, deterministic=True)
        x = th.zeros(16, 2, dtype=th.float64)
        for i in reversed(range(head.steps)):
            x = mean_step(head, x, i, latent)
    assert th.equal(first, again)
    assert th.allclose(first, th.tanh(x), atol=1e-12)


def mean_step(head: DiffusionHead, x: th.Tensor, i: int, latent: th.Tensor) -> th.Tensor:
    return (x - head.eps_coefficients[i] * head.epsilon(x, i, latent)) / head.sqrt_alphas[i]


def test_the_denoising_loss_of_a_new_head_has_its_closed_form() -> None:
    # a new head predicts eps(x_t) = sqrt(1 - alpha_bar_t) x_t. For x_0 ~ N(0, I) that is E[eps | x_t], and the loss is
    # what is left, Var(eps | x_t) = alpha_bar_t per dimension; for a constant x_0 = c it is
    # alpha_bar_t^2 + alpha_bar_t (1 - alpha_bar_t) c^2. Averaged over the T steps, t uniform.
    head = make_head(trained_like=False)
    alpha_bars = th.cumprod(1 - vp_betas(head.steps), dim=0)
    latent = th.randn(200_000, 3, dtype=th.float64)
    with th.no_grad():
        normal = head.denoising_loss(latent, th.tanh(th.randn(200_000, 2, dtype=th.float64))).item()
        constant = head.denoising_loss(latent, th.full((200_000, 2), 0.5, dtype=th.float64)).item()
    c = math.atanh(0.5)
    assert abs(normal - alpha_bars.mean().item()) < 0.01
    assert abs(constant - (alpha_bars**2 + alpha_bars * (1 - alpha_bars) * c**2).mean().item()) < 0.01


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps must be an integer >= 1"),
    ({"hidden": [64, 0]}, "hidden must be a non-empty list of positive integers"),
    ({"beta_min": 2.0, "beta_max": 1.0}, "0 < beta_min <= beta_max"),
    ({"activation": "swish"}, "activation must be one of mish, relu, silu, tanh"),
    ({"learn_sigma": "yes"}, "learn_sigma must be true or false"),
    ({"hidden": 64}, "hidden"),
])
def test_bad_head_kwargs_name_the_config_key(kwargs, message) -> None:
    config = {"env": "Pendulum-v1", "algo": "sac", "policy": {"head": "diffusion", "head_kwargs": kwargs}}
    with pytest.raises(ConfigError, match="policy.head_kwargs") as error:
        make_model(config)
    assert message in str(error.value)


def test_diffusion_bc_needs_a_diffusion_head() -> None:
    config = {"env": "Pendulum-v1", "algo": "td3",
              "policy": {"head": "deterministic", "losses": [{"name": "q_value"}, {"name": "diffusion_bc"}]}}
    with pytest.raises(IncompatibleComponentsError, match="needs a diffusion head"):
        make_model(config)


@pytest.mark.slow
def test_the_plugin_passes_the_conformance_checks() -> None:
    # the head under SAC + sac_entropy, diffusion_bc under TD3 + q_value with the head, both on Pendulum-v1:
    # trained, predict in bounds, saved and loaded in a fresh process where they act the same
    with pytest.warns(UncheckedWarning, match="estimate"):
        reports = check_plugin("diffusion")
    labels = sorted(report.label for report in reports)
    assert any("sac" in label and "head=diffusion" in label and "sac_entropy" in label for label in labels)
    assert any("td3" in label and "diffusion_bc" in label and "head=diffusion" in label for label in labels)
    sac = next(report for report in reports if "sac_entropy" in report.label)
    assert len(sac.unchecked) == 1 and "(a)" in sac.unchecked[0]  # only the density: the gradient (b) is checked


def logged(model, tmp_path, steps: int) -> dict[str, np.ndarray]:
    """Train ``model`` for ``steps`` env steps with a CSV logger; the logged columns (one row per episode)."""
    from stable_baselines3.common.logger import configure

    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(steps, log_interval=1)
    rows = np.genfromtxt(tmp_path / "progress.csv", delimiter=",", names=True, deletechars="")
    return {name: rows[name] for name in rows.dtype.names}


@pytest.mark.slow
def test_diffusion_ql_under_td3_learns_to_denoise_the_buffers_actions(tmp_path) -> None:
    config = {"env": "Pendulum-v1", "algo": "td3", "seed": 0,
              "policy": {"net_arch": [64, 64], "head": "diffusion", "postprocess": "identity",
                         "losses": [{"name": "diffusion_bc"}, {"name": "q_value", "kwargs": {"normalize": True}}]},
              "algo_kwargs": {"learning_starts": 100, "batch_size": 128, "buffer_size": 5000},
              "action_noise": {"type": "normal", "sigma": 0.1}}
    model = make_model(config)
    initial = copy.deepcopy(model.actor)
    logs = logged(model, tmp_path, 1000)  # 5 episodes: 900 critic and 450 actor updates
    assert len(logs["train/loss/diffusion_bc"]) == 5
    for column in ("train/loss/diffusion_bc", "train/loss/q_value", "train/q_value/q_scale", "train/critic_loss"):
        assert np.isfinite(logs[column]).all(), column
    buffer = model.replay_buffer
    observations = th.as_tensor(buffer.observations[: buffer.pos, 0])
    actions = th.as_tensor(buffer.actions[: buffer.pos, 0])

    def denoising_loss(actor) -> float:
        th.manual_seed(0)  # the same noise and steps for both
        with th.no_grad():
            return actor.head.denoising_loss(actor.latent(observations), actions).item()

    def mean_q(actor) -> float:
        th.manual_seed(0)
        with th.no_grad():
            return model.critic.q1_forward(observations, actor(observations)).mean().item()

    # both terms moved the chain their way, on every state of the buffer: the critic rates the trained policy's
    # actions higher than the initial policy's, and its denoising loss toward the buffer's actions is lower
    assert mean_q(model.actor) > mean_q(initial), (mean_q(model.actor), mean_q(initial))
    assert denoising_loss(model.actor) < denoising_loss(initial), (denoising_loss(model.actor), denoising_loss(initial))


@pytest.mark.slow
def test_dime_under_sac_tunes_the_entropy_coefficient_on_the_estimate(tmp_path) -> None:
    config = {"env": "Pendulum-v1", "algo": "sac", "seed": 0,
              "policy": {"net_arch": [64, 64], "head": "diffusion", "head_kwargs": {"steps": 4},
                         "losses": [{"name": "sac_entropy"}], "postprocess": "identity"},
              "algo_kwargs": {"learning_starts": 100, "batch_size": 128, "buffer_size": 5000}}
    model = make_model(config)
    logs = logged(model, tmp_path, 800)
    assert np.isfinite(logs["train/loss/sac_entropy"]).all() and np.isfinite(logs["train/ent_coef_loss"]).all()
    # target -1 (auto: minus the action dimension); a new chain's bound is the entropy of tanh(N(0, 1)), about
    # 0.9 nats, above the target, so alpha falls from 1 as SAC's tuning does for a Gaussian
    assert logs["train/ent_coef"][-1] < 0.9 * logs["train/ent_coef"][0]
    with th.no_grad():
        sample = model.actor.sample(th.as_tensor(model.replay_buffer.observations[:256, 0]))
    assert th.isfinite(sample.log_prob).all() and sample.actions.abs().max() <= 1


@pytest.mark.slow
def test_diffusion_ql_under_td3_finds_an_optimum_of_the_two_peak_bandit() -> None:
    # a one-step task whose critic is learned in a few hundred steps: the deterministic action (the chain's
    # noise-free path, TD3's target policy) ends near one of the two optimal actions, +-0.5 (return about 0,
    # against -3.8 in the valley and -4.5 at the bounds)
    config = {"env": "diffrl/TwoPeakBandit-v0", "algo": "td3", "seed": 0,
              "policy": {"net_arch": [64, 64], "head": "diffusion", "postprocess": "identity",
                         "losses": [{"name": "diffusion_bc"}, {"name": "q_value", "kwargs": {"normalize": True}}]},
              "algo_kwargs": {"learning_rate": 3.0e-3, "learning_starts": 200, "batch_size": 256,
                              "buffer_size": 5000, "policy_delay": 1},
              "action_noise": {"type": "normal", "sigma": 0.1}}
    model = make_model(config)
    start, _ = model.predict(np.zeros((1, 1), dtype=np.float32), deterministic=True)
    model.learn(1500)
    action, _ = model.predict(np.zeros((1, 1), dtype=np.float32), deterministic=True)
    assert abs(float(start[0, 0])) < 0.1  # a new chain's noise-free path ends at 0, the valley
    assert abs(abs(float(action[0, 0])) - 0.5) < 0.1, (start, action)

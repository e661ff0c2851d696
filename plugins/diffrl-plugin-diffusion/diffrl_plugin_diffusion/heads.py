"""The ``diffusion`` actor head: an observation-conditioned denoising chain, sampled with reparameterized noise.

The chain works in pre-squashing space ``x`` and ends in ``a = tanh(x_0)``, so the head is bounded.
Notation (Ho et al., 2020, DDPM), steps ``t = 1..T``:

- **forward (noising) process**, fixed: ``q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t I)``, with
  ``alpha_t = 1 - beta_t`` and ``alpha_bar_t = prod_{s <= t} alpha_s``, so that
  ``q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)``;
- **reverse (denoising) process**, learned: ``x_T ~ N(0, I)`` and
  ``p(x_{t-1} | x_t, s) = N(mu(x_t, t, s), sigma_t^2 I)`` with DDPM's noise-prediction form
  ``mu = (x_t - beta_t / sqrt(1 - alpha_bar_t) * eps(x_t, t, s)) / sqrt(alpha_t)``; ``eps`` is an MLP of
  ``x_t``, a learned embedding of ``t`` and the actor's latent features of the observation ``s``.

**The log-density estimate.** The density of ``x_0``, ``pi(x_0) = integral of p(x_{0:T}) dx_{1:T}``, has no
closed form. For any chain ``x_{0:T}`` drawn from ``p``,
``log pi(x_0) = log p(x_{0:T}) - log p(x_{1:T} | x_0)``, and for the fixed forward process ``q``,
``E_p[log p(x_{1:T} | x_0) - log q(x_{1:T} | x_0) | x_0] = KL(p(. | x_0) || q(. | x_0)) >= 0``. So the per-sample
estimate the head returns (DIME's, Celik et al., ICML 2025),

    l(x_{0:T}) = log p(x_T) + sum_t [log p(x_{t-1} | x_t, s) - log q(x_t | x_{t-1})]  (- log|tanh'(x_0)|),

satisfies ``E_p[l] = E_pi[log pi] + E[KL] >= E_pi[log pi]``: ``-E[l]`` is a lower bound of the policy's
entropy, tight when the learned reverse chain is the time reversal of ``q`` started from ``pi``. The head says
so (``exact_log_prob = False``), and the conformance checks leave the density property unchecked for it.
Each term is computed from the sampled tensors themselves, so the estimate's gradient is the pathwise
gradient through the whole chain (what SAC's actor loss differentiates).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch as th
from torch import nn

from diffrl_core.components import ActorHead, HeadSample

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def vp_betas(steps: int, beta_min: float = 0.1, beta_max: float = 10.0) -> th.Tensor:
    """The variance-preserving schedule: ``beta_t`` of ``T`` steps, in float64.

    It discretizes the VP SDE ``dx = -b(u) x du / 2 + sqrt(b(u)) dW`` with ``b`` linear from
    ``beta_min`` to ``beta_max`` on ``u in [0, 1]``: ``alpha_t`` is ``exp(-integral of b)`` over the step's
    interval ``[(t - 1) / T, t / T]``, so ``alpha_bar_T = exp(-(beta_min + beta_max) / 2)`` whatever ``T``
    (0.0064 with the defaults: ``x_T`` is close to the ``N(0, I)`` the chain starts from).
    """
    t = th.arange(1, steps + 1, dtype=th.float64)
    integral = beta_min / steps + (beta_max - beta_min) * (2 * t - 1) / (2 * steps**2)
    return 1.0 - th.exp(-integral)


def gaussian_log_prob(x: th.Tensor, mean: th.Tensor | float, std: th.Tensor | float) -> th.Tensor:
    """``log N(x; mean, std^2 I)`` summed over the last dimension."""
    std_tensor = th.as_tensor(std, dtype=x.dtype, device=x.device)
    return (-0.5 * ((x - mean) / std_tensor) ** 2 - th.log(std_tensor) - _LOG_SQRT_2PI).sum(dim=-1)


def log_tanh_derivative(x: th.Tensor) -> th.Tensor:
    """``log(1 - tanh(x)^2)`` summed over the last dimension, exact where tanh saturates in float32."""
    return (2.0 * (math.log(2.0) - x - nn.functional.softplus(-2.0 * x))).sum(dim=-1)


_ACTIVATIONS: dict[str, type[nn.Module]] = {"mish": nn.Mish, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


class DiffusionHead(ActorHead):
    """A denoising chain of ``steps`` steps from ``N(0, I)`` to the action, conditioned on the latent features.

    :param latent_dim: size of the latent features (given by diffrl)
    :param action_dim: size of the action (given by diffrl)
    :param steps: denoising steps ``T`` (each one evaluation of the noise network)
    :param hidden: hidden layer sizes of the noise network ``eps(x_t, t, s)``
    :param time_dim: size of the learned embedding of the step ``t``
    :param beta_min: the VP schedule's ``b(0)`` (:func:`vp_betas`)
    :param beta_max: the VP schedule's ``b(1)``
    :param learn_sigma: learn the reverse steps' standard deviations ``sigma_t`` (one per step and action
        dimension, starting at DDPM's ``sqrt(beta_t)``); False keeps ``sigma_t = sqrt(beta_t)``
    :param activation: the noise network's activation: ``mish`` (Diffusion-QL's), ``relu``, ``silu`` or ``tanh``
    """

    stochastic = True
    has_log_prob = True
    bounded = True  # a = tanh(x_0)
    exact_log_prob = False  # the log-prob is the chain's estimate l (a bound in expectation), see the module

    def __init__(
        self,
        latent_dim: int,
        action_dim: int,
        steps: int = 8,
        hidden: Sequence[int] = (64, 64),
        time_dim: int = 16,
        beta_min: float = 0.1,
        beta_max: float = 10.0,
        learn_sigma: bool = True,
        activation: str = "mish",
    ) -> None:
        super().__init__(latent_dim, action_dim)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        hidden = list(hidden)
        if not hidden or any(isinstance(size, bool) or not isinstance(size, int) or size < 1 for size in hidden):
            raise ValueError(f"hidden must be a non-empty list of positive integers, got {hidden!r}")
        if isinstance(time_dim, bool) or not isinstance(time_dim, int) or time_dim < 1:
            raise ValueError(f"time_dim must be a positive integer, got {time_dim!r}")
        if not 0 < beta_min <= beta_max:
            raise ValueError(f"expected 0 < beta_min <= beta_max, got beta_min={beta_min!r}, beta_max={beta_max!r}")
        if not isinstance(learn_sigma, bool):
            raise ValueError(f"learn_sigma must be true or false, got {learn_sigma!r}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(_ACTIVATIONS)}, got {activation!r}")
        self.steps = steps
        betas = vp_betas(steps, beta_min, beta_max)
        alphas = 1.0 - betas
        alpha_bars = th.cumprod(alphas, dim=0)
        self.register_buffer("betas", betas.float())
        self.register_buffer("sqrt_alphas", alphas.sqrt().float())
        self.register_buffer("sqrt_betas", betas.sqrt().float())
        self.register_buffer("eps_coefficients", (betas / (1.0 - alpha_bars).sqrt()).float())
        self.register_buffer("sqrt_alpha_bars", alpha_bars.sqrt().float())
        self.register_buffer("sqrt_one_minus_alpha_bars", (1.0 - alpha_bars).sqrt().float())
        log_sigma = (0.5 * betas.log()).float().unsqueeze(1).repeat(1, action_dim)
        if learn_sigma:
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", log_sigma)
        self.time_embedding = nn.Embedding(steps, time_dim)
        # the first layer of eps(x_t, t, s) on [x_t, embedding(t), s]; the chain computes its share of s once
        self.input_layer = nn.Linear(action_dim + time_dim + latent_dim, hidden[0])
        layers: list[nn.Module] = [_ACTIVATIONS[activation]()]
        size = hidden[0]
        for width in hidden[1:]:
            layers += [nn.Linear(size, width), _ACTIVATIONS[activation]()]
            size = width
        output = nn.Linear(size, action_dim)
        # starts at 0: the chain starts as the exact time reversal of the noising of N(0, I) (see epsilon())
        nn.init.zeros_(output.weight)
        nn.init.zeros_(output.bias)
        layers.append(output)
        self.noise_net = nn.Sequential(*layers)

    def conditioning(self, latent: th.Tensor) -> th.Tensor:
        """The latent features' share of the noise network's first layer (with its bias), the same at every step."""
        weight = self.input_layer.weight[:, self.action_dim + self.time_embedding.embedding_dim:]
        return nn.functional.linear(latent, weight, self.input_layer.bias)

    def epsilon(self, x: th.Tensor, step: int | th.Tensor, latent: th.Tensor | None = None,
                conditioning: th.Tensor | None = None) -> th.Tensor:
        """The predicted noise ``eps(x_t, t, s) = sqrt(1 - alpha_bar_t) x_t + f(x_t, t, s)``, ``f`` the network.

        The first part is the exact noise prediction for actions distributed ``N(0, I)`` before squashing
        (whose noised marginals are all ``N(0, I)``): with ``f = 0``, as initialized, each reverse step is
        ``N(sqrt(alpha_t) x_t, beta_t I)``, the time reversal of the stationary noising process. So a new
        head samples ``tanh(N(0, I))`` (spread over the action range, not saturated at the bounds, as a
        chain of random steps would be), and its log-prob estimate is exact.

        :param x: ``x_t``, shape ``(batch, action_dim)``
        :param step: ``t - 1`` (0-based): one int for the whole batch, or a tensor of shape ``(batch,)``
        :param latent: the latent features, shape ``(batch, latent_dim)``
        :param conditioning: :meth:`conditioning` of ``latent``, computed once for a whole chain (instead of ``latent``)
        """
        if conditioning is None:
            assert latent is not None, "epsilon() needs the latent features or their conditioning"
            conditioning = self.conditioning(latent)
        weight = self.input_layer.weight.to(x.dtype)
        x_weight = weight[:, : self.action_dim]
        time_weight = weight[:, self.action_dim: self.action_dim + self.time_embedding.embedding_dim]
        if isinstance(step, int):  # one embedding for the batch: its share is a vector
            time_share = nn.functional.linear(self.time_embedding.weight[step].to(x.dtype), time_weight)
            scale = self.sqrt_one_minus_alpha_bars[step]
        else:
            time_share = nn.functional.linear(self.time_embedding(step).to(x.dtype), time_weight)
            scale = self.sqrt_one_minus_alpha_bars[step][:, None]
        hidden = nn.functional.linear(x, x_weight) + time_share + conditioning
        return scale * x + self.noise_net(hidden)  # type: ignore[no-any-return]

    def chain(self, latent: th.Tensor, stochastic: bool = True,
              log_prob: bool = True) -> tuple[th.Tensor, th.Tensor | None]:
        """Run the reverse chain: the pre-squashing ``x_0`` and, if asked, the estimate ``l`` without tanh's term.

        :param latent: the latent features, shape ``(batch, latent_dim)``
        :param stochastic: draw ``x_T`` and every step's noise; False: the noise-free path from ``x_T = 0``
        :param log_prob: compute the estimate (only with ``stochastic``)
        """
        shape = (latent.shape[0], self.action_dim)
        x = th.randn(shape, dtype=latent.dtype, device=latent.device) if stochastic else latent.new_zeros(shape)
        estimate = gaussian_log_prob(x, 0.0, 1.0) if stochastic and log_prob else None
        sigmas = self.log_sigma.to(latent.dtype).exp()
        conditioning = self.conditioning(latent)
        for i in reversed(range(self.steps)):  # t = i + 1, from T down to 1
            mean = (x - self.eps_coefficients[i] * self.epsilon(x, i, conditioning=conditioning)) / self.sqrt_alphas[i]
            if not stochastic:
                x = mean
                continue
            previous = mean + sigmas[i] * th.randn(shape, dtype=latent.dtype, device=latent.device)
            if estimate is not None:
                # log p(x_{t-1} | x_t, s) - log q(x_t | x_{t-1}), both at the sampled tensors (pathwise gradient)
                estimate = (estimate + gaussian_log_prob(previous, mean, sigmas[i])
                            - gaussian_log_prob(x, self.sqrt_alphas[i] * previous, self.sqrt_betas[i]))
            x = previous
        return x, estimate

    def forward(self, latent: th.Tensor, deterministic: bool = False) -> th.Tensor:
        """A sampled action, or (``deterministic``) the chain's noise-free path from ``x_T = 0``."""
        x, _ = self.chain(latent, stochastic=not deterministic, log_prob=False)
        return th.tanh(x)

    def sample(self, latent: th.Tensor) -> HeadSample:
        """A reparameterized sample through the whole chain, with the log-density estimate ``l`` (see the module)."""
        x, estimate = self.chain(latent)
        assert estimate is not None
        return HeadSample(th.tanh(x), estimate - log_tanh_derivative(x), {"x0": x})

    def denoising_loss(self, latent: th.Tensor, actions: th.Tensor, max_abs_action: float = 0.999) -> th.Tensor:
        """Diffusion-QL's denoising loss toward given actions: ``E_{t, eps} ||eps - eps(x_t, t, s)||^2``.

        ``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps`` with ``x_0 = atanh(a)``, ``t`` uniform over
        the steps, ``eps ~ N(0, I)``, one draw per row (the mean over rows and action dimensions).

        :param latent: the latent features of the actions' observations, shape ``(batch, latent_dim)``
        :param actions: raw actions in ``[-1, 1]`` (the replay buffer's), shape ``(batch, action_dim)``
        :param max_abs_action: actions are clamped to ``[-max_abs_action, max_abs_action]`` before ``atanh``
        """
        x0 = th.atanh(actions.clamp(-max_abs_action, max_abs_action))
        steps = th.randint(0, self.steps, (actions.shape[0],), device=actions.device)
        noise = th.randn_like(x0)
        x_t = self.sqrt_alpha_bars[steps, None] * x0 + self.sqrt_one_minus_alpha_bars[steps, None] * noise
        return ((self.epsilon(x_t, steps, latent) - noise) ** 2).mean()

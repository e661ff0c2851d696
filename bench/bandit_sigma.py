"""Which actor-loss gradient finds the max-entropy optimum? SAC on ``diffrl/QuadraticBandit-v0``.

The bandit's reward is ``-k ||a - a*(c)||^2``; with a fixed entropy coefficient ``alpha`` the
optimal policy is ``N(a*(c), alpha / (2k))`` per dimension (see the env's docstring). This
script trains the ``gaussian`` head (state-independent log-std, a linear mean: ``net_arch.pi
= []``) with SAC and each of

- ``sac_entropy``             (autograd through rsample: the correct gradient),
- ``sac_entropy_closed_form`` (the same gradient, written by hand),
- ``sac_entropy_detached``    (log-prob at the detached sample: the seed's formulas),

records the standard deviation over training, writes a plot, and prints the final mean
error and standard deviation against the optimum. Means and standard deviations are
reported in the env's action units (the policy acts in ``[-1, 1]``, which SB3 rescales
linearly to ``[low, high]``).

    python bench/bandit_sigma.py                       # the documented run (docs/gradients.md)
    python bench/bandit_sigma.py --steps 2000 --no-plot

``run_experiment`` is what ``tests/test_bandit_experiment.py`` runs, at the small size.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

VARIANTS = ("sac_entropy", "sac_entropy_closed_form", "sac_entropy_detached")
DEFAULT_PLOT = Path(__file__).resolve().parent.parent / "docs" / "img" / "bandit_sigma.png"


@dataclass
class VariantResult:
    """One training run.

    :param loss: the loss term
    :param steps: env steps at which sigma and the mean error were recorded
    :param sigma: recorded standard deviations, shape ``(len(steps), action_dim)``, env units
    :param mean_error: recorded max |mean - a*| over the evaluation contexts, env units
    :param final_sigma: per-dimension sigma, averaged over the last 10% of the records
    :param final_mean_error: max |mean - a*| over the evaluation contexts at the end
    :param seconds: wall-clock training time
    """

    loss: str
    steps: list[int] = field(default_factory=list)
    sigma: list[np.ndarray] = field(default_factory=list)
    mean_error: list[float] = field(default_factory=list)
    final_sigma: np.ndarray | None = None
    final_mean_error: float = float("nan")
    seconds: float = 0.0


@dataclass
class Experiment:
    alpha: float
    k: float
    optimal_sigma: float
    total_timesteps: int
    seed: int
    results: dict[str, VariantResult]

    def table(self) -> str:
        lines = [
            f"QuadraticBandit-v0, k={self.k:g}, alpha={self.alpha:g}: optimal sigma sqrt(alpha/(2k)) = "
            f"{self.optimal_sigma:.4f}; {self.total_timesteps} steps, seed {self.seed}",
            "",
            "| loss term | final sigma (per dim) | sigma / optimum | max abs mean error | train time |",
            "| --- | --- | --- | --- | --- |",
        ]
        for result in self.results.values():
            assert result.final_sigma is not None
            sigmas = ", ".join(f"{s:.4f}" for s in result.final_sigma)
            ratios = ", ".join(f"{s / self.optimal_sigma:.3f}" for s in result.final_sigma)
            lines.append(f"| `{result.loss}` | {sigmas} | {ratios} | {result.final_mean_error:.4f} | "
                         f"{result.seconds:.1f} s |")
        return "\n".join(lines)


def make_config(loss: str, alpha: float, total_timesteps: int, seed: int, k: float = 1.0,
                learning_rate: tuple[float, float] = (3e-3, 1e-3)) -> dict[str, Any]:
    """The diffrl config of one run (a mapping for :func:`diffrl_core.make_model`).

    Choices, all for speed on a CPU: a linear mean (``pi: []``, the optimum is linear in the
    context), a state-independent log-std started at twice the optimum (std 1 in env units
    when the bounds are the default ``[-3, 3]``), one critic (a one-step episode has no
    bootstrapped target to overestimate: the critic regresses the reward), a learning rate
    decayed linearly from 3e-3 to 1e-3. ``clip`` bounds the normalized action to
    ``[-1, 1]``; the optimum lies at least 4 optimal standard deviations inside, so clipping
    is negligible at convergence.
    """
    try:
        from stable_baselines3.common.utils import LinearSchedule
    except ImportError:  # stable-baselines3 < 2.5
        from stable_baselines3.common.utils import get_linear_fn as LinearSchedule

    return {
        "env": "diffrl/QuadraticBandit-v0",
        "env_kwargs": {"k": k},
        "algo": "sac",
        "policy": {
            "net_arch": {"pi": [], "qf": [64, 64]},
            "head": "gaussian",
            "head_kwargs": {"state_dependent_std": False, "log_std_init": math.log(1.0 / 3.0)},
            "losses": [{"name": loss}],
            "postprocess": "clip",
            "raw_log_prob": True,  # the Gaussian's own log-prob: the one the closed-form optimum is about
            "n_critics": 1,
        },
        "algo_kwargs": {
            "ent_coef": alpha,  # fixed alpha: the optimum is known for it
            "learning_rate": LinearSchedule(learning_rate[0], learning_rate[1], 1.0),
            "batch_size": 256,
            "learning_starts": 256,
            "buffer_size": max(total_timesteps, 1000),
        },
        "total_timesteps": total_timesteps,
        "seed": seed,
    }


def train_variant(loss: str, alpha: float, total_timesteps: int, seed: int = 0, k: float = 1.0,
                  record_every: int = 50, n_contexts: int = 256) -> VariantResult:
    """Train one variant and record sigma and the mean error along the way."""
    import torch as th
    from stable_baselines3.common.callbacks import BaseCallback

    from diffrl_core import make_model

    model = make_model(make_config(loss, alpha, total_timesteps, seed, k))
    env = model.get_env().envs[0].unwrapped  # type: ignore[union-attr]
    half_range = th.as_tensor((env.action_space.high - env.action_space.low) / 2.0)
    centre = th.as_tensor((env.action_space.high + env.action_space.low) / 2.0)
    contexts = np.random.default_rng(12345).uniform(-1.0, 1.0, (n_contexts, env.context_dim)).astype(np.float32)
    optimal = th.as_tensor(env.optimal_action(contexts))
    obs = th.as_tensor(contexts, device=model.device)
    result = VariantResult(loss)

    def record(step: int) -> None:
        actor = model.actor
        with th.no_grad():
            params = actor.head.params(actor.latent(obs))
            mean, log_std = params["mean"], params["log_std"]
            # normalized -> env units (SB3's unscale is linear); clip is inactive at the mean
            sigma = (log_std.exp() * half_range).mean(dim=0)
            error = (mean.cpu() * half_range + centre - optimal).abs().max()
        result.steps.append(step)
        result.sigma.append(sigma.cpu().numpy())
        result.mean_error.append(float(error))

    class Recorder(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % record_every == 0:
                record(self.num_timesteps)
            return True

    record(0)
    start = time.perf_counter()
    model.learn(total_timesteps, callback=Recorder())
    result.seconds = time.perf_counter() - start
    if result.steps[-1] != total_timesteps:
        record(total_timesteps)
    tail = max(1, len(result.sigma) // 10)
    result.final_sigma = np.mean(result.sigma[-tail:], axis=0)
    result.final_mean_error = result.mean_error[-1]
    return result


def run_experiment(total_timesteps: int = 2000, alpha: float = 0.5, k: float = 1.0, seed: int = 0,
                   variants: tuple[str, ...] = VARIANTS) -> Experiment:
    """Train every variant with the same seed and settings."""
    import torch as th

    threads = th.get_num_threads()
    th.set_num_threads(1)  # small networks: threads cost more than they give
    try:
        results = {loss: train_variant(loss, alpha, total_timesteps, seed, k) for loss in variants}
    finally:
        th.set_num_threads(threads)
    return Experiment(alpha, k, math.sqrt(alpha / (2.0 * k)), total_timesteps, seed, results)


def plot(experiment: Experiment, path: Path) -> None:
    """sigma (left) and max abs mean error (right) over training, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    styles = {
        "sac_entropy": {"color": "tab:blue", "linestyle": "-", "linewidth": 3.0, "alpha": 0.6},
        "sac_entropy_closed_form": {"color": "black", "linestyle": "--", "linewidth": 1.2},
        "sac_entropy_detached": {"color": "tab:red", "linestyle": "-", "linewidth": 1.5},
    }
    fig, (ax_sigma, ax_mean) = plt.subplots(1, 2, figsize=(11, 4))
    for loss, result in experiment.results.items():
        sigma = np.asarray(result.sigma).mean(axis=1)
        style = styles.get(loss, {})
        ax_sigma.plot(result.steps, sigma, label=loss, **style)
        ax_mean.plot(result.steps, result.mean_error, label=loss, **style)
    ax_sigma.axhline(experiment.optimal_sigma, color="tab:green", linestyle=":", label=r"optimum $\sqrt{\alpha/2k}$")
    ax_sigma.axhline(experiment.optimal_sigma / 2, color="grey", linestyle=":", linewidth=0.8, label="optimum / 2")
    ax_sigma.set(xlabel="env steps", ylabel=r"$\sigma$ (env units, mean over dims)", ylim=(0, None),
                 title=rf"QuadraticBandit-v0, $\alpha$={experiment.alpha:g}, k={experiment.k:g}")
    ax_mean.set(xlabel="env steps", ylabel=r"max $|\mu(c) - a^*(c)|$", yscale="log", title="mean error")
    ax_sigma.legend(fontsize=8)
    ax_mean.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4000, help="env steps per variant")
    parser.add_argument("--alpha", type=float, default=0.5, help="fixed entropy coefficient")
    parser.add_argument("--k", type=float, default=1.0, help="reward curvature")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT, help="where to write the PNG")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    experiment = run_experiment(args.steps, args.alpha, args.k, args.seed)
    print(experiment.table())
    if not args.no_plot:
        plot(experiment, args.plot)
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()

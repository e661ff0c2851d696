"""The picture of why diffusion heads exist: 1,000 actions of two SAC policies on diffrl/TwoPeakBandit-v0.

Both are trained with ``examples/two_peak_bandit_diffusion.yaml`` (SAC, ``ent_coef`` 1 = the env's
temperature, 2,500 steps), one with the ``diffusion`` head, one with ``squashed_gaussian``; only the
head differs. The maximum-entropy optimum is the equal mixture of ``N(+0.5, 1/36)`` and
``N(-0.5, 1/36)`` (drawn over the histograms). Writes ``docs/img/two_peak_bandit.png`` and prints
the mass near each optimum and in the valley, for each seed. About 40 s per seed on one core.

    python bench/two_peak_bandit.py                  # seed 0, the README's picture
    python bench/two_peak_bandit.py --seeds 0 1 2    # the masses for more seeds (the picture: the first)
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "two_peak_bandit_diffusion.yaml"
HEADS = ("diffusion", "squashed_gaussian")


def sampled_actions(head: str, seed: int, n: int = 1000) -> tuple[np.ndarray, float, float]:
    """``n`` actions of the policy with ``head`` trained by the example config with ``seed``, and two entropies.

    :return: the actions; ``-E[log_prob]`` over 100,000 samples (for ``diffusion`` the bound on the entropy its
        log-prob estimate gives); the entropy of the same samples estimated from a 400-bin histogram
    """
    import torch as th

    from diffrl_core import make_model
    from diffrl_core.config import load_config

    th.set_num_threads(1)
    config = load_config(EXAMPLE, [f"policy.head={head}", f"seed={seed}"])
    model = make_model(config)
    model.learn(config.total_timesteps)
    th.manual_seed(seed)
    actions, _ = model.predict(np.zeros((n, 1), dtype=np.float32), deterministic=False)
    with th.no_grad():
        sample = model.actor.sample(th.zeros(100_000, 1))
    counts, edges = np.histogram(sample.actions.numpy().ravel(), bins=400, range=(-1, 1))
    p = counts[counts > 0] / counts.sum()
    histogram_entropy = float(-(p * np.log(p / (edges[1] - edges[0]))).sum())
    return np.asarray(actions).ravel(), float(-sample.log_prob.mean()), histogram_entropy


def masses(actions: np.ndarray, width: float = 0.15) -> tuple[float, float, float]:
    """Fractions within ``width`` of +0.5, of -0.5 and of the valley at 0 (the test's criterion)."""
    return tuple(float(np.mean(np.abs(actions - center) < width)) for center in (0.5, -0.5, 0.0))  # type: ignore[return-value]


def optimal_density(a: np.ndarray, peak: float = 0.5, sigma: float = 1 / 6) -> np.ndarray:
    """The maximum-entropy optimum at alpha = the temperature: the equal mixture of N(+-peak, sigma^2)."""
    normal = [np.exp(-0.5 * ((a - c) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi)) for c in (peak, -peak)]
    return 0.5 * (normal[0] + normal[1])


def draw(samples: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(-1, 1, 400)
    figure, axes = plt.subplots(1, len(samples), figsize=(9, 3.2), sharey=True)
    for ax, (head, actions) in zip(axes, samples.items(), strict=True):
        plus, minus, valley = masses(actions)
        ax.hist(actions, bins=40, range=(-1, 1), density=True, color="tab:blue" if head == "diffusion" else "tab:gray")
        ax.plot(grid, optimal_density(grid), color="black", lw=1.2, label="max-entropy optimum")
        ax.set_title(f"{head}: {minus:.0%} near -0.5, {plus:.0%} near +0.5, {valley:.0%} near 0", fontsize=9)
        ax.set_xlabel("action")
    axes[0].set_ylabel("density of 1,000 sampled actions")
    axes[0].legend(fontsize=8, loc="upper center")
    figure.suptitle("SAC on diffrl/TwoPeakBandit-v0 (ent_coef 1, 2,500 steps): only the head differs", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "two_peak_bandit.png")
    args = parser.parse_args()
    print("| seed | head | near +0.5 | near -0.5 | valley (near 0) | -E[log_prob] | entropy (histogram) |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for i, seed in enumerate(args.seeds):
        samples = {}
        for head in HEADS:
            actions, bound, entropy = sampled_actions(head, seed)
            samples[head] = actions
            plus, minus, valley = masses(actions)
            print(f"| {seed} | {head} | {plus:.1%} | {minus:.1%} | {valley:.1%} | {bound:.3f} | {entropy:.3f} |",
                  flush=True)
        if i == 0:
            draw(samples, args.out)
    print(f"picture (seed {args.seeds[0]}): {args.out}")


if __name__ == "__main__":
    main()

"""On diffrl/TwoPeakBandit-v0 the trained diffusion policy covers both optimal actions; a squashed Gaussian cannot.

At ``ent_coef`` 1 (the env's temperature) the best maximum-entropy policy is the equal mixture of
``N(+0.5, 1/36)`` and ``N(-0.5, 1/36)``, with 2.2% of a peak's density in the valley at 0. The
criterion compares the mass within 0.15 of each optimum with the mass within 0.15 of the valley:
bimodal means at least 15% near each optimum and at most half as much in the valley as near either.
Both heads are trained with ``examples/two_peak_bandit_diffusion.yaml`` (only the head differs);
``bench/two_peak_bandit.py`` draws the same two policies (the README's picture).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch as th

from diffrl_core import make_model
from diffrl_core.config import load_config

EXAMPLE = Path(__file__).parents[3] / "examples" / "two_peak_bandit_diffusion.yaml"


def trained_actions(head: str, steps: int = 2500, n: int = 1000) -> np.ndarray:
    """``n`` actions sampled from the policy of ``head`` after ``steps`` env steps (one gradient step each)."""
    model = make_model(load_config(EXAMPLE, [f"policy.head={head}"]))
    model.learn(steps)
    th.manual_seed(0)
    actions, _ = model.predict(np.zeros((n, 1), dtype=np.float32), deterministic=False)
    return actions.ravel()


def masses(actions: np.ndarray, width: float = 0.15) -> tuple[float, float, float]:
    """Fractions of the actions within ``width`` of +0.5, of -0.5 and of the valley at 0."""
    return tuple(float(np.mean(np.abs(actions - center) < width)) for center in (0.5, -0.5, 0.0))  # type: ignore[return-value]


def bimodal(plus: float, minus: float, valley: float) -> bool:
    return min(plus, minus) >= 0.15 and valley <= 0.5 * min(plus, minus)


@pytest.mark.slow
def test_diffusion_covers_both_optima_and_a_squashed_gaussian_does_not() -> None:
    diffusion = masses(trained_actions("diffusion"))
    gaussian = masses(trained_actions("squashed_gaussian"))
    assert bimodal(*diffusion), f"diffusion: near +0.5, -0.5, 0: {diffusion}"
    assert not bimodal(*gaussian), f"squashed_gaussian: near +0.5, -0.5, 0: {gaussian}"

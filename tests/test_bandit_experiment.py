"""The experiment of docs/gradients.md, small: which actor-loss gradient finds the known optimum.

On ``diffrl/QuadraticBandit-v0`` with a fixed alpha the optimal policy is
``N(a*(c), alpha / (2k))``. SAC's gradient (``sac_entropy``, and its hand-written twin
``sac_entropy_closed_form``) converges to it; the log-prob at the detached sample (the seed
document's formulas, ``sac_entropy_detached``) loses the entropy bonus and its std collapses.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bandit_sigma.py"
ALPHA, K = 0.5, 1.0

pytestmark = pytest.mark.slow  # 2000 training steps per loss term


@pytest.fixture(scope="module")
def experiment():
    pytest.importorskip("diffrl_envs")
    spec = importlib.util.spec_from_file_location("diffrl_bench_bandit_sigma", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    return module.run_experiment(total_timesteps=2000, alpha=ALPHA, k=K, seed=0)


@pytest.mark.parametrize("loss", ["sac_entropy", "sac_entropy_closed_form"])
def test_correct_gradients_converge_to_the_optimum(experiment, loss: str) -> None:
    optimum = math.sqrt(ALPHA / (2 * K))
    result = experiment.results[loss]
    print("\n" + experiment.table())
    for sigma in result.final_sigma:
        assert abs(sigma - optimum) <= 0.10 * optimum, (loss, result.final_sigma, optimum)
    assert result.final_mean_error <= 0.05, (loss, result.final_mean_error)


def test_detached_log_prob_collapses(experiment) -> None:
    optimum = math.sqrt(ALPHA / (2 * K))
    result = experiment.results["sac_entropy_detached"]
    assert all(sigma < 0.5 * optimum for sigma in result.final_sigma), (result.final_sigma, optimum)
    assert all(result.sigma[-1] < 0.5 * optimum)  # at the very end too, not only on average

"""Measure the false-alarm rate (and the power) of the statistical conformance checks over many seeds.

Each seed is a fresh head (torch seeded with it), random latent rows and the checks' own seed:
``diffrl_core.conformance.check_density`` (property a) and ``check_same_distribution`` (f).
Correct heads should fail at most ``FALSE_ALARM_RATE`` (0.001) of the seeds per check; the
broken heads of ``tests/conformance_components.py`` should fail every seed of the check
they break.

    OMP_NUM_THREADS=1 python bench/conformance_false_alarms.py --seeds 2000
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import time
from pathlib import Path

import torch as th

from diffrl_core import conformance

REPO = Path(__file__).resolve().parents[1]


def _fixtures():
    path = REPO / "tests" / "conformance_components.py"
    spec = importlib.util.spec_from_file_location("conformance_components", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2000)
    parser.add_argument("--action-dim", type=int, default=2)
    parser.add_argument("--latent-dim", type=int, default=8)
    args = parser.parse_args()
    th.set_num_threads(1)
    from diffrl_plugin_beta.heads import BetaHead
    from diffrl_plugin_gaussian.heads import GaussianHead, SquashedGaussianHead

    fixtures = _fixtures()
    heads = {
        "gaussian": GaussianHead, "squashed_gaussian": SquashedGaussianHead, "beta": BetaHead,
        "squashed_mixture": fixtures.SquashedMixtureHead,
        "BROKEN missing_jacobian_mixture": fixtures.MissingJacobianMixtureHead,
        "BROKEN wider_when_acting_mixture": fixtures.WiderWhenActingMixtureHead,
    }
    checks = {"density (a)": conformance.check_density, "same_distribution (f)": conformance.check_same_distribution}
    print(f"{args.seeds} seeds, action_dim {args.action_dim}, stated false-alarm rate {conformance.FALSE_ALARM_RATE}")
    print(f"{'head':34s} {'check':22s} {'failed':>8s} {'rate':>8s} {'95% upper':>10s} {'s':>6s}")
    for head_name, cls in heads.items():
        for check_name, check in checks.items():
            start, failed = time.perf_counter(), 0
            for seed in range(args.seeds):
                th.manual_seed(seed)
                head = cls(args.latent_dim, args.action_dim)
                latent = th.randn(6, args.latent_dim, generator=th.Generator().manual_seed(seed))
                try:
                    check(head, latent, head_name, seed=seed)
                except conformance.ConformanceError:
                    failed += 1
            rate = failed / args.seeds
            upper = _clopper_pearson_upper(failed, args.seeds)
            print(f"{head_name:34s} {check_name:22s} {failed:8d} {rate:8.4f} {upper:10.4f} "
                  f"{time.perf_counter() - start:6.1f}", flush=True)


def _clopper_pearson_upper(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided upper confidence bound of a binomial rate (bisection on the binomial CDF)."""
    if k == n:
        return 1.0
    lo, hi = k / n, 1.0
    for _ in range(60):
        p = (lo + hi) / 2
        cdf = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))
        lo, hi = (p, hi) if cdf > 1 - confidence else (lo, p)
    return hi


if __name__ == "__main__":
    main()

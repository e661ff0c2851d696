"""Wall time of ``diffrl plugins --json`` (every distribution of this repo installed).

Run: ``python bench/plugins_startup.py [--repeat 15]``. Prints the median wall time next
to a bare ``python -c pass`` and ``python -c "import torch"`` measured in the same run,
and checks that the command imported neither torch nor stable-baselines3.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

PROBE = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('HEAVY', [m for m in ('torch', 'stable_baselines3') if m in sys.modules], "
    "file=sys.stderr))\n"
    "from diffrl_core.cli import main\nsys.argv = ['diffrl', 'plugins', '--json']\nmain()\n"
)


def wall_time(argv: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()

    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "diffrl plugins --json": [sys.executable, "-c", PROBE],
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeat):  # alternate, so machine noise hits every command alike
        for name, argv in commands.items():
            elapsed, result = wall_time(argv)
            times[name].append(elapsed)
            if name == "diffrl plugins --json":
                heavy = result.stderr.strip().splitlines()[-1]
                assert heavy == "HEAVY []", f"diffrl plugins imported {heavy}"
                report = json.loads(result.stdout)
    print(f"plugins: {', '.join(p['name'] for p in report['plugins'])}; errors: {len(report['errors'])}")
    print(f"{'command':<28} {'median s':>9} {'min s':>7}")
    for name, values in times.items():
        print(f"{name:<28} {statistics.median(values):>9.3f} {min(values):>7.3f}")


if __name__ == "__main__":
    main()

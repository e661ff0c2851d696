"""stable-baselines3's own SAC/TD3 tests pass against the composed classes (``bench/sb3_suite.py``).

The script downloads SB3's sdist at the installed version from PyPI (once: it is cached under
``~/.cache/diffrl/sb3-tests/VERSION``) and runs its tests with ``bench/sb3_suite_shim.py``, which
binds SB3's ``SAC``/``TD3`` and its SAC/TD3 policy names to :class:`~diffrl_core.sb3.algorithms.ComposedSAC`,
:class:`~diffrl_core.sb3.algorithms.ComposedTD3` and their ``policy_aliases``, and selects the tests
that exercise SAC or TD3. Only the composed target runs here; ``python bench/sb3_suite.py`` (both
targets) compares it with SB3's own classes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "sb3_suite.py"


@pytest.mark.slow
def test_sb3_sac_td3_tests_pass_against_the_composed_classes(tmp_path: Path) -> None:
    """The default 16 test files: every selected test passes or is skipped by SB3's own ``pytest.skip``."""
    summary_path = tmp_path / "summary.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--target", "composed", "--work-dir", str(tmp_path / "work"),
         "--output", str(summary_path), "--timeout", "1200"],
        capture_output=True, text=True, env=env, timeout=1500,
    )
    assert summary_path.is_file(), f"bench/sb3_suite.py exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    run = json.loads(summary_path.read_text())["targets"]["composed"]

    assert run["mapped"]["stable_baselines3.SAC"]["to"] == "diffrl_core.sb3.algorithms.ComposedSAC", run["mapped"]
    assert run["mapped"]["stable_baselines3.TD3"]["to"] == "diffrl_core.sb3.algorithms.ComposedTD3", run["mapped"]
    assert run["notes"] == [], "a policy alias is not composed:\n" + "\n".join(run["notes"])
    assert run["selected"] > 150, f"only {run['selected']} SAC/TD3 tests selected: {run['log']}"
    counts = run["counts"]
    failing = "\n".join(f"  {f['outcome']} {f['nodeid']} - {(f['message'].splitlines() or [''])[0][:300]}"
                        for f in run["failures"])
    assert counts["failed"] == 0 and counts["error"] == 0 and counts["not run"] == 0 and not run["timed_out"], (
        f"{counts['failed']} failed, {counts['error']} errors, {counts['not run']} not run of {run['selected']} "
        f"SB3 tests against the composed classes (log: {run['log']}):\n{failing}"
    )
    assert counts["passed"] + counts["skipped"] == run["selected"], counts
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"

"""stable-baselines3's own SAC/TD3 (or PPO/A2C) tests, run against SB3's classes and against the composed ones.

The tests come from SB3's source distribution at the installed version: ``pip download
--no-binary :all: --no-deps stable-baselines3==VERSION`` into ``--cache-dir`` (default
``~/.cache/diffrl/sb3-tests/VERSION``, reused when present), from which ``tests/`` and SB3's
``pyproject.toml`` (its pytest settings: warning filters, the ``expensive`` marker) are
extracted. Nothing of them is copied into this repository.

Each target runs pytest on the chosen test files in a subprocess, with the plugin
``bench/sb3_suite_shim.py`` (see its docstring):

- ``stock``: SB3's own SAC and TD3, the baseline;
- ``composed``: SB3's names ``SAC``/``TD3`` and the SAC/TD3 policy names ``MlpPolicy``,
  ``CnnPolicy``, ``MultiInputPolicy`` bound to :class:`~diffrl_core.sb3.algorithms.ComposedSAC`,
  :class:`~diffrl_core.sb3.algorithms.ComposedTD3` and their ``policy_aliases``; nothing else.

``--algos PPO A2C`` does the same for PPO and A2C (:class:`~diffrl_core.sb3.on_policy.ComposedPPO`,
``ComposedA2C``) instead of SAC and TD3.

Both keep the same selection, the items that exercise SAC or TD3 (the others are deselected, and
counted as such), and, like SB3's own CI (``scripts/run_tests.sh``), leave out the tests marked
``expensive`` (``--include-expensive`` runs them: one TD3 model of more than 2 GB). The script
prints the counts of each target, its failures (test id, exception, one line) and the tests that
pass on stock but not on composed; it exits 1 when a target has a failure or an error.

Run: ``OMP_NUM_THREADS=1 python bench/sb3_suite.py [--target stock|composed|both] [--tests test_run test_sde]
[--output summary.json]``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
SHIM = "sb3_suite_shim"
#: the SB3 test files whose SAC/TD3 tests must pass against the composed classes
DEFAULT_TESTS = (
    "test_run", "test_save_load", "test_predict", "test_deterministic", "test_dict_env", "test_her", "test_cnn",
    "test_sde", "test_spaces", "test_custom_policy", "test_callbacks", "test_vec_normalize", "test_train_eval_mode",
    "test_n_step_replay", "test_tensorboard", "test_identity",
)
TARGETS = ("stock", "composed")
#: the outcomes a test can end with, in the order they are printed
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed", "not run")
BAD = ("failed", "error", "not run")


class SuiteError(Exception):
    """Getting SB3's tests or running pytest went wrong (not a test failing)."""


#: what SB3's selected tests import beyond SB3's own install (its ``extra``): the progress bar of test_callbacks
TEST_DEPENDENCIES = ("tqdm", "rich")


def check_test_dependencies() -> None:
    """Refuse to start without what SB3's tests need, instead of counting their ImportErrors as failures."""
    missing = [name for name in TEST_DEPENDENCIES if importlib.util.find_spec(name) is None]
    if missing:
        raise SuiteError(f"stable-baselines3's tests need {', '.join(missing)}: pip install {' '.join(missing)} "
                         "(diffrl-core's [test] extra has them)")


def default_cache_dir(version: str) -> Path:
    """``$XDG_CACHE_HOME`` (or ``~/.cache``) ``/diffrl/sb3-tests/VERSION``."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "diffrl" / "sb3-tests" / version


def _pip_env() -> dict[str, str]:
    return {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


def fetch_tests(version: str, cache: Path) -> Path:
    """SB3's ``tests/`` and ``pyproject.toml`` at ``version`` under ``cache`` (downloaded unless already there).

    :return: the folder that holds ``tests/`` and ``pyproject.toml`` (pytest's rootdir)
    :raises SuiteError: when pip cannot download the sdist, or the sdist has no ``tests/``
    """
    root = cache / "src"
    if (root / ".complete").is_file():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    download = cache / "sdist"
    sdists = sorted(download.glob("stable_baselines3-*.tar.gz"))
    if not sdists:
        args = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "--quiet",
                f"stable-baselines3=={version}", "-d", str(download)]
        print(f"downloading stable-baselines3=={version}'s sdist: {' '.join(args[1:])}", flush=True)
        result = subprocess.run(args, capture_output=True, text=True, env=_pip_env())
        sdists = sorted(download.glob("stable_baselines3-*.tar.gz"))
        if result.returncode != 0 or not sdists:
            raise SuiteError(f"pip could not download stable-baselines3=={version}'s sdist "
                             f"(exit {result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    (sdist,) = sdists[-1:]
    staging = Path(tempfile.mkdtemp(prefix="src-", dir=cache))
    try:
        with tarfile.open(sdist) as archive:
            members = []
            for member in archive.getmembers():
                top, _, rest = member.name.partition("/")
                if (rest == "pyproject.toml" or rest.startswith("tests/")) and (member.isfile() or member.isdir()):
                    member.name = rest
                    members.append(member)
            if not any(m.name.startswith("tests/test_") for m in members):
                raise SuiteError(f"{sdist.name} has no tests/ folder: this version of stable-baselines3 does not ship "
                                 "its tests in its sdist, and PyPI is the only source this script may use")
            # the "data" filter (Python 3.11.4+) refuses links and paths out of the folder; before it, the
            # members are plain files and folders under tests/ (checked above by name)
            safe: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            archive.extractall(staging, members=members, **safe)
        (staging / ".complete").write_text(f"{sdist.name}\n")
        staging.chmod(0o755)  # mkdtemp's 0o700
        shutil.rmtree(root, ignore_errors=True)
        staging.rename(root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def resolve_test_paths(root: Path, tests: list[str]) -> list[str]:
    """``test_run`` / ``test_run.py`` / ``test_run.py::test_sac`` -> paths under ``root/tests``."""
    paths = []
    for test in tests:
        file, sep, rest = test.partition("::")
        file = file.removeprefix("tests/")
        file = file if file.endswith(".py") else f"{file}.py"
        if not (root / "tests" / file).is_file():
            available = sorted(p.stem for p in (root / "tests").glob("test_*.py"))
            raise SuiteError(f"no tests/{file} in SB3's tests; there are: {', '.join(available)}")
        paths.append(str(root / "tests" / file) + sep + rest)
    return paths


@dataclass
class Outcome:
    """The end of one test: its outcome over setup, call and teardown, and why (one line)."""

    nodeid: str
    outcome: str
    message: str = ""
    duration: float = 0.0


@dataclass
class TargetRun:
    """One target's pytest run."""

    target: str
    returncode: int
    duration_s: float
    collected: int = 0
    deselected: list[str] = field(default_factory=list)
    selected: list[str] = field(default_factory=list)
    results: dict[str, Outcome] = field(default_factory=dict)
    mapped: dict[str, dict[str, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    timed_out: bool = False
    log: str = ""

    def counts(self) -> dict[str, int]:
        found = Counter(r.outcome for r in self.results.values())
        return {outcome: found.get(outcome, 0) for outcome in OUTCOMES}

    def bad(self) -> list[Outcome]:
        return [r for r in self.results.values() if r.outcome in BAD]

    def summary(self) -> dict[str, Any]:
        return {
            "returncode": self.returncode, "duration_s": round(self.duration_s, 1), "timed_out": self.timed_out,
            "collected": self.collected, "deselected": len(self.deselected), "selected": len(self.selected),
            "counts": self.counts(), "failures": [asdict(r) for r in self.bad()],
            "skips": [asdict(r) for r in self.results.values() if r.outcome == "skipped"],
            "durations": {r.nodeid: round(r.duration, 2) for r in self.results.values()},
            "mapped": self.mapped, "notes": self.notes, "log": self.log,
        }


def aggregate(records: list[dict[str, Any]], selected: list[str]) -> dict[str, Outcome]:
    """Per test, pytest's outcome from its phase reports.

    A failing call is ``failed``; otherwise a failing setup or teardown is ``error``; a skip in
    setup or call is ``skipped``; an expected failure is ``xfailed``/``xpassed``. A failed
    collection is an ``error`` of the module; a selected test that has no report is ``not run``.
    """
    results: dict[str, Outcome] = {}
    for record in records:
        result = results.setdefault(record["nodeid"], Outcome(record["nodeid"], "passed"))
        result.duration += record["duration"]
        when, outcome = record["when"], record["outcome"]
        if when == "collect":
            result.outcome, result.message = "error", f"collection failed: {record['message']}"
        elif when == "call" and record["wasxfail"]:
            result.outcome = "xfailed" if outcome == "skipped" else "xpassed"
        elif when == "call" and outcome == "failed":
            result.outcome, result.message = "failed", record["message"]
        elif outcome == "failed" and result.outcome != "failed":
            result.outcome, result.message = "error", f"error in {when}: {record['message']}"
        elif outcome == "skipped" and result.outcome == "passed":
            result.outcome, result.message = "skipped", record["message"]
    for nodeid in selected:
        results.setdefault(nodeid, Outcome(nodeid, "not run", "no report: pytest stopped before it (see the log)"))
    return results


def _copy_lines(source: IO[str], log: IO[str], show: bool) -> None:
    for line in source:
        log.write(line)
        if show:
            print(line, end="", flush=True)


def run_target(target: str, root: Path, paths: list[str], work: Path, pytest_args: list[str], timeout: float,
               show_output: bool) -> TargetRun:
    """Run pytest on ``paths`` with the shim for ``target``; its log and records go to ``work/target*``."""
    work.mkdir(parents=True, exist_ok=True)
    report, results, log = work / f"{target}-selection.json", work / f"{target}-results.jsonl", work / f"{target}.log"
    for path in (report, results):
        path.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "DIFFRL_SB3_TARGET": target,
        "DIFFRL_SB3_SHIM_REPORT": str(report),
        "DIFFRL_SB3_SHIM_RESULTS": str(results),
    }
    env.setdefault("OMP_NUM_THREADS", "1")
    args = [sys.executable, "-m", "pytest", "-p", SHIM, "-p", "no:cacheprovider", "-c", str(root / "pyproject.toml"),
            "--rootdir", str(root), "-o", "addopts=", "-rfE", "--continue-on-collection-errors", *pytest_args, *paths]
    cwd = work / f"{target}-cwd"  # tests that write into the working directory write here
    cwd.mkdir(exist_ok=True)
    print(f"[{target}] {' '.join(args[1:3])} ... (log: {log})", flush=True)
    start = time.perf_counter()
    timed_out = False
    with open(log, "w", encoding="utf-8") as out:
        process = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True)
        copier = threading.Thread(target=_copy_lines, args=(process.stdout, out, show_output), daemon=True)
        copier.start()
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(process.pid, signal.SIGKILL)  # pytest and what it started (SubprocVecEnv workers)
            returncode = process.wait()
        copier.join(timeout=10)
    duration = time.perf_counter() - start
    if not report.is_file():
        tail = log.read_text(encoding="utf-8", errors="replace")[-4000:]
        why = f"timed out after {timeout:.0f} s" if timed_out else f"exited {returncode}"
        raise SuiteError(f"[{target}] pytest {why} before the shim selected any test:\n{tail}")
    selection = json.loads(report.read_text())
    records = [json.loads(line) for line in results.read_text().splitlines()] if results.is_file() else []
    return TargetRun(
        target=target, returncode=returncode, duration_s=duration, collected=selection["collected"],
        deselected=selection["deselected"], selected=selection["selected"],
        results=aggregate(records, selection["selected"]), mapped=selection["mapped"], notes=selection["notes"],
        timed_out=timed_out, log=str(log),
    )


def normalized(nodeid: str, run: TargetRun) -> str:
    """The test id with the composed classes' names put back to SB3's (parametrize ids use ``__name__``)."""
    for item in run.mapped.values():
        old, new = item["from"].rpartition(".")[2], item["to"].rpartition(".")[2]
        if old != new:
            nodeid = re.sub(rf"(?<![A-Za-z0-9_]){re.escape(new)}(?![A-Za-z0-9_])", old, nodeid)
    return nodeid


def compare(stock: TargetRun, composed: TargetRun) -> dict[str, Any]:
    """Tests that pass on stock but not on composed, and tests that only one target selected."""
    theirs = {normalized(nodeid, composed): result for nodeid, result in composed.results.items()}
    regressions = [
        {"nodeid": result.nodeid, "stock": "passed", "composed": theirs[nodeid].outcome,
         "message": theirs[nodeid].message}
        for nodeid, result in stock.results.items()
        if result.outcome == "passed" and nodeid in theirs and theirs[nodeid].outcome != "passed"
    ]
    return {
        "pass_on_stock_not_on_composed": regressions,
        "only_on_stock": sorted(set(stock.results) - set(theirs)),
        "only_on_composed": sorted(set(theirs) - set(stock.results)),
    }


def _short(nodeid: str) -> str:
    return nodeid.removeprefix("tests/")


def print_run(run: TargetRun) -> None:
    counts = ", ".join(f"{n} {outcome}" for outcome, n in run.counts().items() if n or outcome in ("passed", "failed"))
    cut = " (TIMED OUT)" if run.timed_out else ""
    algos = "/".join(os.environ.get("DIFFRL_SB3_ALGOS", "SAC,TD3").split(","))
    print(f"\n[{run.target}] {len(run.selected)} selected of {run.collected} collected "
          f"({len(run.deselected)} deselected: not {algos}) "
          f"in {run.duration_s:.0f} s{cut}: {counts}")
    for note in run.notes:
        print(f"  note: {note}")
    for result in run.bad():
        print(f"  {result.outcome.upper()} {_short(result.nodeid)} - {result.message.splitlines()[0][:300]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=[*TARGETS, "both"], default="both",
                        help="SB3's own classes, the composed ones, or both (default)")
    parser.add_argument("--tests", nargs="+", default=list(DEFAULT_TESTS), metavar="TEST",
                        help="SB3 test files (test_run, test_run.py) or node ids (test_run.py::test_sac); "
                             "default: the 16 files of the issue")
    parser.add_argument("--cache-dir", type=Path, help="where the sdist and its tests go "
                        "(default: ~/.cache/diffrl/sb3-tests/VERSION)")
    parser.add_argument("--work-dir", type=Path, help="the runs' logs, records and working directories "
                        "(default: a new temporary folder)")
    parser.add_argument("--output", type=Path, help="write a JSON summary here")
    parser.add_argument("-k", dest="keyword", help="pytest's -k, on top of the selection of --algos")
    parser.add_argument("--algos", nargs="+", default=["SAC", "TD3"], choices=["SAC", "TD3", "PPO", "A2C"],
                        help="the algorithms mapped to the composed classes and selected (default: SAC TD3)")
    parser.add_argument("--include-expensive", action="store_true",
                        help="also run the tests SB3 marks expensive (its CI leaves them out)")
    parser.add_argument("--pytest-arg", action="append", default=[], metavar="ARG",
                        help="one more argument for pytest (repeatable), e.g. --pytest-arg=-x")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per target (default 3600)")
    parser.add_argument("--show-output", action="store_true", help="stream pytest's output (it always goes to the log)")
    args = parser.parse_args(argv)

    try:
        check_test_dependencies()
        version = importlib.metadata.version("stable-baselines3")
        root = fetch_tests(version, args.cache_dir or default_cache_dir(version))
        paths = resolve_test_paths(root, args.tests)
    except SuiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="sb3-suite-"))
    os.environ["DIFFRL_SB3_ALGOS"] = ",".join(args.algos)  # read by the shim in each pytest process
    pytest_args = [*([] if args.include_expensive else ["-m", "not expensive"]),
                   *(["-k", args.keyword] if args.keyword else []), *args.pytest_arg]
    print(f"stable-baselines3 {version}: {len(paths)} test files from {root / 'tests'}; "
          f"pytest {' '.join(pytest_args)}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '1')}", flush=True)

    runs: dict[str, TargetRun] = {}
    for target in TARGETS if args.target == "both" else (args.target,):
        try:
            runs[target] = run_target(target, root, paths, work, pytest_args, args.timeout, args.show_output)
        except SuiteError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print_run(runs[target])

    summary: dict[str, Any] = {
        "sb3_version": version, "tests_root": str(root), "tests": args.tests, "pytest_args": pytest_args,
        "targets": {target: run.summary() for target, run in runs.items()},
    }
    if len(runs) == 2:
        comparison = compare(runs["stock"], runs["composed"])
        summary["comparison"] = comparison
        regressions = comparison["pass_on_stock_not_on_composed"]
        print(f"\n{len(regressions)} tests pass on stock but not on composed")
        for item in regressions:
            print(f"  {_short(item['nodeid'])}: {item['composed']} - {item['message'].splitlines()[0][:300]}")
        for side in ("only_on_stock", "only_on_composed"):
            if comparison[side]:
                print(f"selected {side.replace('_', ' ')}: {', '.join(map(_short, comparison[side]))}")
    if args.output:
        args.output.write_text(json.dumps(summary, indent=1) + "\n")
        print(f"summary: {args.output}")
    return 1 if any(run.bad() or run.timed_out for run in runs.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

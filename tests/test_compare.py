"""``diffrl compare`` and ``diffrl plot`` on synthetic run folders: grouping, rliable's statistics, the figures.

No training: each run folder is what ``diffrl train`` leaves (a resolved ``config.yaml``, ``status.json``,
``evaluations.npz``, ``results.json``), written with chosen returns.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.stats
from click.testing import CliRunner, Result

from diffrl_core import comparison, runs
from diffrl_core.cli import main
from diffrl_core.config import parse_config
from diffrl_core.errors import DiffRLError

rly = pytest.importorskip("rliable.library")
metrics = pytest.importorskip("rliable.metrics")

REPS = 2000  # enough to compare with rliable, fast enough for a test


def make_run(
    folder: Path,
    returns: list[float] | None = None,
    *,
    steps: list[int] | None = None,
    seed: int = 0,
    env: str = "Pendulum-v1",
    name: str = "pendulum_sac",
    final: float | None = None,
    threads: int | None = None,
    versions: dict[str, Any] | None = None,
    **algo_kwargs: Any,
) -> runs.RunDir:
    """A run folder as ``diffrl train`` leaves it, with evaluations of the given mean returns.

    :param returns: the mean return of each evaluation (two episodes each); None: no evaluation
    :param steps: the step of each evaluation (default: every 1000 steps)
    :param final: the ``mean_return`` of ``results.json`` (None: no results.json)
    """
    config = parse_config({"env": env, "algo": "sac", "seed": seed, "threads": threads,
                           "algo_kwargs": {"learning_rate": 0.001, **algo_kwargs}})
    versions = versions or {"diffrl-core": "0.1.0", "stable-baselines3": "2.9.2", "plugins": {}}
    run = runs.create_run_dir(folder, runs.resolved_config(config, versions), {
        "status": "finished", "pid": None, "name": name, "env": env, "algo": "sac", "seed": seed,
        "num_timesteps": 20000, "total_timesteps": 20000,
    })
    if returns is not None:
        steps = steps or [1000 * (i + 1) for i in range(len(returns))]
        means = np.asarray(returns, dtype=float)
        with run.evaluations_file.open("wb") as file:
            # two episodes around each mean: their mean is the evaluation's return
            np.savez(file, timesteps=np.asarray(steps), results=np.stack([means - 1.0, means + 1.0], axis=1),
                     ep_lengths=np.full((len(steps), 2), 200))
    if final is not None:
        runs.write_json(run.results_file, {"num_timesteps": 20000, "eval_timesteps": 20000, "mean_return": final,
                                           "std_return": 1.0, "n_episodes": 2})
    return run


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def compare_json(*args: str) -> dict[str, Any]:
    result = invoke("compare", *args, "--json", "--reps", str(REPS))
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def rliable_interval(scores: np.ndarray, func: Any, seed: int, reps: int = REPS) -> tuple[float, list[float]]:
    """rliable's own point estimate and interval, computed as its README does (seeding numpy's generator)."""
    np.random.seed(seed)
    points, intervals = rly.get_interval_estimates({"x": scores}, func, reps=reps)
    return float(np.squeeze(points["x"])), [float(v) for v in np.ravel(intervals["x"])]


# -- statistics ------------------------------------------------------------------------------------


SCORES = [-210.0, -180.0, -150.0, -400.0, -160.0, -155.0, -170.0, -30.0]  # 8 runs: IQM cuts 2 at each end


def test_compare_reproduces_rliable(tmp_path: Path) -> None:
    for seed, score in enumerate(SCORES):
        make_run(tmp_path / "runs" / f"s{seed}", [-1200.0, score], seed=seed)
    report = compare_json(str(tmp_path / "runs"), "--seed", "7", "-o", str(tmp_path / "figures"))
    (group,) = report["groups"]
    assert group["n_runs"] == 8 and sorted(group["scores"]) == sorted(SCORES)
    assert report["reps"] == REPS and report["seed"] == 7 and report["ignored_keys"] == ["seed", "threads", "versions"]

    # by hand: the mean of the middle half
    assert group["iqm"] == pytest.approx(np.mean(sorted(SCORES)[2:6]))
    assert group["iqm"] == pytest.approx(scipy.stats.trim_mean(SCORES, 0.25))
    assert group["mean"] == pytest.approx(np.mean(SCORES))
    # rliable itself, on the same scores (runs x 1 task) with the same reps and seed
    scores = np.asarray(group["scores"]).reshape(-1, 1)
    iqm, iqm_ci = rliable_interval(scores, lambda x: np.array([metrics.aggregate_iqm(x)]), seed=7)
    mean, mean_ci = rliable_interval(scores, lambda x: np.array([metrics.aggregate_mean(x)]), seed=7)
    assert group["iqm"] == pytest.approx(iqm, rel=1e-12) and group["iqm_ci"] == pytest.approx(iqm_ci, rel=1e-12)
    assert group["mean"] == pytest.approx(mean, rel=1e-12) and group["mean_ci"] == pytest.approx(mean_ci, rel=1e-12)
    assert iqm_ci[0] < iqm < iqm_ci[1]

    # the same seed gives the same numbers; another seed other intervals
    assert compare_json(str(tmp_path / "runs"), "--seed", "7", "-o", str(tmp_path / "figures"))["groups"] == [group]
    other = compare_json(str(tmp_path / "runs"), "--seed", "8", "-o", str(tmp_path / "figures"))["groups"][0]
    assert other["iqm"] == group["iqm"] and other["iqm_ci"] != group["iqm_ci"]


def test_the_text_report_shows_the_same_numbers(tmp_path: Path) -> None:
    for seed, score in enumerate(SCORES[:5]):
        make_run(tmp_path / f"s{seed}", [score], seed=seed)
    result = invoke("compare", str(tmp_path), "--reps", str(REPS), "-o", str(tmp_path / "figures"))
    assert result.exit_code == 0, (result.output, result.exception)
    stats = comparison.group_statistics(SCORES[:5], REPS, 0)
    (row,) = [line for line in result.stdout.splitlines() if line.startswith("pendulum_sac")]
    assert f"{stats.iqm:.2f} [{stats.iqm_ci[0]:.2f}, {stats.iqm_ci[1]:.2f}]" in row
    assert f"{stats.mean:.2f} [{stats.mean_ci[0]:.2f}, {stats.mean_ci[1]:.2f}]" in row
    assert "seed, threads, versions" in result.stdout and f"{REPS} resamples, seed 0" in result.stdout
    assert result.stderr == ""  # 5 runs: no warning


def test_statistics_leave_numpy_global_generator_as_it_was() -> None:
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    comparison.group_statistics([1.0, 2.0, 3.0, 4.0, 5.0], 200, seed=0)
    assert np.random.random() == expected


@pytest.mark.parametrize("count", range(1, 13))
def test_interquartile_mean_is_rliables(count: int) -> None:
    values = np.random.default_rng(count).normal(0, 100, size=(count, 3))
    assert comparison.interquartile_mean(values[:, :1]) == metrics.aggregate_iqm(values[:, :1])
    assert comparison.interquartile_mean(values, axis=0) == pytest.approx(
        [metrics.aggregate_iqm(values[:, k:k + 1]) for k in range(3)], rel=1e-12)


def test_probability_of_improvement_is_rliables() -> None:
    rng = np.random.default_rng(0)
    for x, y in [(rng.normal(size=(5, 1)), rng.normal(size=(7, 1))), (np.ones((4, 1)), np.ones((4, 1))),
                 (np.array([[1.0], [2.0], [2.0]]), np.array([[2.0], [3.0]]))]:
        assert comparison.probability_of_improvement(x, y) == pytest.approx(metrics.probability_of_improvement(x, y))
    # and its interval: rliable's bootstrap of rliable's function, with the same reps and seed
    x, y = rng.normal(size=(6, 1)), rng.normal(0.5, 1, size=(6, 1))
    probability, interval = comparison.improvement(x.ravel().tolist(), y.ravel().tolist(), 500, seed=3)
    np.random.seed(3)
    points, intervals = rly.get_interval_estimates({"x,y": (x, y)}, metrics.probability_of_improvement, reps=500)
    assert probability == pytest.approx(float(points["x,y"]))
    assert interval == pytest.approx(tuple(np.ravel(intervals["x,y"])))


def test_probability_of_improvement_between_groups_on_the_same_env(tmp_path: Path) -> None:
    for seed in range(5):
        make_run(tmp_path / "runs" / f"fast-{seed}", [-1000.0, -150.0 - seed], seed=seed, learning_rate=0.001)
        make_run(tmp_path / "runs" / f"slow-{seed}", [-1000.0, -600.0 - seed], seed=seed, learning_rate=0.0001)
        make_run(tmp_path / "runs" / f"car-{seed}", [50.0 + seed], seed=seed, env="MountainCarContinuous-v0",
                 learning_rate=0.001)
    report = compare_json(str(tmp_path / "runs"), "-o", str(tmp_path / "figures"))
    labels = {group["label"]: group for group in report["groups"]}
    assert set(labels) == {
        "env=MountainCarContinuous-v0",
        "env=Pendulum-v1 algo_kwargs.learning_rate=0.0001",
        "env=Pendulum-v1 algo_kwargs.learning_rate=0.001",
    }
    assert labels["env=Pendulum-v1 algo_kwargs.learning_rate=0.001"]["config"] == {
        "env": "Pendulum-v1", "algo_kwargs.learning_rate": 0.001
    }
    (pair,) = report["probability_of_improvement"]
    assert pair["env"] == "Pendulum-v1"
    better = "env=Pendulum-v1 algo_kwargs.learning_rate=0.001"
    probability = pair["probability"] if pair["x"] == better else 1 - pair["probability"]
    assert probability == 1.0  # every fast run beats every slow one
    assert pair["ci"] == ([1.0, 1.0] if pair["x"] == better else [0.0, 0.0])
    # different envs: not compared, and said so
    assert len(report["not_compared"]) == 2
    assert all("different envs" in item["reason"] for item in report["not_compared"])

    result = invoke("compare", str(tmp_path / "runs"), "--reps", "500", "-o", str(tmp_path / "figures"))
    assert "probability of improvement P(X > Y)" in result.stdout
    assert "not compared: groups on different envs (MountainCarContinuous-v0, Pendulum-v1)" in result.stdout


def test_overlapping_groups_have_a_probability_in_between(tmp_path: Path) -> None:
    for seed, (a, b) in enumerate(zip([1.0, 3.0, 5.0, 7.0, 9.0], [2.0, 4.0, 6.0, 8.0, 10.0], strict=True)):
        make_run(tmp_path / f"a{seed}", [a], seed=seed, learning_rate=0.001)
        make_run(tmp_path / f"b{seed}", [b], seed=seed, learning_rate=0.002)
    (pair,) = compare_json(str(tmp_path), "-o", str(tmp_path / "figures"))["probability_of_improvement"]
    assert pair["x"] == "algo_kwargs.learning_rate=0.001" and pair["y"] == "algo_kwargs.learning_rate=0.002"
    assert pair["probability"] == pytest.approx(10 / 25)  # pairs (a, b) with a > b: 4 + 3 + 2 + 1 + 0
    assert pair["ci"][0] < pair["probability"] < pair["ci"][1]


# -- grouping --------------------------------------------------------------------------------------


def test_seeds_threads_and_versions_do_not_split_a_group(tmp_path: Path) -> None:
    found = [
        make_run(tmp_path / "a", [1.0], seed=0),
        make_run(tmp_path / "b", [2.0], seed=1, threads=2),
        make_run(tmp_path / "c", [3.0], seed=2, versions={"diffrl-core": "0.2.0"}),
    ]
    assert comparison.group_runs(found) == {"pendulum_sac": found}
    # an env changed with --set: the same config file name, another experiment
    other = make_run(tmp_path / "d", [4.0], env="MountainCarContinuous-v0")
    assert comparison.group_runs([*found, other]) == {
        "env=MountainCarContinuous-v0": [other], "env=Pendulum-v1": found,
    }
    assert comparison.group_differences(comparison.group_runs([*found, other])) == {
        "env=MountainCarContinuous-v0": {"env": "MountainCarContinuous-v0"}, "env=Pendulum-v1": {"env": "Pendulum-v1"},
    }
    # any other key does split
    lr = make_run(tmp_path / "e", [5.0], learning_rate=0.01)
    assert list(comparison.group_runs([*found, lr])) == ["algo_kwargs.learning_rate=0.001",
                                                         "algo_kwargs.learning_rate=0.01"]


def test_labels_are_short_and_name_the_differing_keys() -> None:
    def config(**changes: Any) -> dict[str, Any]:
        base = runs.resolved_config(parse_config({"env": "Pendulum-v1", "algo": "sac"}))
        base.update(changes)
        return base

    assert comparison._labels([config(), config(env="Hopper-v5")]) == ["env=Pendulum-v1", "env=Hopper-v5"]
    weighted = config()
    weighted["policy"] = {**weighted["policy"], "losses": [{"name": "sac_entropy", "weight": 0.5, "kwargs": {}}]}
    assert comparison._labels([config(), weighted]) == ["policy.losses[0].weight=1.0", "policy.losses[0].weight=0.5"]
    wide = config()
    wide["policy"] = {**wide["policy"], "net_arch": [64, 64]}
    assert comparison._labels([config(), wide]) == ["policy.net_arch=null", "policy.net_arch=[64,64]"]
    # a key that one config lacks; each label names only the keys that set its group apart
    tuned = config(algo_kwargs={"gamma": 0.9})
    assert comparison._labels([config(), tuned, config(env="Hopper-v5")]) == [
        "env=Pendulum-v1 algo_kwargs.gamma=(unset)", "env=Pendulum-v1 algo_kwargs.gamma=0.9", "env=Hopper-v5"
    ]


def test_a_sweep_folder_is_searched_at_any_depth(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    made = [make_run(sweep / "runs" / f"lr-{i}", [float(i)], seed=i) for i in range(3)]
    (sweep / "index.json").write_text("{}")
    (sweep / "configs").mkdir()
    (sweep / "configs" / "lr-0.yaml").write_text("env: Pendulum-v1\n")
    (sweep / "logs").mkdir()
    (sweep / "runs" / ".staging-1-hidden-abcdefgh").mkdir()
    (sweep / "runs" / ".staging-1-hidden-abcdefgh" / "status.json").write_text("{}")
    # a run folder is not searched further
    (made[0].path / "checkpoints" / "inner").mkdir()
    (made[0].path / "checkpoints" / "inner" / "status.json").write_text("{}")
    assert [run.path for run in runs.find_runs([tmp_path])] == [run.path for run in made]
    assert [run.path for run in runs.find_runs([made[1].path, sweep / "runs"])] == [
        made[1].path, *(run.path for run in made)
    ]
    with pytest.raises(DiffRLError, match="holds none"):
        runs.find_runs([sweep / "configs"])
    with pytest.raises(DiffRLError, match="does not exist"):
        runs.find_runs([tmp_path / "nothing"])

    report = compare_json(str(tmp_path), "-o", str(tmp_path / "figures"))
    assert [group["n_runs"] for group in report["groups"]] == [3]
    # a run named twice (itself and its sweep) counts once
    assert compare_json(str(made[0].path), str(sweep), "-o", str(tmp_path / "figures"))["groups"][0]["n_runs"] == 3


# -- what is scored, warnings and errors ------------------------------------------------------------


def test_results_json_is_the_score_else_the_last_evaluation(tmp_path: Path) -> None:
    finished = make_run(tmp_path / "a", [-500.0, -300.0], final=-250.0)
    unfinished = make_run(tmp_path / "b", [-500.0, -320.0], steps=[1000, 2000], seed=1)
    assert comparison.final_score(finished) == comparison.Score(-250.0, 20000)
    assert comparison.final_score(unfinished) == comparison.Score(-320.0, 2000)
    assert comparison.final_score(make_run(tmp_path / "c", seed=2)) is None
    # resumed to train longer after it finished: its old results.json is not its final evaluation
    runs.write_json(unfinished.results_file, {"eval_timesteps": 1000, "mean_return": -500.0})
    assert comparison.final_score(unfinished) == comparison.Score(-320.0, 2000)


def test_few_seeds_warn_and_runs_without_evaluations_are_skipped(tmp_path: Path) -> None:
    for seed in range(3):
        make_run(tmp_path / "runs" / f"s{seed}", [float(seed)], seed=seed)
    empty = make_run(tmp_path / "runs" / "z-empty", seed=9)
    result = invoke("compare", str(tmp_path / "runs"), "--reps", "500", "-o", str(tmp_path / "figures"))
    assert result.exit_code == 0, (result.output, result.exception)
    lines = result.stderr.splitlines()
    assert f"note: skipped 1 run(s) with no evaluation yet: {empty.path}" in lines
    (warning,) = [line for line in lines if line.startswith("warning:")]
    assert "'pendulum_sac' has 3 run(s)" in warning and "fewer than 5 seeds" in warning
    assert "not trustworthy" in warning


def test_nothing_to_compare_exits_2(tmp_path: Path) -> None:
    make_run(tmp_path / "runs" / "a")
    result = invoke("compare", str(tmp_path / "runs"), "-o", str(tmp_path / "figures"))
    assert result.exit_code == 2
    assert "nothing to compare: none of the runs in" in result.stderr and "has an evaluation yet" in result.stderr
    assert not (tmp_path / "figures").exists()
    result = invoke("compare", str(tmp_path / "nothing"))
    assert result.exit_code == 2 and "does not exist" in result.stderr
    result = invoke("compare", str(tmp_path / "runs"), "--reps", "0")
    assert result.exit_code == 2 and "--reps" in result.stderr
    result = invoke("compare", str(tmp_path / "runs"), "--seed", "-1")
    assert result.exit_code == 2 and "--seed" in result.stderr


def test_a_pickled_evaluations_file_is_refused(tmp_path: Path) -> None:
    run = make_run(tmp_path / "a", [1.0])
    results = np.empty((1, 2), dtype=object)
    np.savez(run.evaluations_file, timesteps=np.array([100]), results=results, ep_lengths=np.array([[1, 1]]))
    result = invoke("compare", str(run.path), "-o", str(tmp_path / "figures"))
    assert result.exit_code == 2 and "results.npy is not an array of numbers" in result.stderr


def test_without_rliable_the_message_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_run(tmp_path / "a", [1.0])
    monkeypatch.setitem(sys.modules, "rliable", None)  # import rliable raises ImportError
    result = invoke("compare", str(tmp_path / "a"))
    assert result.exit_code == 2
    assert "pip install 'diffrl-core[compare]'" in result.stderr


def test_importing_the_cli_does_not_import_rliable() -> None:
    import subprocess

    code = ("import sys, diffrl_core.cli; "
            "print(sorted(m for m in ('rliable', 'torch', 'diffrl_core.comparison') if m in sys.modules))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


# -- figures ---------------------------------------------------------------------------------------


def assert_a_drawn_png(path: Path) -> None:
    import matplotlib.image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    pixels = matplotlib.image.imread(path)
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 10, f"{path} is blank"


def test_compare_writes_both_figures(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for seed in range(5):
        make_run(tmp_path / "runs" / f"a{seed}", list(-1000 + 40 * np.arange(10) + rng.normal(0, 20, 10)), seed=seed)
        # evaluated at other steps: interpolated onto the steps both cover
        make_run(tmp_path / "runs" / f"b{seed}", list(-1000 + 30 * np.arange(10) + rng.normal(0, 20, 10)),
                 steps=[1500 + 1000 * i for i in range(10)], seed=seed, learning_rate=0.01)
    out = tmp_path / "figures"
    report = compare_json(str(tmp_path / "runs"), "-o", str(out))
    assert report["figures"] == [str(out / "iqm_learning_curves.png"), str(out / "performance_profile.png")]
    for figure in report["figures"]:
        assert_a_drawn_png(Path(figure))
    assert sorted(p.name for p in out.iterdir()) == ["iqm_learning_curves.png", "performance_profile.png"]


def test_iqm_curve_covers_the_common_steps() -> None:
    curves = [(np.array([1000.0, 2000.0, 3000.0]), np.array([1.0, 2.0, 3.0])),
              (np.array([1500.0, 2500.0, 3500.0]), np.array([1.0, 2.0, 3.0]))]
    estimate = comparison.iqm_curve(curves, 200, seed=0)
    assert estimate is not None
    grid, iqm, low, high = estimate
    assert list(grid) == [1500.0, 2000.0, 2500.0, 3000.0]
    assert list(iqm) == pytest.approx([1.25, 1.75, 2.25, 2.75])  # the mean of two runs: their IQM
    assert np.all(low <= iqm) and np.all(iqm <= high)
    assert comparison.iqm_curve([curves[0], (np.array([5000.0]), np.array([1.0]))], 200, seed=0) is None


# -- diffrl plot -----------------------------------------------------------------------------------


def plot(tmp_path: Path, *args: str) -> Result:
    result = invoke("plot", *args, "-o", str(tmp_path / "curves.png"))
    assert result.exit_code == 0, (result.output, result.exception)
    assert_a_drawn_png(tmp_path / "curves.png")
    return result


def test_plot_a_single_evaluation_is_a_visible_point(tmp_path: Path) -> None:
    run = make_run(tmp_path / "a", [-1300.0])
    assert "(1 run(s), 1 curve(s))" in plot(tmp_path, str(run.path)).stdout

    from diffrl_core.commands.plot import draw_learning_curves, read_curve

    ax = new_axes()
    assert draw_learning_curves(ax, {"a": [read_curve(run)[:2]]}) == 1
    (line,) = ax.lines
    assert line.get_marker() == "o" and list(line.get_xdata()) == [1000.0]


def test_plot_runs_at_different_steps_draws_their_mean(tmp_path: Path) -> None:
    from diffrl_core.commands.plot import draw_learning_curves, read_curve

    first = make_run(tmp_path / "a", [1.0, 2.0], steps=[1000, 2000])
    second = make_run(tmp_path / "b", [3.0, 4.0], steps=[1500, 2500], seed=1)
    assert "(2 run(s), 1 curve(s))" in plot(tmp_path, str(tmp_path)).stdout
    ax = new_axes()
    assert draw_learning_curves(ax, {"runs": [read_curve(first)[:2], read_curve(second)[:2]]}) == 1
    (mean,) = [line for line in ax.lines if line.get_label() == "runs (mean of 2 runs)"]
    assert list(mean.get_xdata()) == [1500.0, 2000.0]
    assert list(mean.get_ydata()) == pytest.approx([(1.5 + 3.0) / 2, (2.0 + 3.5) / 2])
    assert len(ax.collections) == 1  # the band

    # one step in common: the mean is a point with an error bar
    ax = new_axes()
    touching = (np.array([2000.0, 3000.0]), np.array([3.0, 4.0]))
    assert draw_learning_curves(ax, {"runs": [read_curve(first)[:2], touching]}) == 1
    (mean,) = [line for line in ax.lines if line.get_label() == "runs (mean of 2 runs)"]
    assert list(mean.get_xdata()) == [2000.0] and mean.get_marker() == "o"


def test_plot_runs_without_common_steps_are_drawn_one_by_one(tmp_path: Path) -> None:
    make_run(tmp_path / "a", [1.0, 2.0], steps=[1000, 2000])
    make_run(tmp_path / "b", [3.0, 4.0], steps=[3000, 4000], seed=1)
    result = plot(tmp_path, str(tmp_path))
    assert "(2 run(s), 2 curve(s))" in result.stdout
    assert "cover no common range of timesteps: drawn one by one" in result.stderr


def test_plot_groups_by_the_resolved_config(tmp_path: Path) -> None:
    # both trained from pendulum_sac.yaml; one with --set env=...: two curves
    make_run(tmp_path / "a", [1.0, 2.0])
    make_run(tmp_path / "b", [3.0, 4.0], seed=1)
    make_run(tmp_path / "c", [5.0, 6.0], env="MountainCarContinuous-v0")
    assert "(3 run(s), 2 curve(s))" in plot(tmp_path, str(tmp_path)).stdout
    assert "(3 run(s), 3 curve(s))" in plot(tmp_path, str(tmp_path), "--separate").stdout


def test_plot_nested_runs_of_a_sweep(tmp_path: Path) -> None:
    for seed in range(2):
        make_run(tmp_path / "sweep" / "runs" / f"s{seed}", [1.0, 2.0], seed=seed)
    make_run(tmp_path / "sweep" / "runs" / "unstarted", seed=5)
    result = plot(tmp_path, str(tmp_path / "sweep"))
    assert "(2 run(s), 1 curve(s))" in result.stdout
    assert "skipped 1 run(s)" in result.stderr and "unstarted" in result.stderr


def new_axes() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    plt.close(fig)
    return ax

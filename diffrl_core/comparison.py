"""Comparing runs: groups of runs of the same config, their final scores and statistics that hold up.

Used by ``diffrl compare`` and ``diffrl plot`` (no click here). The statistics follow Agarwal et al.
(2021), "Deep Reinforcement Learning at the Edge of the Statistical Precipice", through their library,
rliable (an optional dependency: ``pip install 'diffrl-core[compare]'``): the interquartile mean (IQM)
of the runs' final returns, stratified bootstrap confidence intervals, the probability of improvement,
and performance profiles.

Runs are grouped by their resolved config (``config.yaml``) with :data:`IGNORED_KEYS` left out, so
that the seeds of one experiment form one group, and a ``--set env=...`` is another experiment even
though it was trained from the same config file.

rliable draws its bootstrap resamples from numpy's global random generator (its ``random_state``
arguments do not reach the indices it draws), so every estimate here seeds that generator with the
given seed just before it and restores its state after: the numbers are reproducible, and one
group's interval does not depend on which other groups are compared.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from diffrl_core.errors import DiffRLError
from diffrl_core.runs import RunDir
from diffrl_core.strict_yaml import read_yaml

#: Config keys that do not make another experiment: runs that differ only in these are one group.
IGNORED_KEYS: tuple[str, ...] = ("seed", "threads", "versions")

#: The coverage of every interval.
CONFIDENCE = 0.95

#: Fewer runs (seeds) than this in a group: its intervals are not trustworthy (Agarwal et al. 2021).
MIN_RUNS = 5

#: Bootstrap resamples of the figures' bands (rliable's default for performance profiles); fewer when
#: fewer are asked for the printed intervals.
FIGURE_REPS = 2000

#: Curves with at most this many points are drawn with a marker at each (a single point then shows).
MARKER_POINTS = 30

INSTALL_HINT = "pip install 'diffrl-core[compare]'"

# a value that a config does not have at some key
_UNSET: Any = object()
# a value in a label is cut to this many characters
_VALUE_CHARS = 40


# -- grouping ------------------------------------------------------------------------------------


def run_config(run: RunDir) -> dict[str, Any]:
    """A run's resolved config as plain data (its ``config.yaml``, read safely), without :data:`IGNORED_KEYS`.

    :param run: the run folder
    :return: the config's keys and values
    :raises DiffRLError: when ``config.yaml`` is missing or is not a YAML mapping
    """
    data = read_yaml(run.config_file)
    return {key: value for key, value in data.items() if key not in IGNORED_KEYS}


def _canonical(value: Any) -> str:
    """One string per value, for equality: key order does not count, ``1`` and ``1.0`` differ (as in YAML)."""
    return json.dumps(value, sort_keys=True, default=str)


def group_runs(found: Sequence[RunDir]) -> dict[str, list[RunDir]]:
    """Group runs by their resolved config, ignoring :data:`IGNORED_KEYS` (``seed``, ``threads``, ``versions``).

    A group's label is short: with a single group, the ``name`` in its runs' ``status.json`` (the
    config file's stem; else the env id); with several, the config keys that tell the groups apart,
    flattened with dots as ``--set`` writes them, e.g. ``env=Pendulum-v1 algo_kwargs.learning_rate=0.001``
    (keys are taken in the config's order, each only if it separates groups that the keys before it
    did not; :func:`group_differences` has every key in which they differ).

    :param found: the run folders (e.g. from :func:`diffrl_core.runs.find_runs`)
    :return: label -> the group's runs (in the order given), sorted by label
    :raises DiffRLError: when a run's ``config.yaml`` cannot be read
    """
    configs: dict[str, dict[str, Any]] = {}
    members: dict[str, list[RunDir]] = {}
    for run in found:
        config = run_config(run)
        key = _canonical(config)
        configs.setdefault(key, config)
        members.setdefault(key, []).append(run)
    if not members:
        return {}
    if len(members) == 1:
        (runs,) = members.values()
        return {_single_label(runs, next(iter(configs.values()))): runs}
    labels = _labels(list(configs.values()))
    return dict(sorted(zip(labels, members.values(), strict=True)))


def _single_label(runs: Sequence[RunDir], config: Mapping[str, Any]) -> str:
    names: list[str] = []
    for run in runs:
        name = _status_of(run).get("name")
        if isinstance(name, str) and name and name not in names:
            names.append(name)
    return ", ".join(names) or str(config.get("env") or "runs")


def _status_of(run: RunDir) -> dict[str, Any]:
    status = run.read_status()
    return status if isinstance(status, dict) else {}


def _differing(values: Sequence[Any], path: str = "") -> list[tuple[str, list[Any]]]:
    """The dotted paths at which ``values`` (one config or part of one each) differ, with each one's value there.

    Mappings are compared key by key (a missing key is :data:`_UNSET`), lists of mappings or lists of
    the same length item by item (``policy.losses[1].weight``); anything else as a whole.
    """
    if len({_canonical(value) if value is not _UNSET else "" for value in values}) == 1:
        return []
    present = [value for value in values if value is not _UNSET]
    found: list[tuple[str, list[Any]]] = []
    if all(isinstance(value, dict) for value in present):
        keys: dict[str, None] = {}
        for value in present:
            keys.update(dict.fromkeys(value))
        for key in keys:
            inner = [value.get(key, _UNSET) if value is not _UNSET else _UNSET for value in values]
            found += _differing(inner, f"{path}.{key}" if path else str(key))
    elif (
        len(present) == len(values)
        and all(isinstance(value, list) for value in values)
        and len({len(value) for value in values}) == 1
        and any(isinstance(item, dict | list) for value in values for item in value)
    ):
        for index in range(len(values[0])):
            found += _differing([value[index] for value in values], f"{path}[{index}]")
    # e.g. {} against a missing key: different, with no key inside that differs
    return found or [(path, list(values))]


def _labels(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The labels of groups of distinct configs: for each, the leading differing keys that tell it from the others.

    The groups are split key by key in the configs' order; a group's label names the keys that split
    it off from groups still alike, so two labels always share a key at which they differ.
    """
    keys: list[list[tuple[str, Any]]] = [[] for _ in configs]
    classes: list[list[int]] = [list(range(len(configs)))]
    for path, values in _differing(list(configs)):
        split: list[list[int]] = []
        for members in classes:
            parts: dict[str, list[int]] = {}
            for index in members:
                parts.setdefault(_canonical(values[index]) if values[index] is not _UNSET else "", []).append(index)
            if len(parts) > 1:
                for index in members:
                    keys[index].append((path, values[index]))
            split.extend(parts.values())
        classes = split
        if len(classes) == len(configs):
            break
    labels = [" ".join(f"{path}={_render(value)}" for path, value in chosen) or "runs" for chosen in keys]
    # distinct configs may still render alike (a value cut short): number them
    seen: dict[str, int] = {}
    for index, label in enumerate(labels):
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            labels[index] = f"{label} ({seen[label]})"
    return labels


def _render(value: Any, limit: int = _VALUE_CHARS) -> str:
    """A value as a label shows it: compact, YAML-like (``[256,256]``, ``true``, ``null``), cut to ``limit``."""
    if value is _UNSET:
        return "(unset)"
    if isinstance(value, str):
        text = value if value else '""'
    elif isinstance(value, dict):
        text = "{" + ",".join(f"{key}:{_render(item, limit=10**6)}" for key, item in value.items()) + "}"
    elif isinstance(value, list):
        text = "[" + ",".join(_render(item, limit=10**6) for item in value) + "]"
    else:
        text = json.dumps(value, default=str)  # true, null, 0.001, 1e-05
    return text if len(text) <= limit else text[: limit - 3] + "..."


def group_differences(groups: Mapping[str, Sequence[RunDir]]) -> dict[str, dict[str, Any]]:
    """Every config key (dotted, as ``--set`` writes it) in which the groups differ, with each group's value.

    :param groups: label -> runs, as :func:`group_runs` returns them
    :return: label -> {key: value}; a key a group's config does not have is left out of its mapping
    """
    labels = list(groups)
    configs = [run_config(groups[label][0]) for label in labels]
    result: dict[str, dict[str, Any]] = {label: {} for label in labels}
    if len(configs) > 1:
        for path, values in _differing(configs):
            for label, value in zip(labels, values, strict=True):
                if value is not _UNSET:
                    result[label][path] = value
    return result


def group_env(runs: Sequence[RunDir]) -> str:
    """The env id of a group's runs (its config's ``env``; else the ``env`` in ``status.json``; else ``"?"``)."""
    env = run_config(runs[0]).get("env") or _status_of(runs[0]).get("env")
    return str(env) if env else "?"


# -- scores and curves -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    """A run's final evaluation: its mean return over episodes, and the step it was made at (None: unknown)."""

    value: float
    timesteps: int | None


def final_score(run: RunDir) -> Score | None:
    """A run's score: the mean return of its final evaluation.

    ``results.json``'s ``mean_return`` when the run finished with one, else the last evaluation in
    ``evaluations.npz`` (read without pickle by :func:`diffrl_core.model_file.read_evaluations`); the
    latter also when it is later (a finished run resumed to train longer keeps its old ``results.json``).

    :param run: the run folder
    :return: the score, or None when the run has no evaluation (with a finite return) yet
    :raises DiffRLError: when one of the files is damaged
    """
    finished: Score | None = None
    if run.results_file.exists():
        try:
            results = json.loads(run.results_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DiffRLError(f"{run.results_file} is not valid JSON: {exc}") from None
        mean = results.get("mean_return") if isinstance(results, dict) else None
        if isinstance(mean, int | float) and not isinstance(mean, bool) and math.isfinite(mean):
            steps = results.get("eval_timesteps", results.get("num_timesteps"))
            finished = Score(float(mean), steps if isinstance(steps, int) and not isinstance(steps, bool) else None)
    curve = read_evaluation_curve(run)
    if curve is None:
        return finished
    last_step = int(curve[0][-1])
    if finished is None or (finished.timesteps is not None and last_step > finished.timesteps):
        return Score(float(curve[1][-1]), last_step)
    return finished


def read_evaluation_curve(run: RunDir) -> tuple[np.ndarray, np.ndarray] | None:
    """``(timesteps, mean returns)`` of a run's periodic evaluations, or None when it has none yet.

    Sorted by timesteps, one point per step (the last one recorded), evaluations without a finite
    return (all of their episodes NaN) dropped.

    :raises DiffRLError: when ``evaluations.npz`` is not such a file
    """
    from diffrl_core.model_file import read_evaluations

    if not run.evaluations_file.exists():
        return None
    data = read_evaluations(run.evaluations_file)
    results = np.asarray(data["results"], dtype=float)
    finite = np.isfinite(results)
    counts = finite.sum(axis=1)
    means = np.divide(np.where(finite, results, 0.0).sum(axis=1), counts,
                      out=np.full(len(counts), np.nan), where=counts > 0)
    return clean_curve(np.asarray(data["timesteps"], dtype=float), means)


def clean_curve(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """A curve fit for :func:`numpy.interp`: finite points only, sorted by x, the last y of a repeated x kept.

    :return: the curve, or None when no point is left
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if not x.size:
        return None
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    last = np.append(x[1:] != x[:-1], True)  # the last of each run of equal x
    return x[last], y[last]


def align_curves(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray] | None:
    """Put curves evaluated at different steps on one grid, for statistics across them.

    The grid is every step of any curve inside the range all curves cover (its ends included), and
    each curve is interpolated linearly onto it: no curve is extrapolated.

    :param curves: ``(x, y)`` of each curve, as :func:`clean_curve` returns them (sorted, x unique)
    :return: ``(grid, values)`` with ``values`` of shape (curves, grid points), or None when the curves
        have no step range in common
    """
    low = max(float(x[0]) for x, _ in curves)
    high = min(float(x[-1]) for x, _ in curves)
    if low > high:
        return None
    grid = np.unique(np.concatenate([x for x, _ in curves] + [np.array([low, high])]))
    grid = grid[(grid >= low) & (grid <= high)]
    return grid, np.stack([np.interp(grid, x, y) for x, y in curves])


# -- statistics (rliable) -----------------------------------------------------------------------------


def require_rliable() -> tuple[ModuleType, ModuleType]:
    """rliable's ``library`` and ``metrics`` modules.

    :raises DiffRLError: when rliable is not installed, or does not import
    """
    try:
        from rliable import library, metrics
    except ImportError as exc:
        raise DiffRLError(f"diffrl compare needs rliable, which is not installed ({exc}): {INSTALL_HINT}") from None
    except Exception as exc:  # e.g. its dependency arch, against a pandas it does not support
        raise DiffRLError(
            f"rliable is installed but fails to import ({type(exc).__name__}: {exc}); rliable 1.2 needs "
            f"arch<8 and, for arch 7, pandas<3: {INSTALL_HINT}"
        ) from None
    return library, metrics


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed numpy's global random generator (which rliable's bootstrap draws from); restore its state after."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _interval(
    scores: Any, func: Callable[..., Any], reps: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """rliable's point estimate and 95% stratified bootstrap interval (``(2, ...)``: low, high) of ``func``."""
    library, _ = require_rliable()
    with seeded(seed):
        points, intervals = library.get_interval_estimates(
            {"scores": scores}, func, reps=reps, confidence_interval_size=CONFIDENCE
        )
    return np.asarray(points["scores"], dtype=float), np.asarray(intervals["scores"], dtype=float)


def interquartile_mean(scores: Any, axis: int | None = None) -> Any:
    """The interquartile mean: the mean of the middle 50% of the scores (the lowest and highest 25% cut).

    The value of rliable's ``metrics.aggregate_iqm`` (``scipy.stats.trim_mean(scores, 0.25)``), by the
    same numpy operations without scipy's argument handling (15 times faster: a bootstrap calls it tens of
    thousands of times).

    :param scores: the scores
    :param axis: the axis to reduce; None: all the scores
    :return: a float (``axis=None``), or an array of the other axes
    """
    values = np.asarray(scores, dtype=float)
    if axis is None:
        values, axis = values.ravel(), 0
    count = values.shape[axis]
    low = int(0.25 * count)
    high = count - low
    window: list[slice] = [slice(None)] * values.ndim
    window[axis] = slice(low, high)
    return np.mean(np.partition(values, (low, high - 1), axis)[tuple(window)], axis=axis)


def aggregates(scores: np.ndarray) -> np.ndarray:
    """``[IQM, mean]`` of scores of shape (runs, tasks), as rliable's ``aggregate_iqm`` and ``aggregate_mean``."""
    _, metrics = require_rliable()
    return np.array([interquartile_mean(scores), metrics.aggregate_mean(scores)])


@dataclass(frozen=True)
class GroupStatistics:
    """The IQM and mean of a group's final scores, with their 95% stratified bootstrap intervals."""

    iqm: float
    iqm_ci: tuple[float, float]
    mean: float
    mean_ci: tuple[float, float]


def group_statistics(scores: Sequence[float], reps: int, seed: int) -> GroupStatistics:
    """The IQM and mean of one group's scores, and their intervals (both from the same resamples).

    :param scores: the final score of each run
    :param reps: bootstrap resamples
    :param seed: the seed of the resamples
    :return: the estimates; equal to ``rliable.library.get_interval_estimates({...: scores (runs x 1)}, f, reps)``
        after ``numpy.random.seed(seed)``, with ``f`` the IQM or the mean
    """
    points, intervals = _interval(np.asarray(scores, dtype=float).reshape(-1, 1), aggregates, reps, seed)
    return GroupStatistics(
        iqm=float(points[0]), iqm_ci=(float(intervals[0, 0]), float(intervals[1, 0])),
        mean=float(points[1]), mean_ci=(float(intervals[0, 1]), float(intervals[1, 1])),
    )


def probability_of_improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """P(X > Y), averaged over tasks: the Mann-Whitney U statistic over ``runs_x * runs_y``, ties counting one half.

    The value of rliable's ``metrics.probability_of_improvement`` (which calls scipy's ``mannwhitneyu``),
    computed directly: inside a bootstrap of tens of thousands of resamples, about 40 times faster.

    :param scores_x: scores of shape (runs_x, tasks)
    :param scores_y: scores of shape (runs_y, tasks)
    """
    x, y = scores_x[:, None, :], scores_y[None, :, :]
    wins = (x > y).sum(axis=(0, 1)) + 0.5 * (x == y).sum(axis=(0, 1))
    return float(np.mean(wins / (scores_x.shape[0] * scores_y.shape[0])))


def improvement(
    scores_x: Sequence[float], scores_y: Sequence[float], reps: int, seed: int
) -> tuple[float, tuple[float, float]]:
    """The probability that a run of X scores higher than a run of Y, and its 95% bootstrap interval.

    Resampled as rliable does for two groups (``StratifiedIndependentBootstrap``: each group's runs
    independently).

    :return: ``(probability, (low, high))``
    """
    x = np.asarray(scores_x, dtype=float).reshape(-1, 1)
    y = np.asarray(scores_y, dtype=float).reshape(-1, 1)
    points, intervals = _interval([x, y], probability_of_improvement, reps, seed)
    low, high = intervals.ravel()
    return float(points), (float(low), float(high))


def iqm_curve(
    curves: Sequence[tuple[np.ndarray, np.ndarray]], reps: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """The IQM across runs at each step of their common range, with a 95% stratified bootstrap band.

    :param curves: ``(timesteps, returns)`` of each run (:func:`clean_curve`'s form)
    :return: ``(grid, iqm, low, high)``, or None when the runs cover no common range of steps
    """
    aligned = align_curves(curves)
    if aligned is None:
        return None
    grid, values = aligned

    def per_step(scores: np.ndarray) -> np.ndarray:
        # scores: (runs, 1 task, steps); the IQM over runs (and the one task) at each step
        return np.asarray(interquartile_mean(scores.reshape(scores.shape[0], -1), axis=0))

    points, intervals = _interval(values[:, None, :], per_step, reps, seed)
    return grid, points, intervals[0], intervals[1]


def performance_profile(
    scores: Sequence[float], taus: np.ndarray, reps: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fraction of runs whose score is above each threshold, with a 95% stratified bootstrap band.

    rliable's run-score distribution (``library.create_performance_profile`` with one task), without
    its per-threshold Python loop.

    :return: ``(fraction, low, high)``, each of the shape of ``taus``
    """
    def profile(values: np.ndarray) -> np.ndarray:
        return np.asarray((values.reshape(-1, 1) > taus.reshape(1, -1)).mean(axis=0))

    points, intervals = _interval(np.asarray(scores, dtype=float).reshape(-1, 1), profile, reps, seed)
    return points, intervals[0], intervals[1]

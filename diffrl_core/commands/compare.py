"""``diffrl compare``: groups of runs compared with statistics that hold up (rliable's IQM, intervals, profiles)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from diffrl_core.comparison import GroupStatistics
    from diffrl_core.runs import RunDir

#: rliable's default number of bootstrap resamples (``get_interval_estimates``)
DEFAULT_REPS = 50000
CURVES_FILE = "iqm_learning_curves.png"
PROFILE_FILE = "performance_profile.png"


@click.command()
@click.argument("paths", metavar="RUNS_OR_SWEEPS...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--reps", type=click.IntRange(min=100), default=DEFAULT_REPS, show_default=True,
              help="Bootstrap resamples of each printed interval (the figures' bands use at most 2000).")
@click.option("--seed", type=click.IntRange(min=0, max=2**32 - 1), default=0, show_default=True,
              help="Seed of the bootstrap resamples: the same runs and seed give the same numbers.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the same numbers.")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help=f"Where to write {CURVES_FILE} and {PROFILE_FILE}.")
def compare(paths: tuple[Path, ...], reps: int, seed: int, as_json: bool, output_dir: Path) -> None:
    """Compare groups of runs: IQM and mean of final returns, with 95% bootstrap intervals.

    RUNS_OR_SWEEPS are run folders, or folders holding run folders at any depth (runs/, a sweep).
    Runs are grouped by their resolved config (config.yaml) apart from seed, threads and versions:
    the seeds of one experiment form one group. A run's score is the mean return of its final
    evaluation (results.json, else the last row of evaluations.npz); runs without an evaluation
    are skipped, with a note. Printed per group: the number of runs, the interquartile mean (IQM)
    and the mean of the scores, each with its 95% stratified bootstrap confidence interval; then
    the probability of improvement of each pair of groups on the same env. Writes the IQM learning
    curves and the performance profiles (fraction of runs above each return) as PNGs. Needs
    rliable: pip install 'diffrl-core[compare]'.
    """
    from diffrl_core import comparison, runs
    from diffrl_core.errors import DiffRLError

    comparison.require_rliable()  # before any work: a missing optional dependency is the first thing to say
    found: list[RunDir] = []
    seen: set[Path] = set()
    for run in runs.find_runs(paths):
        if run.path.resolve() not in seen:  # a run named twice (itself and its folder) counts once
            seen.add(run.path.resolve())
            found.append(run)
    scores: dict[Path, comparison.Score] = {}
    skipped: list[RunDir] = []
    for run in found:
        score = comparison.final_score(run)
        if score is None:
            skipped.append(run)
        else:
            scores[run.path] = score
    if skipped:
        click.echo(f"note: skipped {len(skipped)} run(s) with no evaluation yet: "
                   f"{', '.join(str(run.path) for run in skipped)}", err=True)
    if not scores:
        named = ", ".join(repr(str(path)) for path in paths)
        raise DiffRLError(
            f"nothing to compare: none of the runs in {named} has an evaluation yet (results.json with a mean_return, "
            "or evaluations.npz); a run is evaluated every eval.freq steps and at its end (eval.final)"
        )
    groups = comparison.group_runs([run for run in found if run.path in scores])
    envs = {label: comparison.group_env(members) for label, members in groups.items()}
    group_scores = {label: [scores[run.path].value for run in members] for label, members in groups.items()}
    for label, members in groups.items():
        if len(members) < comparison.MIN_RUNS:
            click.echo(f"warning: {label!r} has {len(members)} run(s): with fewer than {comparison.MIN_RUNS} seeds its "
                       "intervals are not trustworthy (Agarwal et al. 2021)", err=True)
        steps = {scores[run.path].timesteps for run in members}
        if len(steps) > 1:
            click.echo(f"note: the final evaluations of {label!r} were made at different steps "
                       f"({', '.join(str(step) for step in sorted(steps, key=lambda s: -1 if s is None else s))}): "
                       "some runs may be unfinished", err=True)

    statistics = {label: comparison.group_statistics(values, reps, seed) for label, values in group_scores.items()}
    labels = list(groups)
    improvements: list[dict[str, Any]] = []
    not_compared: list[dict[str, Any]] = []
    for i, x in enumerate(labels):
        for y in labels[i + 1:]:
            if envs[x] != envs[y]:
                not_compared.append({"x": x, "y": y, "reason": f"different envs ({envs[x]}, {envs[y]})"})
                continue
            probability, interval = comparison.improvement(group_scores[x], group_scores[y], reps, seed)
            improvements.append({"x": x, "y": y, "env": envs[x], "probability": probability, "ci": list(interval)})

    figure_reps = min(reps, comparison.FIGURE_REPS)
    curves_file, profile_file = output_dir / CURVES_FILE, output_dir / PROFILE_FILE
    notes = _draw(groups, envs, group_scores, figure_reps, seed, curves_file, profile_file)
    for note in notes:
        click.echo(f"note: {note}", err=True)

    differences = comparison.group_differences(groups)
    if as_json:
        report = {
            "groups": [
                {
                    "label": label,
                    "env": envs[label],
                    "n_runs": len(members),
                    "runs": [str(run.path) for run in members],
                    "scores": group_scores[label],
                    "score_timesteps": [scores[run.path].timesteps for run in members],
                    **_numbers(statistics[label]),
                    "config": differences[label],
                }
                for label, members in groups.items()
            ],
            "probability_of_improvement": improvements,
            "not_compared": not_compared,
            "skipped": [str(run.path) for run in skipped],
            "ignored_keys": list(comparison.IGNORED_KEYS),
            "reps": reps,
            "figure_reps": figure_reps,
            "seed": seed,
            "confidence": comparison.CONFIDENCE,
            "figures": [str(curves_file), str(profile_file)],
        }
        click.echo(json.dumps(report, indent=2))
        return
    _print_table(groups, envs, statistics)
    if improvements:
        click.echo("\nprobability of improvement P(X > Y) [95% CI]: the chance that a run of X scores higher than "
                   "a run of Y")
        for item in improvements:
            low, high = item["ci"]
            click.echo(f"  {item['x']}  >  {item['y']}  ({item['env']}): "
                       f"{item['probability']:.3f} [{low:.3f}, {high:.3f}]")
    if not_compared:  # one line: every pair across envs would be many
        click.echo(f"\nnot compared: groups on different envs ({', '.join(sorted(set(envs.values())))}); "
                   "probabilities of improvement are given between groups on the same env only")
    click.echo(f"\nruns grouped by config.yaml apart from {', '.join(comparison.IGNORED_KEYS)}; IQM: the mean of "
               f"the middle 50% of the scores; intervals: {comparison.CONFIDENCE:.0%} stratified bootstrap, "
               f"{reps} resamples, seed {seed} (rliable)")
    click.echo(f"wrote {curves_file} and {profile_file}")


def _numbers(stats: GroupStatistics) -> dict[str, Any]:
    return {"iqm": stats.iqm, "iqm_ci": list(stats.iqm_ci), "mean": stats.mean, "mean_ci": list(stats.mean_ci)}


def _format(value: float) -> str:
    """A return for humans: two decimals, more when it is small (as ``diffrl eval`` prints them)."""
    return f"{value:.2f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"


def _print_table(groups: dict[str, list[RunDir]], envs: dict[str, str], statistics: dict[str, GroupStatistics]) -> None:
    rows = [("group", "env", "runs", "IQM [95% CI]", "mean [95% CI]")]
    for label, members in groups.items():
        stats = statistics[label]
        rows.append((
            label, envs[label], str(len(members)),
            f"{_format(stats.iqm)} [{_format(stats.iqm_ci[0])}, {_format(stats.iqm_ci[1])}]",
            f"{_format(stats.mean)} [{_format(stats.mean_ci[0])}, {_format(stats.mean_ci[1])}]",
        ))
    width = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(
            cell.rjust(width[column]) if column == 2 else cell.ljust(width[column]) for column, cell in enumerate(row)
        ).rstrip())


def _draw(
    groups: dict[str, list[RunDir]], envs: dict[str, str], group_scores: dict[str, list[float]], reps: int,
    seed: int, curves_file: Path, profile_file: Path,
) -> list[str]:
    """Write the IQM learning curves and the performance profiles, one panel per env.

    Both figures are drawn before either file is written, and moved into place together.

    :return: notes for the user (groups without a curve)
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diffrl_core import runs

    notes: list[str] = []
    env_ids = sorted(set(envs.values()))
    colors = {label: f"C{index % 10}" for index, label in enumerate(groups)}
    size = (min(5.5 * len(env_ids), 22.0), 4.5)
    curves_figure, curves_axes = plt.subplots(1, len(env_ids), figsize=size, dpi=120, squeeze=False)
    profile_figure, profile_axes = plt.subplots(1, len(env_ids), figsize=size, dpi=120, squeeze=False)
    try:
        for index, env in enumerate(env_ids):
            labels = [label for label in groups if envs[label] == env]
            _draw_curves(curves_axes[0, index], env, {label: groups[label] for label in labels}, colors, reps, seed,
                         notes.append)
            _draw_profiles(profile_axes[0, index], env, {label: group_scores[label] for label in labels}, colors,
                           reps, seed)
        curves_figure.tight_layout()
        profile_figure.tight_layout()
        with runs.atomic_path(curves_file) as curves_tmp, runs.atomic_path(profile_file) as profile_tmp:
            curves_figure.savefig(curves_tmp, format="png")
            profile_figure.savefig(profile_tmp, format="png")
    finally:
        plt.close(curves_figure)
        plt.close(profile_figure)
    return notes


def _draw_curves(
    ax: Any, env: str, groups: dict[str, list[RunDir]], colors: dict[str, str], reps: int, seed: int,
    note: Callable[[str], None],
) -> None:
    """One env's panel of IQM learning curves, each with its 95% bootstrap band."""
    from diffrl_core import comparison

    for label, members in groups.items():
        curves = [curve for curve in map(comparison.read_evaluation_curve, members) if curve is not None]
        if not curves:
            note(f"{label!r} has no evaluations.npz: no learning curve")
            continue
        estimate = comparison.iqm_curve(curves, reps, seed)
        if estimate is None:
            note(f"the runs of {label!r} cover no common range of timesteps: no IQM curve")
            continue
        grid, iqm, low, high = estimate
        runs_drawn = f"{len(curves)} run{'' if len(curves) == 1 else 's'}"
        marker = "o" if grid.size <= comparison.MARKER_POINTS else None
        ax.plot(grid, iqm, color=colors[label], marker=marker, markersize=3, label=f"{label} ({runs_drawn})")
        if grid.size > 1:
            ax.fill_between(grid, low, high, color=colors[label], alpha=0.2, linewidth=0)
        else:  # one common step: the band is an error bar
            ax.errorbar(grid, iqm, yerr=[iqm - low, high - iqm], color=colors[label], capsize=4)
    ax.set_title(env)
    ax.set_xlabel("timesteps")
    ax.set_ylabel("IQM of eval returns (95% CI)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize="small")


def _draw_profiles(
    ax: Any, env: str, group_scores: dict[str, list[float]], colors: dict[str, str], reps: int, seed: int
) -> None:
    """One env's panel of performance profiles: the fraction of runs above each return, with a 95% band."""
    import numpy as np

    from diffrl_core import comparison

    values = np.concatenate([scores for scores in group_scores.values()])
    low_tau, high_tau = float(values.min()), float(values.max())
    margin = 0.05 * (high_tau - low_tau) or 0.05 * abs(high_tau) or 1.0  # all scores alike: still a range
    taus = np.linspace(low_tau - margin, high_tau + margin, 201)
    for label, scores in group_scores.items():
        fraction, low, high = comparison.performance_profile(scores, taus, reps, seed)
        ax.plot(taus, fraction, color=colors[label], label=label)
        ax.fill_between(taus, low, high, color=colors[label], alpha=0.2, linewidth=0)
    ax.set_title(env)
    ax.set_xlabel(r"final eval return ($\tau$)")
    ax.set_ylabel(r"fraction of runs with return > $\tau$")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")

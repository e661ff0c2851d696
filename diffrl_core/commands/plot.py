"""``diffrl plot``: learning curves of runs, mean and spread across runs of the same config."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from diffrl_core.runs import RunDir


@click.command()
@click.argument("run_dirs", metavar="RUN_DIR...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    default="learning_curves.png",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The PNG to write.",
)
@click.option(
    "--metric",
    type=click.Choice(["eval", "train"]),
    default="eval",
    show_default=True,
    help="eval: the periodic evaluations' mean return; train: the mean return of the last training episodes.",
)
@click.option("--separate", is_flag=True, help="One curve per run, instead of the mean and spread of each config.")
@click.option("--title", help="The plot's title (default: the env ids).")
def plot(run_dirs: tuple[Path, ...], output: Path, metric: str, separate: bool, title: str | None) -> None:
    """Plot the learning curves of RUN_DIR... into a PNG.

    A RUN_DIR may also be a folder holding run folders at any depth (e.g. runs/, or a sweep).
    Runs of the same resolved config (config.yaml, apart from seed, threads and versions: e.g.
    several seeds) are drawn as one curve: their mean, with a band of +/- one standard deviation
    over the steps all of them reached, and each run as a thin line. A run inside such a folder
    that has no curve yet is skipped, with a note.
    """
    from diffrl_core import comparison, runs
    from diffrl_core.errors import DiffRLError

    found = runs.find_runs(run_dirs)
    curves: dict[Path, tuple[Any, Any]] = {}
    envs, metrics = set(), set()
    skipped: list[str] = []
    for run in found:
        try:
            x, y, used = read_curve(run, metric)
        except DiffRLError:
            if run.path in run_dirs:
                raise
            # a run inside a folder of runs that has no curve yet (just started, or killed before its
            # first log) must not stop the plot of the others
            skipped.append(run.path.name)
            continue
        metrics.add(used)
        curves[run.path] = (x, y)
    if not curves:
        folders = ", ".join(repr(str(path)) for path in run_dirs)
        raise DiffRLError(f"none of the runs in {folders} has evaluations or logged episode returns yet")
    if skipped:
        click.echo(f"note: skipped {len(skipped)} run(s) with no evaluations or logged episode returns yet: "
                   f"{', '.join(skipped)}", err=True)
    drawn = [run for run in found if run.path in curves]
    if separate:
        # one curve per run folder, named by its folder (by its path where two share a name, e.g. in two sweeps)
        names = [run.path.name for run in drawn]
        groups: dict[str, list[RunDir]] = {}
        for run in drawn:
            label = run.path.name if names.count(run.path.name) == 1 else str(run.path)
            groups.setdefault(label, []).append(run)
    else:
        groups = comparison.group_runs(drawn)
    for members in groups.values():
        envs.add(comparison.group_env(members))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    try:
        notes: list[str] = []
        count = draw_learning_curves(
            ax, {label: [curves[run.path] for run in members] for label, members in groups.items()}, notes.append
        )
        ax.set_xlabel("timesteps")
        ax.set_ylabel("eval return (mean over episodes)" if metrics == {"eval"} else "episode return")
        ax.set_title(title or ", ".join(sorted(envs)))
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
        fig.tight_layout()
        with runs.atomic_path(output) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    if metrics == {"eval", "train"}:
        click.echo("note: some runs have no evaluations; their training episode returns are plotted", err=True)
    click.echo(f"wrote {output} ({len(drawn)} run(s), {count} curve(s))")


def draw_learning_curves(
    ax: Axes, groups: Mapping[str, Sequence[tuple[Any, Any]]], note: Callable[[str], None] = lambda text: None
) -> int:
    """Draw each group's curves: one run as it is; several as their mean and +/- one std band, runs thin.

    Runs evaluated at different steps are interpolated onto every step of any of them inside the range
    all of them cover (:func:`diffrl_core.comparison.align_curves`); runs that cover no common range are
    drawn individually, with a note. Curves of few points get a marker at each, so a single point shows.

    :param ax: the axes to draw on
    :param groups: label -> ``(timesteps, returns)`` of each run (sorted by timesteps)
    :param note: called with a line for the user when a group cannot be averaged
    :return: the number of curves drawn (labelled lines in the legend)
    """
    from diffrl_core.comparison import MARKER_POINTS, align_curves, clean_curve

    def marker(x: Any) -> str | None:
        return "o" if len(x) <= MARKER_POINTS else None

    count = 0
    for index, (label, raw) in enumerate(groups.items()):
        color = f"C{index % 10}"
        cleaned = [clean_curve(x, y) for x, y in raw]
        curves = [curve for curve in cleaned if curve is not None]
        if not curves:
            note(f"{label!r} has no finite returns: not drawn")
            continue
        aligned = align_curves(curves) if len(curves) > 1 else None
        if aligned is None:
            if len(curves) > 1:
                note(f"the runs of {label!r} cover no common range of timesteps: drawn one by one, without a mean")
            for number, (x, y) in enumerate(curves):
                name = label if len(curves) == 1 else f"{label} (run {number + 1})"
                ax.plot(x, y, color=color, alpha=1.0 if len(curves) == 1 else 0.6, marker=marker(x), markersize=4,
                        label=name)
                count += 1
            continue
        grid, values = aligned
        mean, std = values.mean(axis=0), values.std(axis=0)
        for x, y in curves:
            ax.plot(x, y, color=color, alpha=0.25, linewidth=0.8, marker=marker(x), markersize=2)
        ax.plot(grid, mean, color=color, marker=marker(grid), markersize=4,
                label=f"{label} (mean of {len(curves)} runs)")
        if grid.size > 1:
            ax.fill_between(grid, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
        else:  # one common step: the band is an error bar
            ax.errorbar(grid, mean, yerr=std, color=color, capsize=4, linewidth=1)
        count += 1
    return count


def read_curve(run: RunDir, metric: str = "eval") -> tuple[Any, Any, str]:
    """``(timesteps, returns, metric)`` of a run: evaluation means, or training episode returns.

    :param run: the run folder
    :param metric: ``"eval"`` (falls back to ``"train"`` when the run has no evaluation) or ``"train"``
    :return: the timesteps and returns as numpy arrays (sorted by timesteps, finite), and the metric used
    :raises DiffRLError: when the run has neither
    """
    import csv

    import numpy as np

    from diffrl_core.comparison import clean_curve, read_evaluation_curve
    from diffrl_core.errors import DiffRLError

    if metric == "eval":
        evaluations = read_evaluation_curve(run)
        if evaluations is not None:
            return evaluations[0], evaluations[1], "eval"
    xs, ys = [], []
    progress = run.logs / "progress.csv"
    if progress.exists():
        with progress.open(newline="") as file:
            for row in csv.DictReader(file):
                x, y = row.get("time/total_timesteps"), row.get("rollout/ep_rew_mean")
                if x and y:
                    xs.append(float(x))
                    ys.append(float(y))
    curve = clean_curve(np.asarray(xs), np.asarray(ys))
    if curve is None:
        raise DiffRLError(f"run {str(run.path)!r} has no evaluations and no logged episode returns yet")
    return curve[0], curve[1], "train"

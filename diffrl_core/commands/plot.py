"""``diffrl plot``: learning curves of runs, mean and spread across runs of the same config."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
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

    A RUN_DIR may also be a folder of run folders (e.g. runs/). Runs trained from the same
    config file (seeds) are drawn as one curve: their mean, with a band of +/- one standard
    deviation and each run as a thin line. A run inside such a folder that has no curve yet is
    skipped, with a note.
    """
    from diffrl_core import runs
    from diffrl_core.errors import DiffRLError

    found = runs.find_runs(run_dirs)
    groups: dict[str, list[tuple[Any, Any]]] = {}
    envs, metrics = set(), set()
    skipped: list[str] = []
    for run in found:
        status = run.read_status()
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
        envs.add(status.get("env") or "?")
        key = run.path.name if separate else str(status.get("name") or run.path.name)
        groups.setdefault(key, []).append((x, y))
    if not groups:
        folders = ", ".join(repr(str(path)) for path in run_dirs)
        raise DiffRLError(f"none of the runs in {folders} has evaluations or logged episode returns yet")
    if skipped:
        click.echo(f"note: skipped {len(skipped)} run(s) with no evaluations or logged episode returns yet: "
                   f"{', '.join(skipped)}", err=True)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for index, (label, curves) in enumerate(sorted(groups.items())):
        color = f"C{index % 10}"
        if len(curves) == 1:
            x, y = curves[0]
            ax.plot(x, y, color=color, label=label)
            continue
        low = max(float(x[0]) for x, _ in curves)
        high = min(float(x[-1]) for x, _ in curves)
        grid = np.unique(np.concatenate([x for x, _ in curves]))
        grid = grid[(grid >= low) & (grid <= high)]
        if grid.size == 0:
            raise DiffRLError(f"the runs of {label!r} cover no common range of timesteps")
        values = np.stack([np.interp(grid, x, y) for x, y in curves])
        mean, std = values.mean(axis=0), values.std(axis=0)
        for x, y in curves:
            ax.plot(x, y, color=color, alpha=0.25, linewidth=0.8)
        ax.plot(grid, mean, color=color, label=f"{label} (mean of {len(curves)} runs)")
        ax.fill_between(grid, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
    ax.set_xlabel("timesteps")
    ax.set_ylabel("eval return (mean over episodes)" if metrics == {"eval"} else "episode return")
    ax.set_title(title or ", ".join(sorted(envs)))
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    with runs.atomic_path(output) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    if metrics == {"eval", "train"}:
        click.echo("note: some runs have no evaluations; their training episode returns are plotted", err=True)
    click.echo(f"wrote {output} ({len(found) - len(skipped)} run(s), {len(groups)} curve(s))")


def read_curve(run: RunDir, metric: str = "eval") -> tuple[Any, Any, str]:
    """``(timesteps, returns, metric)`` of a run: evaluation means, or training episode returns.

    :param run: the run folder
    :param metric: ``"eval"`` (falls back to ``"train"`` when the run has no evaluation) or ``"train"``
    :return: the timesteps and returns as numpy arrays (sorted by timesteps), and the metric used
    :raises DiffRLError: when the run has neither
    """
    import csv

    import numpy as np

    from diffrl_core.errors import DiffRLError
    from diffrl_core.model_file import read_evaluations

    if metric == "eval" and run.evaluations_file.exists():
        data = read_evaluations(run.evaluations_file)
        if len(data["timesteps"]):
            return data["timesteps"].astype(float), np.nanmean(data["results"], axis=1), "eval"
    xs, ys = [], []
    progress = run.logs / "progress.csv"
    if progress.exists():
        with progress.open(newline="") as file:
            for row in csv.DictReader(file):
                x, y = row.get("time/total_timesteps"), row.get("rollout/ep_rew_mean")
                if x and y:
                    xs.append(float(x))
                    ys.append(float(y))
    if not xs:
        raise DiffRLError(f"run {str(run.path)!r} has no evaluations and no logged episode returns yet")
    order = np.argsort(xs, kind="stable")
    return np.asarray(xs)[order], np.asarray(ys)[order], "train"

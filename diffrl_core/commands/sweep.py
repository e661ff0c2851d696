"""``diffrl sweep``: every config x grid point x seed of a sweep file (or an Optuna search), as run folders."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@click.command()
@click.argument("sweep_file", metavar="SWEEP.yaml", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--sweep-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The sweep folder (default: sweeps/<sweep file name>). Rerunning with the same folder runs only what is "
    "not finished.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1, max=1024),
    help="Runs that train at once on this machine, each a `diffrl train` process on one torch thread "
    "(default: the number of CPUs).",
)
@click.option(
    "--address",
    metavar="ADDR",
    help="Run the trials on this Ray cluster (`ray start --head` prints it; default: $RAY_ADDRESS, if set). "
    "Needs `pip install 'diffrl-core[ray]'` on every node.",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0, max=100),
    default=3,
    show_default=True,
    help="With Ray: how often a trial whose node was lost is started again elsewhere.",
)
@click.option(
    "--storage",
    metavar="URL",
    help="With `search`: the Optuna storage that processes on several machines share, e.g. "
    "sqlite:///study.db or postgresql://... (default: a journal file in the sweep folder).",
)
def sweep(sweep_file: Path, sweep_dir: Path | None, workers: int | None, address: str | None, retries: int,
          storage: str | None) -> None:
    """Run every run of SWEEP.yaml: its config file(s) x the grid x the seeds, or an Optuna search.

    Each run is an ordinary run folder under SWEEP_DIR/runs/ (`diffrl eval`, `plot` and `compare`
    read them); SWEEP_DIR/index.json lists every run with its status, final return and error. A failed
    run is recorded there and the sweep goes on. Rerunning the command skips finished runs and
    continues interrupted ones from their checkpoints. Ctrl-C or SIGTERM stops every running run after
    it saved a checkpoint.

    Exit code: 0 when every run finished (or diverged: a result, recorded), 1 when some failed
    (index.json and SWEEP_DIR/logs/ say why), 2 for a bad sweep file or config, 130/143 when stopped.
    """
    from diffrl_core.config import parse_config
    from diffrl_core.errors import DiffRLError
    from diffrl_core.plugins import load_plugins
    from diffrl_core.resolve import check_names
    from diffrl_core.sweeps.folder import FAILED, FINAL, SweepFolder, default_sweep_dir
    from diffrl_core.sweeps.progress import Progress
    from diffrl_core.sweeps.spec import load_sweep

    sweep_spec = load_sweep(sweep_file)
    address = address or os.environ.get("RAY_ADDRESS") or None
    if sweep_spec.spec.search is None and storage is not None:
        raise click.UsageError("--storage is for sweep files with `search` (an Optuna study)")
    host = load_plugins()
    target = sweep_dir or default_sweep_dir(sweep_file)

    if sweep_spec.spec.search is not None:
        if address is not None:
            raise DiffRLError("an Optuna search runs on this machine's --workers; to use several machines, start "
                              "`diffrl sweep` on each with the same --storage URL (a database they share)")
        from diffrl_core.sweeps.search import SearchSpace, import_optuna, run_search

        import_optuna()
        space = SearchSpace(sweep_spec, host)  # checked before the sweep folder is created
        with SweepFolder(target) as folder:
            code = run_search(sweep_spec, folder, workers or _cpus(), storage, host, space=space)
        if code:
            sys.exit(code)
        return

    trials = sweep_spec.grid_trials()
    for trial in trials:  # every run is checked before the first one starts
        check_names(parse_config(trial.config, source=f"config {trial.name}"), host)
    with SweepFolder(target) as folder:
        folder.adopt(sweep_spec, trials)
        entries = folder.entries()
        todo = [trial.name for trial in trials if entries[trial.name]["status"] not in FINAL]
        names = [trial.name for trial in trials]
        finished = len(names) - len(todo)
        click.echo(f"sweep {sweep_file} -> {folder.path}: {len(names)} runs"
                   + (f", {finished} already finished" if finished else ""))
        progress = Progress(folder, names)
        if todo:
            if address is not None:
                from diffrl_core.sweeps.ray_cluster import run_on_ray

                click.echo(f"running {len(todo)} on the Ray cluster at {address}")
                run_on_ray(folder, todo, address, progress.update, retries)
            else:
                from diffrl_core.sweeps.local import LocalPool

                count = min(workers or _cpus(), len(todo))
                click.echo(f"running {len(todo)} on {count} local worker{'s' if count != 1 else ''}")
                LocalPool(folder, count).run(todo, progress.update)
            progress.update()
        click.echo(progress.report())
        failed = [name for name, entry in folder.entries().items() if name in names and entry["status"] == FAILED]
    click.echo(f"index: {folder.index_file}; compare the settings: diffrl compare {folder.path}")
    if failed:
        click.echo(f"{len(failed)} run(s) failed (their errors above, in {folder.index_file} and {folder.path}/logs/); "
                   "rerun the same command to retry them", err=True)
        sys.exit(1)

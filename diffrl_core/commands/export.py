"""``diffrl export``: a model as stable-baselines3's own (pickled) zip, for tools that need one."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("export")
@click.argument("target", type=click.Path(path_type=Path))
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
def export(target: Path, output: Path) -> None:
    """Write TARGET's model as stable-baselines3's zip, at OUTPUT.

    TARGET is a run folder (its final model, or its latest checkpoint) or a model .zip. A
    model whose composition is stable-baselines3's own policy is written as stable-baselines3's
    class (SAC, TD3, PPO, A2C): `stable_baselines3.SAC.load(OUTPUT)` reads it without diffrl.
    Any other composition is written as its composed class, which needs diffrl and its plugins
    to load. The zip holds pickles, as every stable-baselines3 zip does: it is for tools that
    read that format; share diffrl's own files (docs/model-format.md).
    """
    from diffrl_core.compose import load_model
    from diffrl_core.evaluation import locate_model
    from diffrl_core.export import export_model
    from diffrl_core.plugins import load_plugins

    model_path, _, description = locate_model(target)
    model = load_model(model_path, host=load_plugins())
    path, written = export_model(model, output)
    needs = "stable-baselines3 alone loads it" if not written.startswith("Composed") else (
        "loading it needs diffrl and the plugins of its components")
    click.echo(f"{path}: {description} as stable-baselines3's zip of a {written} ({needs})")

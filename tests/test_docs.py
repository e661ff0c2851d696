"""docs/cli.md's config reference is the one generated from the config models."""

from __future__ import annotations

import subprocess
import sys

from pydantic import BaseModel

from diffrl_core import config_reference
from diffrl_core.config import Config


def test_the_config_reference_of_docs_cli_md_is_up_to_date() -> None:
    page = config_reference.PAGE.read_text(encoding="utf-8")
    assert config_reference.START in page and config_reference.END in page, (
        f"docs/cli.md lost its {config_reference.START} / {config_reference.END} markers"
    )
    assert config_reference.render(page) == page, (
        "docs/cli.md's config reference is stale: run python -m diffrl_core.config_reference"
    )


def test_every_config_key_has_a_description() -> None:
    missing = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            if not field.description:
                missing.append(f"{prefix}{model.__name__}.{name}")
            for sub in config_reference._models(field.annotation):
                walk(sub, prefix)

    walk(Config, "")
    assert not missing, f"give these fields a Field(description=...) in diffrl_core/config.py: {missing}"


def test_every_key_is_in_the_reference_once() -> None:
    rows = list(config_reference.rows())
    paths = [row[0] for row in rows]
    # a keyword with another meaning under some algorithms (n_steps, ent_coef) has a row per meaning, each naming them
    repeated = {path for path in paths if paths.count(path) > 1}
    assert all(path.startswith("algo_kwargs.") for path in repeated)
    assert all(row[3].endswith(" only)") for row in rows if row[0] in repeated)
    assert {"algo_kwargs.n_steps", "algo_kwargs.ent_coef"} <= repeated
    expected = {"env", "policy.head", "policy.losses", "policy.losses[].weight", "action_noise.sigma", "eval.freq"}
    assert expected <= set(paths)


def test_the_generator_imports_no_torch() -> None:
    code = (
        "import sys, diffrl_core.config_reference as r\n"
        "r.table()\n"
        "print(sorted(m for m in ('torch', 'stable_baselines3') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

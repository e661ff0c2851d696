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
    paths = [row[0] for row in config_reference.rows()]
    assert len(paths) == len(set(paths))
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

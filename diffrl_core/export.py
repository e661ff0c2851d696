"""``diffrl export``: a model as stable-baselines3's own zip, for tools that only read that format.

diffrl's model files hold no code (:mod:`diffrl_core.model_file`); stable-baselines3's zips
hold pickles, which is what RL Zoo, ``huggingface_sb3`` and ``stable_baselines3.SAC.load``
read. A model whose composition is stable-baselines3's own policy (``squashed_gaussian`` +
``sac_entropy`` for SAC, ...) is written as stable-baselines3's own class, so that
stable-baselines3 loads it without diffrl; any other composition is written as its composed
class, which needs diffrl (and its plugins) installed to load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm

from diffrl_core.errors import DiffRLError
from diffrl_core.model_file import matched_by_position, with_zip_suffix
from diffrl_core.resolve import default_composition


def is_stock_composition(model: BaseAlgorithm) -> bool:
    """Whether ``model``'s composition is stable-baselines3's own policy (its names, kwargs and loss weights)."""
    from diffrl_core.plugins import default_host

    composition = model.composition  # type: ignore[attr-defined]
    ent_coef = getattr(model, "ent_coef", 0.0) if composition.algo in ("ppo", "a2c") else 0.0
    try:
        stock = default_composition(composition.algo, default_host(), model.action_space, ent_coef)
    except DiffRLError:  # the default head's plugin is not installed: then this is not the stock policy
        return False
    names = ("format", "algo", "head", "postprocess", "losses", "raw_log_prob")
    mine, theirs = composition.to_saved(), stock.to_saved()
    return all(mine[key] == theirs[key] for key in names) and getattr(model, "diffrl_components", {}).get(
        "policy") is not None


def export_model(model: BaseAlgorithm, path: str | Path) -> tuple[Path, str]:
    """Write ``model`` as stable-baselines3's zip.

    :return: the path written and the class it holds (``SAC``: loads with stable-baselines3 alone;
        ``ComposedSAC``: needs diffrl)
    """
    path = with_zip_suffix(path)
    if not is_stock_composition(model):
        BaseAlgorithm.save(model, path)
        return path, type(model).__name__
    stock = _as_stock(model)
    stock.save(path)
    return path, type(stock).__name__


def _as_stock(model: BaseAlgorithm) -> BaseAlgorithm:
    """The same model as stable-baselines3's own class: its settings, counters and tensors."""
    stock_class = next(cls for cls in type(model).__mro__ if cls.__module__.startswith("stable_baselines3."))
    alias = model.diffrl_components["policy"]  # type: ignore[attr-defined]
    stock: Any = stock_class(policy=alias, env=None, device=model.device, _init_setup_model=False)
    excluded = {*model._excluded_save_params(), "diffrl_components", "diffrl_config", "critic_frozen",
                "critic_target_update", "actor_target_update", "batch_norm_stats_update"}
    state_dicts, variables = model._get_torch_save_params()
    excluded |= {name.split(".")[0] for name in (*state_dicts, *variables)}
    stock.__dict__.update({key: value for key, value in model.__dict__.items() if key not in excluded})
    stock.policy_class = stock.policy_aliases[alias]
    stock._setup_model()
    stock.set_parameters(matched_by_position(stock, model.get_parameters()), exact_match=True, device=model.device)
    for name in variables:
        getattr(stock, name).data.copy_(getattr(model, name).data)
    return stock

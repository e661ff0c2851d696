"""What every composed stable-baselines3 algorithm shares: the composition, the loss terms, the logs.

:class:`ComposedModelMixin` goes before the stable-baselines3 class in the bases of
:class:`~diffrl_core.sb3.algorithms.ComposedSAC`, ``ComposedTD3``,
:class:`~diffrl_core.sb3.on_policy.ComposedPPO` and ``ComposedA2C``: it refuses policies whose
actor is not composed, keeps the resolved composition out of the saved file (only its names are
saved, as JSON) and sums the configured loss terms, logging each under its own name.
"""

from __future__ import annotations

import io
import pathlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch as th
from stable_baselines3.common.policies import BasePolicy

from diffrl_core.components import ActorHead, TrainingProgress
from diffrl_core.errors import DiffRLError, IncompatibleComponentsError
from diffrl_core.sb3.policies import _ComposedPolicyMixin, alias_of

if TYPE_CHECKING:
    from diffrl_core.components import LossTerm
    from diffrl_core.resolve import Composition


class ComposedModelMixin:
    """Holds the composition: resolved components in (never saved), their names out (saved as JSON).

    Built as stable-baselines3's classes are (``ComposedSAC("MlpPolicy", env)``; also ``"CnnPolicy"``
    and ``"MultiInputPolicy"``), it has SB3's own policy as components; ``load()`` rebuilds the
    saved components. A stock SB3 policy class is refused: its actor is not composed.

    :param composition: the resolved components (:func:`diffrl_core.resolve.resolve_composition`);
        None: those saved with the model while ``load()`` rebuilds it, otherwise stable-baselines3's
        own policy (:func:`diffrl_core.resolve.default_composition`)
    """

    composition: Composition | None
    policy_kwargs: dict[str, Any]
    #: the names, kwargs and provenance of the components, saved with the model as plain JSON
    diffrl_components: dict[str, Any]
    _loss_terms: list[tuple[str, float, LossTerm]]
    policy_aliases: ClassVar[dict[str, type[BasePolicy]]]
    _algo_name: str
    #: how messages name the env, e.g. ``env 'diffrl/PointMassReach-v0' (plugin 'envs' ...)``
    env_text: str | None = None
    num_timesteps: int

    def __init__(self, *args: Any, composition: Composition | None = None, **kwargs: Any) -> None:
        policy = kwargs.get("policy", args[0] if args else None)
        if isinstance(policy, type) and not issubclass(policy, _ComposedPolicyMixin):
            aliases = ", ".join(repr(alias) for alias in self.policy_aliases)
            raise DiffRLError(
                f"{type(self).__name__} cannot use {policy.__module__}.{policy.__qualname__}: its actor is not "
                f"composed of named components. Pass a policy alias ({aliases}), or a subclass of one of "
                f"{', '.join(cls.__name__ for cls in self.policy_aliases.values())}"
            )
        self.composition = composition
        super().__init__(*args, **kwargs)

    def _setup_model(self) -> None:
        """stable-baselines3's ``_setup_model`` with the resolved composition handed to the policy.

        The subclasses resolve ``self.composition`` and check it first, so that nothing is allocated
        for a composition that is refused.
        """
        assert self.composition is not None
        # the policy alias is saved so that load_model rebuilds the same policy class without unpickling it
        # (None: a user's subclass of a composed policy, which only the class itself can rebuild)
        self.diffrl_components = {**self.composition.to_saved(), "policy": alias_of(self.policy_class)}  # type: ignore[attr-defined]
        # SB3 builds the policy from self.policy_kwargs and saves that same dict: the policy
        # gets the resolved composition, the saved kwargs stay plain data.
        policy_kwargs = self.policy_kwargs
        self.policy_kwargs = {**policy_kwargs, "composition": self.composition}
        try:
            super()._setup_model()  # type: ignore[misc]
        finally:
            self.policy_kwargs = policy_kwargs
        self._loss_terms = self.composition.build_loss_terms()

    def check_action_space(self) -> None:
        """The composition's head can act in the env's action space (SB3's entry points skip make_model's check)."""
        assert self.composition is not None
        reason = self.composition.head_class.check_action_space(self.action_space)  # type: ignore[attr-defined]
        if reason:
            raise IncompatibleComponentsError(f"{type(self).__name__}: head {self.composition.head.describe()} "
                                              f"cannot act in {self.env_label()}: it {reason}")

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "composition", "_loss_terms", "last_batch", "env_text"]  # type: ignore[misc]

    def save(self, path: str | pathlib.Path | io.BufferedIOBase, exclude: Iterable[str] | None = None,
             include: Iterable[str] | None = None) -> None:
        """Save the model in diffrl's format (:mod:`diffrl_core.model_file`): a JSON manifest and safetensors,
        no pickle. ``exclude`` / ``include`` as in stable-baselines3's ``save``.

        :raises ~diffrl_core.errors.ModelSaveError: when an attribute could only be stored as code
        """
        from diffrl_core.model_file import save_model

        save_model(self, path, None if exclude is None else list(exclude),  # type: ignore[arg-type]
                   None if include is None else list(include))

    @classmethod
    def load(cls, path: str | pathlib.Path | io.BufferedIOBase, env: Any = None, device: th.device | str = "auto",
             custom_objects: dict[str, Any] | None = None, print_system_info: bool = False, force_reset: bool = True,
             **kwargs: Any) -> Any:
        """stable-baselines3's ``load``, through :func:`diffrl_core.load_model`: nothing in the file is unpickled."""
        from diffrl_core.compose import load_model

        model = load_model(path, env=env, device=device, custom_objects=custom_objects,  # type: ignore[arg-type]
                           force_reset=force_reset, **kwargs)
        if not isinstance(model, cls):
            raise DiffRLError(f"{str(path)!r} holds a {type(model).__name__}, not a {cls.__name__}")
        return model

    def check_loss(self, value: float, what: str) -> None:
        """Stop with a :class:`~diffrl_core.errors.DivergenceError` when a loss value is not finite."""
        raise NotImplementedError

    def env_label(self) -> str:
        """The env as messages name it."""
        if self.env_text:
            return self.env_text
        spec = getattr(self.get_env(), "get_attr", lambda name: [None])("spec")[0]  # type: ignore[attr-defined]
        return f"env {spec.id!r}" if spec is not None else "the env"

    def _actor_loss(self, ctx: Any, logs: dict[str, list[float]]) -> th.Tensor:
        """Weighted sum of the terms in config order; each term logged under its own name."""
        total: th.Tensor | None = None
        for name, weight, term in self._loss_terms:
            output = term(ctx)
            value, extra = output if isinstance(output, tuple) else (output, {})
            if value.ndim != 0:
                raise ValueError(f"loss term {name!r} returned a tensor of shape {tuple(value.shape)}, not a scalar")
            item = value.item()
            logs[f"train/loss/{name}"].append(item)
            self.check_loss(item, f"loss term {name!r}")
            for key, item in extra.items():
                logs[f"train/{name}/{key}"].append(float(item))
            weighted = value if weight == 1.0 else weight * value  # no extra graph node for the usual weight
            total = weighted if total is None else total + weighted
        assert total is not None, "composition checks that there is at least one loss term"
        return total

    def training_progress(self, n_updates: int) -> TrainingProgress:
        """Where training stands, for the loss context (:class:`~diffrl_core.components.TrainingProgress`)."""
        return TrainingProgress(
            self.num_timesteps, int(getattr(self, "_total_timesteps", 0)), n_updates,
            1.0 - float(getattr(self, "_current_progress_remaining", 1.0)),
        )

    def _update_head(self, head: ActorHead | Any, ctx: Any, logs: dict[str, list[float]]) -> None:
        """The head's :meth:`~diffrl_core.components.ActorHead.after_update` where it overrides it; logs its values."""
        if type(head).after_update is ActorHead.after_update:
            return
        with th.no_grad():
            values = head.after_update(ctx)
        for key, value in (values or {}).items():
            logs[f"train/head/{key}"].append(float(value))

    def _record(self, logs: Mapping[str, list[float]]) -> None:
        for key, values in logs.items():
            self.logger.record(key, np.mean(values))  # type: ignore[attr-defined]

"""The one place where component names become classes.

Two steps, so that the CLI reports a misspelled name before it imports torch:
:func:`check_names` looks every name of a config up in the registries (torch-free), and
:func:`resolve_composition` imports the components and checks that they work together
(unknown names, kwargs that do not fit a constructor, heads a post-processor cannot follow,
loss terms that need what the head or the algorithm does not offer). The result, a
:class:`Composition`, is what the stable-baselines3 classes are built from; they keep the
names only to save them (:meth:`Composition.to_saved`), and :func:`resolve_saved` turns a
saved model's names back into a composition.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from diffrl_core.config import (
    DEFAULT_POSTPROCESSOR,
    ON_POLICY_ALGOS,
    ON_POLICY_UNBOUNDED_POSTPROCESSOR,
    Config,
    default_head,
    default_losses,
)
from diffrl_core.errors import (
    ComponentError,
    ConfigError,
    DiffRLError,
    IncompatibleComponentsError,
    MissingComponentError,
    UnknownNameError,
    message_of,
)
from diffrl_core.kinds import ACTOR_HEADS, ENVS, LOSS_TERMS, POSTPROCESSORS, Kind, label
from diffrl_core.registry import Registration, import_target
from diffrl_core.strict_yaml import shorten

if TYPE_CHECKING:
    from diffrl_core.components import ActorHead, LossTerm, PostProcessor
    from diffrl_core.plugins import PluginHost

#: Version of the ``diffrl_components`` entry a saved model holds (1: names in ``policy_kwargs``;
#: 2: before ``raw_log_prob``, when the losses always saw the head's raw log-prob).
SAVED_FORMAT = 3


@dataclass(frozen=True)
class NamedComponent:
    """One component of a composition, as the config names it.

    :param name: the name (or a former name: an alias) it was asked for by
    :param kwargs: its constructor's config kwargs
    :param weight: a loss term's weight in the actor loss (1.0 for the other kinds)
    :param name_key: where the name came from (a config key), for error messages
    :param kwargs_key: where the kwargs came from
    """

    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    weight: float = 1.0
    name_key: str = "the config"
    kwargs_key: str = "the config"


@dataclass(frozen=True)
class ResolvedComponent:
    """A component resolved through its registry.

    :param registration: the registry entry (its registered name and provenance)
    :param cls: the component class
    :param kwargs: its constructor's config kwargs
    :param weight: a loss term's weight in the actor loss
    :param requested: the name the config used (a former name, when it is an alias)
    :param kwargs_key: where the kwargs came from (a config key), for error messages
    """

    registration: Registration
    cls: type[Any]
    kwargs: Mapping[str, Any]
    weight: float = 1.0
    requested: str = ""
    kwargs_key: str = "the config"

    @property
    def name(self) -> str:
        """The registered name (an alias in the config resolves to it)."""
        return self.registration.name

    def describe(self) -> str:
        """``'name' (plugin ...)`` for messages, with the config's former name when it used one."""
        former = ""
        requested = self.requested.rpartition(":")[2]  # "plugin:name" is the name, qualified
        if requested and requested != self.name:
            former = f", asked for by its former name {self.requested!r}"
        return f"{self.name!r} ({self.registration.provenance.describe()}{former})"

    def provenance(self) -> dict[str, Any]:
        return self.registration.provenance.as_dict()

    def build(self, *args: Any, **defaults: Any) -> Any:
        """The component, constructed with ``args`` and its config kwargs (over ``defaults``).

        A constructor rejects a kwarg *value* by raising ``ValueError`` (or ``TypeError``);
        it becomes a :class:`~diffrl_core.errors.ConfigError` naming the component and the
        config key (exit 2 from the CLI, no traceback).
        """
        what = f"{label(self.registration.kind)} {self.describe()}"
        try:
            return self.cls(*args, **{**defaults, **self.kwargs})
        except DiffRLError:
            raise
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"{self.kwargs_key}: {what} rejected its kwargs {shorten(dict(self.kwargs))}: {message_of(exc)}"
            ) from exc
        except Exception as exc:  # a plugin's bug: name the component, not a traceback into its code
            raise ComponentError(
                f"{what} failed to construct (kwargs {shorten(dict(self.kwargs))} from {self.kwargs_key}): "
                f"{type(exc).__name__}: {message_of(exc)}. This is a bug of its plugin, or of its kwargs"
            ) from exc


@dataclass(frozen=True)
class Composition:
    """What a policy is made of: the algorithm, the actor's head and post-processor, the loss terms.

    :param algo: ``"sac"``, ``"td3"``, ``"ppo"`` or ``"a2c"``
    :param head: the actor head
    :param postprocessor: the post-processor
    :param loss_terms: the actor loss terms, in the order they are summed
    :param raw_log_prob: the losses and SAC use the head's log-prob of its raw action, because
        the post-processor does not say what it does to the density (``policy.raw_log_prob``)
    """

    algo: str
    head: ResolvedComponent
    postprocessor: ResolvedComponent
    loss_terms: tuple[ResolvedComponent, ...]
    raw_log_prob: bool = False

    @property
    def head_class(self) -> type[ActorHead]:
        return self.head.cls

    @property
    def postprocessor_class(self) -> type[PostProcessor]:
        return self.postprocessor.cls

    def build_loss_terms(self) -> list[tuple[str, float, LossTerm]]:
        """``(name, weight, term)`` of each loss term, built with its kwargs."""
        return [(term.name, term.weight, term.build()) for term in self.loss_terms]

    def provenance(self) -> dict[str, dict[str, dict[str, Any]]]:
        """kind -> name -> which plugin and distribution provided it."""
        return {
            ACTOR_HEADS.name: {self.head.name: self.head.provenance()},
            POSTPROCESSORS.name: {self.postprocessor.name: self.postprocessor.provenance()},
            LOSS_TERMS.name: {term.name: term.provenance() for term in self.loss_terms},
        }

    def to_saved(self) -> dict[str, Any]:
        """The names, kwargs and provenance a saved model holds, as plain JSON."""
        return {
            "format": SAVED_FORMAT,
            "algo": self.algo,
            # the plain names; "provenance" records each one's plugin, and loading resolves from it
            "head": {"name": self.head.name, "kwargs": dict(self.head.kwargs)},
            "postprocess": {"name": self.postprocessor.name, "kwargs": dict(self.postprocessor.kwargs)},
            "losses": [{"name": t.name, "weight": t.weight, "kwargs": dict(t.kwargs)} for t in self.loss_terms],
            "raw_log_prob": self.raw_log_prob,
            "provenance": self.provenance(),
        }


# -- names -------------------------------------------------------------------------------------


def named_components(config: Config, action_space: Any = None
                     ) -> tuple[NamedComponent, NamedComponent, list[NamedComponent]]:
    """The head, post-processor and loss terms a config names (defaults filled in).

    :param action_space: the env's action space, where known: an unset head under PPO/A2C is then
        ``categorical`` for a Discrete space
    """
    policy = config.policy
    head = NamedComponent(config.head_for(action_space), policy.head_kwargs, name_key="policy.head",
                          kwargs_key="policy.head_kwargs")
    post = NamedComponent(policy.postprocess, policy.postprocess_kwargs,
                          name_key="policy.postprocess", kwargs_key="policy.postprocess_kwargs")
    losses = [
        NamedComponent(spec.name, spec.kwargs, spec.weight, f"policy.losses[{i}].name", f"policy.losses[{i}].kwargs")
        for i, spec in enumerate(config.losses)
    ]
    return head, post, losses


def check_names(config: Config, host: PluginHost) -> None:
    """Every name of ``config`` is registered (torch-free: nothing is imported).

    :raises UnknownNameError: naming the config key and the closest registered names
    """
    head, post, losses = named_components(config)
    wanted = [(POSTPROCESSORS, post), *((LOSS_TERMS, loss) for loss in losses)]
    if config.policy.head is not None or config.algo not in ON_POLICY_ALGOS:  # else it depends on the action space
        wanted.insert(0, (ACTOR_HEADS, head))
    for kind, named in wanted:
        host.registry(kind.name).get(named.name, where=named.name_key)
    check_env_id(config.env, host)


def check_env_id(env_id: str, host: PluginHost | None = None, versions: Mapping[str, Any] | None = None) -> None:
    """``env_id`` is registered with gymnasium (plugins' envs are, once plugins are loaded), and not ambiguous.

    :param host: the plugin host: an id two of its plugins claim is refused naming both, and an
        unknown id names the plugins that failed to load
    :param versions: a run's ``versions``: an unknown id names the distribution the run had it from
    :raises UnknownNameError: naming the closest ids (and the distribution to install)
    :raises AmbiguousNameError: naming both plugins
    """
    import gymnasium as gym

    if host is not None and env_id in host.registry(ENVS.name):
        host.registry(ENVS.name).get(env_id, where="env")  # raises when two plugins claim it
    if ":" in env_id or env_id in gym.registry:  # "module:ns/Env-v0" imports its module first
        return
    note = None
    for plugin, recorded in ((versions or {}).get("plugins") or {}).items():
        if isinstance(recorded, Mapping) and "env" in (recorded.get("components") or ()):
            distribution = recorded.get("distribution") or "its distribution"
            note = (f"the run had it from plugin {plugin!r} ({distribution} {recorded.get('version') or ''}".rstrip()
                    + f"): install it (pip install {distribution}) or check that DIFFRL_LOAD_PLUGINS / "
                    "DIFFRL_DISABLE_PLUGINS do not exclude it")
    failures = host.errors if host is not None else ()
    raise UnknownNameError("envs", env_id, [] if note else gym.registry.keys(), where="env", failures=failures,
                           note=note)


# -- classes -----------------------------------------------------------------------------------


def resolve_composition(config: Config, host: PluginHost, action_space: Any = None) -> Composition:
    """Resolve the config's names and check that the components work together.

    :param action_space: the env's action space, where known (see :func:`named_components`)
    :raises UnknownNameError: for a name no plugin registered (with the closest names)
    :raises ConfigError: for kwargs a component's constructor does not take
    :raises IncompatibleComponentsError: naming both components and why
    """
    head, post, losses = named_components(config, action_space)
    if "postprocess" not in config.policy.model_fields_set:
        post = _default_postprocessor(config.algo, head, post, host)
    return _resolve(config.algo, head, post, losses, host, config.policy.raw_log_prob)


def _default_postprocessor(algo: str, head: NamedComponent, post: NamedComponent, host: PluginHost
                           ) -> NamedComponent:
    """An unbounded head under PPO/A2C is clipped to the env's bounds, as stable-baselines3 does, unless a
    post-processor is named (elsewhere the default passes actions in ``[-1, 1]`` through)."""
    if algo not in ON_POLICY_ALGOS:
        return post
    head_class = host.registry(ACTOR_HEADS.name).resolve(head.name, where=head.name_key)
    if getattr(head_class, "bounded", True) or getattr(head_class, "action_space_kind", "box") != "box":
        return post
    return replace(post, name=ON_POLICY_UNBOUNDED_POSTPROCESSOR)


def resolve_saved(saved: Mapping[str, Any], host: PluginHost) -> Composition:
    """The composition of a saved model's ``diffrl_components`` entry (see :meth:`Composition.to_saved`).

    :raises MissingComponentError: for a name no loaded plugin provides, naming the
        distribution the model was saved with
    """
    provenance = saved.get("provenance", {})
    wanted = [(ACTOR_HEADS, saved["head"]), (POSTPROCESSORS, saved["postprocess"])]
    wanted += [(LOSS_TERMS, spec) for spec in saved["losses"]]
    # id(spec) -> the name qualified by the plugin the model was saved with
    owners = {id(spec): _saved_name(kind, spec["name"], provenance.get(kind.name, {}), host) for kind, spec in wanted}

    def named(spec: Mapping[str, Any]) -> NamedComponent:
        return NamedComponent(owners[id(spec)], spec.get("kwargs", {}), float(spec.get("weight", 1.0)),
                              "the saved model", "the saved model")

    # before format 3 the losses always saw the head's raw log-prob: keep what the model trained with
    raw_log_prob = saved.get("raw_log_prob") if saved["format"] >= 3 else None
    return _resolve(saved["algo"], named(saved["head"]), named(saved["postprocess"]),
                    [named(spec) for spec in saved["losses"]], host, raw_log_prob)


def resolve_saved_component(kind: Kind, saved: Mapping[str, Any], host: PluginHost) -> ResolvedComponent:
    """One component saved on its own (an actor saved without its algorithm): ``{"name", "kwargs", "provenance"}``.

    :param kind: :data:`~diffrl_core.kinds.ACTOR_HEADS` or :data:`~diffrl_core.kinds.POSTPROCESSORS`
    :raises MissingComponentError: for a name no loaded plugin provides
    """
    name = _saved_name(kind, saved["name"], {saved["name"]: saved.get("provenance", {})}, host)
    return _resolve_one(kind, NamedComponent(name, saved.get("kwargs", {}), name_key="the saved actor",
                                             kwargs_key="the saved actor"), host)


def default_composition(algo: str, host: PluginHost, action_space: Any = None, ent_coef: float = 0.0) -> Composition:
    """stable-baselines3's own policy for ``algo`` as components (what ``ComposedSAC("MlpPolicy", env)`` builds).

    :param action_space: the env's action space (PPO/A2C: ``categorical`` for a Discrete one)
    :param ent_coef: PPO/A2C: the weight of the ``entropy_bonus`` term (their ``ent_coef``)
    :raises UnknownNameError: when the plugin of the default head is not installed
    """
    where = f"the default components of {algo.upper()}"
    head = NamedComponent(default_head(algo, action_space), name_key=where, kwargs_key=where)
    post = _default_postprocessor(algo, head, NamedComponent(DEFAULT_POSTPROCESSOR, name_key=where,
                                                             kwargs_key=where), host)
    losses = [NamedComponent(name, weight=weight, name_key=where, kwargs_key=where)
              for name, weight in default_losses(algo, ent_coef)]
    return _resolve(algo, head, post, losses, host, raw_log_prob=False)


def composition_for_sb3(algo: str, saved: Mapping[str, Any] | None = None, action_space: Any = None,
                        ent_coef: float = 0.0) -> Composition:
    """The composition of a model that stable-baselines3's own entry points build, with the process-wide host.

    ``ComposedSAC("MlpPolicy", env)``, ``ComposedSAC.load(path)`` and a policy loaded on its own
    have no way to pass a plugin host: they resolve here, the saved names when there are
    some, stable-baselines3's own policy (:func:`default_composition`) otherwise.
    """
    from diffrl_core.plugins import default_host  # the sb3 layer itself never reaches the global host

    host = default_host()
    return resolve_saved(saved, host) if saved else default_composition(algo, host, action_space, ent_coef)


def component_for_sb3(kind: Kind, saved: Mapping[str, Any]) -> ResolvedComponent:
    """A component of an actor loaded on its own (``ComposedActor.load``), with the process-wide host."""
    from diffrl_core.plugins import default_host

    return resolve_saved_component(kind, saved, default_host())


def _saved_name(kind: Kind, name: str, provenance: Mapping[str, Any], host: PluginHost) -> str:
    """``name`` qualified by the plugin it was saved with (``provenance``: name -> where it came from)."""
    recorded = provenance.get(name, {})
    qualified = f"{recorded['plugin']}:{name}" if recorded.get("plugin") else name
    if qualified not in host.registry(kind.name):
        others = [r.provenance.describe() for r in host.registry(kind.name).claimants(name)]
        raise MissingComponentError(kind.name, name, host.registry(kind.name).names(),
                                    recorded.get("distribution"), plugin=recorded.get("plugin"), others=others)
    return qualified


#: kind -> the arguments its constructor gets before the config kwargs
_FIXED_ARGS = {ACTOR_HEADS.name: 2, POSTPROCESSORS.name: 1, LOSS_TERMS.name: 0}  # (latent_dim, action_dim), (space)


def _resolve(algo: str, head: NamedComponent, post: NamedComponent, losses: Sequence[NamedComponent],
             host: PluginHost, raw_log_prob: bool | None) -> Composition:
    """``raw_log_prob=None``: a model saved before format 3, opted in wherever it is needed."""
    composition = Composition(
        algo,
        _resolve_one(ACTOR_HEADS, head, host),
        _resolve_one(POSTPROCESSORS, post, host),
        tuple(_resolve_one(LOSS_TERMS, loss, host) for loss in losses),
    )
    _check_compatible(composition, losses)
    return _check_log_prob(composition, losses, raw_log_prob)


def _resolve_one(kind: Kind, named: NamedComponent, host: PluginHost) -> ResolvedComponent:
    registry = host.registry(kind.name)
    registration = registry.get(named.name, where=named.name_key)
    cls = registry.resolve(named.name, where=named.name_key)
    assert kind.base_class is not None
    base = import_target(kind.base_class, "diffrl_core")
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise IncompatibleComponentsError(
            f"{kind.label} {registration.name!r} of {registration.provenance.describe()} is {cls!r}, "
            f"not a subclass of diffrl_core.components.{base.__name__}"
        )
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        raise IncompatibleComponentsError(
            f"{kind.label} {registration.name!r} of {registration.provenance.describe()} is abstract: "
            f"{cls.__qualname__} does not implement {missing} (a bug of its plugin)"
        )
    _check_kwargs(cls, kind, registration, named.kwargs, named.kwargs_key, _FIXED_ARGS[kind.name])
    return ResolvedComponent(registration, cls, dict(named.kwargs), named.weight, named.name, named.kwargs_key)


def _check_kwargs(cls: type, kind: Kind, registration: Registration, kwargs: Mapping[str, Any], key: str,
                  fixed_args: int) -> None:
    """Config kwargs must fit the component's constructor (after its ``fixed_args`` positional arguments)."""
    signature = inspect.signature(cls)
    try:
        signature.bind(*range(fixed_args), **kwargs)
    except TypeError as exc:
        keyword_kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        accepted = [name for name in list(signature.parameters)[fixed_args:]
                    if signature.parameters[name].kind in keyword_kinds]
        raise ConfigError(
            f"{key}: {kind.label} {registration.name!r} ({registration.provenance.describe()}) does not take "
            f"these kwargs ({exc}); it accepts: {', '.join(accepted) or 'none'}"
        ) from None


def _check_compatible(composition: Composition, losses: Sequence[NamedComponent]) -> None:
    algo, head, post = composition.algo, composition.head, composition.postprocessor
    head_text = f"head {head.describe()}"
    if algo == "sac" and not head.cls.has_log_prob:
        raise IncompatibleComponentsError(
            f"algo 'sac' cannot train {head_text}: SAC's soft Q-target and entropy tuning need a head with a "
            "log-prob. Use algo 'td3' for it, or a stochastic head such as 'squashed_gaussian'."
        )
    if algo in ON_POLICY_ALGOS and not getattr(head.cls, "evaluates_actions", False):
        raise IncompatibleComponentsError(
            f"algo {algo!r} cannot train {head_text}: its policy loss needs the log-prob of the rollout buffer's "
            "actions under the current policy, which this head does not give (evaluates_actions is False). Use a "
            "stochastic head such as 'diag_gaussian', 'gaussian', 'beta' or 'categorical', or an off-policy algo"
        )
    discrete = getattr(head.cls, "action_space_kind", "box") != "box"
    if discrete and algo not in ON_POLICY_ALGOS:
        raise IncompatibleComponentsError(
            f"algo {algo!r} cannot train {head_text}: it acts in a discrete action space, and stable-baselines3's "
            f"{algo.upper()} needs continuous actions. Use algo 'ppo' or 'a2c'"
        )
    if discrete and post.name != DEFAULT_POSTPROCESSOR:
        raise IncompatibleComponentsError(
            f"post-processor {post.describe()} cannot follow {head_text}: a discrete head's action is an index the "
            "env takes as it is, and post-processors map continuous actions to [-1, 1]. Leave policy.postprocess unset"
        )
    reason = None if discrete else post.cls.check_head(head.cls)
    if reason:
        raise IncompatibleComponentsError(
            f"post-processor {post.describe()} cannot follow {head_text}: "
            f"it {reason}. Unbounded heads need a post-processor such as 'tanh' or 'clip'."
        )
    for named, term in zip(losses, composition.loss_terms, strict=True):
        reason = term.cls.check_compatible(head.cls, algo)
        if reason:
            raise IncompatibleComponentsError(
                f"loss term {term.describe()} in {named.name_key} cannot train "
                f"{head_text} under algo {algo!r}: it {reason}."
            )


def _log_prob_users(composition: Composition, losses: Sequence[NamedComponent]) -> list[str]:
    """What in the composition reads the log-prob of the actions (SAC itself, loss terms needing it)."""
    if composition.algo in ON_POLICY_ALGOS:  # their terms use the head's log-prob of its raw action: always known
        return []
    users = ["algo 'sac' (its soft Q-target and entropy tuning)"] if composition.algo == "sac" else []
    users += [f"loss term {term.name!r} ({named.name_key})"
              for named, term in zip(losses, composition.loss_terms, strict=True) if "log_prob" in term.cls.requires]
    return users


def _check_log_prob(composition: Composition, losses: Sequence[NamedComponent], raw_log_prob: bool | None
                    ) -> Composition:
    """A log-prob that is needed must be that of the normalized action, unless the config opts in to the raw one."""
    head, post = composition.head, composition.postprocessor
    users = _log_prob_users(composition, losses)
    unknown = bool(users) and head.cls.has_log_prob and not post.cls.keeps_log_prob(head.cls)
    if raw_log_prob is None:  # a model saved before format 3
        raw_log_prob = unknown
    if unknown and not raw_log_prob:
        raise IncompatibleComponentsError(
            f"post-processor {post.describe()} is not bijective (it does not declare a log-abs-det-Jacobian), so "
            f"after head {head.describe()} the log-prob of the actions the critic sees is unknown, and "
            f"{' and '.join(users)} {'need' if len(users) > 1 else 'needs'} it. Use a bijective post-processor "
            "such as 'tanh' (the exact log-prob, by change of variables), or a bounded head such as "
            "'squashed_gaussian' (then 'clip' and the exploration-noise post-processors leave its log-prob exact), "
            "or set policy.raw_log_prob: true to use the head's log-prob of its raw action (the entropy is then that "
            "of the raw action)."
        )
    if raw_log_prob and not unknown:
        reason = ("nothing in it reads a log-prob" if not users or not head.cls.has_log_prob
                  else f"post-processor {post.describe()} gives the exact log-prob of the normalized action")
        raise ConfigError(f"policy.raw_log_prob: true has no effect on this composition ({reason}): remove it")
    return replace(composition, raw_log_prob=raw_log_prob)


def check_action_space(composition: Composition, action_space: Any, env_id: str) -> None:
    """The head can act in the env's action space."""
    reason = composition.head_class.check_action_space(action_space)
    if reason:
        raise IncompatibleComponentsError(f"head {composition.head.name!r} cannot act in env {env_id!r}: it {reason}")


"""Policies for SAC, TD3, PPO and A2C whose actor is ``features -> MLP -> head -> post-processor``.

stable-baselines3 hard-codes its ``Actor`` class in ``make_actor``; these subclasses
override only ``make_actor`` (the actor is built from the resolved components the algorithm
passes in), ``_predict`` and ``_get_constructor_parameters``, and keep SB3's critics,
targets, features extractors and optimizers as they are. There is one per SB3 policy alias
(``MlpPolicy``, ``CnnPolicy``, ``MultiInputPolicy``): the aliases differ only in their
default features extractor.

Configs name features extractors and optimizers from the tables below; they are looked up,
never imported or evaluated.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import (
    ActorCriticCnnPolicy,
    ActorCriticPolicy,
    BasePolicy,
    MultiInputActorCriticPolicy,
)
from stable_baselines3.common.preprocessing import get_action_dim, is_image_space
from stable_baselines3.common.torch_layers import (
    BaseFeaturesExtractor,
    CombinedExtractor,
    FlattenExtractor,
    NatureCNN,
    create_mlp,
)
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.sac import policies as sac_policies
from stable_baselines3.td3 import policies as td3_policies
from torch import nn

from diffrl_core.components import (
    ActionSample,
    ActorHead,
    HeadEvaluation,
    HeadSample,
    PostProcessor,
    head_action_dim,
    postprocess_sample,
)
from diffrl_core.errors import ConfigError, IncompatibleComponentsError
from diffrl_core.kinds import ACTOR_HEADS, POSTPROCESSORS, Kind
from diffrl_core.resolve import component_for_sb3, composition_for_sb3

if TYPE_CHECKING:
    from diffrl_core.resolve import Composition, ResolvedComponent

#: Activation functions a config may name (config strings are looked up, never evaluated).
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}

#: Features extractors a config may name (``policy.features_extractor``); unset, the observation
#: space picks one as stable-baselines3's policy aliases do (see :func:`policy_alias`).
FEATURES_EXTRACTORS: dict[str, type[BaseFeaturesExtractor]] = {
    "flatten": FlattenExtractor,
    "nature_cnn": NatureCNN,
    "combined": CombinedExtractor,
}

#: Optimizers a config may name (``policy.optimizer``), for the actor and the critics.
OPTIMIZERS: dict[str, type[th.optim.Optimizer]] = {
    "adam": th.optim.Adam,
    "adamw": th.optim.AdamW,
    "sgd": th.optim.SGD,
    "rmsprop": th.optim.RMSprop,
    "radam": th.optim.RAdam,
    "nadam": th.optim.NAdam,
}


class ComposedActor(BasePolicy):
    """An actor made of stable-baselines3's MLP, a named head and a named post-processor.

    :param observation_space: observation space
    :param action_space: action space (a Box, flattened)
    :param net_arch: sizes of the hidden layers between features and head
    :param features_extractor: network to extract features
    :param features_dim: number of features
    :param head: the resolved actor head (built here with its config kwargs), or the saved
        ``{"name", "kwargs", "provenance"}`` of one (an actor loaded on its own)
    :param postprocessor: the resolved post-processor, or the saved form of one
    :param raw_log_prob: the config opted in to the head's raw log-prob (``policy.raw_log_prob``)
    :param activation_fn: activation function of the MLP
    :param use_sde: stable-baselines3's gSDE: the head is built in its state-dependent
        exploration mode (only a head that ``supports_sde``), with the four options below
    :param log_std_init: gSDE's initial log-std (unless the head's kwargs set it)
    :param full_std: gSDE's ``(latent, action)`` std matrix instead of one std per latent feature
    :param use_expln: gSDE's ``expln`` instead of ``exp`` for the std
    :param clip_mean: gSDE's bound of the mean (``0``: none)
    :param normalize_images: whether to normalize images (dividing by 255.0)
    """

    #: stable-baselines3's gSDE options of SAC's actor, as a head supporting gSDE gets them by default
    SDE_DEFAULTS: ClassVar[dict[str, Any]] = dict(log_std_init=-3, full_std=True, use_expln=False, clip_mean=2.0)

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        net_arch: list[int],
        features_extractor: nn.Module,
        features_dim: int,
        head: ResolvedComponent | Mapping[str, Any],
        postprocessor: ResolvedComponent | Mapping[str, Any],
        raw_log_prob: bool = False,
        activation_fn: type[nn.Module] = nn.ReLU,
        use_sde: bool = False,
        log_std_init: float = -3,
        full_std: bool = True,
        use_expln: bool = False,
        clip_mean: float = 2.0,
        normalize_images: bool = True,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            features_extractor=features_extractor,
            normalize_images=normalize_images,
            squash_output=True,  # _predict returns normalized actions; SB3 unscales them
        )
        head, postprocessor = _resolved(ACTOR_HEADS, head), _resolved(POSTPROCESSORS, postprocessor)
        self.net_arch = net_arch
        self.features_dim = features_dim
        self.activation_fn = activation_fn
        self.head_component, self.postprocessor_component = head, postprocessor
        self.use_sde = use_sde
        self.sde_options = dict(log_std_init=log_std_init, full_std=full_std, use_expln=use_expln, clip_mean=clip_mean)
        check_sde(head, use_sde)
        # Same construction order as SB3's actors (MLP, then output layers), so the same
        # seed gives the same initial weights.
        self.latent_pi = nn.Sequential(*create_mlp(features_dim, -1, net_arch, activation_fn))
        latent_dim = net_arch[-1] if len(net_arch) > 0 else features_dim
        sde = dict(use_sde=True, **self.sde_options) if use_sde else {}
        # a kwarg value a component rejects becomes a ConfigError naming it and its config key
        self.head: ActorHead = head.build(latent_dim, get_action_dim(action_space), **sde)
        self.postprocessor: PostProcessor = postprocessor.build(action_space)
        self.raw_log_prob = raw_log_prob

    def _get_constructor_parameters(self) -> dict[str, Any]:
        """What :meth:`save` stores to rebuild the actor: SB3's, with the components as names and kwargs."""
        data = super()._get_constructor_parameters()
        data.update(
            net_arch=self.net_arch,
            features_dim=self.features_dim,
            activation_fn=self.activation_fn,
            features_extractor=self.features_extractor,
            head=_saved(self.head_component),
            postprocessor=_saved(self.postprocessor_component),
            raw_log_prob=self.raw_log_prob,
            use_sde=self.use_sde,
            **self.sde_options,
        )
        return data

    def latent(self, obs: PyTorchObs) -> th.Tensor:
        return self.latent_pi(self.extract_features(obs, self.features_extractor))

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        """Normalized actions in ``[-1, 1]``, as stable-baselines3's actors return them."""
        raw_actions = self.head(self.latent(obs), deterministic=deterministic)
        return self.postprocessor(raw_actions, explore=not deterministic)

    def sample(self, obs: PyTorchObs) -> ActionSample:
        """A reparameterized head sample, its normalized actions and their log-prob, for the losses."""
        return self.sample_latent(self.latent(obs))

    def sample_latent(self, latent: th.Tensor, n: int = 1) -> ActionSample:
        """``n`` reparameterized samples per row of ``latent``, stacked sample-major (``n * batch`` rows).

        :param latent: latent features, e.g. :attr:`ActionSample.latent` (the MLP is not run again)
        :param n: samples per row
        """
        repeated = latent if n == 1 else latent.repeat(n, 1)
        sample = self.sample_from(self.head.sample(repeated))
        sample.latent = repeated
        return sample

    def sample_from(self, head_sample: HeadSample) -> ActionSample:
        """A head sample carried through the post-processor, with the log-prob the losses see."""
        return postprocess_sample(head_sample, self.postprocessor, type(self.head), self.raw_log_prob)

    def action_log_prob(self, obs: PyTorchObs) -> tuple[th.Tensor, th.Tensor]:
        """SAC's interface: normalized sampled actions and their log-prob (of the normalized actions)."""
        sample = self.sample(obs)
        assert sample.log_prob is not None, "composition checks that SAC's head has a log-prob"
        return sample.actions, sample.log_prob

    def reset_noise(self, batch_size: int = 1) -> None:
        """gSDE: new exploration weights for ``batch_size`` envs (stable-baselines3 calls it when ``use_sde``)."""
        assert self.use_sde, "reset_noise() is only available when using gSDE"
        self.head.reset_noise(batch_size)

    def get_std(self) -> th.Tensor:
        """gSDE: the standard deviation of the exploration weights (stable-baselines3 logs it as ``train/std``)."""
        assert self.use_sde, "get_std() is only available when using gSDE"
        return self.head.get_std()

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self(observation, deterministic)


#: algo -> the gSDE options it builds a head with (besides ``use_sde=True``): SAC's actor, PPO's and A2C's policy
SDE_OPTIONS: dict[str, tuple[str, ...]] = {
    "sac": ("log_std_init", "full_std", "use_expln", "clip_mean"),
    "ppo": ("log_std_init", "full_std", "use_expln"),
    "a2c": ("log_std_init", "full_std", "use_expln"),
}


def check_sde(head: ResolvedComponent, use_sde: bool, algo: str = "sac") -> None:
    """Refuse gSDE with a head that does not support it, and ``use_sde`` among a head's kwargs (it is the algorithm's).

    :param head: the resolved actor head
    :param use_sde: the algorithm's ``use_sde``
    :param algo: the algorithm, whose gSDE options (:data:`SDE_OPTIONS`) the head's constructor must take
    """
    if "use_sde" in head.kwargs:
        raise ConfigError(
            f"{head.kwargs_key}: 'use_sde' is not a head kwarg; set algo_kwargs.use_sde "
            "(stable-baselines3's use_sde), and the head builds itself for gSDE"
        )
    if not use_sde:
        return
    parameters = inspect.signature(head.cls).parameters
    missing = [name for name in ("use_sde", *SDE_OPTIONS.get(algo, ())) if name not in parameters]
    if not getattr(head.cls, "supports_sde", False) or missing:
        why = f" (its constructor takes no {', '.join(missing)})" if missing else ""
        raise IncompatibleComponentsError(
            f"use_sde: actor head {head.describe()} does not support stable-baselines3's gSDE (state-dependent "
            f"exploration) under {algo.upper()}{why}; use a head that does, such as 'squashed_gaussian' (SAC) or "
            "'diag_gaussian' (PPO, A2C), or leave use_sde off"
        )


def _saved(component: ResolvedComponent) -> dict[str, Any]:
    return {"name": component.name, "kwargs": dict(component.kwargs), "provenance": component.provenance()}


def _resolved(kind: Kind, component: ResolvedComponent | Mapping[str, Any]) -> ResolvedComponent:
    """A component of an actor loaded on its own comes as its saved names: resolve them with the installed plugins."""
    if not isinstance(component, Mapping):
        return component
    return component_for_sb3(kind, component)


def _activation(activation_fn: str | type[nn.Module]) -> type[nn.Module]:
    return ACTIVATIONS[activation_fn] if isinstance(activation_fn, str) else activation_fn


class _ComposedPolicyMixin:
    """What SAC's and TD3's composed policies share: a resolved composition in, :class:`ComposedActor` out.

    The algorithm passes the composition when it builds the policy and saves the component
    names itself (``diffrl_components``); a policy saved on its own saves them with its
    constructor arguments.

    :param composition: the resolved components (:class:`diffrl_core.resolve.Composition`), their
        saved form (:meth:`~diffrl_core.resolve.Composition.to_saved`), or None for
        stable-baselines3's own actor (:func:`diffrl_core.resolve.default_composition`)
    :param activation_fn: a name from :data:`ACTIVATIONS` (or an ``nn.Module`` class); likewise
        ``features_extractor_class`` and ``optimizer_class`` may be names from
        :data:`FEATURES_EXTRACTORS` and :data:`OPTIMIZERS`
    :param args: the SB3 policy's arguments
    :param kwargs: the SB3 policy's keyword arguments
    """

    _algo: str
    #: the activation of stable-baselines3's policy when none is given (ReLU off-policy, tanh on-policy)
    _default_activation: ClassVar[str] = "relu"

    def __init__(
        self,
        *args: Any,
        composition: Composition | Mapping[str, Any] | None = None,
        activation_fn: str | type[nn.Module] | None = None,
        **kwargs: Any,
    ) -> None:
        activation_fn = activation_fn or self._default_activation
        if composition is None or isinstance(composition, Mapping):
            action_space = kwargs.get("action_space", args[1] if len(args) > 1 else None)
            composition = composition_for_sb3(self._algo, composition, action_space)
        self.composition = composition
        self.activation_name = activation_fn
        for key, table in (("features_extractor_class", FEATURES_EXTRACTORS), ("optimizer_class", OPTIMIZERS)):
            if isinstance(kwargs.get(key), str):  # a config's name (saved policy_kwargs stay plain data)
                if kwargs[key] not in table:
                    raise ConfigError(f"{key}: unknown name {kwargs[key]!r}; valid: {', '.join(table)}")
                kwargs[key] = table[kwargs[key]]
        super().__init__(*args, activation_fn=_activation(activation_fn), **kwargs)  # type: ignore[call-arg]

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None) -> ComposedActor:
        actor_kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)  # type: ignore[attr-defined]
        actor = ComposedActor(
            **actor_kwargs,
            head=self.composition.head,
            postprocessor=self.composition.postprocessor,
            raw_log_prob=self.composition.raw_log_prob,
        )
        return actor.to(self.device)  # type: ignore[attr-defined]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()  # type: ignore[misc]
        # names, never classes: a policy saved on its own is rebuilt from the installed plugins
        data.update(activation_fn=self.activation_name, composition=self.composition.to_saved())
        return data

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self.actor(observation, deterministic)  # type: ignore[attr-defined]


# make_actor returns a ComposedActor where SB3 declares its own Actor class
class ComposedSACPolicy(_ComposedPolicyMixin, sac_policies.SACPolicy):  # type: ignore[misc]
    """stable-baselines3's SAC ``MlpPolicy`` with a composed actor; see :class:`_ComposedPolicyMixin`."""

    _algo = "sac"


class ComposedSACCnnPolicy(_ComposedPolicyMixin, sac_policies.CnnPolicy):  # type: ignore[misc]
    """stable-baselines3's SAC ``CnnPolicy`` (NatureCNN features) with a composed actor."""

    _algo = "sac"


class ComposedSACMultiInputPolicy(_ComposedPolicyMixin, sac_policies.MultiInputPolicy):  # type: ignore[misc]
    """stable-baselines3's SAC ``MultiInputPolicy`` (Dict observations) with a composed actor."""

    _algo = "sac"


class ComposedTD3Policy(_ComposedPolicyMixin, td3_policies.TD3Policy):  # type: ignore[misc]
    """stable-baselines3's TD3 ``MlpPolicy`` with a composed actor; see :class:`_ComposedPolicyMixin`."""

    _algo = "td3"


class ComposedTD3CnnPolicy(_ComposedPolicyMixin, td3_policies.CnnPolicy):  # type: ignore[misc]
    """stable-baselines3's TD3 ``CnnPolicy`` (NatureCNN features) with a composed actor."""

    _algo = "td3"


class ComposedTD3MultiInputPolicy(_ComposedPolicyMixin, td3_policies.MultiInputPolicy):  # type: ignore[misc]
    """stable-baselines3's TD3 ``MultiInputPolicy`` (Dict observations) with a composed actor."""

    _algo = "td3"


class _ComposedActorCriticMixin(_ComposedPolicyMixin):
    """PPO's and A2C's policy, ``features -> MLP -> head -> post-processor`` beside SB3's value network.

    stable-baselines3's ``ActorCriticPolicy`` builds its action layers from a hard-coded
    distribution in ``_build``; this override builds the head there instead (in the same
    place, with the same orthogonal initialization, gain 0.01) and keeps SB3's features
    extractors, MLP extractor, value network and optimizer. The rollout buffer gets the head's
    raw action (:meth:`forward`), the env the post-processed one (:meth:`env_actions`), and
    the losses the head's log-prob of given raw actions (:meth:`evaluate`).
    """

    _default_activation: ClassVar[str] = "tanh"
    composition: Composition
    action_space: spaces.Space
    head: ActorHead
    postprocessor: PostProcessor

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # _predict returns the post-processed action in [-1, 1]: predict() rescales it to the bounds
        # (SB3 asserts squash_output only with gSDE, so it is set once the policy is built)
        self._squash_output = isinstance(self.action_space, spaces.Box)

    def _build(self, lr_schedule: Any) -> None:
        self._build_mlp_extractor()  # type: ignore[attr-defined]
        latent_dim_pi = self.mlp_extractor.latent_dim_pi  # type: ignore[attr-defined]
        space = self.action_space
        # SB3's policy kwargs of its Gaussian (log_std_init) and gSDE (full_std, use_expln) reach a head that takes
        # them; the config's head_kwargs take precedence
        options: dict[str, Any] = {}
        parameters = inspect.signature(self.composition.head.cls).parameters
        if self.use_sde:  # type: ignore[attr-defined]
            check_sde(self.composition.head, True, self.composition.algo)
            if self.dist_kwargs["squash_output"]:  # type: ignore[attr-defined]
                raise ConfigError("squash_output: PPO's and A2C's squashed gSDE is not composed; for actions "
                                  "squashed to the bounds, use a bounded head such as 'squashed_gaussian'")
            options = dict(use_sde=True, log_std_init=self.log_std_init,  # type: ignore[attr-defined]
                           full_std=self.dist_kwargs["full_std"], use_expln=self.dist_kwargs["use_expln"])  # type: ignore[attr-defined]
        elif "log_std_init" in parameters and self.log_std_init != 0.0:  # type: ignore[attr-defined]
            options = dict(log_std_init=self.log_std_init)  # type: ignore[attr-defined]
        # where SB3 builds its action_net (and log_std), so the same seed gives the same weights
        self.head = self.composition.head.build(latent_dim_pi, head_action_dim(space), **options)
        self.postprocessor = self.composition.postprocessor.build(space)
        self.value_net = nn.Linear(self.mlp_extractor.latent_dim_vf, 1)  # type: ignore[attr-defined]
        if self.ortho_init:  # type: ignore[attr-defined]
            module_gains = {self.features_extractor: np.sqrt(2), self.mlp_extractor: np.sqrt(2),  # type: ignore[attr-defined]
                            self.head: 0.01, self.value_net: 1}
            if not self.share_features_extractor:  # type: ignore[attr-defined]
                del module_gains[self.features_extractor]  # type: ignore[attr-defined]
                module_gains[self.pi_features_extractor] = np.sqrt(2)  # type: ignore[attr-defined]
                module_gains[self.vf_features_extractor] = np.sqrt(2)  # type: ignore[attr-defined]
            for module, gain in module_gains.items():
                module.apply(partial(self.init_weights, gain=gain))  # type: ignore[attr-defined]
        self.optimizer = self.optimizer_class(  # type: ignore[attr-defined]
            self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs  # type: ignore[attr-defined]
        )

    def _latents(self, obs: PyTorchObs) -> tuple[th.Tensor, th.Tensor]:
        features = self.extract_features(obs)  # type: ignore[attr-defined]
        if self.share_features_extractor:  # type: ignore[attr-defined]
            return self.mlp_extractor(features)  # type: ignore[attr-defined]
        pi_features, vf_features = features
        return self.mlp_extractor.forward_actor(pi_features), self.mlp_extractor.forward_critic(vf_features)  # type: ignore[attr-defined]

    def _actor_latent(self, obs: PyTorchObs) -> th.Tensor:
        features = BasePolicy.extract_features(self, obs, self.pi_features_extractor)  # type: ignore[arg-type, attr-defined]
        return self.mlp_extractor.forward_actor(features)  # type: ignore[attr-defined]

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """The head's raw actions (what the rollout buffer stores), the values and the actions' log-prob."""
        latent_pi, latent_vf = self._latents(obs)
        values = self.value_net(latent_vf)
        actions, log_prob = self.head.act(latent_pi, deterministic=deterministic)
        return actions.reshape((-1, *self.action_space.shape)), values, log_prob  # type: ignore[misc]

    def evaluate(self, obs: PyTorchObs, actions: th.Tensor) -> tuple[th.Tensor, HeadEvaluation]:
        """The values at ``obs`` and the head's evaluation of the raw ``actions`` (log-prob, entropy, parameters)."""
        latent_pi, latent_vf = self._latents(obs)
        return self.value_net(latent_vf), self.head.evaluate_actions(latent_pi, actions)

    def evaluate_actions(self, obs: PyTorchObs, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        """stable-baselines3's interface: values, log-prob and entropy of the raw ``actions``."""
        values, evaluation = self.evaluate(obs, actions)
        return values, evaluation.log_prob, evaluation.entropy

    def env_actions(self, raw_actions: th.Tensor, explore: bool = True) -> np.ndarray:
        """The env's actions for the head's raw ones: post-processed and rescaled to the bounds (Box), as they are
        (Discrete)."""
        if not isinstance(self.action_space, spaces.Box):
            return raw_actions.cpu().numpy()
        with th.no_grad():  # post-processors take flat actions (a Box of any shape), as the head makes them
            flat = raw_actions.reshape(len(raw_actions), -1)
            normalized = self.postprocessor(flat, explore=explore).cpu().numpy().reshape(raw_actions.shape)
        # stable-baselines3's unscale_action in float64: a normalized action that is exactly x / 2 (as
        # clip_to_bounds gives for Pendulum's [-2, 2]) comes back as exactly x, the action SB3 would send
        low, high = self.action_space.low.astype(np.float64), self.action_space.high.astype(np.float64)
        return (low + 0.5 * (normalized.astype(np.float64) + 1.0) * (high - low)).astype(self.action_space.dtype)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        raw_actions = self.head(self._actor_latent(observation), deterministic=deterministic)
        if not isinstance(self.action_space, spaces.Box):
            return raw_actions
        return self.postprocessor(raw_actions, explore=not deterministic)

    def reset_noise(self, n_envs: int = 1) -> None:
        """gSDE: new exploration weights for ``n_envs`` envs (the head's; SB3 calls it when ``use_sde``)."""
        assert self.use_sde, "reset_noise() is only available when using gSDE"  # type: ignore[attr-defined]
        self.head.reset_noise(n_envs)

    def get_distribution(self, obs: PyTorchObs) -> Any:
        raise NotImplementedError(
            "a composed policy's actions come from its head, not a stable-baselines3 Distribution: use "
            "policy.evaluate(obs, actions) for log-probs and entropies, predict() for actions"
        )

    @property
    def log_std(self) -> th.Tensor:
        """The head's state-independent log-std, where it has one (SB3 logs its exp as ``train/std``)."""
        log_std = getattr(self.head, "log_std", None)
        if not isinstance(log_std, nn.Parameter):
            raise AttributeError(f"head {self.composition.head.name!r} has no state-independent log-std")
        return log_std


class ComposedPPOPolicy(_ComposedActorCriticMixin, ActorCriticPolicy):  # type: ignore[misc]
    """stable-baselines3's PPO ``MlpPolicy`` with a composed actor; see :class:`_ComposedActorCriticMixin`."""

    _algo = "ppo"


class ComposedPPOCnnPolicy(_ComposedActorCriticMixin, ActorCriticCnnPolicy):  # type: ignore[misc]
    """stable-baselines3's PPO ``CnnPolicy`` (NatureCNN features) with a composed actor."""

    _algo = "ppo"


class ComposedPPOMultiInputPolicy(_ComposedActorCriticMixin, MultiInputActorCriticPolicy):  # type: ignore[misc]
    """stable-baselines3's PPO ``MultiInputPolicy`` (Dict observations) with a composed actor."""

    _algo = "ppo"


class ComposedA2CPolicy(_ComposedActorCriticMixin, ActorCriticPolicy):  # type: ignore[misc]
    """stable-baselines3's A2C ``MlpPolicy`` with a composed actor; see :class:`_ComposedActorCriticMixin`."""

    _algo = "a2c"


class ComposedA2CCnnPolicy(_ComposedActorCriticMixin, ActorCriticCnnPolicy):  # type: ignore[misc]
    """stable-baselines3's A2C ``CnnPolicy`` (NatureCNN features) with a composed actor."""

    _algo = "a2c"


class ComposedA2CMultiInputPolicy(_ComposedActorCriticMixin, MultiInputActorCriticPolicy):  # type: ignore[misc]
    """stable-baselines3's A2C ``MultiInputPolicy`` (Dict observations) with a composed actor."""

    _algo = "a2c"


#: algo -> stable-baselines3's policy alias -> its composed policy class
POLICIES: dict[str, dict[str, type[_ComposedPolicyMixin]]] = {
    "sac": {
        "MlpPolicy": ComposedSACPolicy,
        "CnnPolicy": ComposedSACCnnPolicy,
        "MultiInputPolicy": ComposedSACMultiInputPolicy,
    },
    "td3": {
        "MlpPolicy": ComposedTD3Policy,
        "CnnPolicy": ComposedTD3CnnPolicy,
        "MultiInputPolicy": ComposedTD3MultiInputPolicy,
    },
    "ppo": {
        "MlpPolicy": ComposedPPOPolicy,
        "CnnPolicy": ComposedPPOCnnPolicy,
        "MultiInputPolicy": ComposedPPOMultiInputPolicy,
    },
    "a2c": {
        "MlpPolicy": ComposedA2CPolicy,
        "CnnPolicy": ComposedA2CCnnPolicy,
        "MultiInputPolicy": ComposedA2CMultiInputPolicy,
    },
}


def policy_alias(observation_space: spaces.Space) -> str:
    """The stable-baselines3 policy alias a user picks for ``observation_space``.

    ``MultiInputPolicy`` for Dict observations, ``CnnPolicy`` for images (``uint8`` Box of
    shape ``(H, W, C)`` or ``(C, H, W)``, as :func:`~stable_baselines3.common.preprocessing.is_image_space`
    decides), ``MlpPolicy`` otherwise.
    """
    if isinstance(observation_space, spaces.Dict):
        return "MultiInputPolicy"
    if is_image_space(observation_space, check_channels=False):
        return "CnnPolicy"
    return "MlpPolicy"


def alias_of(policy_class: type) -> str | None:
    """The alias of a composed policy class (None for another class, e.g. a user's subclass)."""
    return next((alias for classes in POLICIES.values() for alias, cls in classes.items() if cls is policy_class), None)

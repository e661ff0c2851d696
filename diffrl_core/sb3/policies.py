"""Policies for SAC and TD3 whose actor is ``features -> MLP -> head -> post-processor``.

stable-baselines3 hard-codes its ``Actor`` class in ``make_actor``; these subclasses
override only ``make_actor``, ``_predict`` and ``_get_constructor_parameters`` (so
``load()`` rebuilds the actor from component names), and keep SB3's critics, targets and
optimizers as they are.
"""

from __future__ import annotations

from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, create_mlp
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import TD3Policy
from torch import nn

from diffrl_core.components import ActorHead, HeadSample, PostProcessor
from diffrl_core.plugins import load_plugins

#: Activation functions a config may name (config strings are looked up, never evaluated).
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


class ComposedActor(BasePolicy):
    """An actor made of stable-baselines3's MLP, a named head and a named post-processor.

    :param observation_space: observation space
    :param action_space: action space (a 1-D Box)
    :param net_arch: sizes of the hidden layers between features and head
    :param features_extractor: network to extract features
    :param features_dim: number of features
    :param head: the actor head (already built)
    :param postprocessor: the post-processor (already built)
    :param activation_fn: activation function of the MLP
    :param normalize_images: whether to normalize images (dividing by 255.0)
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        net_arch: list[int],
        features_extractor: nn.Module,
        features_dim: int,
        head_class: type[ActorHead],
        head_kwargs: dict[str, Any],
        postprocessor_class: type[PostProcessor],
        postprocess_kwargs: dict[str, Any],
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
        **_sb3_actor_kwargs: Any,  # SAC's use_sde, log_std_init, ...: not used by composed actors
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            features_extractor=features_extractor,
            normalize_images=normalize_images,
            squash_output=True,  # _predict returns normalized actions; SB3 unscales them
        )
        self.net_arch = net_arch
        self.features_dim = features_dim
        self.activation_fn = activation_fn
        # Same construction order as SB3's actors (MLP, then output layers), so the same
        # seed gives the same initial weights.
        self.latent_pi = nn.Sequential(*create_mlp(features_dim, -1, net_arch, activation_fn))
        latent_dim = net_arch[-1] if len(net_arch) > 0 else features_dim
        self.head = head_class(latent_dim, get_action_dim(action_space), **head_kwargs)
        self.postprocessor = postprocessor_class(action_space, **postprocess_kwargs)

    def latent(self, obs: PyTorchObs) -> th.Tensor:
        return self.latent_pi(self.extract_features(obs, self.features_extractor))

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        """Normalized actions in ``[-1, 1]``, as stable-baselines3's actors return them."""
        raw_actions = self.head(self.latent(obs), deterministic=deterministic)
        return self.postprocessor(raw_actions, explore=not deterministic)

    def sample(self, obs: PyTorchObs) -> tuple[HeadSample, th.Tensor]:
        """A reparameterized head sample and its normalized actions, for the losses."""
        sample = self.head.sample(self.latent(obs))
        return sample, self.postprocessor(sample.actions)

    def action_log_prob(self, obs: PyTorchObs) -> tuple[th.Tensor, th.Tensor]:
        """SAC's interface: normalized sampled actions and their log-prob."""
        sample, actions = self.sample(obs)
        assert sample.log_prob is not None, "composition checks that SAC's head has a log-prob"
        return actions, sample.log_prob

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self(observation, deterministic)


def _activation(activation_fn: str | type[nn.Module]) -> type[nn.Module]:
    return ACTIVATIONS[activation_fn] if isinstance(activation_fn, str) else activation_fn


class _ComposedPolicyMixin:
    """What SAC's and TD3's composed policies share: names in, :class:`ComposedActor` out.

    :param head: actor head name
    :param head_kwargs: kwargs of the head
    :param postprocess: post-processor name
    :param postprocess_kwargs: kwargs of the post-processor
    :param activation_fn: a name from :data:`ACTIVATIONS` (or an ``nn.Module`` class)
    :param args: the SB3 policy's arguments
    :param kwargs: the SB3 policy's keyword arguments
    """

    default_head: str

    def __init__(
        self,
        *args: Any,
        head: str | None = None,
        head_kwargs: dict[str, Any] | None = None,
        postprocess: str = "unscale",
        postprocess_kwargs: dict[str, Any] | None = None,
        activation_fn: str | type[nn.Module] = "relu",
        **kwargs: Any,
    ) -> None:
        # Names are resolved once, here; nothing in the training loop touches the registry.
        host = load_plugins()
        self.head_name = head or self.default_head
        self.head_kwargs = dict(head_kwargs or {})
        self.postprocess_name = postprocess
        self.postprocess_kwargs = dict(postprocess_kwargs or {})
        self.activation_name = activation_fn
        self._head_class = host.registry("actor_heads").resolve(self.head_name, where="policy.head")
        self._postprocessor_class = host.registry("postprocessors").resolve(postprocess, where="policy.postprocess")
        super().__init__(*args, activation_fn=_activation(activation_fn), **kwargs)  # type: ignore[call-arg]

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None) -> ComposedActor:
        actor_kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)  # type: ignore[attr-defined]
        actor = ComposedActor(
            **actor_kwargs,
            head_class=self._head_class,
            head_kwargs=self.head_kwargs,
            postprocessor_class=self._postprocessor_class,
            postprocess_kwargs=self.postprocess_kwargs,
        )
        return actor.to(self.device)  # type: ignore[attr-defined]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()  # type: ignore[misc]
        # Names and JSON-able kwargs only: load() rebuilds the classes through the registry.
        data.update(
            head=self.head_name,
            head_kwargs=self.head_kwargs,
            postprocess=self.postprocess_name,
            postprocess_kwargs=self.postprocess_kwargs,
            activation_fn=self.activation_name,
        )
        return data

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self.actor(observation, deterministic)  # type: ignore[attr-defined]


class ComposedSACPolicy(_ComposedPolicyMixin, SACPolicy):
    """stable-baselines3's :class:`~stable_baselines3.sac.policies.SACPolicy` with a composed actor
    (default head ``squashed_gaussian``); see :class:`_ComposedPolicyMixin` for the arguments."""

    default_head = "squashed_gaussian"


class ComposedTD3Policy(_ComposedPolicyMixin, TD3Policy):
    """stable-baselines3's :class:`~stable_baselines3.td3.policies.TD3Policy` with a composed actor
    (default head ``deterministic``); see :class:`_ComposedPolicyMixin` for the arguments."""

    default_head = "deterministic"

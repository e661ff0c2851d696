"""Policies for SAC and TD3 whose actor is ``features -> MLP -> head -> post-processor``.

stable-baselines3 hard-codes its ``Actor`` class in ``make_actor``; these subclasses
override only ``make_actor`` (the actor is built from the resolved components the algorithm
passes in), ``_predict`` and ``_get_constructor_parameters``, and keep SB3's critics,
targets and optimizers as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, create_mlp
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import TD3Policy
from torch import nn

from diffrl_core.components import ActionSample, ActorHead, HeadSample, PostProcessor, postprocess_sample
from diffrl_core.errors import DiffRLError

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


class ComposedActor(BasePolicy):
    """An actor made of stable-baselines3's MLP, a named head and a named post-processor.

    :param observation_space: observation space
    :param action_space: action space (a 1-D Box)
    :param net_arch: sizes of the hidden layers between features and head
    :param features_extractor: network to extract features
    :param features_dim: number of features
    :param head: the resolved actor head (built here with its config kwargs)
    :param postprocessor: the resolved post-processor
    :param raw_log_prob: the config opted in to the head's raw log-prob (``policy.raw_log_prob``)
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
        head: ResolvedComponent,
        postprocessor: ResolvedComponent,
        raw_log_prob: bool = False,
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
        # a kwarg value a component rejects becomes a ConfigError naming it and its config key
        self.head: ActorHead = head.build(latent_dim, get_action_dim(action_space))
        self.postprocessor: PostProcessor = postprocessor.build(action_space)
        self.raw_log_prob = raw_log_prob

    def latent(self, obs: PyTorchObs) -> th.Tensor:
        return self.latent_pi(self.extract_features(obs, self.features_extractor))

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        """Normalized actions in ``[-1, 1]``, as stable-baselines3's actors return them."""
        raw_actions = self.head(self.latent(obs), deterministic=deterministic)
        return self.postprocessor(raw_actions, explore=not deterministic)

    def sample(self, obs: PyTorchObs) -> ActionSample:
        """A reparameterized head sample, its normalized actions and their log-prob, for the losses."""
        return self.sample_from(self.head.sample(self.latent(obs)))

    def sample_from(self, head_sample: HeadSample) -> ActionSample:
        """A head sample carried through the post-processor, with the log-prob the losses see."""
        return postprocess_sample(head_sample, self.postprocessor, type(self.head), self.raw_log_prob)

    def action_log_prob(self, obs: PyTorchObs) -> tuple[th.Tensor, th.Tensor]:
        """SAC's interface: normalized sampled actions and their log-prob (of the normalized actions)."""
        sample = self.sample(obs)
        assert sample.log_prob is not None, "composition checks that SAC's head has a log-prob"
        return sample.actions, sample.log_prob

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self(observation, deterministic)


def _activation(activation_fn: str | type[nn.Module]) -> type[nn.Module]:
    return ACTIVATIONS[activation_fn] if isinstance(activation_fn, str) else activation_fn


class _ComposedPolicyMixin:
    """What SAC's and TD3's composed policies share: a resolved composition in, :class:`ComposedActor` out.

    The algorithm passes the composition when it builds the policy; the component names are
    saved by the algorithm (``diffrl_components``), not with the policy's constructor arguments.

    :param composition: the resolved components (:class:`diffrl_core.resolve.Composition`)
    :param activation_fn: a name from :data:`ACTIVATIONS` (or an ``nn.Module`` class)
    :param args: the SB3 policy's arguments
    :param kwargs: the SB3 policy's keyword arguments
    """

    def __init__(
        self,
        *args: Any,
        composition: Composition | None = None,
        activation_fn: str | type[nn.Module] = "relu",
        **kwargs: Any,
    ) -> None:
        if composition is None:
            raise DiffRLError(
                f"{type(self).__name__} is built by its algorithm from resolved components: create the model with "
                "diffrl_core.make_model and load it with diffrl_core.load_model (a policy saved on its own "
                "cannot be loaded)"
            )
        self.composition = composition
        self.activation_name = activation_fn
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
        data.update(activation_fn=self.activation_name)  # a name: configs never hold classes
        return data

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self.actor(observation, deterministic)  # type: ignore[attr-defined]


# make_actor returns a ComposedActor where SB3 declares its own Actor class
class ComposedSACPolicy(_ComposedPolicyMixin, SACPolicy):  # type: ignore[misc]
    """stable-baselines3's :class:`~stable_baselines3.sac.policies.SACPolicy` with a composed actor;
    see :class:`_ComposedPolicyMixin` for the arguments."""


class ComposedTD3Policy(_ComposedPolicyMixin, TD3Policy):  # type: ignore[misc]
    """stable-baselines3's :class:`~stable_baselines3.td3.policies.TD3Policy` with a composed actor;
    see :class:`_ComposedPolicyMixin` for the arguments."""


#: algo -> its composed policy class
POLICIES: dict[str, type[ComposedSACPolicy] | type[ComposedTD3Policy]] = {
    "sac": ComposedSACPolicy,
    "td3": ComposedTD3Policy,
}

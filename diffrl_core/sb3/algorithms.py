"""SAC and TD3 whose actor update is the weighted sum of named loss terms.

The actor loss is one inline line in stable-baselines3's ``train()``, so these subclasses own
``train()``: it is SB3's, line for line and comment for comment, except inside the blocks
marked ``# >>> diffrl`` ... ``# <<< diffrl``, which quote the SB3 lines they replace as
``# SB3:`` comments. :func:`diffrl_core.sb3.sync.check_in_sync` rebuilds SB3's method from
that and compares it with the installed one, so a new stable-baselines3 release that changes
``train()`` fails a test instead of silently diverging. With ``squashed_gaussian`` +
``sac_entropy`` (SAC) or ``deterministic`` + ``q_value`` (TD3) the copies compute exactly
what SB3 computes; the tests check that the trained parameters are equal, to the bit. The
blocks also skip work SB3 discards (:mod:`diffrl_core.sb3.fast`: the critics' weight gradients
in the actor step, per-parameter Python loops in the target updates and optimizers).
"""

from __future__ import annotations

import io
import math
import pathlib
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch as th
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.her import HerReplayBuffer
from torch.nn import functional as F

from diffrl_core.components import ActionSample, ActorLossContext
from diffrl_core.errors import DivergenceError
from diffrl_core.resolve import composition_for_sb3
from diffrl_core.sb3.base import ComposedModelMixin
from diffrl_core.sb3.divergence import Diagnosis, finite_array, gradient_guard, nonfinite_argument
from diffrl_core.sb3.fast import FrozenParameters, PolyakUpdate, use_foreach
from diffrl_core.sb3.on_policy import MIRRORED as ON_POLICY_MIRRORED
from diffrl_core.sb3.on_policy import ComposedA2C, ComposedPPO
from diffrl_core.sb3.policies import POLICIES, check_sde

if TYPE_CHECKING:
    from stable_baselines3.common.type_aliases import ReplayBufferSamples



class _ComposedAlgorithmMixin(ComposedModelMixin):
    """SAC's and TD3's share of :class:`~diffrl_core.sb3.base.ComposedModelMixin`: the actor, the critics and
    the replay buffer, guarded against non-finite values (:mod:`diffrl_core.sb3.divergence`)."""

    actor: Any  # SB3 declares its own Actor; here it is a ComposedActor
    #: the replay batch of the latest gradient step, for the divergence diagnosis
    last_batch: ReplayBufferSamples | None = None
    _last_obs: Any

    def _setup_model(self) -> None:
        if self.composition is None:
            # a model loaded by stable-baselines3's load() has its saved names; a new one has SB3's own actor
            self.composition = composition_for_sb3(self._algo_name, getattr(self, "diffrl_components", None))
        # refused before the replay buffer is allocated and the networks are built
        self.check_action_space()
        check_sde(self.composition.head, getattr(self, "use_sde", False))
        super()._setup_model()
        # non-finite gradients are refused before the step, while the weights are still finite
        optimizers = {"the actor loss": self.actor.optimizer, "the critic loss": self.critic.optimizer,  # type: ignore[attr-defined]
                      "the entropy coefficient loss": getattr(self, "ent_coef_optimizer", None)}
        for what, optimizer in optimizers.items():
            if optimizer is not None:
                optimizer.register_step_pre_hook(gradient_guard(self, what))
        self._use_foreach()
        # the critics' weights get no gradient from the actor loss (the actor's optimizer would not step them)
        actor_parameters = {id(parameter) for group in self.actor.optimizer.param_groups for parameter in group["params"]}
        self.critic_frozen = FrozenParameters(
            parameter for parameter in self.critic.parameters() if id(parameter) not in actor_parameters  # type: ignore[attr-defined]
        )
        self._setup_target_updates()

    def _excluded_save_params(self) -> list[str]:
        # rebuilt by _setup_model from the networks
        return [*super()._excluded_save_params(), "critic_frozen", "critic_target_update", "actor_target_update",
                "batch_norm_stats_update"]

    def _setup_target_updates(self) -> None:
        """The fused Polyak updates of the target networks (and copies of their batch norm statistics)."""
        raise NotImplementedError

    def _use_foreach(self) -> None:
        for optimizer in (self.actor.optimizer, self.critic.optimizer, getattr(self, "ent_coef_optimizer", None)):  # type: ignore[attr-defined]
            if optimizer is not None:
                use_foreach(optimizer)

    def set_parameters(self, *args: Any, **kwargs: Any) -> None:
        """stable-baselines3's ``set_parameters``; loaded optimizer settings that leave ``foreach`` unset get it."""
        super().set_parameters(*args, **kwargs)  # type: ignore[misc]
        self._use_foreach()

    def save_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase) -> None:
        """Save the replay buffer as arrays (:mod:`diffrl_core.buffer_file`: safetensors, no pickle).

        :param path: a file path (``.safetensors`` added when it has no suffix), or a file object opened for writing
        """
        from diffrl_core.buffer_file import save_replay_buffer

        assert self.replay_buffer is not None, "the replay buffer is built by _setup_model"  # type: ignore[attr-defined]
        if not isinstance(path, io.BufferedIOBase):
            save_replay_buffer(self.replay_buffer, _buffer_path(path))  # type: ignore[attr-defined]
            return
        with tempfile.TemporaryDirectory() as folder:  # the file is written whole, then handed over
            save_replay_buffer(self.replay_buffer, Path(folder) / "buffer.safetensors")  # type: ignore[attr-defined]
            path.write((Path(folder) / "buffer.safetensors").read_bytes())

    def load_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase, truncate_last_traj: bool = True,
                           trust_pickle: bool = False) -> None:
        """Fill the replay buffer from a file :meth:`save_replay_buffer` wrote; nothing in it is run.

        :param path: a file path (as given to :meth:`save_replay_buffer`), or a file object opened for reading
        :param truncate_last_traj: HerReplayBuffer: end the last, unfinished episode (as stable-baselines3 does)
        :param trust_pickle: read a pickle that stable-baselines3's ``save_replay_buffer`` wrote, with its own
            loader, which runs whatever the file holds
        :raises ~diffrl_core.errors.ModelFileError: when the file is not such a buffer, or does not fit this model
        """
        if trust_pickle:
            super().load_replay_buffer(path, truncate_last_traj)  # type: ignore[misc]
            return
        from diffrl_core.buffer_file import load_replay_buffer

        buffer = getattr(self, "replay_buffer", None) or self._empty_replay_buffer()
        if isinstance(path, io.BufferedIOBase):
            with tempfile.TemporaryDirectory() as folder:
                copy = Path(folder) / "buffer.safetensors"
                with open(copy, "wb") as file:
                    shutil.copyfileobj(path, file)
                load_replay_buffer(buffer, copy)
        else:
            load_replay_buffer(buffer, _buffer_path(path, reading=True))
        self.replay_buffer = buffer
        if isinstance(buffer, HerReplayBuffer):
            if buffer.env is None:
                buffer.set_env(self.env)  # type: ignore[attr-defined]
            if truncate_last_traj:
                buffer.truncate_last_trajectory()
        buffer.device = self.device  # type: ignore[attr-defined]

    def _empty_replay_buffer(self) -> ReplayBuffer:
        """An empty replay buffer, as stable-baselines3's ``_setup_model`` builds one (after ``del model.replay_buffer``)."""
        kwargs = dict(self.replay_buffer_kwargs)  # type: ignore[attr-defined]
        if issubclass(self.replay_buffer_class, HerReplayBuffer):  # type: ignore[attr-defined]
            kwargs["env"] = self.env  # type: ignore[attr-defined]
        return self.replay_buffer_class(  # type: ignore[attr-defined,no-any-return]
            self.buffer_size, self.observation_space, self.action_space, device=self.device,  # type: ignore[attr-defined]
            n_envs=self.n_envs, optimize_memory_usage=self.optimize_memory_usage, **kwargs,  # type: ignore[attr-defined]
        )

    def check_loss(self, value: float, what: str) -> None:
        """Stop with the explained :class:`DivergenceError` when a loss value is not finite (free when it is)."""
        if not math.isfinite(value):
            raise Diagnosis(self, self.num_timesteps).explain(f"value of {what}", self.last_batch)

    def learn(self, *args: Any, **kwargs: Any) -> Any:
        """stable-baselines3's ``learn()``; a distribution refusing NaN parameters becomes a :class:`DivergenceError`."""
        try:
            return super().learn(*args, **kwargs)  # type: ignore[misc]
        except ValueError as exc:
            if not nonfinite_argument(exc):
                raise
            raise Diagnosis(self, self.num_timesteps).explain(
                "distribution parameter", self.last_batch, self._acting_observations()
            ) from exc

    def _acting_observations(self) -> Any:
        if self._last_obs is None:
            return None
        return self.policy.obs_to_tensor(self._last_obs)[0]  # type: ignore[attr-defined]

    def _store_transition(self, replay_buffer: ReplayBuffer, buffer_action: np.ndarray, new_obs: Any,
                          reward: np.ndarray, dones: np.ndarray, infos: list[dict[str, Any]]) -> None:
        # what the env returned and the action it got, checked before they reach the replay buffer
        if not finite_array(buffer_action):
            raise Diagnosis(self, self.num_timesteps).explain("action", observations=self._acting_observations())
        for what, value in (("observation", new_obs), ("reward", reward)):
            if not finite_array(value):
                raise DivergenceError(self.env_label(), what, self.num_timesteps,
                                      "the action it was given is finite")
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)  # type: ignore[misc]

    def loss_context(self, batch: ReplayBufferSamples) -> ActorLossContext:
        """A fresh actor loss context on ``batch`` (what ``train()`` builds), for the diagnosis."""
        return self._loss_context(batch, self.actor.sample(batch.observations), self._alpha(),
                                  self._n_updates)  # type: ignore[attr-defined]

    def _loss_context(self, batch: ReplayBufferSamples, sample: ActionSample, alpha: th.Tensor | None,
                      n_updates: int) -> ActorLossContext:
        """The actor loss context of one gradient step: the batch, the actor's sample, the critic, the progress."""
        return ActorLossContext.from_sample(
            batch, sample, q_fn=self.actor_q_fn(batch.observations), postprocess=self.actor.postprocessor,
            alpha=alpha, algo=self._algo_name, progress=self.training_progress(n_updates), head=self.actor.head,
            draw=self.actor.sample_latent, q_at=self.actor_q_at,
        )

    def actor_q_fn(self, observations: th.Tensor) -> Callable[[th.Tensor], th.Tensor]:
        """The Q estimate the actor is trained on at ``observations`` (``ActorLossContext.q_fn``)."""
        return partial(self.actor_q_at, observations)

    def actor_q_at(self, observations: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """The Q estimate the actor is trained on, shape ``(batch, 1)`` (``ActorLossContext.q_at``)."""
        raise NotImplementedError

    def _alpha(self) -> th.Tensor | None:
        return None


def _buffer_path(path: str | pathlib.Path, reading: bool = False) -> Path:
    """``path``, with ``.safetensors`` added when it has no suffix (stable-baselines3 adds ``.pkl``), as written."""
    path = Path(path)
    with_suffix = path if path.suffix else path.with_name(path.name + ".safetensors")
    return path if reading and path.exists() else with_suffix


class ComposedSAC(_ComposedAlgorithmMixin, SAC):
    """stable-baselines3's SAC with a composed actor and actor loss.

    :param composition: the resolved components (see :class:`~diffrl_core.sb3.base.ComposedModelMixin`)
    :param args: SAC's arguments
    :param kwargs: SAC's keyword arguments
    """

    _algo_name = "sac"
    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = POLICIES["sac"]  # type: ignore[assignment]

    def _alpha(self) -> th.Tensor | None:
        return self.entropy_coefficient()

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        # Switch to train mode (this affects batch norm / dropout)
        self.policy.set_training_mode(True)
        # Update optimizers learning rate
        optimizers = [self.actor.optimizer, self.critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers += [self.ent_coef_optimizer]

        # Update learning rate according to lr schedule
        self._update_learning_rate(optimizers)

        ent_coef_losses, ent_coefs = [], []
        actor_losses, critic_losses = [], []
        # >>> diffrl: the values each loss term logs
        logs: dict[str, list[float]] = defaultdict(list)
        # <<< diffrl

        for gradient_step in range(gradient_steps):
            # Sample replay buffer
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            # >>> diffrl: kept for the divergence diagnosis
            self.last_batch = replay_data
            # <<< diffrl
            # For n-step replay, discount factor is gamma**n_steps (when no early termination)
            discounts = replay_data.discounts if replay_data.discounts is not None else self.gamma

            # We need to sample because `log_std` may have changed between two gradient steps
            if self.use_sde:
                self.actor.reset_noise()

            # Action by the current actor for the sampled state
            # >>> diffrl: the head's sample (raw actions, log-prob, parameters) is kept for the loss terms
            # SB3: actions_pi, log_prob = self.actor.action_log_prob(replay_data.observations)
            # SB3: log_prob = log_prob.reshape(-1, 1)
            sample = self.actor.sample(replay_data.observations)  # log-prob of the normalized actions
            log_prob = sample.log_prob.reshape(-1, 1)  # type: ignore[union-attr]
            # <<< diffrl

            ent_coef_loss = None
            if self.ent_coef_optimizer is not None and self.log_ent_coef is not None:
                # Important: detach the variable from the graph
                # so we don't change it with other losses
                # see https://github.com/rail-berkeley/softlearning/issues/60
                ent_coef = th.exp(self.log_ent_coef.detach())
                assert isinstance(self.target_entropy, float)
                ent_coef_loss = -(self.log_ent_coef * (log_prob + self.target_entropy).detach()).mean()
                ent_coef_losses.append(ent_coef_loss.item())
                # >>> diffrl: a non-finite loss stops training before its optimizer steps
                self.check_loss(ent_coef_losses[-1], "the entropy coefficient loss")
                # <<< diffrl
            else:
                ent_coef = self.ent_coef_tensor

            ent_coefs.append(ent_coef.item())

            # Optimize entropy coefficient, also called
            # entropy temperature or alpha in the paper
            if ent_coef_loss is not None and self.ent_coef_optimizer is not None:
                self.ent_coef_optimizer.zero_grad()
                ent_coef_loss.backward()
                self.ent_coef_optimizer.step()

            with th.no_grad():
                # Select action according to policy
                next_actions, next_log_prob = self.actor.action_log_prob(replay_data.next_observations)
                # Compute the next Q values: min over all critics targets
                next_q_values = th.cat(self.critic_target(replay_data.next_observations, next_actions), dim=1)
                next_q_values, _ = th.min(next_q_values, dim=1, keepdim=True)
                # add entropy term
                next_q_values = next_q_values - ent_coef * next_log_prob.reshape(-1, 1)
                # td error + entropy term
                target_q_values = replay_data.rewards + (1 - replay_data.dones) * discounts * next_q_values

            # Get current Q-values estimates for each critic network
            # using action from the replay buffer
            current_q_values = self.critic(replay_data.observations, replay_data.actions)

            # Compute critic loss
            critic_loss = 0.5 * sum(F.mse_loss(current_q, target_q_values) for current_q in current_q_values)
            assert isinstance(critic_loss, th.Tensor)  # for type checker
            critic_losses.append(critic_loss.item())  # type: ignore[union-attr]
            # >>> diffrl: a non-finite loss stops training before its optimizer steps
            self.check_loss(critic_losses[-1], "the critic loss")
            # <<< diffrl

            # Optimize the critic
            self.critic.optimizer.zero_grad()
            critic_loss.backward()
            self.critic.optimizer.step()

            # Compute actor loss
            # Alternative: actor_loss = th.mean(log_prob - qf1_pi)
            # Min over all critic networks
            # >>> diffrl: the weighted sum of the configured loss terms (sac_entropy is SB3's line)
            # SB3: q_values_pi = th.cat(self.critic(replay_data.observations, actions_pi), dim=1)
            # SB3: min_qf_pi, _ = th.min(q_values_pi, dim=1, keepdim=True)
            # SB3: actor_loss = (ent_coef * log_prob - min_qf_pi).mean()
            ctx = self._loss_context(replay_data, sample, ent_coef, self._n_updates + gradient_step)
            with self.critic_frozen():  # no gradients of the critics' weights, which the next critic step discards
                actor_loss = self._actor_loss(ctx, logs)
            # <<< diffrl
            actor_losses.append(actor_loss.item())

            # Optimize the actor
            self.actor.optimizer.zero_grad()
            actor_loss.backward()
            self.actor.optimizer.step()
            # >>> diffrl: a head that adapts itself does so after the actor's step
            self._update_head(self.actor.head, ctx, logs)
            # <<< diffrl

            # Update target networks
            if gradient_step % self.target_update_interval == 0:
                # >>> diffrl: the same numbers in fused ops (diffrl_core.sb3.fast)
                # SB3: polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
                # SB3: # Copy running stats, see GH issue #996
                # SB3: polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)
                self.critic_target_update(self.tau)
                # Copy running stats, see GH issue #996
                self.batch_norm_stats_update(1.0)
                # <<< diffrl

        self._n_updates += gradient_steps

        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/ent_coef", np.mean(ent_coefs))
        self.logger.record("train/actor_loss", np.mean(actor_losses))
        self.logger.record("train/critic_loss", np.mean(critic_losses))
        if len(ent_coef_losses) > 0:
            self.logger.record("train/ent_coef_loss", np.mean(ent_coef_losses))
        # >>> diffrl: one column per loss term
        self._record(logs)
        # <<< diffrl


    def _setup_target_updates(self) -> None:
        self.critic_target_update = PolyakUpdate(self.critic.parameters(), self.critic_target.parameters())
        self.batch_norm_stats_update = PolyakUpdate(self.batch_norm_stats, self.batch_norm_stats_target)

    def actor_q_at(self, observations: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """SAC's Q estimate for the actor: the minimum over the critics, shape ``(batch, 1)``."""
        return th.min(th.cat(self.critic(observations, actions), dim=1), dim=1, keepdim=True)[0]

    def entropy_coefficient(self) -> th.Tensor:
        """SAC's current ``alpha`` (``ActorLossContext.alpha``), detached as ``train()`` uses it."""
        if self.ent_coef_optimizer is not None and self.log_ent_coef is not None:
            return th.exp(self.log_ent_coef.detach())
        return self.ent_coef_tensor


class ComposedTD3(_ComposedAlgorithmMixin, TD3):
    """stable-baselines3's TD3 with a composed actor and actor loss.

    The target policy is the head's deterministic action (plus TD3's clipped target noise);
    a stochastic head is sampled (rsample) for the actor loss.

    :param composition: the resolved components (see :class:`~diffrl_core.sb3.base.ComposedModelMixin`)
    :param args: TD3's arguments
    :param kwargs: TD3's keyword arguments
    """

    _algo_name = "td3"
    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = POLICIES["td3"]  # type: ignore[assignment]

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        # Switch to train mode (this affects batch norm / dropout)
        self.policy.set_training_mode(True)

        # Update learning rate according to lr schedule
        self._update_learning_rate([self.actor.optimizer, self.critic.optimizer])

        actor_losses, critic_losses = [], []
        # >>> diffrl: the values each loss term logs
        logs: dict[str, list[float]] = defaultdict(list)
        # <<< diffrl
        for _ in range(gradient_steps):
            self._n_updates += 1
            # Sample replay buffer
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            # >>> diffrl: kept for the divergence diagnosis
            self.last_batch = replay_data
            # <<< diffrl
            # For n-step replay, discount factor is gamma**n_steps (when no early termination)
            discounts = replay_data.discounts if replay_data.discounts is not None else self.gamma

            with th.no_grad():
                # Select action according to policy and add clipped noise
                noise = replay_data.actions.clone().data.normal_(0, self.target_policy_noise)
                noise = noise.clamp(-self.target_noise_clip, self.target_noise_clip)
                # >>> diffrl: the target policy is the head's deterministic action
                # SB3: next_actions = (self.actor_target(replay_data.next_observations) + noise).clamp(-1, 1)
                next_actions = (self.actor_target(replay_data.next_observations, deterministic=True) + noise).clamp(-1, 1)
                # <<< diffrl

                # Compute the next Q-values: min over all critics targets
                next_q_values = th.cat(self.critic_target(replay_data.next_observations, next_actions), dim=1)
                next_q_values, _ = th.min(next_q_values, dim=1, keepdim=True)
                target_q_values = replay_data.rewards + (1 - replay_data.dones) * discounts * next_q_values

            # Get current Q-values estimates for each critic network
            current_q_values = self.critic(replay_data.observations, replay_data.actions)

            # Compute critic loss
            critic_loss = sum(F.mse_loss(current_q, target_q_values) for current_q in current_q_values)
            assert isinstance(critic_loss, th.Tensor)
            critic_losses.append(critic_loss.item())
            # >>> diffrl: a non-finite loss stops training before its optimizer steps
            self.check_loss(critic_losses[-1], "the critic loss")
            # <<< diffrl

            # Optimize the critics
            self.critic.optimizer.zero_grad()
            critic_loss.backward()
            self.critic.optimizer.step()

            # Delayed policy updates
            if self._n_updates % self.policy_delay == 0:
                # Compute actor loss
                # >>> diffrl: the weighted sum of the configured loss terms (q_value is SB3's line)
                # SB3: actor_loss = -self.critic.q1_forward(replay_data.observations, self.actor(replay_data.observations)).mean()
                ctx = self._loss_context(replay_data, self.actor.sample(replay_data.observations), None,
                                         self._n_updates - 1)
                with self.critic_frozen():  # no gradients of the critic's weights, which the next critic step discards
                    actor_loss = self._actor_loss(ctx, logs)
                # <<< diffrl
                actor_losses.append(actor_loss.item())

                # Optimize the actor
                self.actor.optimizer.zero_grad()
                actor_loss.backward()
                self.actor.optimizer.step()
                # >>> diffrl: a head that adapts itself does so after the actor's step
                self._update_head(self.actor.head, ctx, logs)
                # <<< diffrl

                # >>> diffrl: the same numbers in fused ops (diffrl_core.sb3.fast)
                # SB3: polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
                # SB3: polyak_update(self.actor.parameters(), self.actor_target.parameters(), self.tau)
                # SB3: # Copy running stats, see GH issue #996
                # SB3: polyak_update(self.critic_batch_norm_stats, self.critic_batch_norm_stats_target, 1.0)
                # SB3: polyak_update(self.actor_batch_norm_stats, self.actor_batch_norm_stats_target, 1.0)
                self.critic_target_update(self.tau)
                self.actor_target_update(self.tau)
                # Copy running stats, see GH issue #996
                self.batch_norm_stats_update(1.0)
                # <<< diffrl

        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        if len(actor_losses) > 0:
            self.logger.record("train/actor_loss", np.mean(actor_losses))
        self.logger.record("train/critic_loss", np.mean(critic_losses))
        # >>> diffrl: one column per loss term
        self._record(logs)
        # <<< diffrl

    def _setup_target_updates(self) -> None:
        self.critic_target_update = PolyakUpdate(self.critic.parameters(), self.critic_target.parameters())
        self.actor_target_update = PolyakUpdate(self.actor.parameters(), self.actor_target.parameters())
        self.batch_norm_stats_update = PolyakUpdate(
            [*self.critic_batch_norm_stats, *self.actor_batch_norm_stats],
            [*self.critic_batch_norm_stats_target, *self.actor_batch_norm_stats_target],
        )

    def actor_q_at(self, observations: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """The Q estimate the actor is trained on: TD3's first critic, shape ``(batch, 1)``."""
        return self.critic.q1_forward(observations, actions)  # type: ignore[no-any-return]


#: Replay buffers a config may name (``algo_kwargs.replay_buffer_class``), by stable-baselines3's class names
REPLAY_BUFFERS: dict[str, type[ReplayBuffer] | type[DictReplayBuffer] | type[HerReplayBuffer]] = {
    "ReplayBuffer": ReplayBuffer, "DictReplayBuffer": DictReplayBuffer, "HerReplayBuffer": HerReplayBuffer,
}

#: algo -> the composed stable-baselines3 class that trains it
ALGORITHMS: dict[str, type[ComposedSAC] | type[ComposedTD3] | type[ComposedPPO] | type[ComposedA2C]] = {
    "sac": ComposedSAC, "td3": ComposedTD3, "ppo": ComposedPPO, "a2c": ComposedA2C,
}

#: The stable-baselines3 methods the copies mirror (checked by :mod:`diffrl_core.sb3.sync`).
MIRRORED: dict[str, tuple[Any, Any]] = {
    "SAC.train": (ComposedSAC.train, SAC.train),
    "TD3.train": (ComposedTD3.train, TD3.train),
    **ON_POLICY_MIRRORED,
}

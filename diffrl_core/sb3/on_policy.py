"""PPO and A2C whose policy loss is the weighted sum of named loss terms, and whose actor is composed.

As for SAC and TD3 (:mod:`diffrl_core.sb3.algorithms`), these subclasses own the methods
stable-baselines3 writes the policy loss and the action handling into (``PPO.train``,
``A2C.train``, ``OnPolicyAlgorithm.collect_rollouts``): each is SB3's, line for line, except
inside the blocks marked ``# >>> diffrl`` ... ``# <<< diffrl``, which quote the SB3 lines they
replace; :func:`diffrl_core.sb3.sync.check_in_sync` keeps them honest.

What the rollout buffer holds: the head's **raw** action and its log-prob when it was taken
(stable-baselines3 likewise stores the unclipped Gaussian sample). The env gets the raw action
post-processed (``explore=True``) and rescaled to its bounds. The loss terms get the head's
log-prob of the stored raw actions under the current policy, so the likelihood ratio is exact
whatever the post-processor does. The value loss (``vf_coef``, ``clip_range_vf``) stays SB3's.
With ``diag_gaussian`` + ``clip_to_bounds`` (Box) or ``categorical`` (Discrete), ``ppo_clip`` or
``policy_gradient`` and ``entropy_bonus`` weighted by ``ent_coef``, the copies compute what SB3
computes; the tests check that the trained parameters are equal.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.utils import explained_variance, obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv
from torch.nn import functional as F

from diffrl_core.components import OnPolicyLossContext
from diffrl_core.config import ENTROPY_LOSS
from diffrl_core.errors import ConfigError, DivergenceError
from diffrl_core.resolve import composition_for_sb3
from diffrl_core.sb3.base import ComposedModelMixin
from diffrl_core.sb3.divergence import (
    component_text,
    finite_array,
    gradients_finite,
    nonfinite_argument,
    sentinel_parameters,
)
from diffrl_core.sb3.policies import POLICIES, check_sde


class _ComposedOnPolicyAlgorithm(ComposedModelMixin, OnPolicyAlgorithm):
    """PPO's and A2C's share of :class:`~diffrl_core.sb3.base.ComposedModelMixin`: the rollouts.

    ``ent_coef`` is stable-baselines3's: it must be the weight of an ``entropy_bonus`` term of the
    composition when it is not 0 (stable-baselines3's own policy, built without a composition, has
    that term with that weight), so that no coefficient is silently ignored.
    """

    def _setup_model(self) -> None:
        if self.composition is None:
            # a model loaded by stable-baselines3's load() has its saved names; a new one has SB3's own policy
            self.composition = composition_for_sb3(self._algo_name, getattr(self, "diffrl_components", None),
                                                   self.action_space, self.ent_coef)
        self.check_action_space()
        check_sde(self.composition.head, self.use_sde, self._algo_name)  # before any network is built
        weights = [term.weight for term in self.composition.loss_terms if term.name == ENTROPY_LOSS]
        if self.ent_coef != 0 and self.ent_coef not in weights:
            raise ConfigError(
                f"ent_coef={self.ent_coef} would be ignored: the entropy coefficient is the weight of an "
                f"{ENTROPY_LOSS!r} loss term, and this composition has "
                f"{'one with weight ' + ', '.join(map(str, weights)) if weights else 'none'}. Give the term that "
                "weight (or leave ent_coef at 0)"
            )
        super()._setup_model()
        # non-finite gradients are refused before the step (SB3's gradient clipping would spread them)
        self.policy.optimizer.register_step_pre_hook(self._gradient_guard())

    def _maybe_recommend_cpu(self, mlp_class_name: str = "ActorCriticPolicy") -> None:
        # SB3 recognizes its MlpPolicy by class name; the composed one has its own
        super()._maybe_recommend_cpu(self.policy_aliases["MlpPolicy"].__name__)

    def _gradient_guard(self) -> Any:
        sentinels = sentinel_parameters(self.policy.optimizer)

        def check(optimizer: th.optim.Optimizer, args: Any, kwargs: Any) -> None:
            if not gradients_finite(sentinels):
                raise DivergenceError(f"the update of {self._composition_text()}", "gradient", self.num_timesteps,
                                      "every loss value was finite")

        return check

    def _composition_text(self) -> str:
        assert self.composition is not None
        parts = [self.composition.head, self.composition.postprocessor, *self.composition.loss_terms]
        return ", ".join(map(component_text, parts))

    def check_loss(self, value: float, what: str) -> None:
        """Stop with a :class:`DivergenceError` when a loss value is not finite, before the optimizer steps."""
        if not math.isfinite(value):
            raise DivergenceError(what, "value", self.num_timesteps, f"in the update of {self._composition_text()}")

    def check_actions(self, raw_actions: np.ndarray, env_actions: np.ndarray) -> None:
        """The head's raw actions and the env's must be finite before the env gets them."""
        assert self.composition is not None
        if not finite_array(raw_actions):
            raise DivergenceError(component_text(self.composition.head), "raw action", self.num_timesteps)
        if not finite_array(env_actions):
            raise DivergenceError(component_text(self.composition.postprocessor), "action", self.num_timesteps,
                                  "its input, the head's raw action, is finite")

    def check_env_output(self, observations: Any, rewards: np.ndarray) -> None:
        """The env's observations and rewards must be finite before the callbacks and the rollout buffer see them."""
        for what, value in (("observation", observations), ("reward", rewards)):
            if not finite_array(value):
                raise DivergenceError(self.env_label(), what, self.num_timesteps, "the action it was given is finite")

    def learn(self, *args: Any, **kwargs: Any) -> Any:
        """SB3's ``learn()``; a distribution refusing NaN parameters becomes a :class:`DivergenceError`."""
        try:
            return super().learn(*args, **kwargs)
        except ValueError as exc:
            if not nonfinite_argument(exc):
                raise
            assert self.composition is not None
            raise DivergenceError(component_text(self.composition.head), "distribution parameter",
                                  self.num_timesteps, str(exc).splitlines()[0]) from exc

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: RolloutBuffer,
        n_rollout_steps: int,
    ) -> bool:
        """
        Collect experiences using the current policy and fill a ``RolloutBuffer``.
        The term rollout here refers to the model-free notion and should not
        be used with the concept of rollout used in model-based RL or planning.

        :param env: The training environment
        :param callback: Callback that will be called at each step
            (and at the beginning and end of the rollout)
        :param rollout_buffer: Buffer to fill with rollouts
        :param n_rollout_steps: Number of experiences to collect per environment
        :return: True if function returned with at least `n_rollout_steps`
            collected, False if callback terminated rollout prematurely.
        """
        assert self._last_obs is not None, "No previous observation was provided"
        # Switch to eval mode (this affects batch norm / dropout)
        self.policy.set_training_mode(False)

        n_steps = 0
        rollout_buffer.reset()
        # Sample new weights for the state dependent exploration
        if self.use_sde:
            self.policy.reset_noise(env.num_envs)

        callback.on_rollout_start()

        while n_steps < n_rollout_steps:
            if self.use_sde and self.sde_sample_freq > 0 and n_steps % self.sde_sample_freq == 0:
                # Sample a new noise matrix
                self.policy.reset_noise(env.num_envs)

            with th.no_grad():
                # Convert to pytorch tensor or to TensorDict
                obs_tensor = obs_as_tensor(self._last_obs, self.device)  # type: ignore[arg-type]
                actions, values, log_probs = self.policy(obs_tensor)
            # >>> diffrl: the buffer stores the head's raw action; the env gets it post-processed and rescaled
            # SB3: actions = actions.cpu().numpy()
            # SB3:
            # SB3: # Rescale and perform action
            # SB3: clipped_actions = actions
            # SB3:
            # SB3: if isinstance(self.action_space, spaces.Box):
            # SB3:     if self.policy.squash_output:
            # SB3:         # Unscale the actions to match env bounds
            # SB3:         # if they were previously squashed (scaled in [-1, 1])
            # SB3:         clipped_actions = self.policy.unscale_action(clipped_actions)
            # SB3:     else:
            # SB3:         # Otherwise, clip the actions to avoid out of bound error
            # SB3:         # as we are sampling from an unbounded Gaussian distribution
            # SB3:         clipped_actions = np.clip(actions, self.action_space.low, self.action_space.high)
            clipped_actions = self.policy.env_actions(actions, explore=True)  # type: ignore[operator]
            actions = actions.cpu().numpy()
            self.check_actions(actions, clipped_actions)
            # <<< diffrl

            new_obs, rewards, dones, infos = env.step(clipped_actions)

            self.num_timesteps += env.num_envs
            # >>> diffrl: what the env returned, checked before the callbacks and the rollout buffer see it
            self.check_env_output(new_obs, rewards)
            # <<< diffrl

            # Give access to local variables
            callback.update_locals(locals())
            if not callback.on_step():
                return False

            self._update_info_buffer(infos, dones)
            n_steps += 1

            if isinstance(self.action_space, spaces.Discrete):
                # Reshape in case of discrete action
                actions = actions.reshape(-1, 1)

            # Handle timeout by bootstrapping with value function
            # see GitHub issue #633
            for idx, done in enumerate(dones):
                if (
                    done
                    and infos[idx].get("terminal_observation") is not None
                    and infos[idx].get("TimeLimit.truncated", False)
                ):
                    terminal_obs = self.policy.obs_to_tensor(infos[idx]["terminal_observation"])[0]
                    with th.no_grad():
                        terminal_value = self.policy.predict_values(terminal_obs)[0]  # type: ignore[arg-type]
                    rewards[idx] += self.gamma * terminal_value

            rollout_buffer.add(
                self._last_obs,  # type: ignore[arg-type]
                actions,
                rewards,
                self._last_episode_starts,  # type: ignore[arg-type]
                values,
                log_probs,
            )
            self._last_obs = new_obs  # type: ignore[assignment]
            self._last_episode_starts = dones

        with th.no_grad():
            # Compute value for the last timestep
            values = self.policy.predict_values(obs_as_tensor(new_obs, self.device))  # type: ignore[arg-type]

        rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)

        callback.update_locals(locals())

        callback.on_rollout_end()

        return True


class ComposedPPO(_ComposedOnPolicyAlgorithm, PPO):
    """stable-baselines3's PPO with a composed actor and policy loss.

    :param composition: the resolved components (see :class:`~diffrl_core.sb3.base.ComposedModelMixin`)
    :param args: PPO's arguments
    :param kwargs: PPO's keyword arguments
    """

    _algo_name = "ppo"
    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = POLICIES["ppo"]  # type: ignore[assignment]

    def train(self) -> None:
        """
        Update policy using the currently gathered rollout buffer.
        """
        # Switch to train mode (this affects batch norm / dropout)
        self.policy.set_training_mode(True)
        # Update optimizer learning rate
        self._update_learning_rate(self.policy.optimizer)
        # Compute current clip range
        clip_range = self.clip_range(self._current_progress_remaining)  # type: ignore[operator]
        # Optional: clip range for the value function
        if self.clip_range_vf is not None:
            clip_range_vf = self.clip_range_vf(self._current_progress_remaining)  # type: ignore[operator]

        entropy_losses = []
        # >>> diffrl: the values each loss term logs
        logs: dict[str, list[float]] = defaultdict(list)
        # <<< diffrl
        pg_losses, value_losses = [], []
        clip_fractions = []

        continue_training = True
        # train for n_epochs epochs
        for epoch in range(self.n_epochs):
            approx_kl_divs = []
            # Do a complete pass on the rollout buffer
            for rollout_data in self.rollout_buffer.get(self.batch_size):
                actions = rollout_data.actions
                if isinstance(self.action_space, spaces.Discrete):
                    # Convert discrete action from float to long
                    actions = rollout_data.actions.long().flatten()

                # >>> diffrl: the head's evaluation of the buffer's raw actions is kept for the loss terms
                # SB3: values, log_prob, entropy = self.policy.evaluate_actions(rollout_data.observations, actions)
                values, evaluation = self.policy.evaluate(rollout_data.observations, actions)  # type: ignore[operator]
                log_prob, entropy = evaluation.log_prob, evaluation.entropy
                # <<< diffrl
                values = values.flatten()
                # Normalize advantage
                advantages = rollout_data.advantages
                # Normalization does not make sense if mini batchsize == 1, see GH issue #325
                if self.normalize_advantage and len(advantages) > 1:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

                # ratio between old and new policy, should be one at the first iteration
                ratio = th.exp(log_prob - rollout_data.old_log_prob)

                # >>> diffrl: the weighted sum of the configured loss terms (ppo_clip is SB3's clipped surrogate)
                # SB3: # clipped surrogate loss
                # SB3: policy_loss_1 = advantages * ratio
                # SB3: policy_loss_2 = advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range)
                # SB3: policy_loss = -th.min(policy_loss_1, policy_loss_2).mean()
                ctx = OnPolicyLossContext(rollout_data, evaluation, advantages, values, clip_range, "ppo",
                                          self.training_progress(self._n_updates))
                policy_loss = self._actor_loss(ctx, logs)
                # <<< diffrl

                # Logging
                pg_losses.append(policy_loss.item())
                clip_fraction = th.mean((th.abs(ratio - 1) > clip_range).float()).item()
                clip_fractions.append(clip_fraction)

                if self.clip_range_vf is None:
                    # No clipping
                    values_pred = values
                else:
                    # Clip the difference between old and new value
                    # NOTE: this depends on the reward scaling
                    values_pred = rollout_data.old_values + th.clamp(
                        values - rollout_data.old_values, -clip_range_vf, clip_range_vf
                    )
                # Value loss using the TD(gae_lambda) target
                value_loss = F.mse_loss(rollout_data.returns, values_pred)
                value_losses.append(value_loss.item())

                # Entropy loss favor exploration
                if entropy is None:
                    # Approximate entropy when no analytical form
                    entropy_loss = -th.mean(-log_prob)
                else:
                    entropy_loss = -th.mean(entropy)

                entropy_losses.append(entropy_loss.item())

                # >>> diffrl: the entropy bonus is a loss term (entropy_bonus, weighted by ent_coef among the defaults)
                # SB3: loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
                loss = policy_loss + self.vf_coef * value_loss
                self.check_loss(loss.item(), "the PPO loss")
                # <<< diffrl

                # Calculate approximate form of reverse KL Divergence for early stopping
                # see issue #417: https://github.com/DLR-RM/stable-baselines3/issues/417
                # and discussion in PR #419: https://github.com/DLR-RM/stable-baselines3/pull/419
                # and Schulman blog: http://joschu.net/blog/kl-approx.html
                with th.no_grad():
                    log_ratio = log_prob - rollout_data.old_log_prob
                    approx_kl_div = th.mean((th.exp(log_ratio) - 1) - log_ratio).cpu().numpy()
                    approx_kl_divs.append(approx_kl_div)

                if self.target_kl is not None and approx_kl_div > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at step {epoch} due to reaching max kl: {approx_kl_div:.2f}")
                    break

                # Optimization step
                self.policy.optimizer.zero_grad()
                loss.backward()
                # Clip grad norm
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()
                # >>> diffrl: a head that adapts itself does so after the policy's step
                self._update_head(self.policy.head, ctx, logs)
                # <<< diffrl

            self._n_updates += 1
            if not continue_training:
                break

        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())

        # Logs
        self.logger.record("train/entropy_loss", np.mean(entropy_losses))
        self.logger.record("train/policy_gradient_loss", np.mean(pg_losses))
        self.logger.record("train/value_loss", np.mean(value_losses))
        self.logger.record("train/approx_kl", np.mean(approx_kl_divs))
        self.logger.record("train/clip_fraction", np.mean(clip_fractions))
        self.logger.record("train/loss", loss.item())
        self.logger.record("train/explained_variance", explained_var)
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())

        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        if self.clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)
        # >>> diffrl: one column per loss term
        self._record(logs)
        # <<< diffrl


class ComposedA2C(_ComposedOnPolicyAlgorithm, A2C):
    """stable-baselines3's A2C with a composed actor and policy loss.

    :param composition: the resolved components (see :class:`~diffrl_core.sb3.base.ComposedModelMixin`)
    :param args: A2C's arguments
    :param kwargs: A2C's keyword arguments
    """

    _algo_name = "a2c"
    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = POLICIES["a2c"]  # type: ignore[assignment]

    def train(self) -> None:
        """
        Update policy using the currently gathered
        rollout buffer (one gradient step over whole data).
        """
        # Switch to train mode (this affects batch norm / dropout)
        self.policy.set_training_mode(True)

        # Update optimizer learning rate
        self._update_learning_rate(self.policy.optimizer)

        # >>> diffrl: the values each loss term logs
        logs: dict[str, list[float]] = defaultdict(list)
        # <<< diffrl
        # This will only loop once (get all data in one go)
        for rollout_data in self.rollout_buffer.get(batch_size=None):
            actions = rollout_data.actions
            if isinstance(self.action_space, spaces.Discrete):
                # Convert discrete action from float to long
                actions = actions.long().flatten()

            # >>> diffrl: the head's evaluation of the buffer's raw actions is kept for the loss terms
            # SB3: values, log_prob, entropy = self.policy.evaluate_actions(rollout_data.observations, actions)
            values, evaluation = self.policy.evaluate(rollout_data.observations, actions)  # type: ignore[operator]
            log_prob, entropy = evaluation.log_prob, evaluation.entropy
            # <<< diffrl
            values = values.flatten()

            # Normalize advantage (not present in the original implementation)
            advantages = rollout_data.advantages
            if self.normalize_advantage:
                advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

            # Policy gradient loss
            # >>> diffrl: the weighted sum of the configured loss terms (policy_gradient is SB3's line)
            # SB3: policy_loss = -(advantages * log_prob).mean()
            ctx = OnPolicyLossContext(rollout_data, evaluation, advantages, values, None, "a2c",
                                      self.training_progress(self._n_updates))
            policy_loss = self._actor_loss(ctx, logs)
            # <<< diffrl

            # Value loss using the TD(gae_lambda) target
            value_loss = F.mse_loss(rollout_data.returns, values)

            # Entropy loss favor exploration
            if entropy is None:
                # Approximate entropy when no analytical form
                entropy_loss = -th.mean(-log_prob)
            else:
                entropy_loss = -th.mean(entropy)

            # >>> diffrl: the entropy bonus is a loss term (entropy_bonus, weighted by ent_coef among the defaults)
            # SB3: loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
            loss = policy_loss + self.vf_coef * value_loss
            self.check_loss(loss.item(), "the A2C loss")
            # <<< diffrl

            # Optimization step
            self.policy.optimizer.zero_grad()
            loss.backward()

            # Clip grad norm
            th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
            # >>> diffrl: a head that adapts itself does so after the policy's step
            self._update_head(self.policy.head, ctx, logs)
            # <<< diffrl

        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())

        self._n_updates += 1
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/explained_variance", explained_var)
        self.logger.record("train/entropy_loss", entropy_loss.item())
        self.logger.record("train/policy_loss", policy_loss.item())
        self.logger.record("train/value_loss", value_loss.item())
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        # >>> diffrl: one column per loss term
        self._record(logs)
        # <<< diffrl


#: The stable-baselines3 methods the copies above mirror (checked by :mod:`diffrl_core.sb3.sync`).
MIRRORED: dict[str, tuple[Any, Any]] = {
    "OnPolicyAlgorithm.collect_rollouts": (
        _ComposedOnPolicyAlgorithm.collect_rollouts, OnPolicyAlgorithm.collect_rollouts
    ),
    "PPO.train": (ComposedPPO.train, PPO.train),
    "A2C.train": (ComposedA2C.train, A2C.train),
}

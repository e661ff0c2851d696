"""SAC and TD3 whose actor update is the weighted sum of named loss terms.

The loss is one inline line in stable-baselines3's ``train()``, so these subclasses own
``train()``: it is SB3's, step for step (same sampling order, same updates, same logging),
except that the actor loss comes from the configured terms. With ``squashed_gaussian`` +
``sac_entropy`` (SAC) or ``deterministic`` + ``q_value`` (TD3) it computes exactly what SB3
computes; the tests check that the trained parameters are equal.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch as th
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.utils import polyak_update
from torch.nn import functional as F

from diffrl_core.components import ActorLossContext, LossTerm
from diffrl_core.plugins import load_plugins


class _ComposedLossMixin:
    """Holds the loss terms: config specs in (saved), term objects out (not saved).

    :param losses: ``[{"name": ..., "weight": ..., "kwargs": {...}}, ...]``, in the order
        the terms are summed
    """

    #: the loss used when none is configured (the algorithm's own actor loss)
    default_loss: str
    losses: list[dict[str, Any]]
    _loss_terms: list[tuple[str, float, LossTerm]]

    def __init__(self, *args: Any, losses: list[dict[str, Any]] | None = None, **kwargs: Any) -> None:
        self.losses = list(losses or [{"name": self.default_loss, "weight": 1.0}])
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]

    def _setup_model(self) -> None:
        super()._setup_model()  # type: ignore[misc]
        # names are resolved once, here (also after load(), which calls _setup_model)
        self._build_loss_terms()

    def _build_loss_terms(self) -> None:
        registry = load_plugins().registry("loss_terms")
        self._loss_terms = [
            (
                spec["name"],
                float(spec.get("weight", 1.0)),
                registry.resolve(spec["name"], where=f"policy.losses[{i}].name")(**spec.get("kwargs", {})),
            )
            for i, spec in enumerate(self.losses)
        ]

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_loss_terms"]  # type: ignore[misc]

    def _actor_loss(self, ctx: ActorLossContext, logs: dict[str, list[float]]) -> th.Tensor:
        """Weighted sum of the terms in config order; each term logged under its own name."""
        total: th.Tensor | None = None
        for name, weight, term in self._loss_terms:
            output = term(ctx)
            value, extra = output if isinstance(output, tuple) else (output, {})
            if value.ndim != 0:
                raise ValueError(f"loss term {name!r} returned a tensor of shape {tuple(value.shape)}, not a scalar")
            logs[f"train/loss/{name}"].append(value.item())
            for key, item in extra.items():
                logs[f"train/{name}/{key}"].append(float(item))
            weighted = value if weight == 1.0 else weight * value  # no extra graph node for the usual weight
            total = weighted if total is None else total + weighted
        assert total is not None, "composition checks that there is at least one loss term"
        return total

    def _record(self, logs: Mapping[str, list[float]]) -> None:
        for key, values in logs.items():
            self.logger.record(key, np.mean(values))  # type: ignore[attr-defined]


class ComposedSAC(_ComposedLossMixin, SAC):
    """stable-baselines3's SAC with a composed actor and actor loss.

    :param losses: the loss term specs (see :class:`_ComposedLossMixin`)
    :param args: SAC's arguments
    :param kwargs: SAC's keyword arguments
    """

    default_loss = "sac_entropy"

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        # stable-baselines3's SAC.train, with the actor loss from the terms
        self.policy.set_training_mode(True)
        optimizers = [self.actor.optimizer, self.critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers += [self.ent_coef_optimizer]
        self._update_learning_rate(optimizers)

        ent_coef_losses, ent_coefs = [], []
        actor_losses, critic_losses = [], []
        logs: dict[str, list[float]] = defaultdict(list)

        for gradient_step in range(gradient_steps):
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            discounts = replay_data.discounts if replay_data.discounts is not None else self.gamma

            # The actor's sample for the current states: used by alpha and by the actor loss
            sample, actions_pi = self.actor.sample(replay_data.observations)
            log_prob = sample.log_prob.reshape(-1, 1)  # type: ignore[union-attr]

            ent_coef_loss = None
            if self.ent_coef_optimizer is not None and self.log_ent_coef is not None:
                ent_coef = th.exp(self.log_ent_coef.detach())
                assert isinstance(self.target_entropy, float)
                ent_coef_loss = -(self.log_ent_coef * (log_prob + self.target_entropy).detach()).mean()
                ent_coef_losses.append(ent_coef_loss.item())
            else:
                ent_coef = self.ent_coef_tensor
            ent_coefs.append(ent_coef.item())

            if ent_coef_loss is not None and self.ent_coef_optimizer is not None:
                self.ent_coef_optimizer.zero_grad()
                ent_coef_loss.backward()
                self.ent_coef_optimizer.step()

            with th.no_grad():
                next_actions, next_log_prob = self.actor.action_log_prob(replay_data.next_observations)
                next_q_values = th.cat(self.critic_target(replay_data.next_observations, next_actions), dim=1)
                next_q_values, _ = th.min(next_q_values, dim=1, keepdim=True)
                next_q_values = next_q_values - ent_coef * next_log_prob.reshape(-1, 1)
                target_q_values = replay_data.rewards + (1 - replay_data.dones) * discounts * next_q_values

            current_q_values = self.critic(replay_data.observations, replay_data.actions)
            critic_loss = 0.5 * sum(F.mse_loss(current_q, target_q_values) for current_q in current_q_values)
            assert isinstance(critic_loss, th.Tensor)
            critic_losses.append(critic_loss.item())

            self.critic.optimizer.zero_grad()
            critic_loss.backward()
            self.critic.optimizer.step()

            # The actor loss sees the updated critic, as in SB3
            observations = replay_data.observations
            ctx = ActorLossContext(
                batch=replay_data,
                sample=sample,
                actions=actions_pi,
                q=lambda actions: th.min(th.cat(self.critic(observations, actions), dim=1), dim=1, keepdim=True)[0],
                postprocess=self.actor.postprocessor,
                alpha=ent_coef,
                algo="sac",
            )
            actor_loss = self._actor_loss(ctx, logs)
            actor_losses.append(actor_loss.item())

            self.actor.optimizer.zero_grad()
            actor_loss.backward()
            self.actor.optimizer.step()

            if gradient_step % self.target_update_interval == 0:
                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
                polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)

        self._n_updates += gradient_steps

        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/ent_coef", np.mean(ent_coefs))
        self.logger.record("train/actor_loss", np.mean(actor_losses))
        self.logger.record("train/critic_loss", np.mean(critic_losses))
        if len(ent_coef_losses) > 0:
            self.logger.record("train/ent_coef_loss", np.mean(ent_coef_losses))
        self._record(logs)


class ComposedTD3(_ComposedLossMixin, TD3):
    """stable-baselines3's TD3 with a composed actor and actor loss.

    The target policy is the head's deterministic action (plus TD3's clipped target noise);
    a stochastic head is sampled (rsample) for the actor loss.

    :param losses: the loss term specs (see :class:`_ComposedLossMixin`)
    :param args: TD3's arguments
    :param kwargs: TD3's keyword arguments
    """

    default_loss = "q_value"

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        # stable-baselines3's TD3.train, with the actor loss from the terms
        self.policy.set_training_mode(True)
        self._update_learning_rate([self.actor.optimizer, self.critic.optimizer])

        actor_losses, critic_losses = [], []
        logs: dict[str, list[float]] = defaultdict(list)
        for _ in range(gradient_steps):
            self._n_updates += 1
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            discounts = replay_data.discounts if replay_data.discounts is not None else self.gamma

            with th.no_grad():
                noise = replay_data.actions.clone().data.normal_(0, self.target_policy_noise)
                noise = noise.clamp(-self.target_noise_clip, self.target_noise_clip)
                next_actions = (self.actor_target(replay_data.next_observations, deterministic=True) + noise).clamp(-1, 1)
                next_q_values = th.cat(self.critic_target(replay_data.next_observations, next_actions), dim=1)
                next_q_values, _ = th.min(next_q_values, dim=1, keepdim=True)
                target_q_values = replay_data.rewards + (1 - replay_data.dones) * discounts * next_q_values

            current_q_values = self.critic(replay_data.observations, replay_data.actions)
            critic_loss = sum(F.mse_loss(current_q, target_q_values) for current_q in current_q_values)
            assert isinstance(critic_loss, th.Tensor)
            critic_losses.append(critic_loss.item())

            self.critic.optimizer.zero_grad()
            critic_loss.backward()
            self.critic.optimizer.step()

            if self._n_updates % self.policy_delay == 0:
                observations = replay_data.observations
                sample, actions_pi = self.actor.sample(observations)
                ctx = ActorLossContext(
                    batch=replay_data,
                    sample=sample,
                    actions=actions_pi,
                    q=lambda actions: self.critic.q1_forward(observations, actions),
                    postprocess=self.actor.postprocessor,
                    alpha=None,
                    algo="td3",
                )
                actor_loss = self._actor_loss(ctx, logs)
                actor_losses.append(actor_loss.item())

                self.actor.optimizer.zero_grad()
                actor_loss.backward()
                self.actor.optimizer.step()

                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
                polyak_update(self.actor.parameters(), self.actor_target.parameters(), self.tau)
                polyak_update(self.critic_batch_norm_stats, self.critic_batch_norm_stats_target, 1.0)
                polyak_update(self.actor_batch_norm_stats, self.actor_batch_norm_stats_target, 1.0)

        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        if len(actor_losses) > 0:
            self.logger.record("train/actor_loss", np.mean(actor_losses))
        self.logger.record("train/critic_loss", np.mean(critic_losses))
        self._record(logs)


ALGORITHMS: dict[str, type[ComposedSAC] | type[ComposedTD3]] = {"sac": ComposedSAC, "td3": ComposedTD3}

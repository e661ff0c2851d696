"""What a loss term and a head can ask of training: the progress, more samples per state, an update hook."""

from __future__ import annotations

from typing import Any

import pytest
import torch as th
from stable_baselines3.common.logger import configure

from diffrl_core import hookimpl, make_model
from diffrl_core.builtin.losses import QValueLoss
from diffrl_core.components import ActorLossContext, LossTerm, OnPolicyLossContext
from diffrl_core.errors import ConfigError
from diffrl_core.testing import registered_plugin
from diffrl_plugin_gaussian.heads import DiagGaussianHead, SquashedGaussianHead

#: what the recording components saw, cleared by the fixture
SEEN: dict[str, list[Any]] = {}


class RecordingLoss(LossTerm):
    """Records each context's progress (and, with ``n``, checks ``ctx.samples(n)`` and ``ctx.q_values``)."""

    def __init__(self, n: int = 0) -> None:
        self.n = n

    def __call__(self, ctx: ActorLossContext) -> th.Tensor:
        SEEN.setdefault("progress", []).append(ctx.progress)
        if self.n:
            more = ctx.samples(self.n)
            with th.no_grad():  # what the networks give now, before this update's steps
                params = ctx.head.params(ctx.latent)
                q_each = [ctx.q_fn(more.actions[k]) for k in range(self.n)]
            SEEN.setdefault("samples", []).append((ctx, more, ctx.samples(self.n), ctx.q_values(more.actions),
                                                   params, q_each))
        return 0.0 * ctx.actions.sum()


class RecordingOnPolicyLoss(LossTerm):
    on_policy = True

    def __call__(self, ctx: OnPolicyLossContext) -> th.Tensor:
        SEEN.setdefault("progress", []).append(ctx.progress)
        return 0.0 * ctx.log_prob.sum()


class AdaptingHead(SquashedGaussianHead):
    """SAC's head with an update hook that counts its calls and logs a value."""

    def after_update(self, ctx: Any) -> dict[str, float]:
        SEEN.setdefault("after_update", []).append((ctx, th.is_grad_enabled()))
        return {"calls": float(len(SEEN["after_update"]))}


class AdaptingDiagHead(DiagGaussianHead):
    def after_update(self, ctx: Any) -> None:
        SEEN.setdefault("after_update", []).append((ctx, th.is_grad_enabled()))


class Fixtures:
    @staticmethod
    @hookimpl
    def register_actor_heads(register: Any) -> None:
        register("adapting_gaussian", AdaptingHead)
        register("adapting_diag_gaussian", AdaptingDiagHead)

    @staticmethod
    @hookimpl
    def register_loss_terms(register: Any) -> None:
        register("recording", RecordingLoss)
        register("recording_on_policy", RecordingOnPolicyLoss)


@pytest.fixture(autouse=True)
def fixtures_plugin():
    SEEN.clear()
    with registered_plugin(Fixtures, "context_fixtures") as host:
        yield host


def config(algo: str, head: str, losses: list[dict[str, Any]], **algo_kwargs: Any) -> dict[str, Any]:
    off_policy = {"learning_starts": 50, "batch_size": 16, "buffer_size": 500}
    return {"env": "Pendulum-v1", "algo": algo, "seed": 0,
            "policy": {"net_arch": [16], "head": head, "losses": losses},
            "algo_kwargs": {**(off_policy if algo in ("sac", "td3") else {"n_steps": 32}),
                            **({"batch_size": 16} if algo == "ppo" else {}),
                            **algo_kwargs}}


@pytest.mark.parametrize("algo, own_term", [("sac", "sac_entropy"), ("td3", "q_value")])
def test_loss_terms_see_the_training_progress(algo: str, own_term: str) -> None:
    head = "squashed_gaussian" if algo == "sac" else "deterministic"
    delay = {"policy_delay": 1} if algo == "td3" else {}
    model = make_model(config(algo, head, [{"name": own_term}, {"name": "recording"}], **delay))
    model.learn(150)
    progress = SEEN["progress"]
    assert len(progress) == 100  # one actor update per env step after learning_starts = 50
    assert [p.n_updates for p in progress] == list(range(100))  # gradient steps before each one
    assert [p.num_timesteps for p in progress] == list(range(51, 151))
    assert all(p.total_timesteps == 150 for p in progress)
    assert progress[0].fraction == pytest.approx(51 / 150) and progress[-1].fraction == pytest.approx(1.0)


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_on_policy_terms_see_the_training_progress(algo: str) -> None:
    own = {"ppo": "ppo_clip", "a2c": "policy_gradient"}[algo]
    model = make_model(config(algo, "diag_gaussian", [{"name": own}, {"name": "recording_on_policy"}],
                              **({"n_epochs": 2} if algo == "ppo" else {})))
    model.learn(64)  # two rollouts of 32 steps
    progress = SEEN["progress"]
    assert {p.num_timesteps for p in progress} == {32, 64} and all(p.total_timesteps == 64 for p in progress)
    assert sorted({round(p.fraction, 9) for p in progress}) == [0.5, 1.0]
    per_rollout = {"ppo": 2 * 2, "a2c": 1}[algo]  # PPO: 2 epochs of 2 minibatches of 16; A2C: one update
    assert len(progress) == 2 * per_rollout


def test_several_samples_per_state_share_the_features_and_one_draw() -> None:
    losses = [{"name": "sac_entropy"}, {"name": "recording", "kwargs": {"n": 5}}]
    model = make_model(config("sac", "squashed_gaussian", losses))
    model.learn(52)
    ctx, more, again, q, params, q_each = SEEN["samples"][-1]
    assert again is more  # a second term asking for the same n shares the draw
    assert more.actions.shape == (5, 16, 1) and more.log_prob.shape == (5, 16) and q.shape == (5, 16, 1)
    assert more.actions.requires_grad  # reparameterized, like ctx.sample
    assert not th.equal(more.actions[0], more.actions[1])  # independent draws
    with th.no_grad():
        # each draw: the head's distribution at the batch's states (same latent), its log-prob the normalized one
        assert ctx.latent.shape == (16, 16) and th.equal(more.latent, ctx.latent.repeat(5, 1))
        u = th.atanh(more.actions[2].clamp(-0.999999, 0.999999))
        normal = th.distributions.Normal(params["mean"], params["log_std"].exp())
        expected = (normal.log_prob(u) - th.log(1 - more.actions[2] ** 2 + 1e-6)).sum(-1)
        rows = more.actions[2].abs().squeeze(-1) < 0.99
        assert th.allclose(more.log_prob[2][rows], expected[rows], atol=1e-4)
        # q_values: the actor's Q estimate (SAC: the minimum over the critics) at each sample
        for k in range(5):
            assert th.allclose(q[k], q_each[k], atol=1e-6)


def test_a_head_that_updates_itself_is_called_after_each_actor_update_and_logged(tmp_path) -> None:
    model = make_model(config("sac", "adapting_gaussian", [{"name": "sac_entropy"}], gradient_steps=2, train_freq=1))
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(60)  # 10 env steps after learning_starts, 2 gradient steps each
    model.logger.dump(model.num_timesteps)
    calls = SEEN["after_update"]
    assert len(calls) == 20
    assert all(not grad for _, grad in calls)  # under torch.no_grad()
    assert all(isinstance(ctx, ActorLossContext) and ctx.progress is not None for ctx, _ in calls)
    header = (tmp_path / "progress.csv").read_text().splitlines()[0].split(",")
    assert "train/head/calls" in header


def test_td3_calls_the_update_hook_on_its_delayed_policy_updates_only() -> None:
    model = make_model(config("td3", "adapting_gaussian", [{"name": "q_value"}], policy_delay=2))
    model.learn(70)  # 20 critic updates, 10 actor updates
    assert len(SEEN["after_update"]) == 10


def test_ppo_calls_the_update_hook_once_per_minibatch() -> None:
    model = make_model(config("ppo", "adapting_diag_gaussian", [{"name": "ppo_clip"}], n_epochs=3))
    model.learn(32)
    assert len(SEEN["after_update"]) == 3 * 2
    assert all(isinstance(ctx, OnPolicyLossContext) for ctx, _ in SEEN["after_update"])


def test_a_context_built_by_hand_says_what_it_lacks() -> None:
    model = make_model(config("sac", "squashed_gaussian", [{"name": "sac_entropy"}]))
    model.learn(52)
    batch = model.replay_buffer.sample(4)
    sample = model.actor.sample(batch.observations)
    ctx = ActorLossContext.from_sample(batch, sample, model.actor_q_fn(batch.observations), model.actor.postprocessor,
                                       None, "sac")
    assert ctx.progress is None and ctx.head is None
    with pytest.raises(RuntimeError, match="built without draw"):
        ctx.samples(2)
    with pytest.raises(RuntimeError, match="no q_at"):
        ctx.q_values(sample.actions[None])


def test_q_value_normalized_divides_by_the_mean_absolute_q() -> None:
    model = make_model(config("td3", "deterministic", [{"name": "q_value", "kwargs": {"normalize": True}}]))
    model.learn(60)
    ctx = model.loss_context(model.replay_buffer.sample(32))
    loss, logged = QValueLoss(normalize=True)(ctx)
    q = ctx.q_fn(ctx.actions)
    assert loss.item() == pytest.approx((-q.mean() / q.abs().mean()).item(), rel=1e-6)
    assert logged["q_scale"] == pytest.approx(q.abs().mean().item(), rel=1e-6)
    # the scale is held constant: the gradient is the plain term's divided by it
    parameters = [p for p in model.actor.parameters() if p.requires_grad]
    normalized = th.autograd.grad(loss, parameters, retain_graph=True)
    plain = th.autograd.grad(QValueLoss()(ctx), parameters)
    for a, b in zip(normalized, plain, strict=True):
        assert th.allclose(a, b / logged["q_scale"], rtol=1e-4, atol=1e-9)
    with pytest.raises(ConfigError, match="normalize must be true or false"):
        make_model(config("td3", "deterministic", [{"name": "q_value", "kwargs": {"normalize": "yes"}}]))

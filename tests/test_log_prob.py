"""The log-prob the losses and SAC see is that of the normalized action (change of variables through the
post-processor), and a composition where it is unknown is refused unless the config opts in."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch as th
from click.testing import CliRunner
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.distributions import SquashedDiagGaussianDistribution

from diffrl_core import load_model, make_model
from diffrl_core.builtin.postprocessors import Clip, Identity, Tanh
from diffrl_core.components import HeadSample, postprocess_sample
from diffrl_core.errors import ConfigError, IncompatibleComponentsError
from diffrl_plugin_gaussian.heads import GaussianHead, SquashedGaussianHead

BOX = spaces.Box(-1.0, 1.0, (3,))


def sac(head: str, postprocess: str, **policy: object) -> dict:
    return {
        "env": "Pendulum-v1",
        "algo": "sac",
        "policy": {"net_arch": [8], "head": head, "postprocess": postprocess, **policy},
        "algo_kwargs": {"learning_starts": 20, "batch_size": 8, "buffer_size": 200},
        "seed": 0,
    }


def test_tanh_carries_the_log_prob_exactly_as_sb3s_squashed_gaussian() -> None:
    mean, log_std = th.randn(5, 3), th.rand(5, 3) - 1.0
    th.manual_seed(0)
    reference = SquashedDiagGaussianDistribution(3)
    actions, expected = reference.log_prob_from_params(mean, log_std)
    th.manual_seed(0)
    raw = th.distributions.Normal(mean, log_std.exp()).rsample()
    head_log_prob = th.distributions.Normal(mean, log_std.exp()).log_prob(raw).sum(dim=-1)
    sample = postprocess_sample(HeadSample(raw, head_log_prob), Tanh(BOX), GaussianHead)
    assert th.equal(sample.actions, actions)
    assert th.equal(sample.log_prob, expected)  # bit for bit: the same operations as SB3


def test_exact_tanh_jacobian_stays_finite_where_tanh_saturates() -> None:
    raw = th.tensor([[0.0, 5.0, -30.0]], dtype=th.float64)
    ladj = Tanh(BOX, epsilon=0.0).log_abs_det_jacobian(raw, th.tanh(raw))
    # log(1 - tanh(x)^2) directly where float64 can, and its limit 2 (log 2 - |x|) at x = -30
    expected = float(th.log(1 - th.tanh(th.tensor([0.0, 5.0], dtype=th.float64)) ** 2).sum()) + 2 * (math.log(2) - 30)
    assert th.isfinite(ladj).all() and float(ladj) == pytest.approx(expected, rel=1e-9)


def test_identity_and_clip_keep_the_log_prob_of_bounded_heads() -> None:
    raw, log_prob = th.rand(4, 3) * 2 - 1, th.randn(4)
    for post in (Identity(BOX), Clip(BOX)):
        assert th.equal(postprocess_sample(HeadSample(raw, log_prob), post, SquashedGaussianHead).log_prob, log_prob)
    # after an unbounded head, clip's log-prob is unknown: None (a term reading it fails), unless opted in
    assert postprocess_sample(HeadSample(raw, log_prob), Clip(BOX), GaussianHead).log_prob is None
    opted_in = postprocess_sample(HeadSample(raw, log_prob), Clip(BOX), GaussianHead, raw_log_prob=True)
    assert opted_in.log_prob is log_prob


@pytest.mark.parametrize(("head", "postprocess", "keeps"), [
    ("squashed_gaussian", "identity", True),
    ("squashed_gaussian", "clip", True),  # clip changes nothing in [-1, 1]
    ("squashed_gaussian", "gaussian_noise", True),  # noise only while exploring; the policy is the head's
    ("beta", "ou_noise", True),
    ("gaussian", "tanh", True),
    ("gaussian", "clip", False),
    ("gaussian", "gaussian_noise", False),
])
def test_sac_composes_only_where_the_log_prob_of_the_normalized_action_is_known(head, postprocess, keeps) -> None:
    if keeps:
        assert make_model(sac(head, postprocess)).composition.raw_log_prob is False
        return
    with pytest.raises(IncompatibleComponentsError, match=rf"post-processor '{postprocess}'.* not bijective.* "
                                                          r"algo 'sac'.*policy.raw_log_prob: true"):
        make_model(sac(head, postprocess))


def test_td3_without_log_prob_terms_needs_no_jacobian() -> None:
    config = sac("gaussian", "clip", losses=[{"name": "q_value"}])
    config["algo"] = "td3"
    assert make_model(config).composition.raw_log_prob is False


def test_opting_in_uses_the_raw_log_prob_and_survives_save_and_load(tmp_path: Path) -> None:
    model = make_model(sac("gaussian", "clip", raw_log_prob=True))
    assert model.composition.raw_log_prob is True
    observations = th.zeros(4, 3)
    th.manual_seed(0)
    sample = model.actor.sample(observations)
    assert th.equal(sample.log_prob, sample.head.log_prob)
    model.save(tmp_path / "model.zip")
    loaded = load_model(tmp_path / "model.zip")
    assert loaded.composition.raw_log_prob is True and loaded.diffrl_components["raw_log_prob"] is True


def test_opting_in_where_nothing_changes_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"policy.raw_log_prob: true has no effect.*'tanh'.* exact log-prob"):
        make_model(sac("gaussian", "tanh", raw_log_prob=True))


def test_losses_see_the_normalized_log_prob_and_can_read_the_raw_one() -> None:
    from stable_baselines3.common.type_aliases import ReplayBufferSamples

    from diffrl_core.components import ActorLossContext

    model = make_model(sac("gaussian", "tanh"))
    observations = th.randn(4, 3)
    sample = model.actor.sample(observations)
    batch = ReplayBufferSamples(observations, th.zeros(4, 1), observations, th.zeros(4, 1), th.zeros(4, 1))
    ctx = ActorLossContext.from_sample(batch, sample, model.actor_q_fn(observations), model.actor.postprocessor,
                                       th.tensor(0.1), "sac")
    jacobian = th.log(1 - sample.actions**2 + 1e-6).sum(dim=-1, keepdim=True)
    assert th.allclose(ctx.log_prob, ctx.raw_log_prob - jacobian)


def test_a_model_saved_before_raw_log_prob_loads_as_it_trained(tmp_path: Path, rewrite_saved_data) -> None:
    """Format 2 had no raw_log_prob: its losses saw the raw log-prob, and it still loads (opted in)."""
    path = tmp_path / "model.zip"
    BaseAlgorithm.save(make_model(sac("gaussian", "clip", raw_log_prob=True)), path)  # as format 2 was saved

    def as_format_2(data: dict) -> None:
        data["diffrl_components"]["format"] = 2
        del data["diffrl_components"]["raw_log_prob"]

    loaded = load_model(rewrite_saved_data(path, tmp_path / "format2.zip", as_format_2))
    assert loaded.composition.raw_log_prob is True


def test_a_run_that_opts_in_says_so(tmp_path: Path) -> None:
    from diffrl_core.cli import main

    config = tmp_path / "raw.yaml"
    config.write_text(
        "env: diffrl/QuadraticBandit-v0\nalgo: sac\n"
        "policy: {net_arch: [8], head: gaussian, postprocess: clip, raw_log_prob: true}\n"
        "algo_kwargs: {learning_starts: 10, batch_size: 8, buffer_size: 100}\ntotal_timesteps: 30\nseed: 0\n"
        "eval: {freq: 0, final: false}\ncheckpoint: {freq: 0}\nlogging: {tensorboard: false}\n"
    )
    result = CliRunner().invoke(main, ["train", str(config), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "note: policy.raw_log_prob is set" in result.output and "'gaussian'" in result.output

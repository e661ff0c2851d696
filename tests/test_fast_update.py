"""The faster composed SAC/TD3 update computes stable-baselines3's numbers, bit for bit.

``tests/test_equivalence.py`` trains the compositions next to stable-baselines3 and compares
every parameter at 0.0; these check the pieces one by one, and that they are wired to the
parameters they must (and must not) touch.
"""

from __future__ import annotations

import json
import zipfile

import pytest
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.utils import polyak_update

from diffrl_core import load_model, make_model
from diffrl_core.sb3.fast import SAME_NUMBERS_FOREACH, FrozenParameters, PolyakUpdate, use_foreach

SHAPES = [(256, 4), (256,), (256, 256), (256,), (1, 256), (1,), (7, 3)]


def parameters(seed: int) -> list[th.nn.Parameter]:
    generator = th.Generator().manual_seed(seed)
    return [th.nn.Parameter(th.randn(shape, generator=generator)) for shape in SHAPES]


def test_polyak_update_gives_sb3s_bits() -> None:
    sources, targets = parameters(0), parameters(1)
    expected = [th.nn.Parameter(target.detach().clone()) for target in targets]
    update = PolyakUpdate(sources, targets)
    generator = th.Generator().manual_seed(2)
    for _ in range(50):
        polyak_update(sources, expected, 0.005)
        update(0.005)
        with th.no_grad():
            for source in sources:
                source.add_(th.randn(source.shape, generator=generator), alpha=0.01)
    assert all(th.equal(target, reference) for target, reference in zip(targets, expected, strict=True))
    assert not any(target.requires_grad is False for target in targets)  # still parameters, updated in place


def test_polyak_update_copies_with_tau_one_and_refuses_mismatched_networks() -> None:
    sources, targets = parameters(0), parameters(1)
    PolyakUpdate(sources, targets)(1.0)
    assert all(th.equal(target, source) for target, source in zip(targets, sources, strict=True))
    PolyakUpdate([], [])(0.5)  # no batch norm statistics: nothing to do
    with pytest.raises(ValueError, match="shapes"):
        PolyakUpdate(sources, targets[:-1])
    with pytest.raises(ValueError, match="shapes"):
        PolyakUpdate(sources[:2], targets[1:3])


def test_frozen_parameters_freeze_for_the_block_and_leave_user_choices_alone() -> None:
    weights = parameters(0)
    weights[1].requires_grad_(False)  # frozen by the user: must stay frozen
    frozen = FrozenParameters(weights)
    x = th.randn(3, 4, requires_grad=True)
    with frozen():
        assert not any(weight.requires_grad for weight in weights)
        out = (x @ weights[0].T).sum()
    assert [weight.requires_grad for weight in weights] == [True, False, True, True, True, True, True]
    out.backward()  # the graph was built with the weight frozen: no gradient for it, the input's is computed
    assert weights[0].grad is None and x.grad is not None
    with pytest.raises(RuntimeError, match="boom"), frozen():
        raise RuntimeError("boom")
    assert weights[0].requires_grad and not weights[1].requires_grad


def test_the_gradient_through_frozen_weights_is_the_same() -> None:
    net = th.nn.Sequential(th.nn.Linear(4, 64), th.nn.ReLU(), th.nn.Linear(64, 1))
    x = th.randn(32, 4, requires_grad=True)
    net(x).mean().backward()
    expected = x.grad.clone()
    x.grad = None
    with FrozenParameters(net.parameters())():
        out = net(x).mean()
    out.backward()
    assert th.equal(x.grad, expected)


@pytest.mark.parametrize("optimizer_class", SAME_NUMBERS_FOREACH)
def test_foreach_gives_the_per_parameter_loops_bits(optimizer_class) -> None:
    def train(switch: bool) -> list[th.nn.Parameter]:
        weights = parameters(0)
        optimizer = optimizer_class(weights, lr=3e-3, weight_decay=0.01)
        if switch:
            use_foreach(optimizer)
            assert optimizer.param_groups[0]["foreach"] is True
        generator = th.Generator().manual_seed(1)
        for _ in range(30):
            for weight in weights:
                weight.grad = th.randn(weight.shape, generator=generator)
            optimizer.step()
        return weights

    assert all(th.equal(a, b) for a, b in zip(train(False), train(True), strict=True))


def test_foreach_is_left_alone_where_numbers_would_change_or_the_user_chose() -> None:
    radam = th.optim.RAdam(parameters(0))  # its foreach path differs in the last bit
    use_foreach(radam)
    assert radam.param_groups[0]["foreach"] is None
    chosen = th.optim.Adam(parameters(0), foreach=False)
    use_foreach(chosen)
    assert chosen.param_groups[0]["foreach"] is False

    class MyAdam(th.optim.Adam):  # a subclass may compute differently
        pass

    mine = MyAdam(parameters(0))
    use_foreach(mine)
    assert mine.param_groups[0]["foreach"] is None


def sac(**policy) -> BaseAlgorithm:
    config = {"env": "Pendulum-v1", "algo": "sac", "seed": 0, "algo_kwargs": {"learning_starts": 10},
              "policy": {"head": "squashed_gaussian", "losses": [{"name": "sac_entropy"}], "postprocess": "identity",
                         "net_arch": [16, 16], **policy}}
    return make_model(config, env=make_vec_env("Pendulum-v1"))


def test_the_actor_loss_skips_exactly_the_critics_weights() -> None:
    model = sac()
    frozen = {id(p) for p in model.critic_frozen.parameters}
    assert frozen == {id(p) for p in model.critic.parameters()}
    assert not frozen & {id(p) for p in model.actor.parameters()}
    model.learn(20)
    # after the actor step the critics hold the critic loss's gradients (SB3 left the actor loss's there)
    assert all(p.requires_grad for p in model.critic.parameters())


def test_a_shared_features_extractor_keeps_its_actor_gradients() -> None:
    model = make_model({"env": "diffrl/PointMassPixels-v0", "algo": "sac", "seed": 0,
                        "algo_kwargs": {"buffer_size": 100},
                        "policy": {"head": "squashed_gaussian", "losses": [{"name": "sac_entropy"}],
                                   "postprocess": "identity", "share_features_extractor": True}})
    shared = {id(p) for p in model.actor.features_extractor.parameters()}
    assert shared and shared <= {id(p) for p in model.critic.parameters()}
    assert not shared & {id(p) for p in model.critic_frozen.parameters}
    q_networks = {id(p) for network in model.critic.q_networks for p in network.parameters()}
    assert q_networks <= {id(p) for p in model.critic_frozen.parameters}


def test_td3_freezes_its_critic_and_updates_both_targets(tmp_path) -> None:
    config = {"env": "Pendulum-v1", "algo": "td3", "seed": 0,
              "algo_kwargs": {"learning_starts": 10, "policy_delay": 1},
              "policy": {"head": "deterministic", "losses": [{"name": "q_value"}], "postprocess": "identity",
                         "net_arch": [16, 16]}}
    model = make_model(config, env=make_vec_env("Pendulum-v1"))
    assert {id(p) for p in model.critic_frozen.parameters} == {id(p) for p in model.critic.parameters()}
    actor_target = [p.detach().clone() for p in model.actor_target.parameters()]
    model.learn(20)
    assert not all(th.equal(a, b) for a, b in zip(actor_target, model.actor_target.parameters(), strict=True))


def test_a_loaded_model_gets_foreach_back(tmp_path) -> None:
    model = sac()
    model.learn(20)
    model.save(tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    for optimizer in (loaded.actor.optimizer, loaded.critic.optimizer, loaded.ent_coef_optimizer):
        assert optimizer.param_groups[0]["foreach"] is True
    # optimizer settings saved with foreach unset (as stable-baselines3 saves them) get it on load
    for group in model.critic.optimizer.param_groups:
        group["foreach"] = None
    model.save(tmp_path / "unset")
    assert load_model(tmp_path / "unset").critic.optimizer.param_groups[0]["foreach"] is True
    # the helpers are rebuilt from the networks, never saved
    with zipfile.ZipFile(tmp_path / "model.zip") as archive:
        data = json.loads(archive.read("manifest.json"))["data"]
    assert not {"critic_frozen", "critic_target_update", "batch_norm_stats_update"} & set(data)

"""The copied stable-baselines3 ``train()`` methods mirror the installed stable-baselines3 line for line."""

from __future__ import annotations

import inspect

import pytest
from stable_baselines3 import SAC

from diffrl_core.sb3.algorithms import MIRRORED, ComposedSAC
from diffrl_core.sb3.sync import SB3SyncError, check_in_sync, sb3_source_of_copy


@pytest.mark.parametrize("name", sorted(MIRRORED))
def test_copies_mirror_the_installed_stable_baselines3(name: str) -> None:
    copy, original = MIRRORED[name]
    check_in_sync(name, copy, original)


def test_a_changed_stable_baselines3_train_asks_for_a_resync() -> None:
    changed = inspect.getsource(SAC.train).replace("self.tau)", "self.tau * 0.5)")
    with pytest.raises(
        SB3SyncError, match=r"SAC.train no longer mirrors stable-baselines3 9.9.1's: re-sync with SB3 9.9"
    ) as excinfo:
        check_in_sync("SAC.train", ComposedSAC.train, changed, sb3_version="9.9.1")
    added = [line for line in str(excinfo.value).splitlines() if line.startswith("+ ")]
    assert added == [
        "+            polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau * 0.5)"
    ]


def test_a_copy_edited_outside_its_marked_blocks_fails() -> None:
    edited = inspect.getsource(ComposedSAC.train).replace(
        "# Optimize the critic\n", "# Optimize the critic\n            pass\n"
    )
    with pytest.raises(SB3SyncError, match="re-sync with SB3"):
        check_in_sync("SAC.train", edited, SAC.train)


def test_only_the_marked_blocks_differ_and_they_quote_what_they_replace() -> None:
    mirrored = sb3_source_of_copy(inspect.getsource(ComposedSAC.train))
    assert "actor_loss = (ent_coef * log_prob - min_qf_pi).mean()" in mirrored
    assert "ActorLossContext" not in mirrored and "_record(logs)" not in mirrored


def test_unbalanced_markers_are_reported() -> None:
    with pytest.raises(SB3SyncError, match="without"):
        sb3_source_of_copy("def train(self):\n    # >>> diffrl: oops\n    pass\n")

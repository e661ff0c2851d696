"""``diffrl export``: stable-baselines3's own zip, for tools that read only that format."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from diffrl_core import load_model, make_model
from diffrl_core.cli import main
from diffrl_core.export import export_model


@pytest.mark.parametrize(("algo", "env_id"), [("sac", "Pendulum-v1"), ("td3", "Pendulum-v1"), ("ppo", "CartPole-v1"),
                                              ("a2c", "CartPole-v1")])
def test_stable_baselines3_alone_loads_an_exported_stock_composition(tmp_path, algo, env_id) -> None:
    model = make_model({"env": env_id, "algo": algo, "seed": 0, "policy": {"net_arch": [16]},
                        "algo_kwargs": {"learning_starts": 10} if algo in ("sac", "td3") else {"n_steps": 16}})
    model.learn(32)
    path, written = export_model(model, tmp_path / "exported")
    assert written == algo.upper()
    observations = np.stack([model.observation_space.sample() for _ in range(8)])
    np.save(tmp_path / "obs.npy", observations)
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        from stable_baselines3 import {algo.upper()}
        model = {algo.upper()}.load(sys.argv[1])
        assert not any(name.startswith("diffrl") for name in sys.modules), "diffrl was imported"
        np.save(sys.argv[3], model.predict(np.load(sys.argv[2]), deterministic=True)[0])
        print(model.num_timesteps)
    """)
    out = subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "obs.npy"),
                          str(tmp_path / "actions.npy")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) == model.num_timesteps
    assert np.array_equal(np.load(tmp_path / "actions.npy"), model.predict(observations, deterministic=True)[0])


def test_another_composition_is_exported_as_its_composed_class(tmp_path) -> None:
    model = make_model({"env": "Pendulum-v1", "algo": "sac", "seed": 0,
                        "policy": {"net_arch": [16], "head": "gaussian", "postprocess": "tanh"}})
    path, written = export_model(model, tmp_path / "exported")
    assert written == "ComposedSAC"
    observations = np.stack([model.observation_space.sample() for _ in range(8)])
    with pytest.warns(UserWarning, match="were not read"):  # read back without unpickling
        loaded = load_model(path)
    assert np.array_equal(loaded.predict(observations, deterministic=True)[0],
                          model.predict(observations, deterministic=True)[0])


def test_the_command_exports_a_run_folders_model(tmp_path) -> None:
    model = make_model({"env": "Pendulum-v1", "algo": "sac", "seed": 0, "policy": {"net_arch": [16]}})
    model.save(tmp_path / "model")
    result = CliRunner().invoke(main, ["export", str(tmp_path / "model.zip"), str(tmp_path / "sb3.zip")])
    assert result.exit_code == 0, result.output
    assert "as stable-baselines3's zip of a SAC (stable-baselines3 alone loads it)" in result.output
    missing = CliRunner().invoke(main, ["export", str(tmp_path / "nothing.zip"), str(tmp_path / "out.zip")])
    assert missing.exit_code == 2 and "does not exist" in missing.output

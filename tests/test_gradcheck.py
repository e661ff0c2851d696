"""``diffrl gradcheck`` and :func:`diffrl_core.gradcheck.check_gradients`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import diffrl_core.plugins
from diffrl_core.cli import main
from diffrl_core.errors import DiffRLError, IncompatibleComponentsError
from diffrl_core.gradcheck import check_gradients, has_closed_form

# A term whose hand-written gradient is wrong for log_std only: the mean gradient and the
# value are sac_entropy's, but log_std gets the seed document's extra alpha * eps^2 term
# (d/dlog sigma of alpha * (a - mu)^2 / (2 sigma^2) taken with ``a`` held fixed).
WRONG_PLUGIN = '''
import torch as th

from diffrl_core import hookimpl
from diffrl_core.components import LossTerm


class SeedSigmaLoss(LossTerm):
    requires = frozenset({"log_prob", "alpha"})

    def __call__(self, ctx):
        noise, log_std = ctx.sample.params["noise"], ctx.sample.params["log_std"]
        extra = (ctx.alpha * noise.detach() ** 2 * log_std).sum(dim=-1).mean()
        return self.reference_loss(ctx) + extra - extra.detach()

    def reference_loss(self, ctx):
        return (ctx.alpha * ctx.log_prob - ctx.q_pi).mean()


class RightLoss(LossTerm):
    requires = frozenset({"log_prob", "alpha"})

    def __call__(self, ctx):
        # log pi at a reparameterized sample, written without the action: -log sigma - eps^2 / 2
        log_prob = (-ctx.sample.params["log_std"] - 0.5 * ctx.sample.params["noise"] ** 2
                    - 0.5 * th.log(th.tensor(2 * th.pi, dtype=ctx.q_pi.dtype))).sum(dim=-1, keepdim=True)
        return (ctx.alpha * log_prob - ctx.q_pi).mean()

    def reference_loss(self, ctx):
        return (ctx.alpha * ctx.log_prob - ctx.q_pi).mean()


@hookimpl
def register_loss_terms(register):
    register("seed_sigma_wrong", SeedSigmaLoss)
    register("right_closed_form", RightLoss)
'''


def _load_wrong_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> object:
    (tmp_path / f"{name}.py").write_text(WRONG_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    return importlib.import_module(name)


# -- the API -------------------------------------------------------------------------------------


def test_api_passes_for_the_closed_form_term() -> None:
    result = check_gradients("sac_entropy_closed_form", seeds=(0, 1, 2, 3))
    assert result.ok, result.format()
    assert result.failing == []
    assert [c.parameter for c in result.checks] == ["mean", "log_std", "value"]
    assert result.term == "sac_entropy_closed_form" and result.head == "gaussian"


def test_api_names_the_failing_parameter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _load_wrong_module(tmp_path, monkeypatch, "gradcheck_wrong_api")
    result = check_gradients(module.SeedSigmaLoss, head="gaussian")  # a class
    assert not result.ok
    assert result.failing == ["log_std"]
    by_name = {c.parameter: c for c in result.checks}
    assert by_name["mean"].max_abs_error < 1e-12 and by_name["value"].ok
    assert by_name["log_std"].max_abs_error > 1e-3
    assert "FAIL" in result.format()
    # an instance works too; a correct alternative closed form passes
    assert check_gradients(module.RightLoss(), seeds=(0,)).ok


def test_api_errors() -> None:
    with pytest.raises(DiffRLError, match="declares no closed-form gradient"):
        check_gradients("sac_entropy")
    with pytest.raises(DiffRLError, match="unknown loss term 'nope'"):
        check_gradients("nope")
    with pytest.raises(IncompatibleComponentsError, match="squashed_gaussian"):
        check_gradients("sac_entropy_closed_form", head="squashed_gaussian")
    with pytest.raises(DiffRLError, match="no params"):
        check_gradients("sac_entropy_closed_form", head="deterministic")


def test_has_closed_form() -> None:
    host = diffrl_core.plugins.load_plugins()
    terms = {name: host.registry("loss_terms").resolve(name) for name in host.registry("loss_terms").names()}
    assert has_closed_form(terms["sac_entropy_closed_form"])
    assert not has_closed_form(terms["sac_entropy"]) and not has_closed_form(terms["q_value"]())


def test_importing_the_command_does_not_import_torch() -> None:
    code = "import sys, diffrl_core.gradcheck, diffrl_core.commands.gradcheck; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- the command, in process -----------------------------------------------------------------------


@pytest.fixture
def host_with_wrong_term(fresh_global_host: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    module = _load_wrong_module(tmp_path, monkeypatch, "gradcheck_wrong_inline")
    host = diffrl_core.plugins.load_plugins()
    assert host.register_plugin(module, "wrongtest")
    return host


def test_cli_passes_for_the_closed_form_term() -> None:
    result = CliRunner().invoke(main, ["gradcheck", "sac_entropy_closed_form", "--seeds", "2"])
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.output.splitlines()]
    rows = [row for row in lines if row and row[0] == "sac_entropy_closed_form"]
    assert [row[1] for row in rows] == ["mean", "log_std", "value"]
    assert all(row[-1] == "ok" for row in rows)


def test_cli_fails_naming_the_parameter(host_with_wrong_term) -> None:
    result = CliRunner().invoke(main, ["gradcheck", "seed_sigma_wrong", "right_closed_form"])
    assert result.exit_code == 1, result.output
    assert "term 'seed_sigma_wrong' parameter 'log_std'" in result.output
    assert "parameter 'mean'" not in result.output and "right_closed_form' parameter" not in result.output
    fail_rows = [line.split() for line in result.output.splitlines() if line.rstrip().endswith("FAIL")]
    assert [row[:2] for row in fail_rows] == [["seed_sigma_wrong", "log_std"]]


def test_cli_without_names_checks_every_closed_form(host_with_wrong_term) -> None:
    result = CliRunner().invoke(main, ["gradcheck"])
    assert result.exit_code == 1, result.output
    for name in ("sac_entropy_closed_form", "seed_sigma_wrong", "right_closed_form"):
        assert name in result.output
    assert "sac_entropy " not in result.output.replace("sac_entropy_", "")  # no closed form: not listed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["gradcheck", "nope"], "unknown loss term 'nope'"),
        (["gradcheck", "q_value"], "declares no closed-form gradient"),
        (["gradcheck", "sac_entropy_closed_form", "--head", "squashed_gaussian"], "cannot train head"),
        (["gradcheck", "--head", "nohead"], "unknown actor head 'nohead'"),
    ],
)
def test_cli_user_errors_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


# -- the command, in a fresh process with a real (entry-point) plugin ------------------------------


def _install_fake_distribution(site: Path) -> None:
    """A plugin module plus the ``*.dist-info`` importlib.metadata discovers on sys.path."""
    site.mkdir()
    (site / "diffrl_wrong_plugin.py").write_text(WRONG_PLUGIN)
    info = site / "diffrl_wrong_plugin-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: diffrl-wrong-plugin\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[diffrl]\nwrongplugin = diffrl_wrong_plugin\n")


def _run(args: list[str], site: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("DIFFRL_LOAD_PLUGINS", None)
    env.pop("DIFFRL_DISABLE_PLUGINS", None)
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "diffrl_core.cli", "gradcheck", *args], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.mark.slow
def test_subprocess_passes_for_the_closed_form_term() -> None:
    proc = _run(["sac_entropy_closed_form"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok: 1 term(s) agree with autograd" in proc.stdout


@pytest.mark.slow
def test_subprocess_fails_for_a_wrong_plugin_term(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _install_fake_distribution(site)
    proc = _run(["seed_sigma_wrong", "sac_entropy_closed_form"], site)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "term 'seed_sigma_wrong' parameter 'log_std'" in proc.stdout
    assert proc.stdout.count("FAIL") == 2  # the table row and the summary
    # without names, every term with a closed form is checked, the plugin's included
    proc = _run([], site)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "sac_entropy_closed_form" in proc.stdout and "term 'seed_sigma_wrong' parameter 'log_std'" in proc.stdout

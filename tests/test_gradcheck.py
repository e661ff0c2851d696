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
from diffrl_core.gradcheck import check_gradients, check_head, has_closed_form

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
        # log pi at a reparameterized sample, written without the action: -log sigma - eps^2 / 2,
        # then the log-prob of the normalized action: minus the post-processor's Jacobian (tanh's)
        log_prob = (-ctx.sample.params["log_std"] - 0.5 * ctx.sample.params["noise"] ** 2
                    - 0.5 * th.log(th.tensor(2 * th.pi, dtype=ctx.q_pi.dtype))).sum(dim=-1)
        log_prob = log_prob - ctx.postprocess.log_abs_det_jacobian(ctx.sample.actions, ctx.actions)
        return (ctx.alpha * log_prob.reshape(-1, 1) - ctx.q_pi).mean()

    def reference_loss(self, ctx):
        return (ctx.alpha * ctx.log_prob - ctx.q_pi).mean()


@hookimpl
def register_loss_terms(register):
    register("seed_sigma_wrong", SeedSigmaLoss)
    register("right_closed_form", RightLoss)
'''


# Terms for the ``beta`` head, whose distribution parameters are ``alpha`` and ``beta``: sac_entropy
# plus a penalty on log(alpha + beta) whose backward is written by hand, right and wrong (for
# beta only: d/dbeta log(beta) instead of d/dbeta log(alpha + beta)). And heads that break
# gradcheck's contract.
BETA_PLUGIN = '''
import torch as th

from diffrl_core import hookimpl
from diffrl_core.components import ActorHead, HeadSample, LossTerm
from diffrl_plugin_beta.heads import BetaHead


class _ConcentrationPenalty(th.autograd.Function):
    @staticmethod
    def forward(ctx, alpha, beta, wrong):
        total = alpha + beta
        ctx.save_for_backward(total, beta)
        ctx.wrong = wrong
        return th.log(total).sum(dim=-1).mean()

    @staticmethod
    def backward(ctx, grad_output):
        total, beta = ctx.saved_tensors
        scale = grad_output / total.shape[0]
        return scale / total, scale / (beta if ctx.wrong else total), None


class BetaPenaltyLoss(LossTerm):
    requires = frozenset({"log_prob", "alpha"})
    wrong = False

    @classmethod
    def check_compatible(cls, head, algo):
        reason = super().check_compatible(head, algo)
        if reason or issubclass(head, BetaHead):
            return reason
        return "needs the beta head's concentrations alpha and beta"

    def __call__(self, ctx):
        penalty = _ConcentrationPenalty.apply(ctx.sample.params["alpha"], ctx.sample.params["beta"], self.wrong)
        return (ctx.alpha * ctx.log_prob - ctx.q_pi).mean() + penalty

    def reference_loss(self, ctx):
        total = ctx.sample.params["alpha"] + ctx.sample.params["beta"]
        return (ctx.alpha * ctx.log_prob - ctx.q_pi).mean() + th.log(total).sum(dim=-1).mean()


class WrongBetaPenaltyLoss(BetaPenaltyLoss):
    wrong = True


class QLoss(LossTerm):
    """-Q, for any head."""

    def __call__(self, ctx):
        return -ctx.q_pi.mean()

    def reference_loss(self, ctx):
        return -ctx.q_pi.mean()


class _Linear(ActorHead):
    stochastic = True
    has_log_prob = True

    def __init__(self, latent_dim, action_dim):
        super().__init__(latent_dim, action_dim)
        self.mu = th.nn.Linear(latent_dim, action_dim)

    def forward(self, latent, deterministic=False):
        return self.sample(latent).actions

    def sample(self, latent):
        mean = self.mu(latent)
        return HeadSample(mean, -(mean**2).sum(dim=-1), {"mean": mean})


class TupleParamsHead(_Linear):
    """The former contract: params returns (mean, log_std)."""

    def params(self, latent):
        mean = self.mu(latent)
        return mean, th.zeros_like(mean)


class UnusedParamsHead(_Linear):
    """params returns a dict, but sample() does not use it."""

    def params(self, latent):
        return {"mean": self.mu(latent)}


@hookimpl
def register_loss_terms(register):
    register("beta_penalty", BetaPenaltyLoss)
    register("beta_penalty_wrong", WrongBetaPenaltyLoss)


@hookimpl
def register_actor_heads(register):
    register("tuple_params", TupleParamsHead)
    register("unused_params", UnusedParamsHead)
'''


def _load_wrong_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str = WRONG_PLUGIN
                       ) -> object:
    (tmp_path / f"{name}.py").write_text(source)
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
    with pytest.raises(IncompatibleComponentsError, match="cannot train head 'beta'"):
        check_gradients("sac_entropy_closed_form", head="beta")
    with pytest.raises(DiffRLError, match="actor head 'deterministic' has no params"):
        check_gradients("sac_entropy_closed_form", head="deterministic")


# -- any head that exposes its distribution parameters: the beta head ------------------------------


@pytest.fixture
def beta_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    return _load_wrong_module(tmp_path, monkeypatch, "gradcheck_beta_api", BETA_PLUGIN)


def test_check_head_returns_the_parameter_names() -> None:
    assert check_head("gaussian") == ["mean", "log_std"]
    assert check_head("beta") == ["alpha", "beta"]


def test_api_checks_the_beta_head_parameters(beta_module: object) -> None:
    result = check_gradients(beta_module.BetaPenaltyLoss, head="beta", seeds=(0, 1, 2))
    assert result.ok, result.format()
    assert [c.parameter for c in result.checks] == ["alpha", "beta", "value"]
    assert result.head == "beta"
    # the wrong hand-written gradient (beta only) is caught, and only for beta
    wrong = check_gradients(beta_module.WrongBetaPenaltyLoss(), head="beta")
    assert wrong.failing == ["beta"], wrong.format()
    by_name = {c.parameter: c for c in wrong.checks}
    assert by_name["alpha"].max_abs_error < 1e-12 and by_name["beta"].max_abs_error > 1e-3


def test_api_beta_gradients_are_those_of_the_real_head(beta_module: object) -> None:
    """The leaves stand for what the head's params return: same values, and sample() follows them."""
    import torch as th

    from diffrl_core.builtin.postprocessors import Tanh
    from diffrl_core.gradcheck import _random_inputs
    from diffrl_plugin_beta.heads import BetaHead

    inputs = _random_inputs(0, "beta", BetaHead, Tanh, 8, 3, 4, th.float64)
    assert set(inputs.leaves) == {"alpha", "beta"}
    assert all(leaf.is_leaf and leaf.requires_grad and leaf.shape == (8, 3) for leaf in inputs.leaves.values())
    assert all((leaf > 1).all() for leaf in inputs.leaves.values())  # 1 + softplus(...): realistic values
    sample = inputs.head.sample(inputs.batch.observations)
    for name in ("alpha", "beta"):
        assert th.equal(sample.params[name], inputs.leaves[name])
    assert inputs.calls == [1]


def test_api_refuses_heads_that_break_the_contract(beta_module: object) -> None:
    with pytest.raises(DiffRLError, match=r"actor head 'TupleParamsHead'.*params\(latent\) to return a dict.*tuple"):
        check_gradients(beta_module.QLoss, head=beta_module.TupleParamsHead)
    with pytest.raises(DiffRLError, match=r"actor head 'UnusedParamsHead'.*sample\(\) does not call self.params"):
        check_gradients(beta_module.QLoss, head=beta_module.UnusedParamsHead)


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
        (["gradcheck", "sac_entropy_closed_form", "--head", "beta"], "cannot train head 'beta'"),
        (["gradcheck", "--head", "nohead"], "unknown actor head 'nohead'"),
        # a head without params(latent): exit 2 even without names (not "skipped" term by term)
        (["gradcheck", "--head", "deterministic"], "actor head 'deterministic' has no params(latent) method"),
        (["gradcheck", "sac_entropy_closed_form", "--head", "deterministic"], "actor head 'deterministic' has no"),
    ],
)
def test_cli_user_errors_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.fixture
def host_with_beta_terms(fresh_global_host: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    module = _load_wrong_module(tmp_path, monkeypatch, "gradcheck_beta_inline", BETA_PLUGIN)
    host = diffrl_core.plugins.load_plugins()
    assert host.register_plugin(module, "betatest")
    return host


def _rows(output: str, term: str) -> list[list[str]]:
    return [row for row in (line.split() for line in output.splitlines()) if row and row[0] == term]


def test_cli_beta_head_ok(host_with_beta_terms) -> None:
    result = CliRunner().invoke(main, ["gradcheck", "beta_penalty", "--head", "beta", "--seeds", "2"])
    assert result.exit_code == 0, result.output
    rows = _rows(result.output, "beta_penalty")
    assert [row[1] for row in rows] == ["alpha", "beta", "value"]
    assert all(row[-1] == "ok" for row in rows)
    assert "ok: 1 term(s) agree with autograd (head 'beta'" in result.output


def test_cli_beta_head_mismatch(host_with_beta_terms) -> None:
    result = CliRunner().invoke(main, ["gradcheck", "beta_penalty_wrong", "beta_penalty", "--head", "beta"])
    assert result.exit_code == 1, result.output
    assert "term 'beta_penalty_wrong' parameter 'beta'" in result.output
    assert "parameter 'alpha'" not in result.output and "'beta_penalty' parameter" not in result.output
    fail_rows = [line.split() for line in result.output.splitlines() if line.rstrip().endswith("FAIL")]
    assert [row[:2] for row in fail_rows] == [["beta_penalty_wrong", "beta"]]


def test_cli_beta_head_without_names_skips_the_gaussian_terms(host_with_beta_terms) -> None:
    result = CliRunner().invoke(main, ["gradcheck", "--head", "beta"])
    assert result.exit_code == 1, result.output
    assert "skipped 'sac_entropy_closed_form'" in result.output and "cannot train head 'beta'" in result.output
    assert _rows(result.output, "beta_penalty") and _rows(result.output, "beta_penalty_wrong")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["gradcheck", "beta_penalty", "--head", "tuple_params"],
         "actor head 'tuple_params''s params(latent) to return a dict"),
        (["gradcheck", "--head", "tuple_params"], "actor head 'tuple_params''s params(latent) to return a dict"),
        (["gradcheck", "beta_penalty", "--head", "gaussian"], "cannot train head 'gaussian'"),
    ],
)
def test_cli_bad_heads_exit_2(host_with_beta_terms, args: list[str], message: str) -> None:
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
def test_subprocess_refuses_a_head_without_params() -> None:
    proc = _run(["--head", "deterministic"])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "actor head 'deterministic' has no params(latent) method" in proc.stderr
    assert "Traceback" not in proc.stderr


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

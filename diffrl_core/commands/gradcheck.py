"""``diffrl gradcheck``: compare loss terms' hand-written gradients with autograd."""

from __future__ import annotations

import click


@click.command("gradcheck")
@click.argument("loss_terms", nargs=-1, metavar="[LOSS_TERM]...")
@click.option("--head", default="gaussian", show_default=True,
              help="Actor head whose distribution parameters (the tensors its params(latent) method "
                   "returns, e.g. mean and log_std for gaussian, alpha and beta for beta) are differentiated.")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Number of random float64 contexts (seeds 0 .. N-1).")
@click.option("--tolerance", type=click.FloatRange(min=0.0), default=1e-8, show_default=True,
              help="Allowed max abs error (or max relative error) per parameter.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Rows per context.")
@click.pass_context
def gradcheck(ctx: click.Context, loss_terms: tuple[str, ...], head: str, seeds: int, tolerance: float,
              batch_size: int) -> None:
    """Check each LOSS_TERM's closed-form gradient against autograd.

    A term declares a closed-form gradient by overriding LossTerm.reference_loss with the
    same loss computed by plain autograd. For each term, the gradients of the term and of
    its reference w.r.t. each of the head's distribution parameters (the dict its
    params(latent) method returns, from which its sample() is computed) are compared on
    random float64 inputs, with the tanh post-processor, and the max abs and relative error
    per parameter (and of the loss value) are printed. Without
    LOSS_TERM, every registered term with a closed form is checked (terms that cannot
    train the head are skipped). Exit code 1 when any term disagrees beyond the tolerance.
    """
    from diffrl_core.errors import DiffRLError
    from diffrl_core.gradcheck import check_gradients, check_head, format_results, has_closed_form
    from diffrl_core.plugins import load_plugins

    host = load_plugins()
    registry = host.registry("loss_terms")
    host.registry("actor_heads").get(head, where="--head")  # unknown head: exit 2 before anything runs
    check_head(head, host=host)  # a head without params(latent) -> dict of tensors: exit 2, not "skipped"
    names = list(loss_terms)
    explicit = bool(names)
    if not explicit:
        for registration in registry:
            try:
                if has_closed_form(registry.resolve(registration.name)):
                    names.append(registration.name)
            except (DiffRLError, TypeError) as exc:
                click.echo(f"skipped {registration.name!r}: {exc}", err=True)
        if not names:
            click.echo("no registered loss term declares a closed-form gradient (LossTerm.reference_loss)")
            return
    else:
        for i, name in enumerate(names):
            registry.get(name, where=f"LOSS_TERM argument {i + 1}")

    results = []
    for name in names:
        try:
            results.append(check_gradients(name, head=head, seeds=tuple(range(seeds)), batch_size=batch_size,
                                           tolerance=tolerance, host=host))
        except DiffRLError as exc:
            if explicit:
                raise
            click.echo(f"skipped {name!r}: {exc}", err=True)
    if not results:
        click.echo(f"no registered loss term with a closed-form gradient can train head {head!r}")
        return

    click.echo(format_results(results))
    failures = [(result.term, parameter) for result in results for parameter in result.failing]
    if failures:
        click.echo("\nFAILED: the closed-form gradient disagrees with autograd beyond tolerance "
                   f"{tolerance:g} for " + ", ".join(f"term {term!r} parameter {p!r}" for term, p in failures))
        ctx.exit(1)
    click.echo(f"\nok: {len(results)} term(s) agree with autograd (head {head!r}, {seeds} seed(s), "
               f"tolerance {tolerance:g})")

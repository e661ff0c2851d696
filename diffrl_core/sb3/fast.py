"""The pieces of a faster off-policy update that compute the same numbers as stable-baselines3's.

stable-baselines3's SAC and TD3 ``train()`` do work whose result is discarded or paid for
in Python per parameter; these replace it without changing one bit of any trained parameter
(``tests/test_sb3_parity.py`` trains both side by side and compares at 0.0):

- :class:`FrozenParameters`: the actor loss goes through the critics, and SB3's backward
  pass computes the gradients of the critics' weights too, which the next critic step
  discards (``zero_grad``). Built with those weights frozen, the graph has no such
  gradients; the gradient reaching the actor is the same product with the same weights.
- :class:`PolyakUpdate`: SB3's ``polyak_update`` loops in Python over the parameters; the
  ``torch._foreach_*`` ops run the same ``mul_`` and ``add`` kernels on each of them in one call.
- :func:`use_foreach`: torch's optimizers run their per-parameter Python loop on the CPU unless
  told ``foreach=True``; for the optimizers in :data:`SAME_NUMBERS_FOREACH` the multi-tensor
  path applies the same operations in the same order (RAdam's and NAdam's do not: they differ
  in the last bit, so they keep their loop).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch as th


class FrozenParameters:
    """Parameters whose gradients a loss must not compute, frozen for the time of a ``with`` block.

    Only those that require gradients when the block starts are frozen, and exactly those are
    unfrozen after it: parameters a user froze stay frozen. The autograd graph records which
    leaves require gradients when it is built, so a backward pass after the block still skips them.

    :param parameters: the parameters to freeze, e.g. the critics' (minus any the actor's optimizer steps)
    """

    def __init__(self, parameters: Iterable[th.nn.Parameter]) -> None:
        self.parameters = list(parameters)

    @contextmanager
    def __call__(self) -> Iterator[None]:
        frozen = [parameter for parameter in self.parameters if parameter.requires_grad]
        for parameter in frozen:
            parameter.requires_grad_(False)
        try:
            yield
        finally:
            for parameter in frozen:
                parameter.requires_grad_(True)


class PolyakUpdate:
    """``target <- (1 - tau) * target + tau * source`` for lists of tensors: SB3's ``polyak_update``, fused.

    The same two kernels (``mul_`` by ``1 - tau``, then ``add`` with ``alpha=tau``) run on each
    tensor, so the targets get the same bits; only the Python loop is gone.

    :param sources: the online parameters (or buffers)
    :param targets: their targets, in the same order and shapes
    """

    def __init__(self, sources: Iterable[th.Tensor], targets: Iterable[th.Tensor]) -> None:
        self.sources, self.targets = list(sources), list(targets)
        if [source.shape for source in self.sources] != [target.shape for target in self.targets]:
            raise ValueError("the target networks do not have the shapes of the networks they follow")

    def __call__(self, tau: float) -> None:
        if not self.targets:
            return
        with th.no_grad():
            th._foreach_mul_(self.targets, 1 - tau)
            th._foreach_add_(self.targets, self.sources, alpha=tau)


#: optimizers whose ``foreach`` path computes bit for bit what their per-parameter loop computes (tests check it)
SAME_NUMBERS_FOREACH: tuple[type[th.optim.Optimizer], ...] = (th.optim.Adam, th.optim.AdamW, th.optim.SGD,
                                                               th.optim.RMSprop)


def use_foreach(optimizer: th.optim.Optimizer) -> None:
    """Switch ``optimizer`` to torch's multi-tensor (``foreach``) implementation where that gives the same
    numbers (:data:`SAME_NUMBERS_FOREACH`, not subclasses) and the user did not choose (``foreach=None``,
    which means the per-parameter loop on the CPU)."""
    if type(optimizer) not in SAME_NUMBERS_FOREACH:
        return
    for group in optimizer.param_groups:
        if group.get("foreach") is None and not group.get("fused"):
            group["foreach"] = True

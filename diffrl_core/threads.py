"""How many threads torch computes with in a run: one, unless the user says otherwise.

torch starts with one thread per core. Runs that share the CPU (two seeds side by side, a
sweep, a laptop with other work) then oversubscribe it, and torch's threads spin waiting on
each other. Measured on a 2-core machine (``bench/thread_default.py``, the README's main job
for 1,500 steps): with torch's default, two seeds side by side took 425.4 s against 10.6 s
for one run alone (40x); with one thread each, 15.2 s against 14.9 s (1.02x). One run alone
on an otherwise idle machine is faster with a thread per core (10.6 s against 14.9 s here):
that is what ``threads`` (``diffrl train --threads N``) is for. So a run uses one thread unless
its config's ``threads`` or ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` in the environment (which
torch itself reads) asks for another count.

This module does not import torch until a count is applied.
"""

from __future__ import annotations

import os

#: the threads a run uses when neither its config nor the environment sets a count
DEFAULT_THREADS = 1

#: environment variables torch reads for its thread count; set, they take precedence over the default
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def threads_for(requested: int | None) -> int | None:
    """The thread count a run should set: ``requested`` if given; else None (torch's own count) when one of
    :data:`THREAD_VARIABLES` is set, which torch already follows; else :data:`DEFAULT_THREADS`."""
    if requested is not None:
        return requested
    if any(os.environ.get(variable) for variable in THREAD_VARIABLES):
        return None
    return DEFAULT_THREADS


def use_threads(requested: int | None) -> int:
    """Set torch's thread count as :func:`threads_for` chooses; returns the count in effect."""
    import torch as th

    count = threads_for(requested)
    if count is not None and th.get_num_threads() != count:
        th.set_num_threads(count)
    return th.get_num_threads()

"""``python -m diffrl_core.sweeps.child PARENT_PID train ...``: a sweep's ``diffrl train``, which stops with its parent.

On Linux the child asks the kernel for SIGTERM when the process that started it dies (a sweep killed
with SIGKILL, a Ray node that was lost): ``diffrl train`` then saves a checkpoint and exits, rather
than training on as an orphan nobody reads. Elsewhere it runs as a plain ``diffrl`` command.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def main() -> None:
    parent = int(sys.argv[1])
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request took effect
        sys.exit(143)
    sys.argv = ["diffrl", *sys.argv[2:]]
    from diffrl_core.cli import main as diffrl

    diffrl()


if __name__ == "__main__":
    main()

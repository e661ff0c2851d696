"""Shared settings for the diffrl-envs tests.

MuJoCo picks its OpenGL backend from ``MUJOCO_GL`` when ``mujoco`` is first imported, so
the variable is set here, before any test module imports mujoco.  ``egl`` renders
offscreen without a display (Debian: ``libegl1`` + ``libegl-mesa0``/``libgl1-mesa-dri``).
Subprocess-based render tests pass it explicitly as well, because in a combined run
another test may have imported mujoco before this conftest is loaded.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")
# pygame prints a banner on import; keep the test output quiet.
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

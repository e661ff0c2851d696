"""Keeps the copied stable-baselines3 ``train()`` methods honest.

A copy marks every change with a block::

    # >>> diffrl: why
    # SB3: the line of stable-baselines3 that the block replaces
    the lines diffrl runs instead
    # <<< diffrl

:func:`sb3_source_of_copy` turns the copy back into stable-baselines3's method (the quoted
lines in, diffrl's lines out); :func:`check_in_sync` compares that with the installed source,
so ``diff`` against SB3 shows only the marked blocks, and a release that changes the method
is caught by a test that asks for a re-sync.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import re
import textwrap
from collections.abc import Callable
from typing import Any

from diffrl_core.errors import DiffRLError

BEGIN = "# >>> diffrl"
END = "# <<< diffrl"
QUOTE = re.compile(r"^(\s*)# SB3: ?(.*)$")


class SB3SyncError(DiffRLError):
    """A copied stable-baselines3 method no longer matches the installed stable-baselines3."""


def sb3_source_of_copy(copy_source: str) -> str:
    """The stable-baselines3 source a marked copy mirrors: quoted lines restored, diffrl's lines dropped.

    :raises SB3SyncError: for unbalanced markers
    """
    lines: list[str] = []
    inside = False
    for number, line in enumerate(textwrap.dedent(copy_source).splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if inside:
                raise SB3SyncError(f"line {number}: {BEGIN!r} inside another block")
            inside = True
        elif stripped.startswith(END):
            if not inside:
                raise SB3SyncError(f"line {number}: {END!r} without {BEGIN!r}")
            inside = False
        elif not inside:
            lines.append(line.rstrip())
        else:
            quoted = QUOTE.match(line)
            if quoted:
                lines.append((quoted.group(1) + quoted.group(2)).rstrip())
    if inside:
        raise SB3SyncError(f"{BEGIN!r} without {END!r}")
    return "\n".join(lines)


def _normalized(source: str) -> list[str]:
    return [line.rstrip() for line in textwrap.dedent(source).splitlines()]


def check_in_sync(name: str, copy: Callable[..., Any] | str, original: Callable[..., Any] | str,
                  sb3_version: str | None = None) -> None:
    """Fail unless the marked ``copy`` mirrors ``original`` line for line.

    :param name: what is compared, e.g. ``"SAC.train"``
    :param copy: diffrl's copy (a function, or its source)
    :param original: stable-baselines3's method (a function, or its source)
    :param sb3_version: for the message (default: the installed stable-baselines3's)
    :raises SB3SyncError: with a diff from the mirrored source to the installed one
    """
    copy_source = copy if isinstance(copy, str) else inspect.getsource(copy)
    original_source = original if isinstance(original, str) else inspect.getsource(original)
    mirrored = _normalized(sb3_source_of_copy(copy_source))
    installed = _normalized(original_source)
    if mirrored == installed:
        return
    version = sb3_version or importlib.metadata.version("stable-baselines3")
    diff = "\n".join(
        difflib.unified_diff(mirrored, installed, "what diffrl's copy mirrors", f"stable-baselines3 {version}",
                             lineterm="", n=1)
    )
    major_minor = ".".join(version.split(".")[:2])
    raise SB3SyncError(
        f"diffrl's copy of {name} no longer mirrors stable-baselines3 {version}'s: re-sync with SB3 {major_minor} "
        f"(apply the changes below outside the '# >>> diffrl' blocks, or to their '# SB3:' lines), and check the "
        f"supported range in pyproject.toml.\n{diff}"
    )

"""The sweep's progress, as a person follows it: counts, the best setting so far, the running and failed runs.

On a terminal the table is redrawn in place about once a second; otherwise (a log file, CI) one
line is printed whenever a count changes, so a log shows the sweep's course without repeating itself.
"""

from __future__ import annotations

import datetime as _dt
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from diffrl_core import runs
from diffrl_core.sweeps.folder import DIVERGED, DONE, FAILED, INTERRUPTED, PENDING, RUNNING, SUBMITTED, SweepFolder
from diffrl_core.sweeps.spec import describe_point

#: the order of the counts in the table
_ORDER = (SUBMITTED, RUNNING, DONE, FAILED, DIVERGED, INTERRUPTED, "pruned", PENDING)
#: the most running / failed runs the live table lists
_LISTED = 12


def _point_key(entry: dict[str, Any]) -> str:
    return f"{entry.get('base')} {json.dumps(entry.get('point') or {}, sort_keys=True)}"


def best_point(entries: dict[str, dict[str, Any]], maximize: bool = True) -> tuple[str, float, int] | None:
    """The setting (config and grid point) with the best mean final return over its finished seeds so far.

    :return: ``(label, mean return, seeds done)``, or None when no run has a return yet
    """
    groups: dict[str, list[float]] = {}
    labels: dict[str, str] = {}
    for entry in entries.values():
        value = entry.get("final_return")
        if entry.get("status") != DONE or not isinstance(value, (int, float)):
            continue
        key = _point_key(entry)
        groups.setdefault(key, []).append(float(value))
        point = describe_point(entry.get("point") or {})
        labels[key] = Path(str(entry.get("base"))).name + (f" {point}" if point else "")
    if not groups:
        return None
    pick = max if maximize else min
    key = pick(groups, key=lambda k: statistics.fmean(groups[k]))
    return labels[key], statistics.fmean(groups[key]), len(groups[key])


class Progress:
    """Shows the progress of the trials ``names`` of a sweep folder.

    :param folder: the open sweep folder (its index is what is shown)
    :param names: the trials of this invocation
    :param stream: where to write (default stdout)
    :param live: redraw in place (default: when ``stream`` is a terminal)
    :param maximize: whether a higher return is better (for "best so far")
    """

    def __init__(self, folder: SweepFolder, names: Sequence[str], stream: TextIO | None = None,
                 live: bool | None = None, maximize: bool = True) -> None:
        self.folder = folder
        self.names = list(names)
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.maximize = maximize
        self._drawn = 0
        self._last_line = ""
        self._start = time.monotonic()

    def lines(self) -> list[str]:
        """The table: a summary line, then the running and the failed runs."""
        entries = self.folder.entries()
        mine = {name: entries.get(name, {}) for name in self.names}
        counts = {status: 0 for status in _ORDER}
        for entry in mine.values():
            counts[entry.get("status", PENDING)] = counts.get(entry.get("status", PENDING), 0) + 1
        parts = [f"{count} {status}" for status, count in counts.items() if count]
        best = best_point(entries, self.maximize)
        best_text = (f" | best {best[1]:.4g} ({best[0]}, {best[2]} seed{'s' if best[2] != 1 else ''})"
                     if best else "")
        elapsed = int(time.monotonic() - self._start)
        out = [f"sweep {self.folder.path}: {len(self.names)} runs | {' | '.join(parts)}{best_text} "
               f"[{elapsed // 60}:{elapsed % 60:02d}]"]
        if not self.live:
            return out
        for name, entry in mine.items():
            if entry.get("status") == RUNNING and len(out) <= _LISTED:
                out.append(f"  running  {name}  {self._running(name, entry)}")
        for name, entry in mine.items():
            if entry.get("status") == FAILED and len(out) <= 2 * _LISTED:
                error = str(entry.get("error") or "").strip().splitlines()
                out.append(f"  failed   {name}: {error[0][:100] if error else '?'}")
        return out

    def _running(self, name: str, entry: dict[str, Any]) -> str:
        """How long a run has trained, and its last checkpoint (its status says nothing finer)."""
        try:
            started = _dt.datetime.fromisoformat(str(entry.get("started_at")))
            seconds = int((_dt.datetime.now(started.tzinfo) - started).total_seconds())
            shown = f"{seconds // 60}:{seconds % 60:02d}"
        except ValueError:
            shown = "?"
        try:
            status = runs.RunDir(self.folder.run_dir(name)).read_status()
        except Exception:  # not created yet, or being rewritten
            return shown
        steps = status.get("checkpoint_timesteps") or 0
        return shown + (f", checkpoint at {steps}/{status.get('total_timesteps', '?')} steps" if steps else "")

    def update(self) -> None:
        """Redraw the table (live), or print its summary line if it changed."""
        lines = self.lines()
        if self.live:
            if self._drawn:
                self.stream.write(f"\x1b[{self._drawn}F\x1b[J")  # up to the table's first line, clear below
            self.stream.write("\n".join(lines) + "\n")
            self._drawn = len(lines)
        else:
            summary = lines[0].rsplit(" [", 1)[0]  # the elapsed time alone is no news
            if summary == self._last_line:
                return
            self._last_line = summary
            self.stream.write(lines[0] + "\n")
        self.stream.flush()

    def report(self) -> str:
        """The final table of this invocation's trials: status, steps, final return, error."""
        entries = self.folder.entries()
        width = max((len(name) for name in self.names), default=4)
        rows = [f"{'run':<{width}}  {'status':<11}  {'steps':>9}  {'return':>10}"]
        for name in self.names:
            entry = entries.get(name, {})
            value = entry.get("final_return")
            shown = f"{value:.4g}" if isinstance(value, (int, float)) else "-"
            rows.append(f"{name:<{width}}  {entry.get('status', PENDING):<11}  {entry.get('num_timesteps', 0):>9}  "
                        f"{shown:>10}")
            if entry.get("status") in (FAILED, DIVERGED) and entry.get("error"):
                rows.append(f"    {str(entry['error']).strip().splitlines()[0][:200]}")
        return "\n".join(rows)

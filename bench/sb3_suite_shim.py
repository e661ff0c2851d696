"""pytest plugin of ``bench/sb3_suite.py``: stable-baselines3's own tests, against SB3's or the composed classes.

The algorithms are SAC and TD3 below; ``DIFFRL_SB3_ALGOS=PPO,A2C`` maps and selects PPO and A2C the same way
(``stable_baselines3.ppo`` / ``.a2c`` and their policy names).

Loaded with ``-p sb3_suite_shim`` (its folder on ``PYTHONPATH``); ``DIFFRL_SB3_TARGET`` says which
classes the tests get:

- ``stock``: SB3's own SAC and TD3, untouched (the baseline).
- ``composed``: before any test module is imported (``pytest_configure``), the names under which
  SB3 exports SAC and TD3 (``stable_baselines3.SAC``, ``stable_baselines3.sac.SAC``,
  ``stable_baselines3.sac.sac.SAC``, the same for TD3) are bound to
  :class:`~diffrl_core.sb3.algorithms.ComposedSAC` / :class:`~diffrl_core.sb3.algorithms.ComposedTD3`,
  and the policy classes exported by name (``MlpPolicy``, ``CnnPolicy``, ``MultiInputPolicy`` of
  ``stable_baselines3.sac`` / ``.sac.policies`` and of ``td3``) to the composed algorithm's
  ``policy_aliases`` entry of the same name, looked up here and now.

That is all the mapping does: no test is skipped, marked, patched or given other arguments.

In both modes the same selection keeps only the collected items that exercise SAC or TD3 (whatever
``stable_baselines3.SAC`` / ``.TD3`` are after the mapping); the others are reported deselected,
through ``pytest_deselected``, so that the counts of both modes compare. An item is selected when

1. a value of its parametrization (``item.callspec.params``, also inside tuples, lists, sets and
   dicts) is SAC or TD3 (identity: DDPG, SB3's subclass of its own TD3, is not TD3); an item
   parametrized with another algorithm class only is not;
2. or, without an algorithm class in its parametrization, its name (the function's, with the ids of
   its parameters, e.g. ``test_tensorboard[sac]``) contains ``sac`` or ``td3`` (case-insensitive),
   or its function (its nested functions and lambdas, and the functions
   of its own module that it calls by name, recursively) loads a global name bound to SAC or TD3,
   e.g. ``model = SAC("MlpPolicy", "Pendulum-v1")`` in a test that takes no model class.

For the runner, and without touching the tests, the plugin records what happened: with
``DIFFRL_SB3_SHIM_REPORT`` set, it writes the mapping and the selection there as JSON; with
``DIFFRL_SB3_SHIM_RESULTS`` set, it appends one JSON line per test phase report (and per failed
collection) there as it comes, so that a run cut short still leaves what it ran.
"""

from __future__ import annotations

import json
import os
import types
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

TARGETS = ("stock", "composed")
#: the algorithms mapped and selected: ``DIFFRL_SB3_ALGOS`` (comma-separated), SAC and TD3 by default
ALGOS = tuple(os.environ.get("DIFFRL_SB3_ALGOS", "SAC,TD3").split(","))
POLICY_NAMES = ("MlpPolicy", "CnnPolicy", "MultiInputPolicy")

#: what the mapping bound (``module.name`` -> ``{"from": ..., "to": ...}``), for the report
_mapped: dict[str, dict[str, str]] = {}
#: notes on the mapping, e.g. a policy alias that is still SB3's own class
_notes: list[str] = []
_selection: dict[str, Any] = {}


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _target() -> str:
    target = os.environ.get("DIFFRL_SB3_TARGET", "")
    if target not in TARGETS:
        raise pytest.UsageError(f"sb3_suite_shim: DIFFRL_SB3_TARGET must be one of {TARGETS}, not {target!r}")
    return target


def _bind(module: types.ModuleType, name: str, new: Any) -> None:
    """Bind ``module.name`` to ``new``; the module must already export that name."""
    if not hasattr(module, name):
        raise pytest.UsageError(f"sb3_suite_shim: {module.__name__} has no attribute {name!r} to map")
    old = getattr(module, name)
    setattr(module, name, new)
    _mapped[f"{module.__name__}.{name}"] = {"from": _qualname(old), "to": _qualname(new)}


def map_composed() -> None:
    """Bind SB3's exported SAC/TD3 class and policy names to the composed ones."""
    import importlib

    import stable_baselines3

    from diffrl_core.sb3.algorithms import ALGORITHMS

    for algo in ALGOS:
        composed = ALGORITHMS[algo.lower()]
        package = importlib.import_module(f"stable_baselines3.{algo.lower()}")
        module = importlib.import_module(f"stable_baselines3.{algo.lower()}.{algo.lower()}")
        policies = importlib.import_module(f"stable_baselines3.{algo.lower()}.policies")
        stock = getattr(module, algo)
        for where in (stable_baselines3, package, module):
            _bind(where, algo, composed)
        aliases = getattr(composed, "policy_aliases", {})
        for name in POLICY_NAMES:
            if name not in aliases:
                raise pytest.UsageError(f"sb3_suite_shim: {composed.__name__}.policy_aliases has no {name!r}")
            policy = aliases[name]
            if policy is stock.policy_aliases.get(name) or policy.__module__.startswith("stable_baselines3."):
                _notes.append(f"{composed.__name__}.policy_aliases[{name!r}] is SB3's own {_qualname(policy)}, "
                              "not a composed policy")
            for where in (package, policies):
                _bind(where, name, policy)


def pytest_configure(config: pytest.Config) -> None:
    """Map the classes (composed mode) before collection imports SB3's test modules."""
    target = _target()
    if target == "composed":
        map_composed()
    _selection["target"] = target


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [f"sb3_suite_shim: target={_selection['target']}"]
    lines += [f"sb3_suite_shim: {name} -> {item['to']}" for name, item in _mapped.items()]
    lines += [f"sb3_suite_shim: note: {note}" for note in _notes]
    return lines


# -- selection ----------------------------------------------------------------------------------


def _targets() -> tuple[Any, ...]:
    import stable_baselines3

    return tuple(getattr(stable_baselines3, algo) for algo in ALGOS)


def _values(value: Any) -> Iterator[Any]:
    """``value`` and, for tuples, lists, sets and dicts, everything inside (keys included)."""
    yield value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _values(key)
            yield from _values(item)
    elif isinstance(value, tuple | list | set | frozenset):
        for item in value:
            yield from _values(item)


def _is_algorithm_class(value: Any) -> bool:
    from stable_baselines3.common.base_class import BaseAlgorithm

    return isinstance(value, type) and issubclass(value, BaseAlgorithm)


def _global_names(code: types.CodeType) -> Iterator[str]:
    """The names a code object and its nested code objects (inner functions, lambdas, ...) look up."""
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _global_names(const)


def _references(function: Callable[..., Any], targets: Iterable[Any]) -> bool:
    """Whether ``function``, or a function of its module that it calls by name (recursively), loads a target."""
    targets = tuple(targets)
    seen: set[int] = set()
    todo = [function]
    while todo:
        func = todo.pop()
        code = getattr(func, "__code__", None)
        if code is None or id(code) in seen:
            continue
        seen.add(id(code))
        namespace = getattr(func, "__globals__", {})
        for name in _global_names(code):
            value = namespace.get(name)
            if any(value is target for target in targets):
                return True
            if isinstance(value, types.FunctionType) and value.__module__ == func.__module__:
                todo.append(value)
    return False


def selected(item: pytest.Item, targets: tuple[Any, ...]) -> bool:
    """Whether ``item`` exercises one of ``targets`` (see the module's docstring)."""
    callspec = getattr(item, "callspec", None)
    params = [v for value in (callspec.params.values() if callspec else ()) for v in _values(value)]
    if any(any(param is target for target in targets) for param in params):
        return True
    if any(_is_algorithm_class(param) for param in params):
        return False
    function = getattr(item, "function", None)
    if any(algo.lower() in item.name.lower() for algo in ALGOS):  # the function's name or a parameter's id
        return True
    return function is not None and _references(function, targets)


@pytest.hookimpl(trylast=True)  # after ``-m``/``-k``: the selected items are the ones that run
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the items that exercise SAC or TD3; report the others deselected."""
    targets = _targets()
    keep = [item for item in items if selected(item, targets)]
    drop = [item for item in items if item not in keep]
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep
    _selection.update(
        targets=[_qualname(t) for t in targets],
        collected=len(keep) + len(drop),
        selected=[item.nodeid for item in keep],
        deselected=[item.nodeid for item in drop],
    )
    _write_report()


def pytest_report_collectionfinish(config: pytest.Config, start_path: Any, items: list[pytest.Item]) -> str:
    return (f"sb3_suite_shim: selected {len(_selection.get('selected', ()))} of {_selection.get('collected', 0)} "
            f"items (the ones that exercise {' or '.join(ALGOS)}; target={_selection['target']})")


def _write_report() -> None:
    path = os.environ.get("DIFFRL_SB3_SHIM_REPORT")
    if path:
        record = {**_selection, "mapped": _mapped, "notes": _notes}
        with open(path, "w", encoding="utf-8") as file:
            json.dump(record, file, indent=1)


# -- records for the runner (passive) -----------------------------------------------------------


def _message(report: pytest.CollectReport | pytest.TestReport) -> str:
    """The one-line reason of a failure or skip: pytest's crash line (``Exception: message``)."""
    longrepr = report.longrepr
    if longrepr is None:
        return ""
    if isinstance(longrepr, tuple):  # a skip: (path, lineno, reason)
        return str(longrepr[2])
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message)
    lines = [line for line in str(longrepr).splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _append_result(record: dict[str, Any]) -> None:
    path = os.environ.get("DIFFRL_SB3_SHIM_RESULTS")
    if path:
        with open(path, "a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _append_result({
        "nodeid": report.nodeid, "when": report.when, "outcome": report.outcome,
        "duration": report.duration, "wasxfail": hasattr(report, "wasxfail"), "message": _message(report),
    })


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _append_result({"nodeid": report.nodeid, "when": "collect", "outcome": "failed", "duration": 0.0,
                        "wasxfail": False, "message": _message(report)})

"""``diffrl sweep``: grids of configs and seeds, or Optuna searches, run by a local process pool or on Ray.

- :mod:`~diffrl_core.sweeps.spec`: the sweep file and the runs it expands to
- :mod:`~diffrl_core.sweeps.folder`: the sweep folder, its index, and what a rerun continues
- :mod:`~diffrl_core.sweeps.trial`: one run as a ``diffrl train`` process, and its outcome
- :mod:`~diffrl_core.sweeps.local`: the local pool (``--workers``); :mod:`~diffrl_core.sweeps.ray_cluster`: Ray
- :mod:`~diffrl_core.sweeps.search`: Optuna studies; :mod:`~diffrl_core.sweeps.progress`: the live table

Nothing here imports torch: each run is its own ``diffrl train`` process.
"""

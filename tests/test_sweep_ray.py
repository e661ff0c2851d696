"""``diffrl sweep --address``: a sweep on a real two-node Ray cluster on this machine, one node lost mid-run.

The cluster is started with ``ray start ... --block`` processes in sessions of their own, and torn
down by killing exactly the processes they started (never ``ray stop``, which stops every Ray
process of the machine, other people's included).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RAY = str(Path(sys.executable).with_name("ray"))
DIFFRL = [str(Path(sys.executable).with_name("diffrl"))]
#: every process of the tests (cluster, sweep, checks): no token authentication, whether or not ~/.ray/auth_token
#: exists (Ray 2.5x's `ray start` turns it on when that file exists, and a driver given an address then fails)
RAY_ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children() -> dict[int, list[int]]:
    """Every process of this machine's /proc, by parent pid."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    return children


def _descendants(pid: int) -> list[int]:
    children = _children()
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _kill_tree(process: subprocess.Popen[bytes], spare: tuple[str, ...] = ()) -> None:
    """SIGKILL a ``ray start --block`` process, its process group and every process below it, as a lost machine.

    Processes whose command line contains one of ``spare`` are left (to see that they go by themselves).
    """
    pids = [process.pid, *_descendants(process.pid)]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    for pid in pids:
        if not any(word in _cmdline(pid) for word in spare):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def _alive_nodes(address: str, want: int, timeout: float) -> int:
    """Wait until the cluster counts ``want`` alive nodes (``ray.nodes()``), and return the count it reached."""
    script = textwrap.dedent(f"""
        import logging, time, ray
        ray.init(address={address!r}, logging_level=logging.ERROR, log_to_driver=False)
        deadline = time.monotonic() + {timeout}
        while True:
            alive = sum(1 for node in ray.nodes() if node["Alive"])
            if alive == {want} or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        print(alive)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout + 60,
                          env=RAY_ENV)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


@dataclass
class Cluster:
    address: str
    head: subprocess.Popen[bytes]
    node: subprocess.Popen[bytes]  # the second node, the one the test loses
    scratch: Path  # the nodes' temporary folder (the tasks' scratch folders)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A head (1 CPU) and a second node (1 CPU) on this machine, each ``ray start --block`` in a session of its own."""
    pytest.importorskip("ray")
    temp_dir = Path(tempfile.mkdtemp(prefix="drt", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    scratch = tmp_path / "node-tmp"
    scratch.mkdir()
    env = {**RAY_ENV, "TMPDIR": str(scratch), "RAY_USAGE_STATS_ENABLED": "0",
           # a lost node is declared dead after about 3 s rather than 15 s
           "RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
           "RAY_health_check_failure_threshold": "3"}
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus", "1", "--disable-usage-stats", "--dashboard-agent-listen-port", str(_free_port()), "--block"]
    started: list[subprocess.Popen[bytes]] = []
    try:
        head = subprocess.Popen(
            [RAY, "start", "--head", "--port", str(port), "--include-dashboard", "false", "--temp-dir", str(temp_dir),
             "--dashboard-port", str(_free_port()), "--ray-client-server-port", str(_free_port()), *common],
            stdin=subprocess.DEVNULL, stdout=(tmp_path / "head.log").open("wb"), stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )
        started.append(head)
        deadline = time.monotonic() + 60
        while True:
            assert head.poll() is None, (tmp_path / "head.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the Ray head did not start"
                time.sleep(0.2)
        node = subprocess.Popen(
            [RAY, "start", "--address", address, *common],
            stdin=subprocess.DEVNULL, stdout=(tmp_path / "node.log").open("wb"), stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )
        started.append(node)
        assert _alive_nodes(address, 2, timeout=60) == 2, (tmp_path / "node.log").read_text()
        yield Cluster(address, head, node, scratch)
    finally:
        for process in reversed(started):
            _kill_tree(process)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _write_sweep(tmp_path: Path) -> Path:
    sweep = tmp_path / "ray_sweep.yaml"
    sweep.write_text(textwrap.dedent(f"""
        config: {EXAMPLES / "pendulum_sac.yaml"}
        set: {{total_timesteps: 600, algo_kwargs.learning_starts: 100, eval.freq: 300, eval.n_episodes: 2}}
        grid:
          algo_kwargs.learning_rate: [0.001, 0.0003]
        seeds: 2
    """))
    return sweep


def test_sweep_survives_a_lost_node(cluster: Cluster, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sw"
    out = (tmp_path / "sweep.out").open("wb")
    sweep = subprocess.Popen(
        [*DIFFRL, "sweep", str(_write_sweep(tmp_path)), "--sweep-dir", str(sweep_dir), "--address", cluster.address],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        env=RAY_ENV,
    )
    try:
        # the second node's first trial trains: its `diffrl train` process runs below that node's raylet
        deadline = time.monotonic() + 90
        training: list[int] = []
        while not training:
            assert sweep.poll() is None, (tmp_path / "sweep.out").read_text()
            assert time.monotonic() < deadline, "no trial started on the second node"
            training = [pid for pid in _descendants(cluster.node.pid) if "diffrl_core.sweeps.child" in _cmdline(pid)]
            time.sleep(0.2)
        time.sleep(1.0)  # well into the run
        _kill_tree(cluster.node, spare=("diffrl_core.sweeps.child",))  # the node is lost, its training orphaned

        code = sweep.wait(timeout=240)
        output = (tmp_path / "sweep.out").read_text()
        assert code == 0, output
        assert "Traceback" not in output
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
            sweep.wait()

    # the orphaned training got SIGTERM from the kernel when its Ray worker died, and is gone
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in training) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in training)
    assert _alive_nodes(cluster.address, 1, timeout=30) == 1  # the cluster lost the node for good

    index = json.loads((sweep_dir / "index.json").read_text())
    trials = index["trials"]
    assert len(trials) == 4
    for name, entry in trials.items():
        assert entry["status"] == "done", (name, entry)
        assert entry["num_timesteps"] == 600
        assert isinstance(entry["final_return"], float)
        assert entry["host"] == socket.gethostname()
        run = sweep_dir / "runs" / name
        assert (run / "model.zip").is_file()
        assert (run / "results.json").is_file()
        status = json.loads((run / "status.json").read_text())
        assert status["status"] == "finished" and status["name"] == name  # named as the local pool names it
        assert "--- " in (sweep_dir / "logs" / f"{name}.log").read_text()
    # every trial ended on the head, the one that trained on the lost node too (Ray ran it again)
    assert len({entry["ray_node"] for entry in trials.values()}) == 1
    # the tasks' scratch folders are gone (the lost node's: removed by a later task on the same machine)
    assert not list(cluster.scratch.glob("diffrl-sweep-*"))


def test_unreachable_address(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    start = time.monotonic()
    done = subprocess.run(
        [*DIFFRL, "sweep", str(_write_sweep(tmp_path)), "--sweep-dir", str(tmp_path / "sw"), "--address", address],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert f"cannot reach the Ray cluster at '{address}'" in done.stderr
    assert "ray start --head" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - start < 60
    index = json.loads((tmp_path / "sw" / "index.json").read_text())
    assert {entry["status"] for entry in index["trials"].values()} == {"pending"}


def test_without_ray(tmp_path: Path) -> None:
    code = "import sys; sys.modules['ray'] = None; from diffrl_core.cli import main; sys.argv[0] = 'diffrl'; main()"
    done = subprocess.run(
        [sys.executable, "-c", code, "sweep", str(_write_sweep(tmp_path)), "--sweep-dir", str(tmp_path / "sw"),
         "--address", "127.0.0.1:1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'diffrl-core[ray]'" in done.stderr
    assert "Traceback" not in done.stderr

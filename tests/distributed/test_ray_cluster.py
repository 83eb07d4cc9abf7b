"""A real two-node Ray cluster on this host: a study runs on both nodes, and losing a node loses nothing.

Two ``ray start --block`` processes (a head and a second node, one CPU each, one temp dir, every port
chosen free so neither clashes with the other nor with the session's in-process Ray), and
``tunebridge run SPEC --backend ray --address auto`` in a subprocess (``RAY_ADDRESS`` names the head):
the local Ray of the other tests is never touched. Every trial records the node it ran on
(``ray_node``). Once both nodes have finished a trial, the second node's raylet is SIGKILLed mid-run;
Ray retries the trial it was running (``ray: {max_failures: 2}``) from its latest checkpoint on the
head, the mirror records it once, with ``ray_retries``, and the study ends with every trial complete.
Every process the test started is killed by its pid, never with ``ray stop``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tunebridge._record import bookkeeping

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.timeout(900)]
pytest.importorskip("ray")

TRIALS = 6
MODULE = """
import time

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class Slow(pl.LightningModule):
    def __init__(self, lr):
        super().__init__()
        self.net, self.lr = nn.Linear(8, 2), lr

    def training_step(self, batch, batch_idx):
        time.sleep(0.5)  # long enough to be caught mid-trial, cheap on two slow cores
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_acc", (self.net(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class Data(pl.LightningDataModule):
    def _loader(self):
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(64, 8, generator=g), torch.randint(0, 2, (64,), generator=g)
        return DataLoader(TensorDataset(x, y), batch_size=16)

    def train_dataloader(self):
        return self._loader()

    def val_dataloader(self):
        return self._loader()


def build(config):
    return Slow(config["lr"]), Data()
"""
SPEC = {
    "study": "two-nodes",
    "builder": "slow_module:build",
    "space": {"lr": {"type": "float", "low": 0.01, "high": 0.5, "log": True}},
    "metric": "val_acc",
    "mode": "max",
    "max_epochs": 5,
    "trials": TRIALS,
    "search": "random",
    "pruner": {"policy": "none"},
    "seed": 0,
    "threads": 1,
    "trainer": {"limit_train_batches": 2, "limit_val_batches": 1},
    "ray": {"cpus_per_trial": 1, "checkpoint_frequency": 1, "max_failures": 2},
}


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
    return found


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (read from /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(_children(p))
    return out


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _ray_start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    ray = str(Path(sys.executable).with_name("ray"))
    with log.open("wb") as out:
        node = subprocess.Popen([ray, "start", "--block", *args], stdout=out, stderr=subprocess.STDOUT, env=env)
    _wait(lambda: "Ray runtime started" in log.read_text(errors="replace") or node.poll() is not None, 180, log.name)
    assert node.poll() is None, log.read_text(errors="replace")[-3000:]
    return node


def _node_args(ports: list[int], temp_dir: str, resource: str) -> list[str]:
    manager, objects, agent_http, agent_grpc, metrics, runtime_env = ports
    return [
        "--num-cpus=1",
        "--num-gpus=0",
        f"--resources={json.dumps({resource: 1})}",
        "--object-store-memory=100000000",
        f"--temp-dir={temp_dir}",  # one temp dir for every node of a host (Ray's rule for several nodes on one host)
        f"--node-manager-port={manager}",
        f"--object-manager-port={objects}",
        f"--dashboard-agent-listen-port={agent_http}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--metrics-export-port={metrics}",
        f"--runtime-env-agent-port={runtime_env}",
        "--disable-usage-stats",
    ]


@contextlib.contextmanager
def _cluster(tmp: Path) -> Iterator[tuple[dict[str, str], subprocess.Popen[bytes], subprocess.Popen[bytes]]]:
    """A head and a second node; yields a driver's environment (``RAY_ADDRESS``) and both ``ray start`` processes."""
    ports = _free_ports(14)
    temp_dir = tempfile.mkdtemp(prefix="tbray", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {
        **os.environ,
        # A lost node is noticed in ~3 s instead of ~30 s.
        "RAY_health_check_period_ms": "1000",
        "RAY_health_check_failure_threshold": "3",
        "RAY_health_check_initial_delay_ms": "1000",
        "RAY_USAGE_STATS_ENABLED": "0",
        # Token authentication with a token of this cluster's own: every node and driver gets it from here
        # (never from ~/.ray/auth_token, which a head would otherwise pick up and a second node would lack).
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": uuid.uuid4().hex + uuid.uuid4().hex,
    }
    env.pop("RAY_ADDRESS", None)
    address = f"127.0.0.1:{ports[0]}"
    started: list[subprocess.Popen[bytes]] = []
    try:
        head_args = ["--head", f"--port={ports[0]}", "--include-dashboard=false"]
        started.append(_ray_start([*head_args, *_node_args(ports[2:8], temp_dir, "head_node")], tmp / "head.log", env))
        second = [f"--address={address}", *_node_args(ports[8:14], temp_dir, "second_node")]
        started.append(_ray_start(second, tmp / "second.log", env))
        yield {**env, "RAY_ADDRESS": address}, started[0], started[1]
    finally:
        for node in reversed(started):  # by pid: `ray stop` would also stop the other tests' local Ray
            pids = _tree(node.pid)
            with contextlib.suppress(ProcessLookupError):
                node.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.wait(timeout=20)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.wait(timeout=5)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _node_ids(env: dict[str, str]) -> dict[str, str]:
    """Node id by custom resource (head_node / second_node), read by a short-lived driver."""
    code = (
        "import json, ray; ray.init(address='auto', logging_level='ERROR', log_to_driver=False); "
        "print(json.dumps({r: n['NodeID'] for n in ray.nodes() if n['Alive'] for r in n['Resources'] "
        "if r.endswith('_node')}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _finished_nodes(db: Path) -> dict[str, str]:
    """``ray_trial_id -> ray_node`` of the finished trials, read-only while the run writes (never creating tables)."""
    if not db.exists():
        return {}
    query = (  # tunebridge's bookkeeping: tb_* system attributes
        "SELECT a.value_json, b.value_json FROM trial_system_attributes a JOIN trial_system_attributes b "
        "ON a.trial_id = b.trial_id WHERE a.key = 'tb_ray_trial_id' AND b.key = 'tb_ray_node'"
    )
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
            return {json.loads(t): json.loads(n) for t, n in con.execute(query)}
    except sqlite3.OperationalError:  # the tables are not there yet
        return {}


def test_a_study_on_two_ray_nodes_survives_losing_one(tmp_path: Path) -> None:
    (tmp_path / "slow_module.py").write_text(MODULE)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    db = tmp_path / "tunebridge-runs" / "tunebridge.db"
    with _cluster(tmp_path) as (cluster_env, _head, second):
        env = {**cluster_env, "PYTHONWARNINGS": "ignore", "COLUMNS": "200"}
        nodes = _node_ids(env)
        assert set(nodes) == {"head_node", "second_node"}, nodes
        raylet = [p for p in _tree(second.pid) if _name(p) == "raylet"]
        assert len(raylet) == 1, [(p, _name(p)) for p in _tree(second.pid)]
        started = time.monotonic()
        log = (tmp_path / "run.log").open("wb")
        run = subprocess.Popen(
            [sys.executable, "-m", "tunebridge", "run", "spec.yaml", "--backend", "ray", "--address", "auto",
             "--no-progress"],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:

            def both_nodes_finished_a_trial() -> bool:
                assert run.poll() is None, (tmp_path / "run.log").read_text()[-4000:]
                return set(nodes.values()) <= set(_finished_nodes(db).values())

            _wait(both_nodes_finished_a_trial, 400, "a finished trial on each node")
            before = set(_finished_nodes(db))
            assert len(before) < TRIALS, "every trial finished before the second node could be killed"
            time.sleep(1.5)  # the second node has started its next trial (its actor is reused)
            os.kill(raylet[0], signal.SIGKILL)  # lose the node: its raylet and, with it, the trial's worker
            killed_at = time.monotonic() - started
            assert run.wait(timeout=480) == 0, (tmp_path / "run.log").read_text()[-4000:]
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
            log.close()
        wall = time.monotonic() - started
    trials = optuna.load_study(study_name="two-nodes", storage=f"sqlite:///{db}").trials
    print(f"two-node run: {wall:.1f} s wall, second node killed at {killed_at:.1f} s")
    # Every trial is in the study, once, and complete: nothing finished before the loss was lost.
    assert len(trials) == TRIALS and [t.state for t in trials] == [TrialState.COMPLETE] * TRIALS
    assert len({bookkeeping(t, "ray_trial_id") for t in trials}) == TRIALS and before <= {
        bookkeeping(t, "ray_trial_id") for t in trials
    }
    ran_on = [bookkeeping(t, "ray_node") for t in trials]
    assert nodes["second_node"] in ran_on and nodes["head_node"] in ran_on
    # The trial the lost node was running failed there and was retried (on the head) by Ray: recorded once,
    # with its retry count; after the loss, trials run on the head only.
    retried = [t for t in trials if bookkeeping(t, "ray_retries")]
    assert retried, "no trial was running on the second node when it was killed"
    assert all(bookkeeping(t, "ray_node") == nodes["head_node"] for t in retried)
    assert all(t.user_attrs["epochs"] == SPEC["max_epochs"] for t in trials)

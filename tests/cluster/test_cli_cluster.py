"""`registry cluster up|status|down` as a person runs them, in a subprocess."""

import json
import os
import signal
import subprocess
import sys

import psutil
import pytest
import requests

from tests.ports import free_port, free_port_run
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster


def registry(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "api.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_up_detach_status_down_leaves_nothing_behind(tmp_path):
    data_dir = str(tmp_path / "c")
    http_port, raft_port = free_port_run(3), free_port_run(3)
    up = registry("cluster", "up", "--detach", "--data-dir", data_dir, "--http-port", str(http_port),
                  "--raft-port", str(raft_port), "--", "--heartbeat", "1")
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        with open(f"{data_dir}/cluster.json") as source:
            document = json.load(source)
        peers = document["peers"]
        assert [p["url"] for p in peers] == [f"http://127.0.0.1:{http_port + i}" for i in range(3)]
        assert [p["raft"] for p in peers] == [f"127.0.0.1:{raft_port + i}" for i in range(3)]
        pids = [p["pid"] for p in peers]
        assert all(psutil.pid_exists(pid) for pid in pids)

        admin = {"Authorization": f"Bearer {document['adminToken']}"}
        assert document["adminToken"] in up.stdout
        assert os.stat(f"{data_dir}/cluster.json").st_mode & 0o777 == 0o600
        # A PUT to the second peer is visible in GET at all three.
        response = requests.put(peers[1]["url"] + "/registry-svc/instance", json={"url": "http://via-cli:1"},
                                headers=admin, timeout=15)
        assert response.status_code == 201
        for peer in peers:
            wait_until(lambda: any(r["url"] == "http://via-cli:1" for r in requests.get(
                peer["url"] + "/registry-svc/instances", headers=admin, timeout=5).json()["instances"]), 10,
                "replication")
            assert requests.get(peer["url"] + "/registry-svc/instances", timeout=5).status_code == 401

        status = registry("cluster", "status", "--data-dir", data_dir)
        assert status.returncode == 0, status.stderr
        rows = [line.split() for line in status.stdout.splitlines()[1:]]
        assert [row[0] for row in rows] == [p["url"] for p in peers], status.stdout
        assert sorted(row[3] for row in rows) == ["follower", "follower", "leader"], status.stdout
        assert len({row[4] for row in rows}) == 1, status.stdout

        # Up while every peer runs changes nothing; after a kill -9 of one it starts that one alone.
        again = registry("cluster", "up", "--detach", "--data-dir", data_dir)
        assert again.returncode == 0, again.stderr
        assert again.stderr.count("already running") == 3 and _pids(data_dir) == pids
        os.kill(pids[0], signal.SIGKILL)
        wait_until(lambda: not psutil.pid_exists(pids[0]) or psutil.Process(pids[0]).status() == psutil.STATUS_ZOMBIE,
                   10, "the killed peer to exit")
        revived = registry("cluster", "up", "--detach", "--data-dir", data_dir)
        assert revived.returncode == 0, revived.stderr
        assert revived.stderr.count("already running") == 2 and f"stop it with: registry cluster down --data-dir " \
            f"{data_dir}" in revived.stdout
        now = _pids(data_dir)
        assert now[1:] == pids[1:] and now[0] != pids[0] and psutil.pid_exists(now[0])
        wait_until(lambda: any(r["url"] == "http://via-cli:1" for r in requests.get(
            peers[0]["url"] + "/registry-svc/instances", headers=admin, timeout=5).json()["instances"]), 15,
            "the revived peer to serve what was written before")
        pids = now
    finally:
        down = registry("cluster", "down", "--data-dir", data_dir)
    assert down.returncode == 0, down.stderr
    assert "stopped 3 peer(s)" in down.stdout
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)

    # Up again on the same directory restarts the same cluster, data included; the old token
    # still works (same secret), and `registry token create` mints one offline.
    restarted = registry("cluster", "up", "--detach", "--data-dir", data_dir)
    try:
        assert restarted.returncode == 0, restarted.stderr
        minted = registry("token", "create", "--slug", "ops", "--role", "admin", "--ttl", "1h",
                          "--data-dir", data_dir)
        assert minted.returncode == 0, minted.stderr
        for token in (document["adminToken"], minted.stdout.strip()):
            wait_until(lambda: any(r["url"] == "http://via-cli:1" for r in requests.get(
                peers[2]["url"] + "/registry-svc/instances", headers={"Authorization": f"Bearer {token}"},
                timeout=5).json()["instances"]), 15, "data after restart")
    finally:
        assert registry("cluster", "down", "--data-dir", data_dir).returncode == 0


def _pids(data_dir):
    with open(f"{data_dir}/cluster.json") as source:
        return [p["pid"] for p in json.load(source)["peers"]]


def test_a_multi_peer_serve_without_a_secret_refuses_to_start(tmp_path):
    result = registry("serve", "--raft-address", f"127.0.0.1:{free_port()}",
                      "--raft-peers", f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}",
                      "--http-address", f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path / "p"), timeout=30)
    assert result.returncode != 0
    assert "needs its cluster secret" in result.stderr


def test_serve_rejects_a_malformed_address(tmp_path):
    result = registry("serve", "--raft-address", "nowhere", "--data-dir", str(tmp_path / "p"), timeout=30)
    assert result.returncode == 2 and "host:port" in result.stderr


def _ctrl_c_as_in_a_terminal():
    # A suite started in the background (`tox &`) inherits SIGINT ignored, and Python keeps an
    # ignored SIGINT ignored: `up` would then never see the Ctrl-C this test sends.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("when", ["once ready", "while starting"])
def test_foreground_up_stops_every_peer_on_ctrl_c(tmp_path, when):
    data_dir = tmp_path / "fg"
    output = tmp_path / "up.out"
    http_port = free_port_run(2)
    with open(output, "w") as sink:
        up = subprocess.Popen([sys.executable, "-m", "api.cli", "cluster", "up", "--peers", "2", "--data-dir",
                               str(data_dir), "--http-port", str(http_port), "--raft-port", str(free_port_run(2))],
                              stdout=sink, stderr=subprocess.STDOUT, preexec_fn=_ctrl_c_as_in_a_terminal)
    pids = []
    try:
        def started():
            with open(data_dir / "cluster.json") as source:
                return [p["pid"] for p in json.load(source)["peers"]]
        pids = wait_until(lambda: _quietly(started), 60, "cluster.json")
        if when == "once ready":
            wait_until(lambda: "Ctrl-C stops every peer" in output.read_text(), 60, "the cluster to be ready")
        up.send_signal(signal.SIGINT)
        code = up.wait(timeout=30)
        if when == "once ready":
            assert code == 0, output.read_text()
        assert "Traceback" not in output.read_text()
        assert not [pid for pid in pids if psutil.pid_exists(pid)
                    and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        for pid in pids:
            if psutil.pid_exists(pid):
                os.kill(pid, signal.SIGKILL)


def _quietly(probe):
    try:
        return probe()
    except (OSError, ValueError, KeyError, requests.RequestException):
        return None

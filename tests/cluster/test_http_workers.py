"""Peers serving HTTP from worker processes (`--http-workers 2`), each a read replica of its peer:
read-your-writes whichever worker a connection lands on, consistent and blocking reads at a
worker, a worker killed under write load, the Raft process killed under its workers, and every
worker's state digest equal to its Raft process's."""

import collections
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.conftest import SERVE_ARGS
from tests.ports import free_port
from tests.waiting import wait_until

WORKER_ARGS = SERVE_ARGS + ("--http-workers", "2")


@pytest.fixture
def cluster(start_cluster):
    return start_cluster(serve_args=WORKER_ARGS)


def workers_of(cluster, peer):
    view = cluster.get(peer, "/registry-svc/cluster").json()
    return view["self"]["httpWorkers"]


def worker_holding(workers, client_port):
    """The number of the worker process holding the server's end of the client's TCP connection.

    Read from /proc (the socket's inode, then which process has it open): psutil's decoding of
    addresses breaks once pysyncobj, imported by other tests here, has replaced socket.inet_ntop."""
    inodes = set()
    with open("/proc/net/tcp", encoding="ascii") as table:
        for line in list(table)[1:]:
            fields = line.split()
            if int(fields[2].split(":")[1], 16) == client_port:
                inodes.add(fields[9])
    for worker in workers:
        fd_dir = f"/proc/{worker['pid']}/fd"
        for fd in os.listdir(fd_dir):
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return worker["number"]
    return None


class Connection:
    """One keep-alive connection to a peer, so that a test knows which worker serves it."""

    def __init__(self, cluster, peer):
        self.http = http.client.HTTPConnection(peer.host, peer.http_port, timeout=15)
        self.headers = {"Authorization": cluster.http.headers["Authorization"], "Content-Type": "application/json"}

    def request(self, method, path, body=None):
        self.http.request(method, path, body=None if body is None else json.dumps(body), headers=self.headers)
        response = self.http.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read() or b"null")

    @property
    def port(self):
        return self.http.sock.getsockname()[1]

    def close(self):
        self.http.close()


def test_a_write_through_one_worker_is_read_at_once_through_the_other(cluster):
    peer = cluster.followers(cluster.leader())[0]
    workers = workers_of(cluster, peer)
    assert [w["number"] for w in workers] == [1, 2] and all(w["running"] for w in workers)
    crossings = 0
    for attempt in range(60):
        writer, reader = Connection(cluster, peer), Connection(cluster, peer)
        try:
            url = f"http://127.0.0.1:{7000 + attempt}/"
            status, headers, _ = writer.request("PUT", "/registry-svc/instance", {"url": url, "slug": "ryw"})
            assert status == 201
            status, read_headers, listed = reader.request("GET", "/registry-svc/instances?slug=ryw")
            assert status == 200
            assert url in {r["url"] for r in listed["instances"]}, f"attempt {attempt}: the write was not read"
            assert int(read_headers["X-Registry-Index"]) >= int(headers["X-Registry-Index"])
            if worker_holding(workers, writer.port) != worker_holding(workers, reader.port):
                crossings += 1
        finally:
            writer.close()
            reader.close()
        if crossings >= 10:
            break
    assert crossings >= 10, "the connections never landed on different workers"


def test_a_consistent_read_at_a_worker_sees_a_write_made_at_another_peer(cluster):
    leader = cluster.leader()
    writer_peer, reader_peer = cluster.followers(leader)
    for attempt in range(10):
        url = f"http://127.0.0.1:{7100 + attempt}/"
        assert cluster.put_instance(writer_peer, {"url": url, "slug": "consistent"}).status_code == 201
        connection = Connection(cluster, reader_peer)
        try:
            status, _, listed = connection.request("GET", "/registry-svc/instances?slug=consistent&consistent")
        finally:
            connection.close()
        assert status == 200 and url in {r["url"] for r in listed["instances"]}


def test_a_blocking_read_at_a_worker_wakes_for_a_write_at_another_peer(cluster):
    leader = cluster.leader()
    watched_peer = cluster.followers(leader)[0]
    response = cluster.get(watched_peer, "/registry-svc/instances?slug=watched")
    index = int(response.headers["X-Registry-Index"])
    answers = []

    def watch():
        answers.append(cluster.get(watched_peer, f"/registry-svc/instances?slug=watched&index={index}&wait=60s",
                                   timeout=90))

    watchers = [threading.Thread(target=watch) for _ in range(4)]  # over both workers, most likely
    for thread in watchers:
        thread.start()
    # Each watcher is held (it has not answered) until the write.
    wait_until(lambda: sum(1 for w in workers_of(cluster, watched_peer) if w["running"]) == 2, 10,
               "both workers to run")
    assert not answers
    assert cluster.put_instance(leader, {"url": "http://127.0.0.1:7200/", "slug": "watched"}).status_code == 201
    for thread in watchers:
        thread.join(30)
    assert len(answers) == 4
    for answer in answers:
        assert answer.status_code == 200
        assert [r["url"] for r in answer.json()["instances"]] == ["http://127.0.0.1:7200/"]
        assert int(answer.headers["X-Registry-Index"]) > index


def test_a_quiet_workers_first_read_holds_what_its_peer_applied_before_it(cluster):
    """A worker no request needed for a while has its batches held by its Raft process
    (cluster/quiet_feed.py); the first read there must still see every write the peer applied."""
    leader = cluster.leader()
    peer = cluster.followers(leader)[0]
    workers = workers_of(cluster, peer)
    observer = Connection(cluster, peer)  # keep-alive: the view is always asked of one worker
    try:
        observer.request("GET", "/registry-svc/cluster")
        watching = worker_holding(workers, observer.port)

        def the_other_quiet():
            view = observer.request("GET", "/registry-svc/cluster")[2]["self"]
            return [w for w in view["httpWorkers"] if w["number"] != watching and w["feed"] == "quiet"]

        [quiet] = wait_until(the_other_quiet, 30, "the worker no request reaches to go quiet")
        for attempt in range(3):
            url = f"http://127.0.0.1:{7250 + attempt}/"
            written = cluster.put_instance(leader, {"url": url, "slug": f"quiet-{attempt}"})
            assert written.status_code == 201
            written_at = int(written.headers["X-Registry-Index"])
            wait_until(lambda: observer.request("GET", "/registry-svc/cluster")[2]["self"]["appliedIndex"] >= written_at,
                       15, "the peer's Raft process to apply the write")
            reader = None
            for _ in range(100):  # a connection the kernel gave the quiet worker
                reader = Connection(cluster, peer)
                reader.http.connect()
                if wait_until(lambda: worker_holding(workers, reader.port), 5, "the connection to be accepted") \
                        == quiet["number"]:
                    break
                reader.close()
            else:
                pytest.fail("no connection landed on the quiet worker")
            try:
                status, headers, listed = reader.request("GET", f"/registry-svc/instances?slug=quiet-{attempt}")
            finally:
                reader.close()
            assert status == 200 and [r["url"] for r in listed["instances"]] == [url]
            assert int(headers["X-Registry-Index"]) >= written_at
            wait_until(the_other_quiet, 30, "the worker to go quiet again")
    finally:
        observer.close()


def test_a_worker_killed_under_write_load_loses_no_acknowledged_write_and_comes_back(cluster):
    leader = cluster.leader()
    peer = cluster.followers(leader)[0]
    victim = workers_of(cluster, peer)[0]
    acknowledged, failures, stop = [], [], threading.Event()

    def write(writer):
        session = requests.Session()
        session.headers.update(cluster.http.headers)
        count = 0
        while not stop.is_set() and count < 400:
            url = f"http://127.0.0.1:{8000 + writer}/{count}"
            count += 1
            try:
                response = session.put(peer.url + "/registry-svc/instance", json={"url": url, "slug": "load"},
                                       timeout=15)
            except requests.ConnectionError:
                failures.append(url)  # in flight on the killed worker: the client retries elsewhere
                session = requests.Session()
                session.headers.update(cluster.http.headers)
                continue
            if response.status_code == 201:
                acknowledged.append(url)

    writers = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in writers:
        thread.start()
    wait_until(lambda: len(acknowledged) >= 40, 30, "writes to be acknowledged")
    os.kill(victim["pid"], signal.SIGKILL)
    wait_until(lambda: len(acknowledged) >= 120, 60, "writes to go on after the kill")
    stop.set()
    for thread in writers:
        thread.join(30)

    def restarted():
        worker = workers_of(cluster, peer)[0]
        return worker if worker["running"] and worker["pid"] != victim["pid"] and worker["restarts"] == 1 else None

    wait_until(restarted, 30, "the killed worker to be started again")
    for reader in cluster.peers:
        wait_until(lambda: set(acknowledged) <= cluster.instance_urls(reader), 30,
                   f"every acknowledged write at {reader.url}")


def test_workers_stop_accepting_within_a_second_of_their_raft_process_dying(cluster):
    peer = cluster.followers(cluster.leader())[0]
    pids = [w["pid"] for w in workers_of(cluster, peer)]
    assert len(pids) == 2
    os.kill(peer.pid, signal.SIGKILL)
    killed = time.monotonic()

    def gone():
        return not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                       for pid in pids)

    wait_until(gone, 1.0, "the workers to end with their Raft process")
    assert time.monotonic() - killed < 1.0
    with pytest.raises(requests.ConnectionError):
        requests.get(peer.url + "/readyz", timeout=2)
    cluster.local.kill_peers([peer])  # reaps it


def test_after_a_mixed_load_every_workers_digest_is_its_raft_process_digest(cluster):
    leader = cluster.leader()
    ids = [f"mixed-{n}" for n in range(30)]
    for n, instance_id in enumerate(ids):
        response = cluster.put_instance(cluster.peers[n % 3], {
            "id": instance_id, "url": f"http://127.0.0.1:{7300 + n}/", "slug": f"mixed-{n % 4}",
            "tags": ["a"] if n % 2 else []})
        assert response.status_code == 201, response.text
    for instance_id in ids[:10]:
        response = cluster.http.delete(cluster.peers[2].url + f"/registry-svc/instance/{instance_id}", timeout=15)
        assert response.status_code == 204, response.text
    for instance_id in ids[10:20]:  # heartbeats, coalesced by the Raft process of whichever peer gets them
        response = cluster.http.put(cluster.peers[1].url + f"/registry-svc/instance/{instance_id}/heartbeat",
                                    json={}, timeout=15)
        assert response.status_code == 200, response.text
    assert cluster.http.delete(leader.url + "/registry-svc/node/http://127.0.0.1:1", timeout=15).status_code == 404

    def equal_everywhere():
        for peer in cluster.peers:
            view = cluster.get(peer, "/registry-svc/cluster").json()["self"]
            own = view["stateDigest"]
            workers = view["httpWorkers"]
            if len(workers) != 2 or any(w["stateDigest"] != own for w in workers):
                return None
        return True

    wait_until(equal_everywhere, 30, "every worker's digest to equal its Raft process's at the same index")


def test_cluster_status_and_metrics_show_each_peers_workers(cluster):
    status = subprocess.run([sys.executable, "-m", "api.cli", "cluster", "status", "--data-dir", cluster.local.data_dir],
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("HTTP WORKERS OF"))
    shown = {(line.split()[0], line.split()[1], line.split()[2]) for line in lines[start + 1:] if line.strip()}
    expected = {(peer.url, str(w["number"]), str(w["pid"])) for peer in cluster.peers for w in workers_of(cluster, peer)}
    assert shown == expected and len(expected) == 6
    # /metrics at any worker: the whole peer's requests (summed over its workers) and each worker's replica.
    peer = cluster.peers[0]
    workers = workers_of(cluster, peer)

    def listed_count():
        families = {f.name: f for f in text_string_to_metric_families(cluster.get(peer, "/metrics").text)}
        return families, sum(s.value for s in families["registry_http_requests"].samples
                             if s.name == "registry_http_requests_total"
                             and s.labels["endpoint"] == "instances.list_instances")

    _, before = listed_count()
    served_by = collections.Counter()
    for _ in range(40):
        connection = Connection(cluster, peer)
        try:
            assert connection.request("GET", "/registry-svc/instances?slug=counted")[0] == 200
            served_by[worker_holding(workers, connection.port)] += 1
        finally:
            connection.close()
    assert set(served_by) == {1, 2}, served_by  # neither worker alone answered all 40
    families, after = listed_count()
    assert after - before == 40
    assert {s.labels["worker"] for s in families["registry_http_worker_state_index"].samples} == {"1", "2"}
    assert all(s.value == 1.0 for s in families["registry_http_worker_running"].samples)


def test_a_stopped_peer_lets_its_workers_finish_rather_than_killing_them(cluster):
    # A worker's parent-death signal fires when the thread that started it ends: the supervisor
    # must outlive the workers, or a stop kills them mid-request (the trace of a worker was lost so).
    # Every worker serving first: one still starting has no signal handler yet and ends with -15.
    for peer in cluster.peers:
        wait_until(lambda: all(w["running"] and w["stateIndex"] is not None for w in workers_of(cluster, peer)),
                   30, f"both workers of {peer.url} to serve")
    cluster.local.stop()
    for peer in cluster.peers:
        with open(peer.log_path, encoding="utf-8") as log:
            text = log.read()
        statuses = re.findall(r"http worker (\d) \(pid \d+\) stopped, exit status (-?\d+)", text)
        assert sorted(statuses) == [("1", "0"), ("2", "0")], (peer.log_path, text[-3000:])


def test_a_port_another_program_listens_on_fails_the_start_with_workers_too(tmp_path):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        started = subprocess.run(
            [sys.executable, "-m", "api.cli", "serve", "--http-workers", "2", "--http-address", f"127.0.0.1:{port}",
             "--raft-address", f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path / "peer")],
            capture_output=True, text=True, timeout=60)
    assert started.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port} for HTTP" in started.stderr, started.stderr

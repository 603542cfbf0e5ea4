"""A history of writes and consistent reads of one instance, at every peer, through a real
partition of the leader and its heal, is linearizable (writes re-submitted through the leader
change included)."""

import threading
import time

import pytest
import requests

from tests.linearizability import READ, WRITE, Op, check
from tests.waiting import wait_until

pytestmark = pytest.mark.chaos

SERVE_ARGS = ("--heartbeat", "1", "--write-timeout", "2", "--scan-interval", "3600")
KEY = {"id": "inst_register", "url": "http://127.0.0.1:9700"}


@pytest.mark.timeout(180)
def test_writes_and_consistent_reads_through_a_partition_of_the_leader_are_linearizable(chaos_cluster):
    cluster = chaos_cluster(serve_args=SERVE_ARGS)
    leader = cluster.leader()
    assert cluster.http(leader).call("PUT", "/registry-svc/instance", json=dict(KEY, details="initial")).status_code == 201
    history, lock, stop = [], threading.Lock(), threading.Event()

    def record(op):
        with lock:
            history.append(op)

    def writer(name, peer):
        http = cluster.http(peer)
        for n in range(400):
            if stop.is_set():
                return
            value, invoked = f"{name}-{n}", time.monotonic()
            try:
                response = http.call("PUT", "/registry-svc/instance", json=dict(KEY, details=value), timeout=10)
            except requests.RequestException:
                record(Op(WRITE, value, invoked, None))
                continue
            if response.status_code == 201:
                record(Op(WRITE, value, invoked, time.monotonic()))
            elif not (response.status_code == 503 and "not applied" in response.json()["error"]):
                record(Op(WRITE, value, invoked, None))  # may or may not have been applied
            stop.wait(0.02)

    def reader(peer):
        http = cluster.http(peer)
        while not stop.is_set():
            invoked = time.monotonic()
            try:
                response = http.call("GET", "/registry-svc/instances", params={"id": KEY["id"], "consistent": ""},
                                     timeout=10)
            except requests.RequestException:
                continue
            if response.status_code == 200:
                found = response.json()["instances"]
                record(Op(READ, found[0].get("details") if found else None, invoked, time.monotonic()))
            stop.wait(0.02)

    threads = [threading.Thread(target=writer, args=(f"w{p.index}", p)) for p in cluster.peers]
    threads += [threading.Thread(target=reader, args=(p,)) for p in cluster.peers]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(history) >= 30, 30, "the history to get going")
        cluster.topology.cut(leader.index)
        new_leader = cluster.leader(among=[p for p in cluster.peers if p is not leader], timeout=20)
        assert new_leader is not leader
        wait_until(lambda: len(history) >= 150, 30, "writes and reads at the majority")
        cluster.topology.heal(leader.index)
        cluster.wait_ready(timeout=30)
        wait_until(lambda: len(history) >= 250, 30, "writes and reads after the heal")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    writes = [op for op in history if op.kind == WRITE and op.completed is not None]
    reads = [op for op in history if op.kind == READ]
    assert len(writes) >= 50 and len(reads) >= 50, (len(writes), len(reads))
    linearizable, _ = check(history, initial="initial")
    assert linearizable, sorted(history, key=lambda op: op.invoked)

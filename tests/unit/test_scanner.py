"""The instance scanner's cycle against a peer without Raft (tests/fake_peer.py) and real TCP
connects on 127.0.0.1: what it checks, what it concludes, what it commits."""

import asyncio
import socket
import time

import pytest

from cluster.scanner import InstanceScanner
from registry import commands
from registry.instances import validate_registration
from tests.fake_peer import FakePeer, unavailable
from tests.ports import free_port


@pytest.fixture
def listening_port():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


def register(peer, **body):
    return peer.register_instance(validate_registration(body))["id"]


def status_of(peer, instance_id):
    return peer.instance(instance_id)["status"]


def test_a_cycle_marks_what_answers_healthy_and_what_refuses_unreachable_in_one_command(listening_port):
    peer = FakePeer()
    up = register(peer, url=f"http://127.0.0.1:{listening_port}", slug="svc")
    down = register(peer, url=f"http://127.0.0.1:{free_port()}", slug="svc")
    before = len(peer.submitted)
    report = asyncio.run(InstanceScanner(peer, interval=3600, timeout=1.0).cycle())
    assert (status_of(peer, up), status_of(peer, down)) == ("Healthy", "Unreachable")
    assert len(peer.submitted) == before + 1  # one command for the cycle
    assert (report.scanned, report.unreachable, report.changed, report.committed) == (2, 1, 2, True)
    seen_at = peer.instance(up)["lastHeartbeat"]
    assert seen_at > peer.instance(down)["lastHeartbeat"]  # only a check that succeeded moves it

    report = asyncio.run(InstanceScanner(peer, interval=3600, timeout=1.0).cycle())
    assert report.changed == 0 and report.committed  # nothing changed: only the heartbeat goes


def test_an_instance_with_a_ttl_is_not_connected_to_and_turns_unreachable_once_it_expires():
    peer = FakePeer()
    fields = validate_registration({"url": f"http://127.0.0.1:{free_port()}", "ttl": "1s"})
    # Last heard from five seconds ago: its one-second TTL has run out.
    renewed_by_itself = peer.submit(commands.register_instance(fields, "inst_ttl", time.time_ns() - 5 * 10**9))["id"]
    report = asyncio.run(InstanceScanner(peer, interval=3600, timeout=1.0).cycle())
    assert status_of(peer, renewed_by_itself) == "Unreachable"
    assert report.scanned == 1 and report.unreachable == 1


def test_results_that_cannot_be_committed_are_reported_as_such(listening_port):
    peer = FakePeer()
    register(peer, url=f"http://127.0.0.1:{listening_port}")
    peer.unavailable = unavailable()
    report = asyncio.run(InstanceScanner(peer, interval=3600, timeout=1.0).cycle())
    assert report.scanned == 1 and report.committed is False


def test_instances_on_another_live_peers_node_are_left_to_it(listening_port):
    peer = FakePeer(members=("127.0.0.1:21337", "127.0.0.1:21338"))
    other = "http://127.0.0.1:11338"
    peer.report_node({"id": "node_other", "url": other, "raft": {"address": "127.0.0.1:21338"}})
    theirs = register(peer, url=f"http://127.0.0.1:{listening_port}", nodeUrl=other)
    report = asyncio.run(InstanceScanner(peer, interval=3600, timeout=1.0).cycle())
    assert report.live_peers == 2 and report.scanned == 0
    assert status_of(peer, theirs) == "Unknown"

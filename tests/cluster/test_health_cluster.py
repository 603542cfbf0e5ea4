"""Instance health on a real cluster, against real listeners on loopback, with short cycles."""

import signal
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.listeners import Listener, SlowListener
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

CYCLE = 0.5
HEALTH_ARGS = ("--heartbeat", "0.5", "--scan-interval", str(CYCLE), "--scan-timeout", "2", "--write-timeout", "5")
# Two cycles, plus the commit and the replication of the cycle's command, plus slack for a
# loaded 2-core machine: a bound on how long the tests wait, not on what they accept.
TWO_CYCLES_AND_SLACK = 2 * CYCLE + 4


def record(cluster, peer, url):
    found = [r for r in cluster.get(peer, "/registry-svc/instances").json()["instances"] if r["url"] == url]
    return found[0] if found else None


def status(cluster, peer, url):
    found = record(cluster, peer, url)
    return found and found["status"]


@pytest.fixture
def listeners():
    opened = []

    def open_listener(kind=Listener):
        listener = kind().start()
        opened.append(listener)
        return listener

    yield open_listener
    for listener in opened:
        listener.stop()


def test_a_listener_that_stops_turns_unreachable_and_back_to_healthy(start_cluster, listeners):
    cluster = start_cluster(serve_args=HEALTH_ARGS)
    listener = listeners()
    peer = cluster.peers[0]
    assert cluster.put_instance(peer, {"url": listener.url}).status_code == 201
    wait_until(lambda: status(cluster, peer, listener.url) == "Healthy", TWO_CYCLES_AND_SLACK, "Healthy")
    first_beat = record(cluster, peer, listener.url)["lastHeartbeat"]
    wait_until(lambda: record(cluster, peer, listener.url)["lastHeartbeat"] > first_beat, TWO_CYCLES_AND_SLACK,
               "lastHeartbeat to move with each successful check")

    listener.stop()
    wait_until(lambda: status(cluster, peer, listener.url) == "Unreachable", TWO_CYCLES_AND_SLACK, "Unreachable")
    down = record(cluster, peer, listener.url)
    assert down["unreachableSince"] >= down["lastHeartbeat"]

    listener.start()
    wait_until(lambda: status(cluster, peer, listener.url) == "Healthy", TWO_CYCLES_AND_SLACK, "Healthy again")
    assert "unreachableSince" not in record(cluster, peer, listener.url)
    # Every peer shows the same.
    for other in cluster.peers:
        wait_until(lambda: status(cluster, other, listener.url) == "Healthy", 5, f"{other.url} to agree")


def test_a_listener_slower_than_a_second_to_connect_is_degraded(start_cluster, listeners):
    cluster = start_cluster(serve_args=HEALTH_ARGS)
    slow = listeners(SlowListener)
    peer = cluster.peers[1]
    assert cluster.put_instance(peer, {"url": slow.url}).status_code == 201
    wait_until(lambda: status(cluster, peer, slow.url) == "Degraded", 15, "Degraded")


def test_killing_a_peer_moves_its_share(start_cluster, listeners):
    cluster = start_cluster(serve_args=HEALTH_ARGS)
    victim = cluster.followers(cluster.leader())[0]
    asker = next(p for p in cluster.peers if p is not victim)
    pinned = [listeners() for _ in range(3)]
    for listener in pinned:
        # nodeUrl names the victim's node: only the victim scans these while it lives.
        body = {"url": listener.url, "nodeUrl": victim.url}
        assert cluster.put_instance(asker, body).status_code == 201
    for listener in pinned:
        wait_until(lambda: status(cluster, asker, listener.url) == "Healthy", TWO_CYCLES_AND_SLACK, "Healthy")

    cluster.local.kill_peer(victim, signal.SIGKILL)
    for listener in pinned:
        listener.stop()
    # The victim's node turns stale after three heartbeats; then the survivors scan its share.
    for listener in pinned:
        wait_until(lambda: status(cluster, asker, listener.url) == "Unreachable", 15,
                   "a survivor to scan the dead peer's share")
    nodes = cluster.http.post(f"{asker.url}/registry-svc/nodes", timeout=5).json()["nodes"]
    assert {n["url"]: n["status"] for n in nodes}[victim.url] == "Stale"


def test_ttl_instances_expire_and_heartbeats_renew_them(start_cluster):
    cluster = start_cluster(serve_args=HEALTH_ARGS)
    peer = cluster.peers[2]
    url = "http://ttl-only.invalid:9"
    assert cluster.put_instance(peer, {"url": url, "ttl": "2s", "status": "Healthy"}).status_code == 201
    instance_id = record(cluster, peer, url)["id"]
    wait_until(lambda: status(cluster, peer, url) == "Unreachable", 2 + TWO_CYCLES_AND_SLACK, "ttl expiry")

    renewed = cluster.http.put(f"{peer.url}/registry-svc/instance/{instance_id}/heartbeat",
                               json={"details": "back"}, timeout=15)
    assert renewed.status_code == 200, renewed.text
    # Answered after it was applied: this peer reads it back at once.
    current = record(cluster, peer, url)
    assert current["status"] == "Healthy" and current["details"] == "back"

    missing = cluster.http.put(f"{peer.url}/registry-svc/instance/inst_nope/heartbeat", timeout=15)
    assert missing.status_code == 404
    bad = cluster.http.put(f"{peer.url}/registry-svc/instance/{instance_id}/heartbeat",
                           json={"status": "Sleepy"}, timeout=15)
    assert bad.status_code == 400 and "unknown status" in bad.json()["error"]
    stranger = requests.put(f"{peer.url}/registry-svc/instance/{instance_id}/heartbeat", timeout=15,
                            headers={"Authorization": f"Bearer {cluster.token('someone-else', 'user')}"})
    assert stranger.status_code == 403


def test_many_renewals_at_once_share_one_command(start_cluster):
    cluster = start_cluster(serve_args=HEALTH_ARGS)
    peer = cluster.peers[0]
    ids = []
    for n in range(40):
        assert cluster.put_instance(peer, {"id": f"inst_renew_{n}", "url": f"http://renew-{n}.invalid:1",
                                           "ttl": "1h"}).status_code == 201
        ids.append(f"inst_renew_{n}")

    def renew(instance_id):
        response = cluster.http.put(f"{peer.url}/registry-svc/instance/{instance_id}/heartbeat", timeout=15)
        return response.status_code, int(response.headers["X-Registry-Index"])

    with ThreadPoolExecutor(max_workers=40) as pool:
        answers = list(pool.map(renew, ids))
    assert [code for code, _ in answers] == [200] * 40
    # Each answer names the Raft index of the command that carried it: a handful, not forty.
    assert len({index for _, index in answers}) <= 3


def test_dead_instances_are_deregistered_but_never_in_a_panic(start_cluster, listeners):
    cluster = start_cluster(serve_args=HEALTH_ARGS)
    scanner = cluster.peers[0]
    live = [listeners() for _ in range(3)]
    doomed = listeners()
    for listener in live + [doomed]:
        body = {"url": listener.url, "nodeUrl": scanner.url, "deregisterAfter": "1s"}
        assert cluster.put_instance(scanner, body).status_code == 201
    for listener in live + [doomed]:
        wait_until(lambda: status(cluster, scanner, listener.url) == "Healthy", TWO_CYCLES_AND_SLACK, "Healthy")

    # One of four dead: it is removed once it has been Unreachable for 1 s.
    doomed.stop()
    wait_until(lambda: record(cluster, scanner, doomed.url) is None, 1 + 3 * TWO_CYCLES_AND_SLACK, "deregistration")
    assert all(status(cluster, scanner, listener.url) == "Healthy" for listener in live)

    # All at once: the scanner suspects itself and removes nothing, cycle after cycle.
    for listener in live:
        listener.stop()
    for listener in live:
        wait_until(lambda: status(cluster, scanner, listener.url) == "Unreachable", TWO_CYCLES_AND_SLACK, "down")

    def held_back_cycles():
        scan = cluster.view(scanner)["self"]["lastScan"]
        return scan and scan["removalsHeldBack"] > 0 and scan

    wait_until(held_back_cycles, 1 + 3 * TWO_CYCLES_AND_SLACK, "a cycle that held back removals")
    assert all(record(cluster, scanner, listener.url) is not None for listener in live)
    with open(scanner.log_path, encoding="utf-8") as log:
        assert "suspecting this peer's own network" in log.read()
    for listener in live:
        listener.start()
    for listener in live:
        wait_until(lambda: status(cluster, scanner, listener.url) == "Healthy", TWO_CYCLES_AND_SLACK, "recovery")

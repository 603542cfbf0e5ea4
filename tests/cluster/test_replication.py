"""A 3-peer cluster of real processes on loopback: the API answers the same through any peer."""

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest

from tests.cluster.conftest import SERVE_ARGS
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster


def test_a_write_at_a_follower_is_read_at_every_peer(start_cluster):
    cluster = start_cluster()
    leader = cluster.leader()
    follower = cluster.followers(leader)[0]
    response = cluster.put_instance(follower, {"url": "http://written-at-follower:8080", "slug": "svc"})
    assert response.status_code == 201, response.text
    assert response.headers["X-Registry-Known-Leader"] == "true"
    # Answered only after it was applied on the peer that answered: read-your-writes there.
    assert "http://written-at-follower:8080" in cluster.instance_urls(follower)
    assert int(cluster.get(follower, "/registry-svc/instances").headers["X-Registry-Index"]) >= int(
        response.headers["X-Registry-Index"])
    for peer in cluster.peers:
        wait_until(lambda: "http://written-at-follower:8080" in cluster.instance_urls(peer), 10,
                   f"the write to reach {peer.url}")

    # Removal through another follower is seen everywhere as well.
    [record] = cluster.get(leader, "/registry-svc/instances", params={"slug": "svc"}).json()["instances"]
    other = cluster.followers(leader)[1]
    assert cluster.http.delete(f"{other.url}/registry-svc/instance/{record['id']}", timeout=15).status_code == 204
    for peer in cluster.peers:
        wait_until(lambda: "http://written-at-follower:8080" not in cluster.instance_urls(peer), 10,
                   f"the removal to reach {peer.url}")

    # Every peer reports its own node record, and every peer lists all three.
    urls = {peer.url for peer in cluster.peers}
    for peer in cluster.peers:
        wait_until(lambda: {n["url"] for n in cluster.http.post(peer.url + "/registry-svc/nodes", timeout=5)
                            .json()["nodes"]} == urls, 15, f"{peer.url} to list every node")
        me = cluster.get(peer, "/registry-svc/node/self").json()["node"]
        assert me["url"] == peer.url and me["raft"]["address"] == peer.raft
        assert me["usage"]["memory"]["total"] > 0

    # The replicas converge to identical state (same index, same hash).
    def digests_agree():
        digests = [cluster.view(p)["self"]["stateDigest"] for p in cluster.peers]
        return all(d == digests[0] for d in digests)
    wait_until(digests_agree, 20, "identical state digests on every peer", interval=0.01)


def test_a_cluster_that_leaves_journal_flushing_to_the_kernel_commits_through_every_peer(start_cluster):
    cluster = start_cluster(serve_args=SERVE_ARGS + ("--no-sync-journal",))
    leader = cluster.leader()
    written = set()
    for n, peer in enumerate([leader, *cluster.followers(leader)]):
        response = cluster.put_instance(peer, {"url": f"http://unflushed-{n}:80"})
        assert response.status_code == 201, response.text + cluster.logs()
        written.add(f"http://unflushed-{n}:80")
    for peer in cluster.peers:
        wait_until(lambda: written <= cluster.instance_urls(peer), 10, f"{peer.url} to hold every write")
    for peer in cluster.peers:
        with open(peer.log_path, encoding="utf-8") as log:
            assert "Traceback" not in log.read(), cluster.logs()


def test_concurrent_writes_through_every_peer_are_all_kept(start_cluster):
    cluster = start_cluster()
    bodies = [(cluster.peers[n % 3], {"url": f"http://concurrent-{n}:80", "tags": [f"n{n % 5}"]})
              for n in range(90)]
    with ThreadPoolExecutor(max_workers=18) as pool:
        statuses = list(pool.map(lambda pb: cluster.put_instance(*pb).status_code, bodies))
    assert statuses == [201] * len(bodies)
    expected = {body["url"] for _, body in bodies}
    for peer in cluster.peers:
        wait_until(lambda: expected <= cluster.instance_urls(peer), 15, f"{peer.url} to hold all 90 writes")
    # No follower had to throw away log entries it had already applied (see replica.py).
    for peer in cluster.peers:
        with open(peer.log_path, encoding="utf-8") as log:
            assert "truncating already-applied" not in log.read(), cluster.logs()


def test_node_removal_by_raw_and_encoded_url_over_real_http(start_cluster):
    cluster = start_cluster()
    leader = cluster.leader()
    target = cluster.followers(leader)[0]
    asker = leader

    def listed():
        nodes = cluster.http.post(asker.url + "/registry-svc/nodes", timeout=5).json()["nodes"]
        return target.url in {n["url"] for n in nodes}

    for path in (target.url, quote(target.url, safe="")):
        wait_until(listed, 15, "the target node to be listed")
        # The target's heartbeat would write its record again within a second, perhaps between
        # the removal and the read: it is stopped meanwhile. A heartbeat it sent before stopping
        # reached the leader's socket before the removal left this process, so it commits first.
        os.kill(target.pid, signal.SIGSTOP)
        try:
            response = cluster.http.delete(f"{asker.url}/registry-svc/node/{path}", timeout=15)
            assert response.status_code == 204, (path, response.text)
            assert not listed()
        finally:
            os.kill(target.pid, signal.SIGCONT)
        # The live peer writes its record again on its next heartbeat.
        wait_until(listed, 15, "the live node to report itself again")


def test_headers_at_a_follower(start_cluster):
    cluster = start_cluster()
    leader = cluster.leader()
    follower = cluster.followers(leader)[0]
    written = cluster.put_instance(leader, {"url": "http://header-check:1"})
    write_index = int(written.headers["X-Registry-Index"])
    assert written.status_code == 201 and write_index > 0
    wait_until(lambda: "http://header-check:1" in cluster.instance_urls(follower), 10, "replication")
    response = cluster.get(follower, "/registry-svc/instances")
    assert response.headers["X-Registry-Known-Leader"] == "true"
    assert 0 <= int(response.headers["X-Registry-Last-Contact"]) < 3000
    # The index names the version of the data returned: at least the write it contains.
    assert int(response.headers["X-Registry-Index"]) >= write_index
    view = cluster.view(follower)
    assert view["self"]["state"] == "follower" and view["leader"]["isLeader"] is True
    assert sorted(p["raft"] for p in view["peers"]) == sorted(p.raft for p in cluster.peers)

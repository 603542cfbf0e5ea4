"""Faults a single machine can stage with processes: kill -9 of the leader, restarts."""

import os
import re
import signal

import pytest

from tests.helpers import write_many
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster


def test_kill_the_leader_a_new_one_takes_over_and_nothing_acknowledged_is_lost(start_cluster):
    cluster = start_cluster()
    leader = cluster.leader()
    before = write_many(cluster, cluster.peers, "before", 30)
    assert len(before) == 30

    cluster.local.kill_peer(leader, signal.SIGKILL)
    survivors = cluster.followers(leader)
    new_leader = cluster.leader(among=survivors, timeout=20)
    assert new_leader is not leader

    # Writes go on through both survivors (a write during the election may get a 503).
    after = wait_until(lambda: write_many(cluster, survivors, "after", 20) or None, 20, "writes to resume")
    acknowledged = before | after
    for peer in survivors:
        wait_until(lambda: acknowledged <= cluster.instance_urls(peer), 15, f"{peer.url} to hold every ack")

    # The killed peer comes back and catches up, including what was written while it was down.
    cluster.local.start_peer(leader)
    cluster.local.wait_ready(timeout=60, peers=[leader])
    wait_until(lambda: acknowledged <= cluster.instance_urls(leader), 30, "the restarted peer to catch up")


def test_a_full_cluster_crash_and_restart_brings_every_record_back(start_cluster):
    cluster = start_cluster()
    acknowledged = write_many(cluster, cluster.peers, "durable", 40)
    assert len(acknowledged) == 40
    for peer in cluster.peers:
        cluster.local.kill_peer(peer, signal.SIGKILL)
    for peer in cluster.peers:
        cluster.local.start_peer(peer)
    cluster.local.wait_ready(timeout=60)
    for peer in cluster.peers:
        wait_until(lambda: acknowledged <= cluster.instance_urls(peer), 30, f"{peer.url} to restore every record")


def test_a_lone_survivor_answers_writes_with_503_not_a_hang(start_cluster):
    cluster = start_cluster(serve_args=("--heartbeat", "1", "--write-timeout", "2"))
    survivor = cluster.peers[0]
    for peer in cluster.peers[1:]:
        cluster.local.kill_peer(peer, signal.SIGKILL)
    # Both partners are reaped: no majority exists, so the write must be refused within its deadline.
    response = cluster.put_instance(survivor, {"url": "http://no-quorum:80"})
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"]
    # Reads still answer from the local replica.
    assert cluster.get(survivor, "/registry-svc/instances").status_code == 200
    ready = cluster.get(survivor, "/readyz")
    wait_until(lambda: cluster.get(survivor, "/readyz").status_code == 503, 15, "readyz to report no leader")
    assert ready.status_code in (200, 503)


def test_a_peer_that_missed_a_compacted_log_catches_up_from_the_leaders_dump(start_cluster):
    # Compacting every 20 entries: the writes made while the peer is down leave the log
    # before it returns, so the leader must send its full dump (our JSON serializer's file).
    cluster = start_cluster(serve_args=("--heartbeat", "1", "--compact-after-entries", "20"))
    leader = cluster.leader()
    away = cluster.followers(leader)[0]
    left_at = cluster.view(away)["self"]["appliedIndex"]
    cluster.local.kill_peer(away, signal.SIGKILL)
    present = [p for p in cluster.peers if p is not away]
    acknowledged = set()
    for batch in range(6):
        acknowledged |= write_many(cluster, present, f"compacted-{batch}", 10)
    assert len(acknowledged) == 60
    wait_until(lambda: os.path.exists(os.path.join(leader.data_dir, "raft.dump")), 20, "the leader's dump")
    cluster.local.start_peer(away)
    cluster.local.wait_ready(timeout=60, peers=[away])
    wait_until(lambda: acknowledged <= cluster.instance_urls(away), 30, "the returning peer to hold every write")
    with open(away.log_path, encoding="utf-8") as log:
        loaded = [int(m) for m in re.findall(r"loaded full dump .* at raft index (\d+)", log.read())]
    assert loaded and max(loaded) > left_at, (left_at, loaded)

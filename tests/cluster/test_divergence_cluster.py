"""The corruption check: a replica corrupted on purpose goes not ready, naming the divergence,
within one checkpoint period, while the others stay ready."""

import time

import pytest

from tests.cluster.conftest import SERVE_ARGS
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

CHECKPOINT_SECONDS = 2.0
# A check commits two commands and hashes the state in between: well under a second here.
SLACK_SECONDS = 3.0


def readiness(cluster, peer):
    response = cluster.get(peer, "/readyz", timeout=5)
    return response.status_code, response.text


def test_a_replica_corrupted_on_purpose_is_found_by_the_next_checkpoint(start_cluster, monkeypatch):
    monkeypatch.setenv("REGISTRY_TEST_HOOKS", "1")
    cluster = start_cluster(serve_args=SERVE_ARGS + ("--checkpoint-interval", str(CHECKPOINT_SECONDS)))
    leader = cluster.leader()
    victim, bystander = cluster.followers(leader)
    for n in range(5):
        assert cluster.put_instance(leader, {"url": f"http://127.0.0.1:{9600 + n}", "slug": "checked"}).status_code == 201
    # Equal replicas pass their checks.
    wait_until(lambda: all(cluster.view(p)["self"]["checkpoints"]["verified"] >= 1 for p in cluster.peers),
               4 * CHECKPOINT_SECONDS + SLACK_SECONDS, "every peer to pass a checkpoint")

    corrupted = cluster.http.post(victim.url + "/registry-svc/test-hooks/corrupt-state", timeout=5)
    assert corrupted.status_code == 200 and corrupted.json()["droppedInstance"].startswith("inst_")
    corrupted_at = time.monotonic()
    wait_until(lambda: "replicas diverged" in readiness(cluster, victim)[1], CHECKPOINT_SECONDS + SLACK_SECONDS,
               "the corrupted peer to go not ready, naming the divergence")
    found_after = time.monotonic() - corrupted_at
    status, text = readiness(cluster, victim)
    assert status == 503 and "checkpoint" in text and "digest" in text, text
    view = cluster.view(victim)
    assert view["self"]["divergence"] and "rejoin" in view["self"]["divergence"]
    metrics = cluster.get(victim, "/metrics").text
    assert "registry_diverged 1.0" in metrics
    assert "replicas diverged" in open(victim.log_path, encoding="utf-8").read()
    for healthy in (leader, bystander):
        assert readiness(cluster, healthy)[0] == 200
        assert cluster.view(healthy)["self"]["divergence"] is None
        assert "registry_diverged 0.0" in cluster.get(healthy, "/metrics").text
    print(f"the corruption was found {found_after:.2f} s after it was made")


def test_without_the_variable_the_test_hook_does_not_exist(start_cluster):
    cluster = start_cluster(count=1)
    [peer] = cluster.peers
    assert cluster.http.post(peer.url + "/registry-svc/test-hooks/corrupt-state", timeout=5).status_code == 404

"""Liveness, readiness and the cluster view of one real single-peer cluster."""

import pytest


@pytest.fixture(scope="module")
def peer(real_peer):
    """Readiness and the cluster view as the real peer reports them."""
    return real_peer


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["status"] == "ready"


def test_cluster_view_of_a_single_peer(client, peer):
    view = client.get("/registry-svc/cluster").json
    me = view["self"]
    assert me["url"] == peer.url and me["raft"] == peer.config.raft_address
    assert me["state"] == "leader" and me["isLeader"] is True and me["lastContactMs"] == 0
    assert me["appliedIndex"] >= me["stateDigest"]["index"] > 0
    assert len(me["stateDigest"]["sha256"]) == 64
    assert view["leader"]["raft"] == peer.config.raft_address
    assert [p["raft"] for p in view["peers"]] == [peer.config.raft_address]

"""/registry-svc/cluster/peers on a single real peer: answers that need no second process."""

import pytest

from cluster import membership
from tests.ports import free_port


@pytest.fixture(scope="module")
def peer(real_peer):
    """Membership of a real Raft cluster."""
    return real_peer


def test_members_are_listed_for_users(peer, client_for):
    response = client_for("someone", "user").get("/registry-svc/cluster/peers")
    assert response.status_code == 200
    assert response.json == {"members": [peer.replica.selfNode.id], "leader": peer.replica.selfNode.id}


def test_only_admins_change_membership(client_for):
    user = client_for("someone", "user")
    assert user.post("/registry-svc/cluster/peers", json={"raft": "127.0.0.1:1"}).status_code == 403
    assert user.delete("/registry-svc/cluster/peers/127.0.0.1:1").status_code == 403
    assert client_for().post("/registry-svc/cluster/peers", json={"raft": "127.0.0.1:1"}).status_code == 401


def test_a_bad_address_is_a_400(client):
    response = client.post("/registry-svc/cluster/peers", json={"raft": "no-port"})
    assert response.status_code == 400
    assert "host:port" in response.json["error"]
    assert client.post("/registry-svc/cluster/peers", data="{", content_type="application/json").status_code == 400


def test_adding_a_peer_nobody_runs_is_refused_and_changes_nothing(peer, client):
    address = f"127.0.0.1:{free_port()}"
    response = client.post("/registry-svc/cluster/peers", json={"raft": address})
    assert response.status_code == 409
    assert "start the new peer with --join" in response.json["error"]
    assert peer.replica.members == [peer.replica.selfNode.id]


def test_adding_a_member_again_is_a_no_op(peer, client):
    response = client.post("/registry-svc/cluster/peers", json={"raft": peer.replica.selfNode.id})
    assert response.status_code == 200
    assert response.json["added"] is False
    assert response.json["members"] == [peer.replica.selfNode.id]


def test_removing_a_stranger_is_a_404_and_the_last_member_a_409(peer, client):
    response = client.delete("/registry-svc/cluster/peers/127.0.0.1:1")
    assert response.status_code == 404
    assert "not a member" in response.json["error"]
    response = client.delete(f"/registry-svc/cluster/peers/{peer.replica.selfNode.id}")
    assert response.status_code == 409
    assert peer.replica.members == [peer.replica.selfNode.id]


def test_the_members_file_follows_the_replica(peer):
    assert membership.read(peer.config.data_dir) == [peer.replica.selfNode.id]

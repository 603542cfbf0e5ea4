"""Permissions on a real 3-peer cluster: every endpoint × every kind of caller, at the leader and
at a follower; ownership under a race; and the Raft port refusing what the secret did not sign."""

import os
import pickle
import socket
import struct
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from api import tokens
from registry.permissions import default_permits
from tests.cluster.conftest import running_cluster
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

IDENTITIES = ("no token", "bad signature", "expired", "user a", "user b", "proxy-svc", "deploy-svc", "admin")
UNAUTHENTICATED = {"no token", "bad signature", "expired"}


def headers_for(cluster, identity):
    if identity == "no token":
        return {}
    if identity == "bad signature":
        token = tokens.mint(tokens.signing_key("some other cluster's secret"), "admin", ["admin"], 3600)
    elif identity == "expired":
        token = cluster.token("admin", "admin", ttl=-60)
    else:
        slug, roles = {
            "user a": ("team-a", ["user"]), "user b": ("team-b", ["user"]), "proxy-svc": ("proxy-svc", ["user"]),
            "deploy-svc": ("deploy-svc", ["user"]), "admin": ("admin", ["admin"]),
        }[identity]
        token = cluster.token(slug, *roles)
    return {"Authorization": f"Bearer {token}"}


# endpoint -> {identity: status} for the authenticated identities.
EXPECTED = {
    "register instance": {"user a": 201, "user b": 201, "proxy-svc": 201, "deploy-svc": 201, "admin": 201},
    "list instances": dict.fromkeys(IDENTITIES[3:], 200),
    "remove team-a's instance": {"user a": 403, "user b": 403, "proxy-svc": 403, "deploy-svc": 204, "admin": 204},
    "self node": dict.fromkeys(IDENTITIES[3:], 200),
    "list nodes": dict.fromkeys(IDENTITIES[3:], 200),
    "remove a node": {"user a": 403, "user b": 403, "proxy-svc": 403, "deploy-svc": 403, "admin": 404},
    "cluster": dict.fromkeys(IDENTITIES[3:], 200),
    "list permits": {"user a": 403, "user b": 403, "proxy-svc": 403, "deploy-svc": 403, "admin": 200},
    "change permits": {"user a": 403, "user b": 403, "proxy-svc": 403, "deploy-svc": 403, "admin": 200},
}


def call(cluster, peer, endpoint, headers):
    url = peer.url
    if endpoint == "register instance":
        return requests.put(f"{url}/registry-svc/instance", json={"url": f"http://m-{uuid.uuid4().hex[:8]}:1"},
                            headers=headers, timeout=15)
    if endpoint == "list instances":
        return requests.get(f"{url}/registry-svc/instances", headers=headers, timeout=15)
    if endpoint == "remove team-a's instance":
        victim = f"inst_matrix_{uuid.uuid4().hex[:8]}"
        created = cluster.http.put(f"{url}/registry-svc/instance", timeout=15,
                                   json={"id": victim, "url": f"http://{victim}:1", "slug": "team-a"})
        assert created.status_code == 201, created.text
        return requests.delete(f"{url}/registry-svc/instance/{victim}", headers=headers, timeout=15)
    if endpoint == "self node":
        return requests.get(f"{url}/registry-svc/node/self", headers=headers, timeout=15)
    if endpoint == "list nodes":
        return requests.post(f"{url}/registry-svc/nodes", headers=headers, timeout=15)
    if endpoint == "remove a node":
        return requests.delete(f"{url}/registry-svc/node/http://no-such-node:1", headers=headers, timeout=15)
    if endpoint == "cluster":
        return requests.get(f"{url}/registry-svc/cluster", headers=headers, timeout=15)
    if endpoint == "list permits":
        return requests.get(f"{url}/registry-svc/permits", headers=headers, timeout=15)
    if endpoint == "change permits":
        return requests.put(f"{url}/registry-svc/permits", json={"permits": default_permits()}, headers=headers,
                            timeout=15)
    raise AssertionError(endpoint)


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("perm")) as cluster:
        yield cluster


def test_every_endpoint_for_every_caller_at_leader_and_follower(shared_cluster):
    cluster = shared_cluster
    leader = cluster.leader()
    follower = cluster.followers(leader)[0]
    wrong = []
    for peer, role in ((leader, "leader"), (follower, "follower")):
        for identity in IDENTITIES:
            headers = headers_for(cluster, identity)
            for endpoint, expected in EXPECTED.items():
                want = 401 if identity in UNAUTHENTICATED else expected[identity]
                response = call(cluster, peer, endpoint, headers)
                if response.status_code != want:
                    wrong.append(f"{endpoint} as {identity} at the {role}: {response.status_code} "
                                 f"(wanted {want}) {response.text[:200]}")
                elif want in (401, 403):
                    error = response.json()["error"]
                    assert error and (want == 401 or "missing permission" in error or "belongs to" in error), error
    assert not wrong, "\n".join(wrong)


def test_non_admins_list_only_their_own_and_cannot_take_over(shared_cluster):
    cluster = shared_cluster
    peer = cluster.peers[1]
    as_a, as_b = headers_for(cluster, "user a"), headers_for(cluster, "user b")
    url = f"http://owned-by-a-{uuid.uuid4().hex[:6]}:1"
    assert requests.put(f"{peer.url}/registry-svc/instance", json={"url": url}, headers=as_a, timeout=15).status_code == 201
    taken = requests.put(f"{peer.url}/registry-svc/instance", json={"url": url, "status": "Error"}, headers=as_b,
                         timeout=15)
    assert taken.status_code == 403
    [record] = [r for r in requests.get(f"{peer.url}/registry-svc/instances", headers=as_a, timeout=15)
                .json()["instances"] if r["url"] == url]
    assert record["id"] in taken.json()["error"] and "DELETE /registry-svc/instance/" in taken.json()["error"]
    assert record["slug"] == "team-a" and record["status"] == "Unknown"
    for identity, sees_all in (("user a", False), ("user b", False), ("proxy-svc", True), ("deploy-svc", True)):
        listed = requests.get(f"{peer.url}/registry-svc/instances", headers=headers_for(cluster, identity),
                              timeout=15).json()["instances"]
        slugs = {r.get("slug") for r in listed}
        own = {"user a": "team-a", "user b": "team-b"}.get(identity)
        assert (len(slugs) > 1) if sees_all else (slugs <= {own}), (identity, slugs)


def test_a_permit_change_takes_effect_on_every_peer(shared_cluster):
    cluster = shared_cluster
    as_b = headers_for(cluster, "user b")
    grant = default_permits() + [{"slug": "team-b", "permissions": ["registry-svc:permit:view"]}]
    try:
        changed = cluster.http.put(f"{cluster.peers[0].url}/registry-svc/permits", json={"permits": grant},
                                   timeout=15)
        assert changed.status_code == 200, changed.text
        for peer in cluster.peers:
            wait_until(lambda: requests.get(f"{peer.url}/registry-svc/permits", headers=as_b, timeout=5)
                       .status_code == 200, 10, f"{peer.url} to apply the new permit")
    finally:
        cluster.http.put(f"{cluster.peers[0].url}/registry-svc/permits", json={"permits": default_permits()},
                         timeout=15)


def test_two_slugs_racing_for_one_url_through_different_peers(shared_cluster):
    cluster = shared_cluster
    contenders = [("user a", cluster.peers[0]), ("user b", cluster.peers[1])]
    for round_number in range(8):
        url = f"http://contested-{round_number}-{uuid.uuid4().hex[:6]}:1"

        def register(contender):
            identity, peer = contender
            return requests.put(f"{peer.url}/registry-svc/instance", json={"url": url},
                                headers=headers_for(cluster, identity), timeout=15).status_code

        with ThreadPoolExecutor(max_workers=2) as pool:
            statuses = list(pool.map(register, contenders))
        assert sorted(statuses) == [201, 403], statuses
        winner = "team-a" if statuses[0] == 201 else "team-b"

        def owners():
            found = set()
            for peer in cluster.peers:
                records = cluster.get(peer, "/registry-svc/instances").json()["instances"]
                found.add(tuple(r["slug"] for r in records if r["url"] == url))
            return found

        wait_until(lambda: owners() == {(winner,)}, 10, "every peer to agree on one owner")


def test_the_raft_port_ignores_what_the_secret_did_not_sign(shared_cluster, tmp_path):
    cluster = shared_cluster
    target = cluster.peers[0]
    marker = tmp_path / "unpickled"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    before = cluster.instance_urls(target)
    payload = zlib.compress(pickle.dumps(Exploit()))
    host, port = target.raft.rsplit(":", 1)
    for message in (
        struct.pack("i", len(payload)) + payload,  # a framed pickle, as PySyncObj frames them
        payload,  # the same, unframed
        struct.pack("i", 2**31 - 1) + b"x" * 1024,  # a frame claiming 2 GiB
        os.urandom(4096),
    ):
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            raw.sendall(message)
            raw.settimeout(2)
            try:
                raw.recv(1024)
            except (socket.timeout, ConnectionResetError):
                pass
    assert not marker.exists(), "a pickle from an unauthenticated connection was executed"
    # The peer keeps serving and replicating; nothing changed in its instances.
    assert cluster.instance_urls(target) == before
    written = cluster.put_instance(target, {"url": "http://after-raft-probe:1"})
    assert written.status_code == 201
    wait_until(lambda: "http://after-raft-probe:1" in cluster.instance_urls(cluster.peers[2]), 10, "replication")


def test_nothing_secret_leaks(shared_cluster):
    cluster = shared_cluster
    secret = cluster.local.prepare_secret()
    admin_token = cluster.local.admin_token
    user_token = headers_for(cluster, "user a")["Authorization"].split()[1]
    peer = cluster.peers[0]
    # Make every kind of answer once with tokens in play: good, refused, bad input, unknown route.
    for headers in ({"Authorization": f"Bearer {user_token}"}, {"Authorization": f"Bearer {admin_token}x"}):
        requests.get(f"{peer.url}/registry-svc/permits", headers=headers, timeout=5)
        requests.put(f"{peer.url}/registry-svc/instance", data=b"{bad", headers=headers, timeout=5)
        requests.get(f"{peer.url}/registry-svc/nope", headers=headers, timeout=5)
    exposed = [
        cluster.get(peer, "/registry-svc/cluster").text,
        cluster.http.post(f"{peer.url}/registry-svc/nodes", timeout=5).text,
        cluster.get(peer, "/registry-svc/node/self").text,
        requests.get(f"{peer.url}/registry-svc/permits", headers={"Authorization": f"Bearer {admin_token}x"},
                     timeout=5).text,
    ]
    for p in cluster.peers:
        with open(p.log_path, encoding="utf-8") as log:
            exposed.append(log.read())
    for text in exposed:
        for value in (secret, admin_token, user_token):
            assert value not in text

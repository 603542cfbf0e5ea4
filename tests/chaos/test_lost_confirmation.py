"""A removal committed by the majority whose confirmation never reached the peer that took it,
then the leader killed: the peer re-submits it and answers as the first attempt (204, not 404).

The leader's namespace gets a blackhole route to that follower: the follower's forwarded command
still reaches the leader, which commits it with the other follower, but nothing the leader sends
(the command's index, the commit, heartbeats) reaches the follower any more."""

import pytest
import requests

from api.local_clusters import netns
from tests.waiting import wait_until

pytestmark = pytest.mark.chaos

# Room for the elections the cut-off follower keeps starting, and the one after the kill.
WRITE_TIMEOUT_SECONDS = 8.0
SERVE_ARGS = ("--heartbeat", "1", "--write-timeout", str(WRITE_TIMEOUT_SECONDS), "--scan-interval", "3600")


def listed_ids(cluster, peer):
    answer = cluster.http(peer).call("GET", "/registry-svc/instances", params={"slug": "confirmed"})
    assert answer.status_code == 200, answer.text
    return [record["id"] for record in answer.json()["instances"]]


def resubmissions(cluster, peer):
    text = cluster.http(peer).call("GET", "/metrics").text
    return float(next(line.split()[-1] for line in text.splitlines()
                      if line.startswith("registry_write_resubmissions_total ")))


@pytest.mark.timeout(120)
def test_a_removal_whose_confirmation_was_lost_with_the_leader_answers_204(chaos_cluster):
    cluster = chaos_cluster(serve_args=SERVE_ARGS)
    leader = cluster.leader()
    follower, other = [p for p in cluster.peers if p is not leader]
    registered = cluster.http(leader).call("PUT", "/registry-svc/instance", json={
        "id": "inst_confirmed", "slug": "confirmed", "url": f"http://{follower.address}:9501"})
    assert registered.status_code == 201, registered.text
    wait_until(lambda: all(listed_ids(cluster, p) == ["inst_confirmed"] for p in cluster.peers), 20,
               "every peer to hold the instance")

    netns.ip("-n", leader.namespace, "route", "add", "blackhole", f"{follower.address}/32")
    removal = cluster.http(follower).submit("DELETE", "/registry-svc/instance/inst_confirmed",
                                            timeout=WRITE_TIMEOUT_SECONDS + 10)
    wait_until(lambda: listed_ids(cluster, other) == [], 10, "the majority to commit and apply the removal")
    assert not removal.done(), f"answered before its confirmation could arrive: {removal.result().status_code}"

    cluster.kill(leader)
    answer = removal.result(timeout=WRITE_TIMEOUT_SECONDS + 15)
    assert isinstance(answer, requests.Response)
    assert answer.status_code == 204, f"{answer.status_code} {answer.text}"
    assert listed_ids(cluster, follower) == []  # it answers once its own replica applied the removal
    assert resubmissions(cluster, follower) >= 1

"""Readiness under writes: a follower that applies every entry as it is committed stays ready.

A follower hears a commit index one tick before it applies the entries it covers, so a probe
can always land in between; reporting that instant as "behind" would take healthy peers out of
a load balancer's rotation under every write load."""

import threading

import pytest

from tests.cluster.conftest import SERVE_ARGS

pytestmark = pytest.mark.cluster

WRITES = 400


def test_followers_under_a_steady_write_load_stay_ready(start_cluster):
    cluster = start_cluster(serve_args=SERVE_ARGS)
    leader = cluster.leader()
    followers = cluster.followers(leader)
    failures, done = [], threading.Event()

    def write():
        try:
            for n in range(WRITES):
                response = cluster.put_instance(leader, {"url": f"http://127.0.0.1:{20000 + n}", "slug": "steady"})
                if response.status_code != 201:
                    failures.append(response.text)
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    probes, not_ready = 0, []
    try:
        while not done.is_set():
            for follower in followers:
                response = cluster.get(follower, "/readyz", timeout=5)
                probes += 1
                if response.status_code != 200:
                    not_ready.append(response.text)
    finally:
        writer.join()
    assert not failures, failures[:3]
    assert probes >= WRITES // 4, f"only {probes} probes during {WRITES} writes"
    assert not not_ready, f"{len(not_ready)} of {probes} probes were not ready, e.g. {not_ready[:3]}"

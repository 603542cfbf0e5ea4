import contextlib

import pytest
import requests

from api import tokens
from api.local_clusters.loopback import LocalCluster, LocalPeer, tail
from tests.helpers import with_test_workers
from tests.ports import free_port
from tests.waiting import wait_until

# Scans are off (hourly) unless a test asks for them: fake hosts would turn Unreachable mid-test.
SERVE_ARGS = ("--heartbeat", "1", "--write-timeout", "5", "--scan-interval", "3600")


def make_cluster(directory, count=3, serve_args=SERVE_ARGS):
    peers = [LocalPeer(i + 1, "127.0.0.1", free_port(), free_port(), str(directory / f"peer-{i + 1}"))
             for i in range(count)]
    return LocalCluster(str(directory), peers, with_test_workers(serve_args))


class RunningCluster:
    """A LocalCluster as tests use it: the same processes `registry cluster up` runs."""

    def __init__(self, local):
        self.local = local
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {local.admin_token}"

    def token(self, slug, *roles, ttl=3600):
        return tokens.mint(tokens.signing_key(self.local.prepare_secret()), slug, roles, ttl)

    @property
    def peers(self):
        return self.local.peers

    def get(self, peer, path, timeout=10, **kwargs):
        return self.http.get(peer.url + path, timeout=timeout, **kwargs)

    def put_instance(self, peer, body):
        return self.http.put(peer.url + "/registry-svc/instance", json=body, timeout=15)

    def instance_urls(self, peer):
        response = self.get(peer, "/registry-svc/instances")
        assert response.status_code == 200, response.text
        return {record["url"] for record in response.json()["instances"]}

    def view(self, peer):
        try:
            response = self.get(peer, "/registry-svc/cluster", timeout=2)
        except requests.RequestException:
            return None
        return response.json() if response.status_code == 200 else None

    def leader(self, among=None, timeout=30):
        """The peer every live peer in `among` agrees is the leader."""
        among = [p for p in (among or self.peers) if self.local.is_running(p)]

        def agreed():
            views = [self.view(p) for p in among]
            if any(v is None or v["leader"] is None for v in views):
                return None
            leaders = {v["leader"]["raft"] for v in views}
            if len(leaders) != 1:
                return None
            raft = leaders.pop()
            return next((p for p in among if p.raft == raft), None)

        return wait_until(agreed, timeout, "the peers to agree on a leader")

    def followers(self, leader):
        return [p for p in self.peers if p is not leader and self.local.is_running(p)]

    def logs(self):
        return "\n".join(f"--- {p.log_path}\n{tail(p.log_path, 40)}" for p in self.peers)


def start_ready(local):
    """Start a made cluster with an admin token and wait until every peer is ready."""
    local.admin_token = tokens.mint(tokens.signing_key(local.prepare_secret()), "admin", ["admin"], 3600)
    local.start()
    local.wait_ready(timeout=60)
    return RunningCluster(local)


@contextlib.contextmanager
def running_cluster(directory, count=3, serve_args=SERVE_ARGS):
    """A started cluster for a `with` block (module fixtures); its processes are stopped by pid
    afterwards, pass or fail."""
    local = make_cluster(directory, count, serve_args)
    try:
        yield start_ready(local)
    finally:
        local.stop()


@pytest.fixture
def start_cluster(tmp_path):
    """Start clusters for one test; every process is stopped by pid afterwards, pass or fail."""
    started = []

    def start(count=3, serve_args=SERVE_ARGS):
        local = make_cluster(tmp_path / f"cluster-{len(started)}", count, serve_args)
        started.append(local)
        return start_ready(local)

    yield start
    for local in started:
        local.stop()

import pytest

from api import tokens
from api.app import create_app
from cluster.config import PeerConfig
from cluster.peer import Peer
from tests.fake_peer import FakePeer
from tests.ports import free_port
from tests.waiting import wait_until

MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def peer(tmp_path_factory):
    """A peer without Raft (tests/fake_peer.py) behind the HTTP layer: for the tests about HTTP
    (status codes, validation, headers, auth, the hot path). A module about the real peer
    overrides this with `real_peer`."""
    fake = FakePeer(heartbeat_seconds=3600, scan_interval_seconds=3600, max_body_bytes=MAX_BODY,
                    data_dir=str(tmp_path_factory.mktemp("fake-peer")))
    fake.report_self()
    return fake


@pytest.fixture(scope="module")
def real_peer(tmp_path_factory):
    """One real single-peer cluster in this process: real PySyncObj, real files."""
    config = PeerConfig(
        raft_address=f"127.0.0.1:{free_port()}",
        http_address=f"127.0.0.1:{free_port()}",
        data_dir=str(tmp_path_factory.mktemp("peer")),
        heartbeat_seconds=3600,
        scan_interval_seconds=3600,
        max_body_bytes=MAX_BODY,
    )
    peer = Peer(config).start()
    try:
        wait_until(lambda: peer.node(peer.url)[1] is not None, 30, "the peer's own node record")
        yield peer
    finally:
        peer.stop()


@pytest.fixture(scope="module")
def mint(peer):
    """mint(slug, *roles, ttl=3600) -> a token this peer accepts."""
    key = tokens.signing_key(peer.cluster_secret)
    return lambda slug, *roles, ttl=3600: tokens.mint(key, slug, roles, ttl)


@pytest.fixture(scope="module")
def app(peer):
    return create_app(peer)


@pytest.fixture
def client_for(app, mint):
    """A test client that sends a bearer token for `slug` with `roles`; no slug sends none."""
    def make(slug=None, *roles):
        client = app.test_client()
        if slug is not None:
            client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {mint(slug, *roles)}"
        return client
    return make


@pytest.fixture
def client(client_for):
    """An admin's client."""
    return client_for("admin", "admin")

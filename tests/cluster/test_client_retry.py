"""The Python client (and so `oo`) retries a peer's 503 with Retry-After at the other peers.

Two real clusters share one secret, so one token is good at both: a 3-peer cluster left with a
single peer (it knows no leader, so it answers writes 503 with Retry-After once its deadline
passes) and a healthy single-peer cluster."""

import shutil
import signal
import time

import pytest
import requests

from api.client import ApiError, RegistryClient
from tests.cluster.conftest import make_cluster, start_ready
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

WRITE_TIMEOUT_SECONDS = 1.0
ARGS = ("--heartbeat", "1", "--write-timeout", str(WRITE_TIMEOUT_SECONDS), "--scan-interval", "3600")


@pytest.fixture(scope="module")
def stranded_and_healthy(tmp_path_factory):
    """(the URL of a peer whose partners are dead, the URL of a healthy peer, an admin token for both)."""
    root = tmp_path_factory.mktemp("client-retry")
    stranded, healthy = make_cluster(root / "stranded", 3, ARGS), make_cluster(root / "healthy", 1, ARGS)
    try:
        stranded_cluster = start_ready(stranded)
        healthy.prepare_secret()
        shutil.copyfile(stranded.secret_path, healthy.secret_path)
        start_ready(healthy)
        survivor, *partners = stranded.peers
        for partner in partners:
            stranded.kill_peer(partner, signal.SIGKILL)
        wait_until(lambda: "knows no leader" in requests.get(survivor.url + "/readyz", timeout=5).text, 30,
                   "the stranded peer to know it has no leader")
        yield survivor.url, healthy.peers[0].url, stranded_cluster.local.admin_token
    finally:
        stranded.stop()
        healthy.stop()


def test_a_write_answered_503_at_one_peer_is_retried_at_the_next(stranded_and_healthy):
    stranded, healthy, token = stranded_and_healthy
    failovers = []
    client = RegistryClient([stranded, healthy], token, on_failover=lambda *args: failovers.append(args))
    client.register_instance({"url": "http://127.0.0.1:9401", "slug": "retried"})
    assert [r["url"] for r in client.list_instances(slug="retried")] == ["http://127.0.0.1:9401"]
    assert client.last_response.url.startswith(healthy)
    [(failed, reason, next_url)] = failovers[:1]
    assert failed == stranded and next_url == healthy and reason.startswith("unavailable for now")


def test_a_peer_that_stays_unavailable_is_retried_after_retry_after_then_its_503_is_raised(stranded_and_healthy):
    stranded, _, token = stranded_and_healthy
    client = RegistryClient([stranded], token, unavailable_retry_seconds=2.5)
    started = time.monotonic()
    with pytest.raises(ApiError) as caught:
        client.remove_instance("inst_absent")
    elapsed = time.monotonic() - started
    assert caught.value.status == 503 and caught.value.retry_after == "1"
    assert "no leader is known" in caught.value.message and "not applied" in caught.value.message
    # At least two attempts, a Retry-After pause between them, and no more than the retry window
    # plus one attempt's deadline.
    assert 2 * WRITE_TIMEOUT_SECONDS + 1 <= elapsed < 2.5 + WRITE_TIMEOUT_SECONDS + 2


def test_readiness_is_the_answering_peers_own_and_is_not_retried(stranded_and_healthy):
    stranded, healthy, token = stranded_and_healthy
    with pytest.raises(ApiError) as caught:
        RegistryClient([stranded, healthy], token).readyz()
    assert caught.value.status == 503

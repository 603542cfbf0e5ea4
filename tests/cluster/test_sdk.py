"""The service SDK against a real 3-peer cluster: the README's two examples as they stand, the
resolver following changes through its watch, and self-registration riding out a dead registry."""

import logging
import os
import pathlib
import re
import signal
import subprocess
import sys

import pytest

from api.client import ApiError, RegistryClient
from api.resolver import NoInstances, Resolver
from api.self_registration import SelfRegistration
from tests.cluster.conftest import SERVE_ARGS, running_cluster
from tests.ports import free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"
ROOT = README.parent


def readme_example(title):
    """The README's python block whose first line is `# example: <title>`."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    found = [block for block in blocks if block.startswith(f"# example: {title}\n")]
    assert len(found) == 1, f"README has {len(found)} examples titled {title!r}"
    return found[0]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # Scans every second, so that a ttl passing turns an instance Unreachable within the test.
    args = SERVE_ARGS + ("--scan-interval", "1")
    with running_cluster(tmp_path_factory.mktemp("sdk"), serve_args=args) as cluster:
        yield cluster


@pytest.fixture
def client(cluster):
    return RegistryClient([peer.url for peer in cluster.peers], cluster.local.admin_token)


def urls_of(client, slug):
    return sorted(instance["url"] for instance in client.list_instances(slug=slug))


def run_example(title, env, **popen):
    return subprocess.Popen([sys.executable, "-c", readme_example(title)], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def test_the_readme_examples_register_resolve_and_deregister(cluster, client):
    port = free_port()
    env = dict(os.environ, OO_URL=",".join(peer.url for peer in cluster.peers), OO_TOKEN=cluster.local.admin_token,
               PORT=str(port))
    service = run_example("a service that registers itself", env)
    try:
        wait_until(lambda: urls_of(client, "orders") == [f"http://127.0.0.1:{port}"], 20, "the service's registration")
        caller = run_example("a caller that finds it", env)
        out, err = caller.communicate(timeout=60)
        assert caller.returncode == 0, err
        assert out == "orders here\n"
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=30) == 0, service.stderr.read()
    finally:
        if service.poll() is None:
            service.kill()
            service.wait(timeout=10)
    # Deregistered on the way out (the ttl would take 15 s more).
    assert urls_of(client, "orders") == []
    caller = run_example("a caller that finds it", env)
    _, err = caller.communicate(timeout=60)
    assert caller.returncode != 0 and "NoInstances: no instance of slug 'orders' is registered" in err


def test_a_resolver_follows_each_change_through_its_watch(client):
    def register(name, **fields):
        client.register_instance({"id": name, "url": f"http://127.0.0.1:{free_port()}", "slug": "watched",
                                  "ttl": "1h", **fields})
        return next(i["url"] for i in client.list_instances(id=name))

    first = register("watched-1")
    second = register("watched-2")
    with Resolver(client, wait_seconds=60) as resolver:  # a minute's wait: only a change wakes it sooner
        # Neither is Healthy yet (no heartbeat): every instance is a candidate.
        assert sorted(resolver.resolve_all("watched")) == sorted([first, second])
        client.renew_instance("watched-1")  # Healthy now: only it is picked
        wait_until(lambda: resolver.resolve_all("watched") == [first], 10, "the watch to see the heartbeat")
        assert {resolver.resolve("watched") for _ in range(20)} == {first}
        client.renew_instance("watched-2")
        wait_until(lambda: sorted(resolver.resolve_all("watched")) == sorted([first, second]), 10, "both Healthy")
        client.remove_instance("watched-1")
        wait_until(lambda: resolver.resolve_all("watched") == [second], 10, "the removal")
        with pytest.raises(NoInstances, match="no instance of slug 'nobody' with tags prod is registered"):
            resolver.resolve("nobody", tags=["prod"])
    client.remove_instance("watched-2")


def test_an_instance_whose_heartbeats_stop_is_dropped_once_its_ttl_passes(client):
    alive = SelfRegistration(client, id="ttl-alive", url=f"http://127.0.0.1:{free_port()}", slug="ttl", ttl_seconds=30)
    dying = SelfRegistration(client, id="ttl-dying", url=f"http://127.0.0.1:{free_port()}", slug="ttl", ttl_seconds=2)
    with alive, Resolver(client, wait_seconds=60) as resolver:
        dying.start()
        for instance_id in ("ttl-alive", "ttl-dying"):
            client.renew_instance(instance_id)  # Healthy at once, not only at the first heartbeat
        wait_until(lambda: len(resolver.resolve_all("ttl")) == 2, 10, "both instances Healthy")
        dying.stop(deregister=False)  # as if it crashed: no more heartbeats, no removal
        alive_url = [r["url"] for r in client.list_instances(id="ttl-alive")]
        wait_until(lambda: resolver.resolve_all("ttl") == alive_url, 20, "the ttl to pass and a scan to see it")
        assert client.list_instances(id="ttl-dying")[0]["status"] == "Unreachable"
    assert [r["id"] for r in client.list_instances(slug="ttl")] == ["ttl-dying"]  # alive deregistered
    client.remove_instance("ttl-dying")


def test_self_registration_rides_out_a_dead_registry_and_says_so(caplog):
    dead = RegistryClient([f"http://127.0.0.1:{free_port()}"], "token", connect_timeout=0.5, read_timeout=0.5)
    registration = SelfRegistration(dead, id="lonely", url="http://127.0.0.1:9", ttl_seconds=1)
    with caplog.at_level(logging.WARNING, logger="api.self_registration"):
        with registration:  # no exception: the service goes on
            wait_until(lambda: registration.failures >= 3, 30, "three retries")
            assert not registration.registered.is_set() and registration._thread.is_alive()
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0].startswith("registering lonely: no peer answered")
    assert any(m.startswith("heartbeat of lonely failed") and "next try in" in m for m in messages)
    assert messages[-1].startswith("deregistering lonely: no peer answered")


def test_a_refused_registration_raises_at_start(client):
    with pytest.raises(ApiError) as refused:
        SelfRegistration(client, id="bad id!", url="http://127.0.0.1:9").start()
    assert refused.value.status == 400 and "field 'id' may hold letters" in refused.value.message

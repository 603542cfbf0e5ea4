"""The real `oo` against a real local 3-peer cluster of separate `registry serve` processes."""

import http.server
import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from api.client import ApiError, NoPeerAnswered, RegistryClient
from tests.cluster.conftest import SERVE_ARGS, running_cluster
from tests.ports import free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

TOKEN_HINT = "; set a token with `oo token set TOKEN` (or --token, OO_TOKEN)"
TABLE_HEADER = ["INSTANCE", "ID", "URL", "STATUS", "OWNER", "SLUG", "TAGS", "LAST", "HEARTBEAT"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # The health scanner would turn the made-up instance URLs Unreachable mid-test; keep it idle.
    with running_cluster(tmp_path_factory.mktemp("oo-cluster"),
                         serve_args=SERVE_ARGS + ("--scan-interval", "600")) as cluster:
        yield cluster


@pytest.fixture
def peer_urls(cluster):
    return [peer.url for peer in cluster.peers]


@pytest.fixture
def admin_env(oo, cluster, peer_urls):
    """An `oo` environment with every peer and the admin token, made with oo itself."""
    assert oo("env", "add", "test", *peer_urls).exit_code == 0
    assert oo("token", "set", cluster.local.admin_token).exit_code == 0


@pytest.fixture
def dead_url():
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def bad_gateway_url():
    """What a reverse proxy answers for a peer that is down: 502 without the registry's headers."""
    class BadGateway(http.server.BaseHTTPRequestHandler):
        def answer(self):
            body = b"<html><body>502 Bad Gateway</body></html>"
            self.send_response(502)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_DELETE = answer

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), BadGateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def listed_ids(oo, *args):
    result = oo(*args, "-o", "json")
    assert result.exit_code == 0, result.stderr
    return sorted(record["id"] for record in json.loads(result.stdout))


def ok(result):
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


# -- instances ----------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["instances", "list"], ["instances", "ls"], ["i", "ls"], ["i", "list"]])
def test_put_then_list_instances_with_every_alias(oo, admin_env, command):
    put = oo("put", "/registry-svc/instance", "--id=inst_alias", "--url=http://alias-svc:8080", "--slug=alias-svc",
             "--status=Healthy", '--tags=["dev"]')
    assert json.loads(ok(put)) == {}
    lines = ok(oo(*command, "--slug", "alias-svc")).splitlines()
    assert lines[0].split() == TABLE_HEADER
    assert len(lines) == 2
    row = lines[1].split()
    assert row[:5] == ["inst_alias", "http://alias-svc:8080", "Healthy", "alias-svc", "dev"]
    assert row[5].endswith("s") and row[6] == "ago"


@pytest.fixture
def filter_instances(cluster, peer_urls):
    client = RegistryClient(peer_urls, cluster.local.admin_token)
    client.register_instance({"id": "inst_fa", "scheme": "http", "host": "fa.local", "port": 8080, "path": "/api",
                              "slug": "filt", "status": "Healthy", "tags": ["x", "y"],
                              "nodeUrl": "http://node-a:11337", "deploymentId": "dep_a"})
    client.register_instance({"id": "inst_fb", "scheme": "https", "ip": "127.10.0.2", "port": 443, "slug": "filt",
                              "status": "Degraded", "tags": ["x"], "nodeUrl": "http://node-b:11337",
                              "deploymentId": "dep_b"})


@pytest.mark.parametrize("flags, expected", [
    ([], ["inst_fa", "inst_fb"]),
    (["--id", "inst_fa"], ["inst_fa"]),
    (["--host", "fa.local"], ["inst_fa"]),
    (["--ip", "127.10.0.2"], ["inst_fb"]),
    (["--scheme", "https"], ["inst_fb"]),
    (["--path", "/api"], ["inst_fa"]),
    (["--deployment-id", "dep_b"], ["inst_fb"]),
    (["--node-url", "http://node-a:11337"], ["inst_fa"]),
    (["--status", "degraded"], ["inst_fb"]),
    (["--tag", "x"], ["inst_fa", "inst_fb"]),
    (["--tag", "x", "--tag", "y"], ["inst_fa"]),
    (["--status", "Healthy", "--scheme", "https"], []),
])
def test_every_instance_filter(oo, admin_env, filter_instances, flags, expected):
    assert listed_ids(oo, "i", "ls", "--slug", "filt", *flags) == expected


@pytest.mark.parametrize("command", [["instances", "remove"], ["instances", "rm"], ["i", "rm"]])
def test_remove_instances_with_every_alias(oo, admin_env, command):
    instance_id = f"inst_rm_{command[-1]}_{command[0]}"
    ok(oo("put", "/registry-svc/instance", f"--id={instance_id}", f"--url=http://{instance_id}:1", "--slug=rm"))
    assert ok(oo(*command, instance_id)) == f"removed instance {instance_id}\n"
    assert instance_id not in listed_ids(oo, "i", "ls", "--slug", "rm")
    again = oo(*command, instance_id)
    assert again.exit_code == 1
    assert again.stderr == (f"oo: 404 Not Found: Service Not Found (no instance has id {instance_id}; "
                            f"`oo i ls` lists them)\n")


# -- nodes --------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["nodes", "list"], ["nodes", "ls"], ["n", "ls"], ["n", "list"]])
def test_list_nodes_with_every_alias(oo, admin_env, peer_urls, command):
    records = wait_until(lambda: len(json.loads(ok(oo(*command, "-o", "json")))) == 3
                         and json.loads(ok(oo(*command, "-o", "json"))), 15, "all three node records")
    assert sorted(record["url"] for record in records) == sorted(peer_urls)
    lines = ok(oo(*command)).splitlines()
    assert lines[0].split() == ["NODE", "ID", "URL", "STATUS", "CPU", "MEM", "DISK", "GPUS", "LAST", "HEARTBEAT"]
    rows = {line.split()[1]: line for line in lines[1:]}
    assert sorted(rows) == sorted(peer_urls)
    for line in rows.values():
        assert " Healthy " in line and " ago" in line and "% of " in line
    one = records[0]
    assert listed_ids(oo, *command, "--id", one["id"]) == [one["id"]]


@pytest.mark.parametrize("command", [["nodes", "delete"], ["nodes", "rm"], ["n", "rm"]])
def test_delete_nodes_with_every_alias(oo, admin_env, peer_urls, command):
    url = peer_urls[2]

    def node_present():
        return url in [record["url"] for record in json.loads(ok(oo("n", "ls", "-o", "json")))]

    wait_until(node_present, 15, f"the node record of {url}")
    assert ok(oo(*command, url)) == f"deleted node {url}\n"
    missing = oo(*command, "http://nowhere.example:1")
    assert missing.exit_code == 1
    assert missing.stderr == ("oo: 404 Not Found: Node Not Found: no node has url http://nowhere.example:1; "
                              "`oo n ls` lists the node URLs\n")
    # The live peer writes its record again at its next heartbeat (1 s in these tests).
    wait_until(node_present, 15, f"{url} to report itself again")


# -- generic calls ------------------------------------------------------------------------------

def test_generic_put_get_post_delete(oo, admin_env, cluster):
    # --port is typed as an integer and the repeated --tags makes a list, or the server would refuse them.
    put = oo("put", "/registry-svc/instance", "--id=inst_gen", "--scheme=http", "--host=gen", "--port=8080",
             "--slug=gen", "--tags=a", "--tags=b", "--status=Healthy")
    assert json.loads(ok(put)) == {}
    got = json.loads(ok(oo("get", "/registry-svc/instances", "--slug=gen", "--tag=a", "--tag=b")))
    (record,) = got["instances"]
    assert (record["url"], record["port"], record["tags"]) == ("http://gen:8080", 8080, ["a", "b"])
    assert ok(oo("get", "/registry-svc/instances", "--slug=gen", "--tag=a")).startswith('{\n  "instances": [\n')

    nodes = json.loads(ok(oo("post", "/registry-svc/nodes")))["nodes"]
    assert len(nodes) >= 2
    chosen = nodes[0]["id"]
    only = json.loads(ok(oo("post", "/registry-svc/nodes", f'--ids=["{chosen}"]')))["nodes"]
    assert [node["id"] for node in only] == [chosen]

    permits = json.loads(ok(oo("get", "/registry-svc/permits")))["permits"]
    replaced = json.loads(ok(oo("put", "/registry-svc/permits", f"--permits={json.dumps(permits)}")))
    assert replaced == {"permits": permits}

    assert ok(oo("delete", "/registry-svc/instance/inst_gen")) == ""
    assert json.loads(ok(oo("get", "registry-svc/instances", "--slug=gen"))) == {"instances": []}
    assert oo("delete", "/registry-svc/instance/inst_gen").stderr == "oo: 404 Not Found: Service Not Found\n"


def test_generic_errors_carry_the_servers_message(oo, admin_env):
    bad_filter = oo("get", "/registry-svc/instances", "--bogus=1")
    assert bad_filter.exit_code == 1
    assert bad_filter.stderr.startswith("oo: 400 Bad Request: unknown filter 'bogus'; filters are id, slug")
    assert oo("get", "/nowhere").stderr == "oo: 404 Not Found: no endpoint at GET /nowhere\n"
    assert oo("put", "/registry-svc/instance", "--url=http://x:1", "--port=70000").stderr.startswith(
        "oo: 400 Bad Request: ")


# -- failover -----------------------------------------------------------------------------------

def test_failover_to_the_next_peer_when_the_first_is_down(oo, cluster, peer_urls, dead_url):
    ok(oo("env", "add", "flaky", dead_url, *peer_urls))
    ok(oo("token", "set", cluster.local.admin_token))
    ok(oo("put", "/registry-svc/instance", "--url=http://failover:1", "--slug=failover"))
    quiet = oo("i", "ls", "--slug", "failover")
    assert quiet.exit_code == 0 and quiet.stderr == ""
    assert "http://failover:1" in quiet.stdout
    verbose = oo("-v", "n", "ls")
    assert verbose.exit_code == 0
    assert verbose.stderr == f"oo: {dead_url} did not answer (connection refused); trying {peer_urls[0]}\n"


def test_failover_past_a_proxy_answering_for_a_peer_that_is_down(oo, cluster, peer_urls, bad_gateway_url):
    ok(oo("env", "add", "proxied", bad_gateway_url, *peer_urls))
    ok(oo("token", "set", cluster.local.admin_token))
    verbose = oo("-v", "put", "/registry-svc/instance", "--url=http://behind-proxy:1")
    assert verbose.exit_code == 0, verbose.stderr
    assert verbose.stderr == (f"oo: {bad_gateway_url} did not answer (a proxy in front of it answered 502 "
                              f"(the peer behind it is unavailable)); trying {peer_urls[0]}\n")
    # The registry's own 503 (no leader) carries its headers and is an answer, not a failover.
    assert "X-Registry-Index" in RegistryClient(peer_urls[0]).session.get(peer_urls[0] + "/readyz").headers


@pytest.fixture
def silent_url():
    """A peer that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted = []
    stop = threading.Event()

    def hold():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(timeout=10)
    for connection in accepted:
        connection.close()
    server.close()


def test_a_peer_that_never_answers_costs_only_the_timeout_given(oo, cluster, peer_urls, silent_url):
    token = cluster.local.admin_token
    result = oo("--url", silent_url, "--url", peer_urls[0], "--token", token, "--timeout", "0.5", "-v", "n", "ls")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == f"oo: {silent_url} did not answer (no answer within 0.5s); trying {peer_urls[0]}\n"
    by_env = oo("--url", silent_url, "--token", token, "n", "ls", env={"OO_TIMEOUT": "0.3"})
    assert by_env.exit_code == 1 and "no answer within 0.3s" in by_env.stderr


def test_https_to_a_plain_http_peer_says_to_use_http(oo, cluster, peer_urls):
    plain = peer_urls[0].replace("http://", "https://")
    result = oo("--url", plain, "--token", cluster.local.admin_token, "--timeout", "1", "n", "ls")
    assert result.exit_code == 1
    assert f"{plain} (it speaks plain HTTP, not TLS: use {peer_urls[0]})" in result.stderr


def test_a_token_goes_to_a_peer_of_the_environment_however_its_host_is_spelled(oo, admin_env, peer_urls):
    localhost = peer_urls[1].replace("127.0.0.1", "localhost")
    result = oo("--url", localhost, "n", "ls")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""


def test_url_and_token_flags_and_environment_variables_override(oo, cluster, peer_urls, dead_url):
    token = cluster.local.admin_token
    by_flags = oo("--url", dead_url, "--url", peer_urls[1], "--token", token, "-v", "i", "ls")
    assert by_flags.exit_code == 0, by_flags.stderr
    assert by_flags.stderr == f"oo: {dead_url} did not answer (connection refused); trying {peer_urls[1]}\n"
    by_env = oo("-v", "n", "ls", env={"OO_URL": f"{dead_url},{peer_urls[2]}", "OO_TOKEN": token})
    assert by_env.exit_code == 0, by_env.stderr
    assert f"trying {peer_urls[2]}" in by_env.stderr


def test_no_peer_answering_is_one_line(oo, dead_url):
    other = f"http://127.0.0.1:{free_port()}"
    ok(oo("env", "add", "down", dead_url, other))
    result = oo("i", "ls")
    assert result.exit_code == 1
    assert result.stderr == (f"oo: no peer answered: {dead_url} (connection refused), {other} (connection refused); "
                             "check the URLs (`oo env ls`, --url) and that the registry is running\n")


# -- who may do what ----------------------------------------------------------------------------

def test_without_a_token_401_says_how_to_set_one(oo, peer_urls):
    ok(oo("env", "add", "anon", *peer_urls))
    result = oo("i", "ls")
    assert result.exit_code == 1
    assert result.stderr == ("oo: 401 Unauthorized: missing bearer token: send the header "
                             f"'Authorization: Bearer <token>'{TOKEN_HINT}\n")
    forged = oo("--token", "not.a.jwt", "n", "ls")
    assert forged.exit_code == 1
    assert forged.stderr.startswith("oo: 401 Unauthorized: the token is not valid") and forged.stderr.endswith(
        TOKEN_HINT + "\n")


def test_a_user_token_is_refused_what_users_may_not_do(oo, cluster, peer_urls):
    ok(oo("env", "add", "user", *peer_urls))
    ok(oo("token", "set", cluster.token("user-svc", "user")))
    ok(oo("put", "/registry-svc/instance", "--url=http://user-svc:1"))
    lines = ok(oo("i", "ls")).splitlines()
    assert [line.split()[1:4] for line in lines[1:]] == [["http://user-svc:1", "Unknown", "user-svc"]]
    node = oo("n", "rm", peer_urls[0])
    assert node.exit_code == 1
    assert node.stderr == "oo: 403 Forbidden: missing permission registry-svc:node:delete\n"
    instance = oo("i", "rm", lines[1].split()[0])
    assert instance.stderr == "oo: 403 Forbidden: missing permission registry-svc:instance:delete\n"


def test_the_console_program_runs_as_a_module(cluster, peer_urls, dead_url):
    """`python -m api.oo` as a person runs it: one line on stderr for an error, no traceback."""
    env = dict(os.environ, OO_URL=f"{dead_url},{peer_urls[1]}", OO_TOKEN=cluster.local.admin_token)
    listed = subprocess.run([sys.executable, "-m", "api.oo", "-v", "nodes", "ls"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("NODE ID")
    assert listed.stderr == f"oo: {dead_url} did not answer (connection refused); trying {peer_urls[1]}\n"
    refused = subprocess.run([sys.executable, "-m", "api.oo", "--token", cluster.token("u", "user"), "i", "rm", "x"],
                             capture_output=True, text=True, env=env, timeout=60)
    assert refused.returncode == 1
    assert refused.stderr == "oo: 403 Forbidden: missing permission registry-svc:instance:delete\n"


# -- the client ---------------------------------------------------------------------------------

def test_the_client_covers_every_endpoint(cluster, peer_urls, dead_url):
    failovers = []
    client = RegistryClient([dead_url, *peer_urls], cluster.local.admin_token,
                            on_failover=lambda *event: failovers.append(event))
    assert client.healthz() == {"status": "ok"}
    assert failovers == [(dead_url, "connection refused", peer_urls[0])]
    assert client.readyz()["status"] == "ready"
    assert len(failovers) == 1, "the client keeps using the peer that answered"

    assert client.register_instance({"id": "inst_client", "url": "http://client:1", "slug": "client"}) == {}
    (record,) = client.list_instances(slug="client")
    assert record["id"] == "inst_client"
    assert client.list_instances(slug="client", tags=["absent"]) == []
    assert client.renew_instance("inst_client", status="Degraded", details="slow disk") == {}
    assert client.list_instances(id="inst_client")[0]["status"] == "Degraded"
    assert client.renew_instance("inst_client") == {}
    assert client.list_instances(id="inst_client")[0]["status"] == "Healthy"
    client.remove_instance("inst_client")
    with pytest.raises(ApiError) as caught:
        client.remove_instance("inst_client")
    assert (caught.value.status, caught.value.message) == (404, "Service Not Found")
    assert str(caught.value) == "404 Not Found: Service Not Found"

    me = wait_until(client.self_node, 15, "the answering peer's node record")
    assert me["url"] == peer_urls[0]
    assert [node["id"] for node in client.list_nodes([me["id"]])] == [me["id"]]
    view = client.cluster()
    assert view["self"]["url"] == peer_urls[0] and len(view["peers"]) == 3
    permits = client.permits()
    assert client.set_permits(permits) == permits
    assert client.grants()["permissions"]["registry-svc:permit:edit"] is True
    assert client.last_response.headers["X-Registry-Index"].isdigit()

    with pytest.raises(ApiError) as refused:
        RegistryClient(peer_urls, cluster.token("u", "user")).remove_node("http://nowhere:1")
    assert refused.value.status == 403
    with pytest.raises(NoPeerAnswered) as nobody:
        RegistryClient([dead_url]).healthz()
    assert nobody.value.failures == [(dead_url, "connection refused")]

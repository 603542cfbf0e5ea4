"""Registrations started on waitress' loop thread and answered from the thread that learns their
outcome (api/loop_answers.py, HotPath.start_later), as an HTTP worker's are: through a real
waitress server on 127.0.0.1 over a peer without Raft that tells outcomes from a thread of its own."""

import http.client
import json
import socket
import threading

import pytest

from api import tokens
from api.app import create_app
from api.serve import make_server
from cluster.submit import WriteUnavailable
from tests.fake_peer import FakePeer
from tests.helpers import read_answer
from tests.waiting import wait_until

REGISTER = "/registry-svc/instance"
LIST = "/registry-svc/instances"
PER_ANSWER = {"date", "x-request-id", "x-registry-index"}


@pytest.fixture
def served(tmp_path):
    peer = FakePeer(heartbeat_seconds=3600, scan_interval_seconds=3600, http_threads=4, max_blocking_reads=4,
                    data_dir=str(tmp_path))
    peer.writes_later = True
    server = make_server(create_app(peer), peer.config, host="127.0.0.1", port=0)
    loop = threading.Thread(target=server.run, name="waitress-loop", daemon=True)
    loop.start()
    token = tokens.mint(tokens.signing_key(peer.cluster_secret), "admin", ["admin"], 3600)
    try:
        yield peer, server, token
    finally:
        server.trigger.pull_trigger(server.close)
        loop.join(10)
        assert not loop.is_alive()


def put(port, token, body, connection=None):
    connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    connection.request("PUT", REGISTER, body=body if isinstance(body, bytes) else json.dumps(body), headers=headers)
    response = connection.getresponse()
    answer = response.read()
    headers = {name.lower(): value for name, value in response.getheaders() if name.lower() not in PER_ANSWER}
    return response.status, headers, answer


def registered_urls(peer):
    return sorted(record["url"] for record in peer.state.read(lambda state: list(state.instances.values()))[1])


def test_a_registration_started_on_the_loop_is_answered_as_a_pool_thread_answers_it(served):
    peer, server, token = served
    port = server.effective_port
    dispatcher = server.task_dispatcher
    status, later_headers, body = put(port, token, {"url": "http://127.0.0.1:9300", "slug": "later"})
    assert (status, body) == (201, b"{}")
    assert dispatcher.started_on_loop == 1
    peer.writes_later = False  # as a one-process peer: the pool's thread waits for the outcome
    status, pool_headers, body = put(port, token, {"url": "http://127.0.0.1:9301", "slug": "later"})
    assert (status, body) == (201, b"{}")
    assert dispatcher.started_on_loop == 1
    assert later_headers == pool_headers
    assert registered_urls(peer) == ["http://127.0.0.1:9300", "http://127.0.0.1:9301"]


def test_what_flask_refuses_goes_to_the_pool_with_its_own_words(served):
    peer, server, token = served
    port = server.effective_port
    assert put(port, None, {"url": "http://127.0.0.1:9302"})[0] == 401
    status, _, body = put(port, token, b'{"url": ')
    assert status == 400 and b"JSON" in body
    status, _, body = put(port, token, {"url": "http://127.0.0.1:9302", "port": "eighty"})
    assert status == 400 and json.loads(body)["error"]
    assert server.task_dispatcher.started_on_loop == 0
    assert registered_urls(peer) == []
    # The refused body was read on the loop thread and read again, whole, by the pool's thread.
    assert put(port, token, {"url": "http://127.0.0.1:9302"})[0] == 201


def test_an_unavailable_write_answers_503_with_retry_after(served):
    peer, server, token = served
    peer.unavailable = WriteUnavailable("no leader is known; the write was not applied", outcome_unknown=False)
    status, headers, body = put(server.effective_port, token, {"url": "http://127.0.0.1:9303"})
    assert status == 503 and headers["retry-after"]
    assert json.loads(body) == {"error": "no leader is known; the write was not applied"}
    assert server.task_dispatcher.started_on_loop == 1


def test_a_request_pipelined_behind_a_waiting_registration_is_answered_after_it(served):
    peer, server, token = served
    peer.later_delay = 0.3
    body = json.dumps({"url": "http://127.0.0.1:9304", "slug": "piped"}).encode()
    requests = (f"PUT {REGISTER} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    requests += f"GET {LIST}?slug=piped HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", server.effective_port), timeout=10) as sock:
        sock.sendall(requests)
        reader = sock.makefile("rb")
        first, second = read_answer(reader), read_answer(reader)
    assert first == (201, {})
    assert server.task_dispatcher.started_on_loop == 1
    assert second[0] == 200 and [i["url"] for i in second[1]["instances"]] == ["http://127.0.0.1:9304"]


def test_a_client_gone_before_its_answer_came_leaves_the_server_serving(served):
    peer, server, token = served
    peer.later_delay = 0.3
    body = json.dumps({"url": "http://127.0.0.1:9305"}).encode()
    with socket.create_connection(("127.0.0.1", server.effective_port), timeout=10) as sock:
        sock.sendall((f"PUT {REGISTER} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
        wait_until(lambda: server.task_dispatcher.started_on_loop == 1, 10, "the registration started")
    wait_until(lambda: registered_urls(peer) == ["http://127.0.0.1:9305"], 10, "the registration committed")
    assert put(server.effective_port, token, {"url": "http://127.0.0.1:9306"})[0] == 201

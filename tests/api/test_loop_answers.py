"""Kept lists answered on waitress' own loop thread (api/loop_answers.py), through a real waitress
server on 127.0.0.1: the same answers as a pool thread gives, and nothing that waits ever taken
there."""

import http.client
import json
import socket
import threading
import time

import pytest
from waitress import create_server

from api import tokens
from api.app import create_app
from api.loop_answers import LoopAnsweringChannel, LoopAnsweringDispatcher
from api.serve import make_server
from tests.fake_peer import FakePeer
from tests.helpers import read_answer, read_raw_answer
from tests.waiting import wait_until

LIST = "/registry-svc/instances"
# Headers that differ between any two answers.
PER_ANSWER = {"date", "x-request-id"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(the fake peer, its waitress server, a token minter) with the server's loop on a thread."""
    peer = FakePeer(heartbeat_seconds=3600, scan_interval_seconds=3600, http_threads=4, max_blocking_reads=4,
                    data_dir=str(tmp_path_factory.mktemp("loop-answers")))
    for n in range(3):
        peer.register_instance({"url": f"http://127.0.0.1:{9100 + n}", "slug": "svc-a" if n < 2 else "svc-b"})
    server = make_server(create_app(peer), peer.config, host="127.0.0.1", port=0)
    loop = threading.Thread(target=server.run, name="waitress-loop", daemon=True)
    loop.start()
    key = tokens.signing_key(peer.cluster_secret)
    try:
        yield peer, server, lambda slug, *roles: tokens.mint(key, slug, roles, 3600)
    finally:
        server.trigger.pull_trigger(server.close)  # on the loop thread: its map empties and the loop ends
        loop.join(10)
        assert not loop.is_alive()


def get(port, path, token, connection=None):
    connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
    response = connection.getresponse()
    body = response.read()
    headers = {name.lower(): value for name, value in response.getheaders() if name.lower() not in PER_ANSWER}
    return response.status, headers, body


def test_a_kept_list_is_answered_on_the_loop_thread_exactly_as_a_pool_thread_answers_it(served):
    peer, server, mint = served
    token = mint("admin", "admin")
    port = server.effective_port
    dispatcher = server.task_dispatcher
    before = dispatcher.answered_on_loop
    first = get(port, LIST + "?slug=svc-a", token)  # not kept yet: built on a pool thread
    assert dispatcher.answered_on_loop == before
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    again = [get(port, LIST + "?slug=svc-a", token, connection) for _ in range(3)]  # one kept-alive connection
    assert dispatcher.answered_on_loop == before + 3
    assert first[0] == 200 and len(json.loads(first[2])["instances"]) == 2
    assert all(answer == first for answer in again)
    # A change to what the list covers: built again on a pool thread, then kept and answered here.
    peer.register_instance({"url": "http://127.0.0.1:9110", "slug": "svc-a"})
    changed = get(port, LIST + "?slug=svc-a", token, connection)
    assert dispatcher.answered_on_loop == before + 3
    assert len(json.loads(changed[2])["instances"]) == 3
    assert int(changed[1]["x-registry-index"]) > int(first[1]["x-registry-index"])
    assert get(port, LIST + "?slug=svc-a", token, connection) == changed
    assert dispatcher.answered_on_loop == before + 4


def test_refusals_read_options_and_other_routes_go_to_the_pool_with_their_own_answers(served):
    _, server, mint = served
    port = server.effective_port
    dispatcher = server.task_dispatcher
    admin, user = mint("admin", "admin"), mint("some-user", "user")
    get(port, LIST, admin)
    get(port, LIST + "?slug=svc-b", user)
    answered = dispatcher.answered_on_loop
    assert get(port, LIST, None)[0] == 401
    assert get(port, LIST, "not-a-token")[0] == 401
    assert get(port, LIST + "?colour=red", admin)[0] == 400
    assert get(port, LIST + "?slug=svc-a&slug=svc-b", admin)[0] == 400
    assert get(port, LIST + "?consistent", admin)[0] == 200
    assert get(port, LIST + "?max_stale=1s", admin)[0] == 200
    assert get(port, LIST + "?index=1&wait=1ms", admin)[0] == 200
    assert get(port, "/registry-svc/node/self", admin)[0] == 200
    assert dispatcher.answered_on_loop == answered
    # A kept list is kept per caller: each caller's own answer, each from the loop thread.
    status, _, body = get(port, LIST + "?slug=svc-b", user)
    assert dispatcher.answered_on_loop == answered + 1
    assert status in (200, 403)
    assert (status, body) == get(port, LIST + "?slug=svc-b", user)[::2]


def test_a_blocking_read_waits_on_a_pool_thread_while_the_loop_answers_others(served):
    peer, server, mint = served
    token = mint("admin", "admin")
    port = server.effective_port
    get(port, LIST + "?slug=svc-b", token)  # kept now
    index = int(get(port, LIST + "?slug=svc-b", token)[1]["x-registry-index"])
    held = []
    watcher = threading.Thread(
        target=lambda: held.append(get(port, f"{LIST}?slug=svc-b&index={index}&wait=20s", token)), daemon=True)
    watcher.start()
    try:
        answered = server.task_dispatcher.answered_on_loop
        deadline = time.monotonic() + 10
        while watcher.is_alive() and time.monotonic() < deadline and server.task_dispatcher.answered_on_loop < answered + 5:
            assert get(port, LIST + "?slug=svc-b", token)[0] == 200
        assert watcher.is_alive() and not held, "the blocking read answered without a change"
        assert server.task_dispatcher.answered_on_loop >= answered + 5
    finally:
        peer.register_instance({"url": "http://127.0.0.1:9120", "slug": "svc-b"})  # wakes the watcher
        watcher.join(10)
    assert held and held[0][0] == 200 and len(json.loads(held[0][2])["instances"]) == 2


def test_pipelined_requests_are_answered_in_order_wherever_each_is_answered(served):
    _, server, mint = served
    token = mint("admin", "admin")
    port = server.effective_port
    get(port, LIST + "?slug=svc-a", token)
    request = (f"GET {{path}} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n")
    # The loop thread answers the first of those it reads at once, and any it reads later with
    # nothing queued; one handed on while an answer is still queued goes to the pool.
    paths = [LIST + "?slug=svc-a", LIST + "?slug=svc-a", "/registry-svc/node/self", LIST + "?slug=svc-a",
             LIST + "?slug=nothing-here"]
    answered = server.task_dispatcher.answered_on_loop
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall("".join(request.format(path=path) for path in paths).encode())
        reader = sock.makefile("rb")
        answers = [read_answer(reader) for _ in paths]
    assert [status for status, _ in answers] == [200] * 5
    assert len(answers[0][1]["instances"]) >= 2 and answers[0] == answers[1] == answers[3]
    assert answers[2][1]["node"]["url"] == served[0].url
    assert answers[4][1] == {"instances": []}
    assert server.task_dispatcher.answered_on_loop >= answered + 1


def test_a_worker_replica_behind_an_answered_write_sends_its_reads_to_the_pool(served):
    peer, server, mint = served
    token = mint("admin", "admin")
    port = server.effective_port
    get(port, LIST + "?slug=svc-a", token)
    answered = server.task_dispatcher.answered_on_loop
    peer.reads_at_once = lambda: False  # as a worker's replica says while behind its board
    try:
        assert get(port, LIST + "?slug=svc-a", token)[0] == 200
        assert server.task_dispatcher.answered_on_loop == answered
    finally:
        del peer.reads_at_once
    wait_until(lambda: get(port, LIST + "?slug=svc-a", token)[0] == 200
               and server.task_dispatcher.answered_on_loop > answered, 10, "a read answered on the loop again")


def test_odd_queries_answer_alike_on_a_pool_thread_and_on_the_loop(served):
    _, server, mint = served
    token = mint("admin", "admin")
    port = server.effective_port
    for query in ("?slug=%ff", "?slug=caf%C3%A9", "?id=%00", "?tag=a&tag=a", "?slug=" + "s" * 4000):
        answered = server.task_dispatcher.answered_on_loop
        first = get(port, LIST + query, token)  # built on a pool thread, then kept
        assert first[0] == 200 and json.loads(first[2]) == {"instances": []}
        assert get(port, LIST + query, token) == first
        assert server.task_dispatcher.answered_on_loop >= answered + 1
    assert get(port, LIST + "?" + "a" * 4000, token)[0] == 400  # an unknown filter, in Flask's words


def test_a_client_that_pipelines_large_answers_and_never_reads_holds_up_nobody_else(served):
    peer, server, mint = served
    token = mint("admin", "admin")
    port = int(server.effective_port)
    for n in range(4000):  # a list of about 3 MB, kept: a segment of requests for it passes 16 MB by far
        peer.register_instance({"url": f"http://127.0.0.1:{20000 + n}/" + "p" * 600,
                                "slug": "bulk"})
    request = f"GET {LIST}?slug=bulk HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    status, _, body = get(port, LIST + "?slug=bulk", token)
    pipelined = 8192 // len(request)
    assert status == 200 and pipelined * len(body) > 16 * 1024 * 1024  # past waitress' outbuf_high_watermark
    greedy = socket.socket()
    greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    greedy.connect(("127.0.0.1", port))
    try:
        for _ in range(2):  # two segments of pipelined requests, never read: past the mark beside the socket's buffers
            greedy.sendall(request * pipelined)
        local_port = greedy.getsockname()[1]

        def queued_for_greedy():
            return sum(channel.total_outbufs_len for channel in list(server.active_channels.values())
                       if getattr(channel, "addr", (None, None))[1] == local_port)

        wait_until(lambda: queued_for_greedy() > 16 * 1024 * 1024, 20, "answers queued past the high-water mark")
        # The loop thread still serves everyone else, at once and in full.
        for _ in range(3):
            status, _, body = get(port, LIST + "?slug=svc-a", token)
            assert status == 200 and json.loads(body)["instances"]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as other:
            other.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert other.recv(100).startswith(b"HTTP/1.1 200")
        assert queued_for_greedy() > 16 * 1024 * 1024  # still unread: the others were served beside it
    finally:
        greedy.close()


def test_the_loop_thread_never_waits_for_itself_past_the_high_water_mark():
    """Should an answer on the loop thread ever outgrow waitress' 16 MB mark (a kept list cannot),
    the loop flushes what the socket takes and goes on, rather than waiting for itself to send."""
    big = b"x" * (1024 * 1024)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [big] * (40 if environ["PATH_INFO"] == "/big" else 0) + [b"small"]

    server = create_server(app, host="127.0.0.1", port=0, _dispatcher=LoopAnsweringDispatcher(2, lambda *_: True))
    server.channel_class = LoopAnsweringChannel
    loop = threading.Thread(target=server.run, name="waitress-loop", daemon=True)
    loop.start()
    port = int(server.effective_port)
    greedy = socket.socket()
    greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        greedy.connect(("127.0.0.1", port))
        greedy.sendall(b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # 40 MB answered on the loop, never read
        wait_until(lambda: server.task_dispatcher.answered_on_loop == 1, 10, "the big answer taken on the loop")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as other:
            other.sendall(b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert read_raw_answer(other.makefile("rb")) == (200, b"small")
        assert any(channel.total_outbufs_len > 16 * 1024 * 1024 for channel in list(server.active_channels.values())
                   if hasattr(channel, "total_outbufs_len")), "the big answer was not held past the mark"
    finally:
        greedy.close()
        server.trigger.pull_trigger(server.close)
        loop.join(10)
    assert not loop.is_alive()


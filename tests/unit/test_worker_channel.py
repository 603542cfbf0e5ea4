"""The local channel between a Raft process and its HTTP workers (cluster/worker_channel.py),
over a real socketpair."""

import socket
import threading
import time

import orjson
import pytest

from cluster import worker_channel
from cluster.worker_channel import BATCH, CALL, Calls, Channel, ChannelClosed, encode, reply
from registry.state import RegistryState
from tests.helpers import register
from tests.waiting import wait_until


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    channels = [Channel(ours, "raft-side"), Channel(theirs, "worker-side")]
    yield channels
    for channel in channels:
        channel.close()


def test_frames_arrive_whole_and_in_order_whatever_their_size(pair):
    sender, receiver = pair
    payloads = [[i, "x" * size] for i, size in enumerate([0, 1, 70_000, 5, 3_000_000, 2])]
    for payload in payloads:
        sender.send(encode(BATCH, payload))
    # A frame made on the writer thread when its turn comes keeps its place in the order too.
    sender.send(lambda: encode(BATCH, ["made late"]))
    sender.send(encode(BATCH, ["after it"]))
    received = [receiver.receive() for _ in range(len(payloads) + 2)]
    assert [kind for kind, _ in received] == [BATCH] * (len(payloads) + 2)
    assert [orjson.loads(body) for _, body in received] == payloads + [["made late"], ["after it"]]


def test_many_calls_in_flight_each_get_their_own_answer(pair):
    caller_side, answering_side = pair
    calls = Calls(caller_side)

    def answer():
        pending = []
        while True:
            try:
                kind, body = answering_side.receive()
            except ChannelClosed:
                return
            assert kind == CALL
            pending.append(orjson.loads(body))
            if len(pending) == 8:  # answered in reverse: ids, not order, match them up
                for call_id, operation, arguments in reversed(pending):
                    reply(answering_side, call_id, {"ok": [operation, arguments]})
                pending = []

    threading.Thread(target=answer, daemon=True).start()

    def read_replies():
        while True:
            try:
                kind, body = caller_side.receive()
            except ChannelClosed:
                return
            calls.replied(body)

    threading.Thread(target=read_replies, daemon=True).start()
    outcomes = [None] * 8

    def one(i):
        outcomes[i] = calls.call("echo", [i], timeout=10)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert outcomes == [{"ok": ["echo", [i]]} for i in range(8)]


def test_a_call_ends_at_once_when_the_other_side_goes_away(pair):
    caller_side, answering_side = pair
    calls = Calls(caller_side)
    failed = []

    def call():
        try:
            calls.call("never answered", [], timeout=30)
        except ChannelClosed:
            failed.append(time.monotonic())

    thread = threading.Thread(target=call)
    thread.start()
    assert answering_side.receive()[0] == CALL
    answering_side.close()
    with pytest.raises(ChannelClosed):
        caller_side.receive()
    calls.fail_all()  # what the reader does on ChannelClosed
    thread.join(5)
    assert failed, "the call waited for its deadline instead of failing with the channel"


def test_a_sender_never_blocks_on_a_side_that_stopped_reading_and_gives_up_past_the_bound(pair, monkeypatch):
    monkeypatch.setattr(worker_channel, "MAX_QUEUED_BYTES", 4 * 1024 * 1024)
    sender, _never_reads = pair
    chunk = encode(BATCH, ["y" * 64 * 1024])
    sent, ended = [0], []

    def flood():
        try:
            while sent[0] < 1000:
                sender.send(chunk)
                sent[0] += 1
        except ChannelClosed:
            ended.append("closed")

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "a send blocked on the side that does not read"
    # The kernel's buffer filled and then the queue: 4 MB in some 64 KB frames, then it gave up.
    assert ended == ["closed"] and 4 < sent[0] < 200
    assert sender.closed
    wait_until(lambda: sender.queued_bytes == 0, 5, "the closed channel to drop its queue")


def test_a_snapshot_crosses_in_slices_with_its_shared_values_still_shared(monkeypatch):
    monkeypatch.setattr(worker_channel, "SNAPSHOT_SLICE_RECORDS", 2)
    state = RegistryState()
    for n in range(5):
        register(state, {"url": f"http://h{n}:8080", "slug": "shop", "tags": ["prod"]}, generated=f"inst_{n}",
                 index=n + 1)
    frame = worker_channel.encode_snapshot(state.to_snapshot())
    length, kind = worker_channel.HEADER.unpack(frame[:worker_channel.HEADER.size])
    assert kind == worker_channel.SNAPSHOT and length == len(frame) - worker_channel.HEADER.size
    loaded = RegistryState.from_snapshot(worker_channel.decode_snapshot(frame[worker_channel.HEADER.size:]),
                                         values_shared=True)
    assert loaded.digest() == state.digest()
    records = [loaded.instances[f"inst_{n}"] for n in range(5)]
    # Shared within a slice (each slice holds one copy of a value, 4,096 records in a real one).
    assert records[0]["slug"] is records[1]["slug"] and records[0]["tags"] is records[1]["tags"]
    assert records[2]["slug"] is records[3]["slug"] and records[0]["slug"] == records[4]["slug"] == "shop"

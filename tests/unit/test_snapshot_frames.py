"""One snapshot encoding shared by every worker fed the same copy of the state
(cluster/http_workers.py's _SharedSnapshot), over real channels."""

import gc
import socket
import weakref

import pytest

from cluster import http_workers, worker_channel
from cluster.watched_state import WatchedState
from cluster.worker_channel import SNAPSHOT, Channel
from registry.state import RegistryState
from tests.helpers import register
from tests.waiting import wait_until


@pytest.fixture
def state():
    state = RegistryState()
    for n in range(50):
        register(state, {"url": f"http://127.0.0.1:{9000 + n}", "slug": f"svc-{n % 5}"}, generated=f"inst_{n}")
    return state


@pytest.fixture
def channel_pairs():
    pairs = []
    for number in range(3):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pairs.append((Channel(ours, f"raft-side-{number}"), Channel(theirs, f"worker-side-{number}")))
    yield pairs
    for pair in pairs:
        for channel in pair:
            channel.close()


@pytest.fixture
def encodings(monkeypatch):
    made = []

    def counted(snapshot):
        made.append(snapshot["index"])
        return worker_channel.encode_snapshot(snapshot)

    monkeypatch.setattr(http_workers, "encode_snapshot", counted)
    return made


def test_every_worker_fed_at_once_gets_the_same_snapshot_from_one_encoding(state, channel_pairs, encodings):
    watched = WatchedState(state)

    def start(parts):
        make_frame = http_workers._SharedSnapshot(parts)
        for sender, _ in channel_pairs:
            sender.send(make_frame)

    watched.with_parts(start)
    for _, receiver in channel_pairs:
        kind, payload = receiver.receive()
        assert kind == SNAPSHOT
        loaded = RegistryState.from_snapshot(worker_channel.decode_snapshot(payload), values_shared=True)
        assert loaded.digest() == state.digest()
        assert loaded.index == state.index == 50
    assert encodings == [50]


def test_no_snapshot_is_kept_once_sent_and_other_parts_get_their_own(state, channel_pairs, encodings):
    (sender, receiver), (other_sender, other_receiver) = channel_pairs[:2]
    shared = http_workers._SharedSnapshot(state.copy_parts())
    sent = weakref.ref(shared)
    sender.send(shared)
    del shared
    receiver.receive()
    # Sent, the channel holds bytes, not the shared snapshot: nothing keeps it.
    wait_until(lambda: gc.collect() is not None and sent() is None, 10, "the sent snapshot to be let go")
    register(state, {"url": "http://127.0.0.1:9999", "slug": "late"}, generated="inst_late")
    other_sender.send(http_workers._SharedSnapshot(state.copy_parts()))
    kind, payload = other_receiver.receive()
    assert kind == SNAPSHOT and worker_channel.decode_snapshot(payload)["index"] == 51
    assert encodings == [50, 51]

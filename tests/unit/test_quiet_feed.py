"""A quiet HTTP worker's feed (cluster/quiet_feed.py): the Raft side holds its batches until the
next status, or until a request at the worker asks for them, which it then reads with everything
applied before it asked. The worker is a real WorkerReplica over a socketpair; its Raft side
answers as cluster/http_workers.py does, with the same HeldFeed."""

import threading
import time

import orjson
import pytest

from cluster import quiet_feed
from cluster.quiet_feed import FEED_LIVE, FeedDemand, HeldFeed
from cluster.watched_state import WatchedState
from cluster.worker_channel import BATCH, CALL, QUIET, STATUS, encode, reply
from registry import commands
from registry.errors import OK
from registry.instances import validate_registration
from tests.helpers import greet_worker, worker_replica_beside
from tests.waiting import wait_until

QUIET_AFTER = 0.2


def test_a_quiet_workers_batches_wait_for_the_next_status_and_come_before_it_in_order():
    sent = []
    feed = HeldFeed(sent.append)
    feed.batch(b"batch-1")
    assert sent == [b"batch-1"]  # live: at once
    feed.go_quiet()
    feed.batch(b"batch-2")
    feed.batch(b"batch-3")
    assert sent == [b"batch-1"]
    feed.after_held(b"status")
    assert sent == [b"batch-1", b"batch-2", b"batch-3", b"status"]
    feed.batch(b"batch-4")
    feed.go_live()
    assert sent[-1] == b"batch-4"  # what was held is out before go_live returns
    feed.batch(b"batch-5")
    assert sent[-1] == b"batch-5"


def test_held_batches_past_the_bound_go_without_waiting_for_a_status(monkeypatch):
    monkeypatch.setattr(quiet_feed, "MAX_HELD_BYTES", 10)
    sent = []
    feed = HeldFeed(sent.append)
    feed.go_quiet()
    feed.batch(b"12345")
    assert sent == []
    feed.batch(b"67890")
    assert sent == [b"12345", b"67890"]


class RaftSide:
    """A worker's Raft end: hello, snapshot and a status, then its QUIET frames and feed_live
    calls answered on a thread of its own as WorkerLink answers them; every call kept."""

    def __init__(self, channel, tmp_path):
        self.channel = channel
        self.state = WatchedState()
        self.feed = HeldFeed(channel.send)
        self.calls = []
        greet_worker(channel, tmp_path, self.state, write_timeout_seconds=2.0)
        self.status()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def status(self):
        self.feed.after_held(encode(STATUS, {"sentAt": time.monotonic()}))

    def apply(self, command):
        index = self.state.batch_index + 1
        self.state.apply([command], index)
        self.feed.batch(encode(BATCH, [index, [command]]))
        return index

    def _read(self):
        try:
            while True:
                kind, payload = self.channel.receive()
                if kind == QUIET:
                    self.feed.go_quiet()
                elif kind == CALL:
                    call_id, operation, arguments = orjson.loads(payload)
                    self.calls.append(operation)
                    if operation == FEED_LIVE:
                        self.feed.go_live()
                        reply(self.channel, call_id, {"ok": None})
                    elif operation == "submit":
                        self.apply(arguments[0])  # the worker answers it as it applies the batch
        except Exception:
            pass  # the channel closed at the test's end


@pytest.fixture
def worker(tmp_path, monkeypatch):
    monkeypatch.setattr(quiet_feed, "QUIET_AFTER_SECONDS", QUIET_AFTER)
    with worker_replica_beside(RaftSide, tmp_path) as pair:
        yield pair


def registration(slug):
    body = {"url": f"http://127.0.0.1:9/{slug}", "slug": slug}
    return commands.with_id(commands.register_instance(validate_registration(body), f"inst_{slug}", time.time_ns()),
                            f"cid-{slug}")


def slugs_read(replica):
    return replica.state.read(lambda state: sorted(r["slug"] for r in state.instances.values()))


def test_an_idle_worker_goes_quiet_and_its_next_read_first_gets_what_was_held(worker):
    raft, replica = worker
    wait_until(lambda: raft.feed.quiet, 5, "the idle worker to say it is quiet")
    assert replica.feed_demand.quiet
    index = raft.apply(registration("held"))
    time.sleep(0.1)  # what a live feed would have delivered by now
    assert replica.state.index < index  # held at the Raft side
    assert slugs_read(replica) == (index, ["held"])  # the read asked for it, and waited for it
    assert raft.calls == [FEED_LIVE] and not raft.feed.quiet and not replica.feed_demand.quiet
    index = raft.apply(registration("live"))
    wait_until(lambda: replica.state.index == index, 5, "the live feed to deliver the next batch")


def test_a_quiet_workers_batches_come_with_the_status(worker):
    raft, replica = worker
    wait_until(lambda: raft.feed.quiet, 5, "the idle worker to say it is quiet")
    index = raft.apply(registration("with-the-status"))
    raft.status()
    wait_until(lambda: replica.state.index == index, 5, "the held batch to arrive with the status")
    assert raft.calls == [] and raft.feed.quiet  # no request asked: it stays quiet


def test_a_write_at_a_quiet_worker_asks_for_the_feed_before_it_is_sent(worker):
    raft, replica = worker
    wait_until(lambda: raft.feed.quiet, 5, "the idle worker to say it is quiet")
    started = time.monotonic()
    result = replica.submit(registration("written"))
    assert result["code"] == OK and raft.calls == [FEED_LIVE, "submit"]
    assert time.monotonic() - started < 1.0  # its batch came live, not with a status (none was sent)


def test_a_blocking_read_keeps_its_worker_live_while_it_waits(worker):
    raft, replica = worker
    index = replica.state.index
    waited = threading.Thread(target=replica.state.wait_for_change, args=(commands.INSTANCES, index, QUIET_AFTER * 6))
    waited.start()
    time.sleep(QUIET_AFTER * 3)
    assert waited.is_alive() and not raft.feed.quiet
    changed = raft.apply(registration("watched"))
    waited.join(5)
    assert replica.state.index == changed
    wait_until(lambda: raft.feed.quiet, 5, "the worker to go quiet once nothing waits")


def test_feed_demand_goes_quiet_only_after_the_idle_spell_with_no_call_waiting_and_asks_once_for_many():
    frames, asked = [], []

    class Channel:
        def send(self, frame):
            frames.append(frame)

    class Calls:
        waiting = False

        def call_later(self, operation, arguments, timeout, on_outcome):
            asked.append((operation, on_outcome))

        def any_waiting(self):
            return self.waiting

    calls = Calls()
    demand = FeedDemand(Channel(), calls, quiet_after=10.0)
    now = time.monotonic()
    assert not demand.quiet_if_idle(now + 5.0)
    calls.waiting = True  # a write still waits for its batch
    assert not demand.quiet_if_idle(now + 11.0)
    calls.waiting = False
    assert demand.quiet_if_idle(now + 11.0) and demand.quiet and len(frames) == 1
    assert demand.want() is False and demand.want() is False
    assert [operation for operation, _ in asked] == [FEED_LIVE]
    asked[0][1]({"ok": None})
    assert demand.want() is True and demand.wait_live(0)

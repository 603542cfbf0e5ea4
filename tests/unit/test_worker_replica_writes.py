"""An HTTP worker's write is answered by its own replica applying it (cluster/worker_replica.py):
the Raft process replies only to a failure. Over a real socketpair, the Raft side played here
by a RegistryState of its own that applies what the worker sends."""

import threading
import time

import orjson
import pytest

from cluster.quiet_feed import FEED_LIVE
from cluster.submit import WriteUnavailable
from cluster.watched_state import WatchedState
from cluster.worker_channel import BATCH, CALL, PROGRESS, STATUS, encode, encode_snapshot, reply
from registry import commands
from registry.state import snapshot_of
from registry.errors import OK
from registry.instances import validate_registration
from tests.helpers import greet_worker, worker_replica_beside


class RaftSide:
    """The channel's Raft end: hello, snapshot and status as HttpWorkers sends them, then each
    submitted command handed to `answer(call id, command)`."""

    def __init__(self, channel, tmp_path):
        self.channel = channel
        self.state = WatchedState()
        greet_worker(channel, tmp_path, self.state, write_timeout_seconds=0.2)
        channel.send(encode(STATUS, {"sentAt": time.monotonic()}))

    def next_submission(self):
        while True:
            kind, payload = self.channel.receive()
            if kind == CALL:
                call_id, operation, arguments = orjson.loads(payload)
                if operation == FEED_LIVE:  # the worker went quiet while the test waited
                    reply(self.channel, call_id, {"ok": None})
                    continue
                assert operation == "submit"
                return call_id, arguments[0]

    def read_past(self):
        """Until the worker has read everything sent so far: it answers a status with its progress."""
        self.channel.send(encode(STATUS, {"sentAt": time.monotonic()}))
        while self.channel.receive()[0] != PROGRESS:
            pass

    def apply(self, command):
        index = self.state.batch_index + 1
        results, _ = self.state.apply([command], index)
        return index, dict(results[0], index=index)


@pytest.fixture
def worker(tmp_path):
    with worker_replica_beside(RaftSide, tmp_path) as pair:
        yield pair


def registration(slug):
    body = {"url": f"http://127.0.0.1:9/{slug}", "slug": slug}
    return commands.register_instance(validate_registration(body), f"inst_{slug}", time.time_ns())


def submitted_in_background(replica, command):
    outcome = {}

    def submit():
        try:
            outcome["result"] = replica.submit(command)
        except WriteUnavailable as error:
            outcome["error"] = error

    thread = threading.Thread(target=submit)
    thread.start()
    return thread, outcome


def test_a_write_is_answered_by_the_batch_that_applies_it_without_a_reply(worker):
    raft, replica = worker
    thread, outcome = submitted_in_background(replica, registration("batched"))
    call_id, command = raft.next_submission()
    assert "cid" in command  # the worker gave it the id it is answered by
    index, expected = raft.apply(command)
    raft.channel.send(encode(BATCH, [index, [command]]))
    thread.join(5)
    assert outcome == {"result": expected}
    assert expected["code"] == OK and expected["index"] == index
    assert replica.state.read(lambda state: "inst_batched" in state.instances) == (index, True)
    reply(raft.channel, call_id, {"ok": {"result": {"code": "late"}, "stateIndex": index}})  # too late: ignored


def test_a_write_held_by_a_snapshot_rather_than_a_batch_is_answered_from_its_command_id_table(worker):
    raft, replica = worker
    thread, outcome = submitted_in_background(replica, registration("in-snapshot"))
    _, command = raft.next_submission()
    _, expected = raft.apply(command)
    raft.channel.send(encode_snapshot(snapshot_of(raft.state.copy_parts())))
    thread.join(5)
    assert outcome == {"result": expected}


def test_a_failed_write_is_answered_by_the_raft_processs_reply(worker):
    raft, replica = worker
    thread, outcome = submitted_in_background(replica, registration("refused"))
    call_id, _ = raft.next_submission()
    reply(raft.channel, call_id, {"unavailable": ["no leader is known", False]})
    thread.join(5)
    assert outcome["error"].message == "no leader is known" and not outcome["error"].outcome_unknown
    assert replica.state.read(lambda state: len(state.instances)) == (0, 0)


def test_a_batch_of_other_writes_leaves_a_waiting_write_waiting(worker):
    raft, replica = worker
    thread, outcome = submitted_in_background(replica, registration("mine"))
    _, mine = raft.next_submission()
    other = commands.with_id(registration("theirs"), "another-workers-id")
    index, _ = raft.apply(other)
    raft.channel.send(encode(BATCH, [index, [other]]))
    raft.read_past()
    assert thread.is_alive() and outcome == {}
    index, expected = raft.apply(mine)
    raft.channel.send(encode(BATCH, [index, [mine]]))
    thread.join(5)
    assert outcome == {"result": expected}


def registered_later(replica, slug):
    """register_instance_later's (result, error) and the thread it came on, once it comes."""
    told = []
    came = threading.Event()

    def on_done(result, error):
        told.append((result, error, threading.current_thread().name))
        came.set()

    replica.register_instance_later(validate_registration({"url": f"http://127.0.0.1:9/{slug}", "slug": slug}),
                                    "admin", on_done)
    return told, came


def test_a_registration_no_thread_waits_for_is_told_from_the_feed_as_its_batch_applies(worker):
    raft, replica = worker
    assert replica.registers_later()
    told, came = registered_later(replica, "later")
    _, command = raft.next_submission()
    index, expected = raft.apply(command)
    raft.channel.send(encode(BATCH, [index, [command]]))
    assert came.wait(5)
    assert told == [(expected, None, "replica-feed")]
    assert replica.board.highest() == index  # noted for the next read, whichever worker takes it


def test_a_registration_never_answered_is_told_so_at_its_deadline(worker):
    raft, replica = worker
    told, came = registered_later(replica, "unanswered")
    raft.next_submission()  # and never answered
    assert came.wait(10)
    [(result, error, _)] = told
    assert result is None and isinstance(error, WriteUnavailable) and error.outcome_unknown

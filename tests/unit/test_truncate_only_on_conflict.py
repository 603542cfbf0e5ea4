"""The follower-side work-around against PySyncObj 0.3.17 itself: a real SyncObj follower (no
ticking thread, nothing on the network) is handed append_entries from its leader as the
transport receives them, and what it keeps, applies and confirms is read back."""

import logging

import pytest
from pysyncobj import SyncObj, SyncObjConf
from pysyncobj.syncobj import _COMMAND_TYPE
from pysyncobj.transport import TCPTransport

from cluster import transport as transport_module
from cluster.log_matching import Trimmed
from cluster.transport import ContactTrackingTransport
from tests.ports import free_port

NO_OP = bytes([_COMMAND_TYPE.NO_OP])


@pytest.fixture
def follower(monkeypatch):
    confirmations = []
    monkeypatch.setattr(TCPTransport, "send", lambda self, node, message: confirmations.append(message) or True)
    replica = SyncObj(f"127.0.0.1:{free_port()}", [f"127.0.0.1:{free_port()}"],
                      SyncObjConf(autoTick=False, password="test"), transportClass=ContactTrackingTransport)
    replica.leader = next(iter(replica.otherNodes))
    replica.confirmations = confirmations
    replica.receive = lambda message: replica._SyncObj__transport._onMessageReceived(replica.leader, message)
    yield replica
    replica.destroy()


def append(prev_index, entries, commit, term=1, prev_term=1):
    return {"type": "append_entries", "term": term, "commit_index": commit, "prevLogIdx": prev_index,
            "prevLogTerm": prev_term, "entries": [(NO_OP, index, entry_term) for index, entry_term in entries]}


def log_of(replica):
    entries = replica._SyncObj__raftLog
    return [(entries[i][1], entries[i][2]) for i in range(len(entries))]


def holding_seven_entries_four_applied(replica):
    replica.receive(append(1, [(i, 1) for i in range(2, 8)], commit=4, prev_term=0))
    replica.doTick(0)
    assert replica.raftLastApplied == 4 and log_of(replica)[-1] == (7, 1)
    replica.confirmations.clear()


def test_a_late_append_of_held_entries_keeps_the_log_and_confirms_only_its_end(follower, caplog):
    holding_seven_entries_four_applied(follower)
    with caplog.at_level(logging.WARNING):
        follower.receive(append(2, [(3, 1), (4, 1)], commit=7))
    assert log_of(follower)[-1] == (7, 1)  # entries 5..7, perhaps confirmed already, are kept
    assert [m["next_node_idx"] for m in follower.confirmations if m["success"]] == [5]
    assert "truncating already-applied" not in caplog.text
    follower.doTick(0)
    assert follower.raftLastApplied == 4  # committed no further than the late append reached


def test_without_the_work_around_the_library_drops_applied_and_confirmed_entries(follower, caplog, monkeypatch):
    # The defect the work-around exists for, shown on the same library: keep this test honest.
    monkeypatch.setattr(transport_module, "trim_append", lambda message, *args: Trimmed(message))
    holding_seven_entries_four_applied(follower)
    with caplog.at_level(logging.WARNING):
        follower.receive(append(2, [(3, 1), (4, 1)], commit=7))
    assert log_of(follower)[-1] == (4, 1)
    assert "truncating already-applied log entries" in caplog.text


def test_a_repeated_append_appends_only_what_is_new(follower):
    holding_seven_entries_four_applied(follower)
    follower.receive(append(5, [(6, 1), (7, 1), (8, 1)], commit=8))
    assert log_of(follower)[-2:] == [(7, 1), (8, 1)]
    assert [m["next_node_idx"] for m in follower.confirmations if m["success"]] == [9]
    follower.doTick(0)
    assert follower.raftLastApplied == 8


def test_a_conflict_with_an_applied_entry_is_a_divergence_and_is_not_applied_over(follower, caplog):
    holding_seven_entries_four_applied(follower)
    with caplog.at_level(logging.CRITICAL):
        follower.receive(append(2, [(3, 2), (4, 2)], commit=4, term=2))
    divergence = follower._SyncObj__transport.divergence
    assert divergence is not None and divergence.index == 3 and divergence.leader_term == 2
    assert log_of(follower)[-1] == (7, 1) and follower.confirmations == []
    assert "replicas diverged" in caplog.text
    follower.receive(append(7, [(8, 2)], commit=8, term=2))  # nothing more is taken
    assert log_of(follower)[-1] == (7, 1)


def test_a_conflict_above_the_applied_index_is_truncated_as_raft_says(follower):
    holding_seven_entries_four_applied(follower)
    follower.receive(append(5, [(6, 2), (7, 2), (8, 2)], commit=8, term=2))
    assert log_of(follower)[-3:] == [(6, 2), (7, 2), (8, 2)]
    assert follower._SyncObj__transport.divergence is None

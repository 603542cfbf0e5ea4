import os

import pytest

from cluster import durability
from cluster.config import RaftTimings
from cluster.raft_journal import create_journal
from cluster.replica import RegistryReplica
from tests.ports import free_port


def test_term_and_vote_are_fsynced_and_entries_flushed(tmp_path, monkeypatch):
    journal = create_journal(str(tmp_path / "raft.journal"))
    flush = durability.make_durable(journal)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))

    journal.setCurrentTerm(7, "10.0.0.2:21337")
    assert str(tmp_path / "raft.journal.meta") in synced  # the file...
    assert str(tmp_path) in synced  # ...and the directory holding its rename

    datasynced = []
    real_fdatasync = os.fdatasync
    monkeypatch.setattr(os, "fdatasync",
                        lambda fd: (datasynced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fdatasync(fd)))
    journal.add(b"\x00command", 1, 7)
    flush()
    # fdatasync, which releases the GIL while it waits for the disk.
    assert datasynced == [str(tmp_path / "raft.journal")]
    # A compaction replaces the file by a rename: the flush follows it to the new one.
    for index in range(2, 200):
        journal.add(b"\x00" + bytes(500), index, 7)
    journal.deleteEntriesTo(100)
    datasynced.clear()
    flush()
    assert datasynced[-1] == str(tmp_path / "raft.journal")
    journal._destroy()
    reopened = create_journal(str(tmp_path / "raft.journal"))
    assert reopened.getCurrentTerm() == 7
    assert reopened.getVotedForNodeId() == "10.0.0.2:21337"
    assert reopened[0] == (b"\x00" + bytes(500), 101, 7)
    reopened._destroy()


def test_a_peer_flushes_its_journal_unless_told_not_to(tmp_path):
    on = RegistryReplica(f"127.0.0.1:{free_port()}", [], data_dir=str(tmp_path), password="x" * 16,
                         timings=RaftTimings())
    try:
        assert on.transport.sync_journal is not None
    finally:
        on.destroy()
    other = tmp_path / "other"
    other.mkdir()
    off = RegistryReplica(f"127.0.0.1:{free_port()}", [], data_dir=str(other), password="x" * 16,
                          timings=RaftTimings(), sync_journal=False)
    try:
        assert off.transport.sync_journal is None
    finally:
        off.destroy()


class _Node:
    id = "127.0.0.1:1"


@pytest.fixture
def transport(monkeypatch):
    """The transport's flush decisions alone: PySyncObj's own send and receive do nothing here."""
    from pysyncobj.transport import TCPTransport

    from cluster.transport import ContactTrackingTransport
    monkeypatch.setattr(TCPTransport, "send", lambda self, node, message: True)
    monkeypatch.setattr(TCPTransport, "_onMessageReceived", lambda self, node, message: None)
    transport = object.__new__(ContactTrackingTransport)
    transport.last_heard, transport.last_leader_seen, transport.leader_changes = {}, None, 0
    transport.on_follower_confirmed = None
    transport._journal_unflushed = False
    transport.divergence, transport._confirm_instead, transport.leader_commit_heard = None, None, None
    transport._syncObj = None
    transport.flushes = []
    transport.sync_journal = lambda: transport.flushes.append("flush")
    return transport


def test_a_follower_flushes_before_confirming_entries_and_not_for_heartbeats(transport):
    leader = _Node()
    transport._onMessageReceived(leader, {"type": "append_entries", "entries": [(b"c", 5, 1)], "term": 1})
    assert transport.flushes == []  # written by PySyncObj as it handles the message...
    transport.send(leader, {"type": "next_node_idx", "success": True})
    assert transport.flushes == ["flush"]  # ...and on disk before the confirmation leaves
    transport._onMessageReceived(leader, {"type": "append_entries", "term": 1, "commit_index": 5})
    transport.send(leader, {"type": "next_node_idx", "success": True})
    assert transport.flushes == ["flush"]  # a heartbeat brought nothing to flush
    for snapshot_part in ({"serialized": b"..."}, {"transmission": "finish", "prevLogIdx": 1}):
        transport._onMessageReceived(leader, {"type": "append_entries", "term": 1, **snapshot_part})
        transport.send(leader, {"type": "next_node_idx", "success": True})
    assert transport.flushes == ["flush"] * 3


def test_a_leader_flushes_what_it_sent_before_counting_confirmations(transport, monkeypatch):
    from cluster.transport import ContactTrackingTransport
    monkeypatch.setattr(ContactTrackingTransport, "_keep_next_index_monotonic", lambda self, node, message: None)
    follower = _Node()
    transport.send(follower, {"type": "append_entries", "entries": [(b"c", 6, 1)]})
    transport.send(follower, {"type": "append_entries", "entries": [(b"c", 6, 1)]})
    transport.flush_sent_entries()  # the end of the tick that sent them: once, not per follower
    transport.flush_sent_entries()
    assert transport.flushes == ["flush"]
    transport.send(follower, {"type": "append_entries", "entries": [(b"d", 7, 1)]})
    transport._onMessageReceived(follower, {"type": "next_node_idx", "success": True})
    assert transport.flushes == ["flush", "flush"]  # a confirmation arrived before the tick ended


def test_a_peer_told_not_to_flush_confirms_and_counts_confirmations_without_flushing(transport, monkeypatch):
    from cluster.transport import ContactTrackingTransport
    monkeypatch.setattr(ContactTrackingTransport, "_keep_next_index_monotonic", lambda self, node, message: None)
    transport.sync_journal = None  # --no-sync-journal
    peer = _Node()
    transport._onMessageReceived(peer, {"type": "append_entries", "entries": [(b"c", 5, 1)], "term": 1})
    assert transport.send(peer, {"type": "next_node_idx", "success": True})
    transport.send(peer, {"type": "append_entries", "entries": [(b"d", 6, 1)]})
    transport._onMessageReceived(peer, {"type": "next_node_idx", "success": True})
    transport.flush_sent_entries()
    assert transport.flushes == [] and transport._journal_unflushed is False

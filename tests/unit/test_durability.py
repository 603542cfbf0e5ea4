import os

from pysyncobj.journal import createJournal

from cluster import durability
from cluster.config import RaftTimings
from cluster.replica import RegistryReplica
from tests.ports import free_port


def test_term_and_vote_are_fsynced_and_entries_flushed(tmp_path, monkeypatch):
    journal = createJournal(str(tmp_path / "raft.journal"))
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
    # fdatasync, not mmap.flush: CPython's msync holds the GIL, stalling every HTTP thread.
    assert datasynced == [str(tmp_path / "raft.journal")]
    # Entries past the file's first size make PySyncObj grow (and may reopen) it: still flushed.
    for index in range(2, 200):
        journal.add(b"\x00" + bytes(500), index, 7)
    flush()
    assert datasynced[-1] == str(tmp_path / "raft.journal")
    journal._destroy()
    reopened = createJournal(str(tmp_path / "raft.journal"))
    assert reopened.getCurrentTerm() == 7
    assert reopened.getVotedForNodeId() == "10.0.0.2:21337"
    assert reopened[0] == (b"\x00command", 1, 7)
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

"""The on-disk Raft journal: the same entries as PySyncObj's journals, the same file format, and
only the newest entries' bytes in memory."""

import os
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pysyncobj.journal import FileJournal, MemoryJournal

from cluster import durability, raft_journal
from cluster.raft_journal import JournalError, OnDiskJournal


def entries_of(journal):
    return [journal[i] for i in range(len(journal))]


def journal_holding(path, last_index, command, term=1):
    """A journal at `path` holding entries 1..last_index, each `command`."""
    journal = OnDiskJournal(path)
    for index in range(1, last_index + 1):
        journal.add(command, index, term)
    return journal


def test_entries_survive_a_reopen_and_read_with_pysyncobjs_own_journal(tmp_path):
    path = str(tmp_path / "raft.journal")
    journal = OnDiskJournal(path)
    written = [(bytes([n % 7]) + os.urandom(n * 37), n, 1 + n // 10) for n in range(1, 60)]
    for entry in written:
        journal.add(*entry)
    journal.setCurrentTerm(6, "127.0.0.1:2")
    journal._destroy()

    reopened = OnDiskJournal(path)
    assert entries_of(reopened) == written
    assert (reopened.getCurrentTerm(), reopened.getVotedForNodeId()) == (6, "127.0.0.1:2")
    reopened._destroy()
    theirs = FileJournal(path)
    assert entries_of(theirs) == written
    theirs._destroy()


def test_a_journal_pysyncobj_wrote_reads_here_and_takes_new_entries(tmp_path):
    path = str(tmp_path / "raft.journal")
    theirs = FileJournal(path)  # grows its file by doubling: zeros past the last entry
    written = [(b"\x01" + bytes(300), n, 2) for n in range(1, 40)]
    for entry in written:
        theirs.add(*entry)
    theirs._destroy()
    assert os.path.getsize(path) > 40 * 300

    journal = OnDiskJournal(path)
    assert entries_of(journal) == written
    journal.add(b"\x01after", 40, 3)
    journal._destroy()
    theirs = FileJournal(path)
    assert entries_of(theirs) == written + [(b"\x01after", 40, 3)]
    theirs._destroy()


operations = st.lists(st.one_of(
    st.tuples(st.just("add"), st.binary(max_size=3000)),
    st.tuples(st.just("delete_from"), st.integers(0, 40)),
    st.tuples(st.just("delete_to"), st.integers(0, 40)),
    st.tuples(st.just("clear"), st.none()),
    st.tuples(st.just("reopen"), st.none()),
), max_size=60)


@settings(max_examples=60, deadline=None)
@given(operations)
def test_it_holds_what_pysyncobjs_memory_journal_holds_through_any_changes(tmp_path_factory, ops):
    path = str(tmp_path_factory.mktemp("journal") / "raft.journal")
    journal, model = OnDiskJournal(path), MemoryJournal()
    next_index = 1
    recent_bytes = raft_journal.RECENT_BYTES
    raft_journal.RECENT_BYTES = 4000  # so that most entries are read back from the file
    try:
        for op, argument in ops:
            if op == "add":
                journal.add(b"\x00" + argument, next_index, 1 + next_index // 5)
                model.add(b"\x00" + argument, next_index, 1 + next_index // 5)
                next_index += 1
            elif op == "delete_from":
                journal.deleteEntriesFrom(argument)
                model.deleteEntriesFrom(argument)
                # An index written again after a truncation, maybe with other bytes, as Raft does.
                next_index = model[-1][1] + 1 if len(model) else 1
            elif op == "delete_to":
                journal.deleteEntriesTo(argument)
                model.deleteEntriesTo(argument)
            elif op == "clear":
                journal.clear()
                model.clear()
                next_index = 1
            else:
                journal._destroy()
                journal = OnDiskJournal(path)
            assert len(journal) == len(model)
            assert entries_of(journal) == entries_of(model)
            for start in range(0, len(model) + 2, 3):
                assert list(journal[start:]) == model[start:]
                assert list(journal[start:start + 2]) == model[start:start + 2]
                assert journal[start:][1:] == model[start:][1:]
            if len(model):
                assert journal[-1] == model[-1] and journal[0] == model[0]
        assert not os.path.exists(path + ".rewrite")
    finally:
        raft_journal.RECENT_BYTES = recent_bytes
        journal._destroy()


def test_older_entries_are_read_back_from_disk_not_kept_in_memory(tmp_path):
    tracemalloc.start()
    try:
        journal = OnDiskJournal(str(tmp_path / "raft.journal"))
        before = tracemalloc.get_traced_memory()[0]
        for index in range(1, 801):  # 40 MB of entries of 48 KiB, the group commit's largest
            journal.add(b"\x00" + index.to_bytes(4, "big") * 12_000, index, 1)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < raft_journal.RECENT_BYTES + 1_000_000  # not the 40 MB PySyncObj's list would hold
    assert journal[0] == (b"\x00" + (1).to_bytes(4, "big") * 12_000, 1, 1)
    assert [entry[1] for entry in journal[100:103]] == [101, 102, 103]
    assert journal[-1][0][1:5] == (800).to_bytes(4, "big")
    journal._destroy()


def test_a_compaction_keeps_the_rest_in_a_new_file_that_replaces_the_old(tmp_path):
    path = str(tmp_path / "raft.journal")
    journal = journal_holding(path, 100, b"\x00" + bytes(1000))
    size_before = os.path.getsize(path)
    journal.deleteEntriesTo(98)
    assert [entry[1] for entry in entries_of(journal)] == [99, 100]
    assert os.path.getsize(path) < size_before / 40
    journal.add(b"\x00next", 101, 2)
    journal._destroy()
    assert [entry[1] for entry in entries_of(OnDiskJournal(path))] == [99, 100, 101]


@pytest.mark.parametrize("damage, says", [
    (lambda f: f.truncate(300), "its header says its entries end"),
    (lambda f: f.truncate(20), "shorter than a journal's header"),
    (lambda f: (f.seek(40), f.write(b"\xff\xff\xff\x7f")), "impossible size"),
    (lambda f: (f.seek(40), f.write((100).to_bytes(4, "little"))), "does not end with its size"),
    (lambda f: f.write(bytes(40)), "does not start as a PySyncObj journal"),
    (lambda f: (f.seek(36), f.write(bytes(4))), "inside the header"),
])
def test_a_damaged_journal_is_refused_with_what_is_wrong(tmp_path, damage, says):
    path = str(tmp_path / "raft.journal")
    journal = journal_holding(path, 19, b"\x00" + bytes(100))
    journal._destroy()
    with open(path, "r+b") as damaged:
        damage(damaged)
    with pytest.raises(JournalError, match=says):
        OnDiskJournal(path)


@pytest.mark.parametrize("truncate", [lambda journal: journal.clear(), lambda journal: journal.deleteEntriesFrom(0)])
def test_an_index_written_again_after_a_truncation_reads_its_new_bytes(tmp_path, monkeypatch, truncate):
    monkeypatch.setattr(raft_journal, "RECENT_BYTES", 1000)  # the newest entry alone stays in memory
    journal = journal_holding(str(tmp_path / "raft.journal"), 3, b"\x00old" + bytes(900))
    assert journal[0][0].startswith(b"\x00old") and journal[1][0].startswith(b"\x00old")
    truncate(journal)
    for index in range(1, 4):  # another leader's entries at the same indexes
        journal.add(b"\x00new" + bytes(900), index, 2)
    assert [entry[0][:4] for entry in entries_of(journal)] == [b"\x00new"] * 3
    assert [entry[2] for entry in journal[0:]] == [2, 2, 2]
    journal._destroy()


def test_a_compaction_that_fails_after_its_rename_keeps_writing_to_the_new_file(tmp_path, monkeypatch):
    path = str(tmp_path / "raft.journal")
    journal = journal_holding(path, 9, b"\x00" + bytes(100))

    def no_descriptors(_path):
        raise OSError(24, "Too many open files")
    monkeypatch.setattr(durability, "fsync_path", no_descriptors)
    with pytest.raises(OSError):
        journal.deleteEntriesTo(3)
    journal.add(b"\x00after", 10, 1)  # a later entry a follower would confirm
    journal.flush()
    journal._destroy()
    assert [entry[1] for entry in entries_of(OnDiskJournal(path))] == list(range(4, 11))


def test_a_compaction_file_left_by_a_crash_is_removed_at_start(tmp_path):
    path = str(tmp_path / "raft.journal")
    OnDiskJournal(path).add(b"\x00one", 1, 1)
    with open(path + ".rewrite", "wb") as partial:
        partial.write(b"half a compaction")
    journal = OnDiskJournal(path)
    assert entries_of(journal) == [(b"\x00one", 1, 1)] and not os.path.exists(path + ".rewrite")
    journal._destroy()


def test_the_last_entry_of_a_reopened_journal_is_read_from_memory(tmp_path, monkeypatch):
    path = str(tmp_path / "raft.journal")
    journal = journal_holding(path, 49, b"\x00" + bytes(40_000))
    journal._destroy()
    journal = OnDiskJournal(path)
    reads = []
    real_pread = os.pread
    monkeypatch.setattr(os, "pread", lambda *args: (reads.append(args[1]), real_pread(*args))[1])
    for _ in range(10):  # as PySyncObj asks for the last index and term, and the first index
        assert journal[-1][1] == 49 and journal[0][1] == 1
    assert len(reads) == 1  # the first entry, once
    journal._destroy()


def test_a_slice_is_not_pickled_by_mistake(tmp_path):
    import pickle
    journal = OnDiskJournal(str(tmp_path / "raft.journal"))
    journal.add(b"\x00one", 1, 1)
    with pytest.raises(TypeError, match="slice it"):
        pickle.dumps(journal[0:])
    assert pickle.loads(pickle.dumps(journal[0:][:])) == [(b"\x00one", 1, 1)]
    journal._destroy()

"""The Raft log on disk, with only where each entry lies kept in memory.

PySyncObj's FileJournal writes every entry through an mmap of the journal file and also keeps
every entry's bytes in a list until the next compaction, so a peer under write load held its
log twice, once on the heap and once as mapped file pages, both counted in its RSS: at the scale
benchmark's 100,000 instances up to 20,000 commands (--compact-after-entries), some 200 bytes
an instance of a 2 KB budget. This journal writes the same file format with pwrite, keeps each
entry's offset, index and term, and the bytes of only the newest entries (those the apply loop
and the sends to followers read); an older entry is read back with pread when asked for (a
follower catching up, a replay at start), from the page cache as a rule. A journal written by
either one reads with the other.
"""

import os
import struct
from array import array
from collections import deque

from pysyncobj.journal import (APP_NAME, APP_VERSION, FIRST_RECORD_OFFSET, JOURNAL_FORMAT_VERSION,
                               LAST_RECORD_OFFSET_OFFSET, NAME_SIZE, VERSION_SIZE, Journal, MemoryJournal,
                               MetaStorer)
from pysyncobj.pickle import to_bytes

from . import durability

# The newest entries' bytes kept in memory: what the leader sends next and every peer applies
# next. Entries hold up to 48 KiB (group commit), so this is a few dozen of them.
RECENT_BYTES = 1 << 20
_HEADER = (APP_NAME + b"\0" * (NAME_SIZE - len(APP_NAME)) + APP_VERSION + b"\0" * (VERSION_SIZE - len(APP_VERSION))
           + struct.pack("<II", JOURNAL_FORMAT_VERSION, FIRST_RECORD_OFFSET))
_SIZE = struct.Struct("<I")
_RECORD_HEAD = struct.Struct("<IQQ")  # record size (index, term and command), index, term


def create_journal(path=None):
    """What PySyncObj's createJournal returns, with this journal for a file."""
    return MemoryJournal() if path is None else OnDiskJournal(path)


class JournalError(ValueError):
    """The journal file is not one this peer can read."""


class OnDiskJournal(Journal):
    def __init__(self, path):
        self.path = path
        self._fd = _open_journal(path)
        self._offsets = array("Q")  # where each entry's record starts
        self._sizes = array("I")  # each record's size field: 16 + the command's length
        self._indexes = array("Q")
        self._terms = array("Q")
        self._recent = {}  # Raft index -> command bytes, for the newest entries
        self._recent_order = deque()
        self._recent_bytes = 0
        # PySyncObj reads the first entry's index at every send, commit check and apply
        # (log[0][1]): its bytes stay here too rather than being read back each time.
        self._first = (None, None)
        self._end = self._load()
        self.meta_storer = MetaStorer(path + ".meta")
        self._meta = self.meta_storer.getMeta()
        self._meta_saved = True

    def _load(self):
        file_size = os.fstat(self._fd).st_size
        head = os.pread(self._fd, FIRST_RECORD_OFFSET, 0)
        if len(head) < FIRST_RECORD_OFFSET:
            raise JournalError(f"{self.path} is {file_size} bytes, shorter than a journal's header")
        if not head.startswith(APP_NAME):
            raise JournalError(f"{self.path} does not start as a PySyncObj journal does")
        end = _SIZE.unpack_from(head, LAST_RECORD_OFFSET_OFFSET)[0]
        if end < FIRST_RECORD_OFFSET:
            raise JournalError(f"{self.path}: its header says its entries end at byte {end}, inside the header")
        if end > file_size:
            raise JournalError(f"{self.path} is {file_size} bytes but its header says its entries end at byte {end}")
        offset = FIRST_RECORD_OFFSET
        while offset < end:
            head = os.pread(self._fd, _RECORD_HEAD.size, offset)
            if len(head) < _RECORD_HEAD.size:
                raise JournalError(f"{self.path}: the record at byte {offset} is cut short")
            size, index, term = _RECORD_HEAD.unpack(head)
            if size < 16 or offset + size + 8 > end:
                raise JournalError(f"{self.path}: the record at byte {offset} has an impossible size {size}")
            if os.pread(self._fd, _SIZE.size, offset + 4 + size) != _SIZE.pack(size):
                raise JournalError(f"{self.path}: the record at byte {offset} does not end with its size")
            self._offsets.append(offset)
            self._sizes.append(size)
            self._indexes.append(index)
            self._terms.append(term)
            offset += size + 8
        if self._offsets:
            # PySyncObj reads the last entry (its index and term) many times a tick.
            self._remember(self._indexes[-1], self._entry(len(self._offsets) - 1)[0])
        return offset

    # -- entries ----------------------------------------------------------------------------------

    def add(self, command, idx, term):
        command = to_bytes(command)
        size = 16 + len(command)
        # One vectored write: the command (up to 48 KiB) is not copied into a record first.
        _write_all(self._fd, [_RECORD_HEAD.pack(size, idx, term), command, _SIZE.pack(size)], self._end)
        _write_all(self._fd, [_SIZE.pack(self._end + size + 8)], LAST_RECORD_OFFSET_OFFSET)
        self._offsets.append(self._end)
        self._sizes.append(size)
        self._indexes.append(idx)
        self._terms.append(term)
        self._end += size + 8
        self._remember(idx, command)

    def _remember(self, index, command):
        if index in self._recent:
            self._forget_recent()  # an index written again: only after a truncation, which forgot it
        self._recent[index] = command
        self._recent_order.append(index)
        self._recent_bytes += len(command)
        while self._recent_bytes > RECENT_BYTES and len(self._recent_order) > 1:
            old = self._recent_order.popleft()
            self._recent_bytes -= len(self._recent.pop(old, b""))

    def _forget_recent(self, keep=lambda index: False):
        kept = deque(index for index in self._recent_order if keep(index))
        self._recent = {index: self._recent[index] for index in kept}
        self._recent_order = kept
        self._recent_bytes = sum(len(command) for command in self._recent.values())

    def _entry(self, position):
        index = self._indexes[position]
        command = self._recent.get(index)
        if command is None and position == 0 and self._first[0] == index:
            command = self._first[1]
        if command is None:
            length = self._sizes[position] - 16
            command = os.pread(self._fd, length, self._offsets[position] + _RECORD_HEAD.size)
            if len(command) != length:
                raise JournalError(f"{self.path}: the entry at index {index} could not be read back")
            if position == 0:
                self._first = (index, command)
        return command, index, self._terms[position]

    def __len__(self):
        return len(self._offsets)

    def __getitem__(self, item):
        if isinstance(item, slice):
            start, stop, step = item.indices(len(self._offsets))
            if step != 1:
                raise ValueError("journal slices take every entry")
            return JournalSlice(self, start, max(start, stop))
        position = item + len(self._offsets) if item < 0 else item
        if not 0 <= position < len(self._offsets):
            raise IndexError(item)
        return self._entry(position)

    def clear(self):
        _write_all(self._fd, [_SIZE.pack(FIRST_RECORD_OFFSET)], LAST_RECORD_OFFSET_OFFSET)
        self._end = FIRST_RECORD_OFFSET
        for column in (self._offsets, self._sizes, self._indexes, self._terms):
            del column[:]
        self._forget_recent()
        self._first = (None, None)

    def deleteEntriesFrom(self, entryFrom):
        if entryFrom >= len(self._offsets):
            return
        end = self._offsets[entryFrom] if entryFrom > 0 else FIRST_RECORD_OFFSET
        _write_all(self._fd, [_SIZE.pack(end)], LAST_RECORD_OFFSET_OFFSET)
        self._end = end
        first_gone = self._indexes[entryFrom]
        for column in (self._offsets, self._sizes, self._indexes, self._terms):
            del column[entryFrom:]
        self._forget_recent(keep=lambda index: index < first_gone)
        if entryFrom == 0:
            self._first = (None, None)

    def deleteEntriesTo(self, entryTo):
        """Drop the entries before `entryTo` (after a full dump holds them). The entries kept are
        written to a new file that replaces the journal by a rename: PySyncObj rewrote them in
        place, from the start, so a crash in the middle lost every kept entry not yet rewritten."""
        kept = min(entryTo, len(self._offsets))
        # The kept records lie end to end from the first of them to the journal's end.
        start = self._offsets[kept] if kept < len(self._offsets) else self._end
        records = os.pread(self._fd, self._end - start, start)
        if len(records) != self._end - start:
            raise JournalError(f"{self.path}: the entries kept by a compaction could not be read back")
        partial = self.path + ".rewrite"
        fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            end = FIRST_RECORD_OFFSET + len(records)
            _write_all(fd, [_HEADER[:LAST_RECORD_OFFSET_OFFSET], _SIZE.pack(end), records], 0)
            os.fdatasync(fd)  # the rename must never expose a file whose entries are not on disk yet
            os.replace(partial, self.path)
        except BaseException:
            os.close(fd)
            _remove_quietly(partial)
            raise
        # From the rename on, the new file is the journal: write to it even if what follows fails.
        os.close(self._fd)
        self._fd = fd
        self._end = end
        shift = start - FIRST_RECORD_OFFSET
        self._offsets = array("Q", (offset - shift for offset in self._offsets[kept:]))
        self._sizes = self._sizes[kept:]
        self._indexes = self._indexes[kept:]
        self._terms = self._terms[kept:]
        first_index = self._indexes[0] if self._indexes else None
        self._forget_recent(keep=lambda index: first_index is not None and index >= first_index)
        self._first = (None, None)
        durability.fsync_path(os.path.dirname(self.path) or ".")  # the rename

    def flush(self):
        """Put every entry written so far on disk. fdatasync releases the GIL while it waits."""
        os.fdatasync(self._fd)

    def _destroy(self):
        os.close(self._fd)

    # -- the term, vote and commit index, in the .meta file as PySyncObj keeps them --------------

    def setRaftCommitIndex(self, raftCommitIndex):
        self._meta["raftCommitIndex"] = raftCommitIndex
        self._meta_saved = False

    def getRaftCommitIndex(self):
        return self._meta.get("raftCommitIndex", 1)

    def setCurrentTerm(self, term, votedForNodeId):
        self._meta["currentTerm"] = term
        self._meta["votedForNodeId"] = votedForNodeId
        # Raft requires the term and vote on disk before any message that reflects them.
        self.meta_storer.storeMeta(self._meta)
        self._meta_saved = True

    def getCurrentTerm(self):
        return self._meta.get("currentTerm", 0)

    def getVotedForNodeId(self):
        return self._meta.get("votedForNodeId", None)

    def onOneSecondTimer(self):
        if not self._meta_saved:
            self.meta_storer.storeMeta(self._meta)
            self._meta_saved = True


class JournalSlice:
    """Entries start..stop of a journal, read only as they are used: PySyncObj slices the whole
    rest of the log to send a follower one batch of it. Slicing a slice gives a list (what goes
    into a message); it is valid until the journal next changes, as PySyncObj uses it."""

    __slots__ = ("_journal", "_start", "_stop")

    def __init__(self, journal, start, stop):
        self._journal, self._start, self._stop = journal, start, stop

    def __len__(self):
        return self._stop - self._start

    def __iter__(self):
        for position in range(self._start, self._stop):
            yield self._journal._entry(position)

    def __getitem__(self, item):
        positions = range(self._start, self._stop)[item]
        if isinstance(item, slice):
            return [self._journal._entry(position) for position in positions]
        return self._journal._entry(positions)

    def __reduce__(self):
        raise TypeError("a journal slice reads from an open file: slice it ([:]) for a list to send")


def _open_journal(path):
    _remove_quietly(path + ".rewrite")  # a compaction's new file from before a crash, never renamed
    if not os.path.exists(path):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        _write_all(fd, [_HEADER], 0)
        return fd
    return os.open(path, os.O_RDWR)


def _write_all(fd, buffers, offset):
    expected = sum(len(buffer) for buffer in buffers)
    written = os.pwritev(fd, buffers, offset)
    if written != expected:  # a regular file writes short only when the disk is full
        raise OSError(f"wrote {written} of {expected} bytes to the Raft journal: is the disk full?")


def _remove_quietly(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass

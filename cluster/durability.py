"""What reaches the disk before a peer vouches for it.

PySyncObj writes its journal through mmap and its term/vote file with a plain write: both reach
the page cache, and the kernel writes them back when it likes. That survives a crash of the
process, not a power loss. With --sync-journal (the default) a follower flushes the journal
(fdatasync) before it confirms holding new entries, a leader flushes right after sending them
and always before it counts a confirmation, and every peer fsyncs the term/vote file whenever
PySyncObj stores it, so a vote is never forgotten and given twice in one term.
"""

import os


def make_durable(journal):
    """Make `journal` (PySyncObj's FileJournal) store its term/vote file durably; return the
    function that flushes its entries to disk."""
    entries_file = journal._FileJournal__journalFile

    def flush_entries():
        # PySyncObj's own flush is mmap.flush(), and CPython's msync holds the GIL: every HTTP
        # thread of the peer stalled for the disk's write latency at each flush. On Linux,
        # msync(MS_SYNC) is fdatasync of the mapped range, and pages written through a shared
        # mapping are dirty page-cache pages that fdatasync writes back; it releases the GIL.
        # The file object is looked up each time: PySyncObj reopens it when it grows the file.
        os.fdatasync(entries_file._ResizableFile__f.fileno())

    storer = journal._FileJournal__metaStorer
    store = storer.storeMeta
    path = storer.getPath()

    def store_durably(meta):
        store(meta)
        _fsync(path)
        _fsync(os.path.dirname(path) or ".")  # the rename that replaced it

    storer.storeMeta = store_durably
    return flush_entries


def _fsync(path):
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

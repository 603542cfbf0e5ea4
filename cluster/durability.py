"""What reaches the disk before a peer vouches for it.

PySyncObj writes its journal through mmap and its term/vote file with a plain write: both reach
the page cache, and the kernel writes them back when it likes. That survives a crash of the
process, not a power loss. With --sync-journal (the default) a peer flushes the journal
(msync) before it sends new entries or confirms holding them, and fsyncs the term/vote file
whenever PySyncObj stores it, so a vote is never forgotten and given twice in one term.
"""

import os


def make_durable(journal):
    """Make `journal` (PySyncObj's FileJournal) store its term/vote file durably; return the
    function that flushes its entries to disk."""
    storer = journal._FileJournal__metaStorer
    store = storer.storeMeta
    path = storer.getPath()

    def store_durably(meta):
        store(meta)
        _fsync(path)
        _fsync(os.path.dirname(path) or ".")  # the rename that replaced it

    storer.storeMeta = store_durably
    return journal.flush


def _fsync(path):
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

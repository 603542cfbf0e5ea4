"""What reaches the disk before a peer vouches for it.

The Raft journal (cluster/raft_journal.py) and PySyncObj's term/vote file are written with
plain writes: both reach the page cache, and the kernel writes them back when it likes. That
survives a crash of the process, not a power loss. With --sync-journal (the default) a follower
flushes the journal (fdatasync) before it confirms holding new entries, a leader flushes right
after sending them and always before it counts a confirmation, and every peer fsyncs the
term/vote file whenever PySyncObj stores it, so a vote is never forgotten and given twice in
one term.
"""

import os


def make_durable(journal):
    """Make `journal` (cluster/raft_journal.py's) store its term/vote file durably; return the
    function that flushes its entries to disk."""
    storer = journal.meta_storer
    store = storer.storeMeta
    path = storer.getPath()

    def store_durably(meta):
        store(meta)
        fsync_path(path)
        fsync_path(os.path.dirname(path) or ".")  # the rename that replaced it

    storer.storeMeta = store_durably
    return journal.flush


def fsync_path(path):
    """fsync a file or a directory (to make a rename in it durable) by its path."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

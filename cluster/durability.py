"""What reaches the disk before a peer vouches for it.

PySyncObj writes its journal through mmap and its term/vote file with a plain write: both reach
the page cache, and the kernel writes them back when it likes. That survives a crash of the
process, not a power loss. With --sync-journal (the default) a follower flushes the journal
(fdatasync) before it confirms holding new entries, a leader flushes right after sending them
and always before it counts a confirmation, and every peer fsyncs the term/vote file whenever
PySyncObj stores it, so a vote is never forgotten and given twice in one term.

PySyncObj also stores that file once a second when only the commit index moved, on the Raft
thread. Made durable there, those two fsyncs stalled the Raft thread of every peer for 0.7-14 ms
once a second (the latency budget's traces), and a write waits for the Raft threads of its peer
and the leader. A commit index need not be durable at once (on disk it is only where a restarted
peer starts applying its journal, and an older one is safe: the leader's commit moves it on), so
those stores are made durable by a thread of their own; a term or vote is still durable before
PySyncObj goes on, and an older store never overwrites a newer vote.
"""

import logging
import os
import threading

log = logging.getLogger(__name__)


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
    storer.storeMeta = MetaWriter(storer.storeMeta, storer.getPath()).store
    return flush_entries


class MetaWriter:
    """PySyncObj's term/vote/commit-index file made durable: at once when the term or vote
    changed, by a thread of its own when only the commit index did."""

    def __init__(self, store, path):
        self._store = store  # PySyncObj's: a temporary file, then a rename over the real one
        self._path = path
        self._lock = threading.Lock()  # one store on disk at a time
        self._durable_vote = None  # (term, voted for) of the last store made durable
        self._queued = None  # a commit-index-only meta for the thread
        self._writing = False
        self._changed = threading.Condition()
        self._thread = None

    def store(self, meta):
        """PySyncObj's storeMeta(meta), on the Raft thread."""
        if _vote(meta) != self._durable_vote:
            with self._lock:
                self._write_durably(dict(meta))
            return
        with self._changed:
            self._queued = dict(meta)
            self._changed.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="raft-meta-writer", daemon=True)
                self._thread.start()

    def drain(self, timeout):
        """Wait until no store is queued or being written; True if none is left."""
        with self._changed:
            return self._changed.wait_for(lambda: self._queued is None and not self._writing, timeout)

    def _write_durably(self, meta):
        """Under self._lock."""
        self._store(meta)
        _fsync(self._path)
        _fsync(os.path.dirname(self._path) or ".")  # the rename that replaced it
        self._durable_vote = _vote(meta)

    def _run(self):
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._queued is not None)
                meta, self._queued, self._writing = self._queued, None, True
            try:
                with self._lock:
                    # A term or vote stored since holds a newer commit index too: never put an
                    # older vote back over it.
                    if _vote(meta) == self._durable_vote:
                        self._write_durably(meta)
            except OSError:
                log.exception("the Raft meta file (commit index) could not be stored; trying again at the next store")
            finally:
                with self._changed:
                    self._writing = False
                    self._changed.notify_all()


def _vote(meta):
    return meta.get("currentTerm"), meta.get("votedForNodeId")


def _fsync(path):
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

"""PySyncObj's TCP transport with what the registry adds on the Raft thread: contact tracking,
journal flushes before confirmations, and work-arounds of PySyncObj 0.3.17 defects (the
leader's nextIndex kept monotonic; a follower's log truncated only on a real conflict).
"""

import logging
import time

from pysyncobj.transport import TCPTransport

from . import tracing
from .log_matching import trim_append

log = logging.getLogger(__name__)


class ContactTrackingTransport(TCPTransport):
    """PySyncObj's TCP transport, noting when each partner (and the leader) was last heard from."""

    def __init__(self, syncObj, selfNode, otherNodes):
        super().__init__(syncObj, selfNode, otherNodes)
        self.last_heard = {}  # raft address -> monotonic seconds
        self.last_leader_contact = None
        self.last_leader_seen = None
        self.leader_changes = 0
        self.on_follower_confirmed = None  # called on the Raft thread with the follower's node
        self.sync_journal = None  # flushes the journal to disk; None leaves it to the kernel
        self._journal_unflushed = False
        self.divergence = None  # a log_matching.Divergence once a committed entry conflicts
        self._confirm_instead = None  # (node, next index) the next success confirmation must say
        self.leader_commit_heard = None  # the highest commit index a current leader sent

    def send(self, node, message):
        # PySyncObj leaves flushing the journal to the kernel. A follower confirms entries only
        # once they are on disk; confirming a heartbeat, which brought none, needs no flush (it
        # only delayed applying the commit it carried). A leader flushes its new entries once the
        # tick that sent them is done (flush_sent_entries), in parallel with the followers'
        # flushes (Raft allows it), and in any case before it reads a confirmation: only a
        # confirmation can commit them, on this same thread.
        if isinstance(message, dict):
            kind = message.get("type")
            if kind == "next_node_idx" and message.get("success"):
                if self._confirm_instead is not None and self._confirm_instead[0] == node:
                    message = dict(message, next_node_idx=self._confirm_instead[1])
                    self._confirm_instead = None
                if self._journal_unflushed:
                    self._flush_journal()
                if tracing.enabled():
                    tracing.mark("reply.sent", message.get("next_node_idx", 0) - 1)
            elif kind == "append_entries":
                if message.get("entries"):
                    self._journal_unflushed = True
                if tracing.enabled():
                    for entry in message.get("entries") or ():
                        tracing.mark("append.sent", [entry[1], node.id])
                    tracing.mark("commit.sent", [message.get("commit_index", 0), node.id])
            elif kind == "apply_command":
                tracing.mark("forward.sent", None)
        return super().send(node, message)

    def flush_sent_entries(self):
        """On the Raft thread, at the end of a tick: flush the entries this tick sent."""
        if self._journal_unflushed:
            self._flush_journal()

    def _flush_journal(self):
        # The one place that knows whether this peer flushes at all (--no-sync-journal): the
        # unflushed flag is kept either way, so sending and receiving need not ask.
        if self.sync_journal is not None:
            self.sync_journal()
            if tracing.enabled() and self._syncObj is not None:
                tracing.mark("journal.flushed", self._syncObj._SyncObj__getCurrentLogIndex())
        self._journal_unflushed = False

    def _onMessageReceived(self, node, message):
        now = time.monotonic()
        self.last_heard[node.id] = now
        kind = message.get("type") if isinstance(message, dict) else None
        if tracing.enabled():
            _trace_received(node, kind, message)
        if kind == "append_entries":
            # Only a leader sends append_entries; one of an older term is from a deposed leader,
            # which the library ignores, and is no contact with the cluster's leader.
            syncobj = self._syncObj
            if syncobj is None or message.get("term", 0) >= syncobj.raftCurrentTerm:
                self.last_leader_contact = now
            if self.divergence is not None:
                return  # a diverged replica takes nothing more (the replica keeps it from campaigning)
            if "prevLogIdx" in message and "transmission" not in message:
                message = self._truncate_only_on_conflict(node, message)
                if message is None:
                    return
            if message.get("entries") or "serialized" in message or "transmission" in message:
                self._journal_unflushed = True  # this peer's journal changes before it answers
            if node.id != self.last_leader_seen:
                self.last_leader_seen = node.id
                self.leader_changes += 1
        if kind == "next_node_idx":
            if self._journal_unflushed:
                self._flush_journal()
            self._keep_next_index_monotonic(node, message)
            if message.get("success") and self.on_follower_confirmed is not None:
                self.on_follower_confirmed(node)
        else:
            try:
                super()._onMessageReceived(node, message)
            finally:
                self._confirm_instead = None

    def _truncate_only_on_conflict(self, node, message):
        """The append as the library should see it (cluster/log_matching.py), or None to drop it."""
        syncobj = self._syncObj
        if message.get("term", 0) < syncobj.raftCurrentTerm:
            return message  # the library ignores appends of an older term
        # The commit index as the leader sent it (the rewrite below may cut the library's copy).
        self.leader_commit_heard = max(self.leader_commit_heard or 0, message.get("commit_index") or 0)
        entries = syncobj._SyncObj__raftLog
        first, last = entries[0][1], entries[-1][1]

        def term_at(index):
            return entries[index - first][2] if first <= index <= last else None

        trimmed = trim_append(message, term_at, last, syncobj.raftLastApplied, node.id)
        if trimmed.divergence is not None:
            self.divergence = trimmed.divergence
            log.critical("replicas diverged: %s", trimmed.divergence.describe())
            return None
        if trimmed.confirm_next_index is not None:
            self._confirm_instead = (node, trimmed.confirm_next_index)
        return trimmed.message

    def _keep_next_index_monotonic(self, node, message):
        """Work around two PySyncObj 0.3.17 defects in the leader's nextIndex for a follower, on
        the Raft thread like the library's own handler.

        The leader sends entries as soon as they arrive (appendEntriesUseBatch off), and several
        batches per round, moving nextIndex past each batch at once. The library then sets
        nextIndex to whatever each reply says, in arrival order:
        - a success reply to an earlier batch moves it back, so the leader resends entries the
          follower holds, and the follower truncates and re-appends them ("truncating
          already-applied log entries");
        - a rejection for a term mismatch lowers it by one, and the "log too short" rejection of
          the next batch of the same round raises it again to the end of the follower's log: a
          follower holding entries of an old term (a leader cut off, then healed) is sent the
          same two batches forever and never catches up.
        Raft moves nextIndex forward only on success and backward only on rejection; so does this.
        """
        next_index = self._syncObj._SyncObj__raftNextIndex
        before = next_index.get(node)
        super()._onMessageReceived(node, message)
        after = next_index.get(node)
        if before is None or after is None:
            return
        if message.get("reset"):
            next_index[node] = min(before, after)
        elif message.get("success"):
            next_index[node] = max(before, after)


def _trace_received(node, kind, message):
    if kind == "append_entries":
        for entry in message.get("entries") or ():
            tracing.mark("append.received", entry[1])
        if "commit_index" in message:
            tracing.mark("commit.heard", message["commit_index"])
    elif kind == "next_node_idx" and message.get("success"):
        tracing.mark("reply.received", [message.get("next_node_idx", 0) - 1, node.id])
    elif kind == "apply_command_response" and "log_idx" in message:
        tracing.mark("forward.answered", message["log_idx"])

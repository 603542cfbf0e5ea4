"""How long a peer has owed the apply of entries its leader committed.

A peer hears a commit index (in an append, or from a follower's confirmation on the leader) and
applies the entries it covers on the next tick, so "applied < commit" holds for an instant after
nearly every write. Readiness asks how long the oldest unapplied commit has been known instead:
a healthy peer owes entries for a tick, a stuck or lagging one for as long as it lags.
"""

import collections
import threading

# A peer that has owed an apply longer than this is not caught up (a tick takes milliseconds).
READY_WITHIN_SECONDS = 1.0
# Bounds the memory of a peer that falls far behind; past it, newer commit indexes replace the
# newest kept one, so the oldest (the one the lag is measured from) is never lost.
MAX_KEPT = 4096


class ApplyLag:
    def __init__(self):
        self._heard = collections.deque()  # (monotonic seconds, commit index), both increasing
        self._lock = threading.Lock()  # the Raft thread observes while HTTP threads ask

    def observe(self, now, commit_index, applied_index):
        """Called on the Raft thread after every tick."""
        heard = self._heard
        with self._lock:
            while heard and heard[0][1] <= applied_index:
                heard.popleft()
            if commit_index is None or commit_index <= applied_index:
                return
            if heard and heard[-1][1] >= commit_index:
                return
            if len(heard) >= MAX_KEPT:
                heard[-1] = (heard[-1][0], commit_index)
            else:
                heard.append((now, commit_index))

    def owed_seconds(self, now, applied_index):
        """Seconds since the oldest commit index not yet applied was first heard; 0 if none."""
        with self._lock:
            for heard_at, commit_index in self._heard:
                if commit_index > applied_index:
                    return max(0.0, now - heard_at)
        return 0.0

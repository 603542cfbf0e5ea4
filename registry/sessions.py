"""The client-session table of the Raft dissertation (§6.3): recent command ids and their results.

A peer re-submits a write whose outcome a leader change left unknown. The attempt that finds
its command id already applied must answer as the first attempt did, and must change nothing;
the table that says so is replicated data, kept by apply alone, so every peer decides alike.

It forgets deterministically: an id is kept for KEPT_ENTRIES Raft indexes after the entry that
applied it, and never more than KEPT_IDS ids at once (the oldest go first). A re-submission
comes within the write deadline (seconds), far inside either bound at any write rate the
registry sustains. The table is saved in snapshots and dumps, so a peer restored from one goes
on deciding as the others do, but nothing a read returns shows it.
"""

import collections

KEPT_ENTRIES = 20_000
KEPT_IDS = 20_000


class CommandSessions:
    def __init__(self):
        self._results = {}  # command id -> result of its first application
        self._order = collections.deque()  # (index, command id), oldest first

    def __len__(self):
        return len(self._results)

    def answered(self, command_id):
        """The result of the first application of `command_id`, or None if it is not known."""
        result = self._results.get(command_id)
        return None if result is None else dict(result)

    def remember(self, command_id, index, result):
        self._results[command_id] = dict(result, index=index)
        self._order.append((index, command_id))
        self._forget_before(index - KEPT_ENTRIES)

    def _forget_before(self, oldest_kept_index):
        order, results = self._order, self._results
        while order and (order[0][0] < oldest_kept_index or len(order) > KEPT_IDS):
            del results[order.popleft()[1]]

    def entries(self):
        """[[command id, result]] oldest first (each result holds its index): the snapshot form."""
        results = self._results
        return [[command_id, results[command_id]] for _, command_id in self._order]

    @classmethod
    def of(cls, entries):
        sessions = cls()
        for command_id, result in entries or ():
            sessions._results[command_id] = result
            sessions._order.append((result["index"], command_id))
        return sessions

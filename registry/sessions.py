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
# Results come in few shapes (the keys of an ok or a failure of each command): each shape is
# kept once, and a result as its index and values alone. A result dict and its (index, id)
# pair in the order took 300 bytes an entry, over 60 bytes an instance at 100,000 instances;
# the tuple takes 80.
_SHAPES = {}
_MAX_SHAPES = 1024


def _shape(keys):
    shape = _SHAPES.get(keys)
    if shape is None:
        if len(_SHAPES) >= _MAX_SHAPES:
            return keys  # a result of a shape never seen before: kept whole, just not shared
        shape = _SHAPES.setdefault(keys, keys)
    return shape


def _compact(index, result):
    if "index" in result:  # a result read back from a snapshot carries its index among its values
        result = {key: value for key, value in result.items() if key != "index"}
    return (index, _shape(tuple(result)), *result.values())


def _expanded(kept):
    result = dict(zip(kept[1], kept[2:]))
    result["index"] = kept[0]
    return result


class CommandSessions:
    def __init__(self):
        self._results = {}  # command id -> (index, keys, *values) of its first application's result
        self._order = collections.deque()  # command ids, oldest first

    def __len__(self):
        return len(self._results)

    def answered(self, command_id):
        """The result of the first application of `command_id` (with its `index`), or None."""
        kept = self._results.get(command_id)
        return None if kept is None else _expanded(kept)

    def remember(self, command_id, index, result):
        self._results[command_id] = _compact(index, result)
        self._order.append(command_id)
        self._forget_before(index - KEPT_ENTRIES)

    def _forget_before(self, oldest_kept_index):
        order, results = self._order, self._results
        while order and (results[order[0]][0] < oldest_kept_index or len(order) > KEPT_IDS):
            del results[order.popleft()]

    def entries(self):
        """[[command id, result]] oldest first (each result holds its index): the snapshot form."""
        results = self._results
        return [[command_id, _expanded(results[command_id])] for command_id in self._order]

    @classmethod
    def of(cls, entries):
        sessions = cls()
        for command_id, result in entries or ():
            sessions._results[command_id] = _compact(result["index"], result)
            sessions._order.append(command_id)
        return sessions

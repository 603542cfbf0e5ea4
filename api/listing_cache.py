"""Instance lists encoded once per version of the state, not once per request.

Building a list (filter, sort) and encoding it took most of a 1,000-instance read. Proxies and
dashboards ask for the same lists over and over between changes, so the encoded bytes are kept
for the replica's current Raft index and thrown away as soon as anything changes.
"""

import threading

import orjson

# Bounds: lists are kept only for the current index, at most this many and this many bytes.
MAX_ENTRIES = 128
MAX_BYTES = 64 * 1024 * 1024
MAX_BODY_BYTES = 8 * 1024 * 1024


class ListingCache:
    def __init__(self):
        self._lock = threading.Lock()
        self._at_index = None
        self._entries = {}  # key -> (kind index, body bytes)
        self._bytes = 0

    def listing(self, peer, filters, caller):
        """(X-Registry-Index, the encoded {"instances": [...]}) as peer.list_instances gives it."""
        # Read before the list is built: if the state moves on meanwhile, what is kept under this
        # index is newer than it, never older, and is dropped at the next change anyway.
        at_index = peer.replica.state_index
        key = (_filters_key(filters), caller["slug"], tuple(caller["roles"]))
        with self._lock:
            if self._at_index == at_index:
                found = self._entries.get(key)
                if found is not None:
                    return found
        index, records = peer.list_instances(filters, caller)
        body = orjson.dumps({"instances": records})
        with self._lock:
            if self._at_index != at_index:
                self._at_index, self._entries, self._bytes = at_index, {}, 0
            if (len(body) <= MAX_BODY_BYTES and len(self._entries) < MAX_ENTRIES
                    and self._bytes + len(body) <= MAX_BYTES):
                self._entries[key] = (index, body)
                self._bytes += len(body)
        return index, body


def _filters_key(filters):
    return tuple(sorted((name, tuple(value) if isinstance(value, list) else value)
                        for name, value in filters.items()))

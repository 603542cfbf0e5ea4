"""Instance lists encoded once per version of what they cover, not once per request.

Building a list and encoding it took most of a read. Proxies and dashboards ask for the same
lists over and over, and most changes do not touch them: a node heartbeat never changes an
instance list, and a change to one service's instances changes no other service's. So a kept
list is dropped only when what it covers changes: its slug's instances for a list filtered by
slug, any instance otherwise, and the permits (they decide who sees what) for every list.

Lists of more than list_blocks.BLOCK_RECORDS records are kept as blocks instead
(api/list_blocks.py): while anything changes a whole list is never valid for long, but most of
its blocks are. Other lists larger than MAX_BODY_BYTES (few records, each large) are encoded for
each request and not kept.
"""

import collections
import threading

import orjson

from . import list_blocks

# Kept lists: at most this many, this many bytes in all, and none larger than MAX_BODY_BYTES.
MAX_ENTRIES = 1024
MAX_BYTES = 16 * 1024 * 1024
MAX_BODY_BYTES = 4 * 1024 * 1024


class ListingCache:
    def __init__(self, block_bytes=list_blocks.MAX_BYTES):
        self._lock = threading.Lock()
        self._entries = collections.OrderedDict()  # key -> (version, index, body), least recent first
        self._bytes = 0
        self._blocks = list_blocks.BlockEncodings(max_bytes=block_bytes)

    def listing(self, peer, filters, caller):
        """(X-Registry-Index, the encoded {"instances": [...]}) as peer.list_instances gives it."""
        # Read before the list is built: if the state moves on meanwhile, what is kept under this
        # version is newer than it, never older, and is built again at the next request.
        version = peer.instances_version(filters)
        key = _key(filters, caller)
        found = self._kept(key, version)
        if found is not None:
            return found[1], found[2]
        index, records = peer.list_instances(filters, caller)  # under the state lock
        if len(records) > list_blocks.BLOCK_RECORDS:
            return index, self._blocks.encode(key, records)  # outside it
        body = orjson.dumps({"instances": records})  # outside it
        if len(body) <= MAX_BODY_BYTES:
            self._keep(key, (version, index, body))
        return index, body

    def holds(self, peer, filters, caller):
        """Whether listing() would answer from a list kept for the current version: a dictionary
        lookup, nothing built or encoded (api/loop_answers.py answers such reads at once)."""
        return self._kept(_key(filters, caller), peer.instances_version(filters)) is not None

    def _kept(self, key, version):
        """The entry kept for `key` if it is of `version` (now the most recently used), else None."""
        with self._lock:
            found = self._entries.get(key)
            if found is None or found[0] != version:
                return None
            self._entries.move_to_end(key)
            return found

    def _keep(self, key, entry):
        with self._lock:
            replaced = self._entries.pop(key, None)
            if replaced is not None:
                self._bytes -= len(replaced[2])
            self._entries[key] = entry
            self._bytes += len(entry[2])
            while len(self._entries) > MAX_ENTRIES or self._bytes > MAX_BYTES:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= len(evicted[2])


def _key(filters, caller):
    return _filters_key(filters), caller["slug"], tuple(caller["roles"])


def _filters_key(filters):
    return tuple(sorted((name, tuple(value) if isinstance(value, list) else value)
                        for name, value in filters.items()))

"""Large instance lists encoded in blocks, each kept until one of its records changes.

A list too large to keep whole (the full list at 100,000 instances is 46 MB) took one orjson
call over every record per request: about 90 ms of a 170-220 ms answer, and while anything
changes no kept copy survives long enough to be used again. Records are immutable (a change
puts a new record in the state), so the encoding of a run of records stays valid for as long as
the state holds those same record objects. A large list is therefore cut into blocks of about
BLOCK_RECORDS records, at boundary ids chosen once per list; each block keeps the records it
encoded and its bytes, and a request encodes again only the blocks whose records are no longer
the same objects. A new or removed id changes only its own block, since the cuts are ids, not
positions.

A list is kept only from its second request on (a one-off list, such as a count a script takes
once, costs no memory afterwards), for at most MAX_LISTS lists and --list-cache-mb in all, least
recently used first: at 100,000 instances of ~450 encoded bytes one full list (46 MB, 460 bytes
per instance) fits, and at a million the budget still bounds what is kept while the list is
encoded per request.
"""

import bisect
import collections
import operator
import threading

import orjson

# 4,096 records of ~450 bytes encode in about 4 ms and make a block of about 1.9 MB, over
# glibc's mmap threshold (api/serve.py): a block encoded again gives its old mapping back.
BLOCK_RECORDS = 4096
MAX_LISTS = 4
# The default of --list-cache-mb.
MAX_BYTES = 64 * 1024 * 1024
# Lists asked for once are remembered (not kept) this many at a time, so a second request finds them.
REMEMBERED_KEYS = 64

_OPEN = b'{"instances":['
_CLOSE = b"]}"


def _by_id(record):
    return record["id"]


class EncodedList:
    """A list's JSON as parts, in order, with its total length: sent as it is, never joined."""

    def __init__(self, parts):
        self.parts = parts
        self._length = sum(len(part) for part in parts)

    def __len__(self):
        return self._length

    def __bytes__(self):
        return b"".join(self.parts)


class _Block:
    __slots__ = ("records", "encoded")

    def __init__(self, records):
        self.records = records
        # The records without the enclosing brackets: blocks are joined with commas.
        self.encoded = orjson.dumps(records)[1:-1]


class _KeptList:
    def __init__(self, records):
        # Boundary ids, cut every BLOCK_RECORDS records of the list as it is now.
        self.cuts = [records[at]["id"] for at in range(BLOCK_RECORDS, len(records), BLOCK_RECORDS)]
        self.blocks = [None] * (len(self.cuts) + 1)

    def slices(self, records):
        bounds = [0, *(bisect.bisect_left(records, cut, key=_by_id) for cut in self.cuts), len(records)]
        return [records[start:end] for start, end in zip(bounds, bounds[1:])]

    def nbytes(self):
        return sum(len(block.encoded) for block in self.blocks if block is not None)


class BlockEncodings:
    def __init__(self, max_lists=MAX_LISTS, max_bytes=MAX_BYTES, keep_from_request=2):
        self._lock = threading.Lock()
        self._lists = collections.OrderedDict()  # key -> _KeptList, least recently used first
        self._asked = collections.OrderedDict()  # key -> requests so far, for lists not kept yet
        self._max_lists = max_lists
        self._max_bytes = max_bytes
        self._keep_from_request = keep_from_request
        self.blocks_encoded = 0  # tests check that unchanged blocks are not encoded again

    def encode(self, key, records):
        """The EncodedList of `records` (a list in id order), from kept blocks where they still hold."""
        if self._max_bytes <= 0:
            return _whole(records)
        with self._lock:
            kept = self._lists.get(key)
            if kept is None:
                asked = self._asked.pop(key, 0) + 1
                if asked < self._keep_from_request:
                    self._asked[key] = asked
                    while len(self._asked) > REMEMBERED_KEYS:
                        self._asked.popitem(last=False)
                    return _whole(records)
        runs = None if kept is None else kept.slices(records)
        if runs is None or _unbalanced(kept, records, runs):
            kept = _KeptList(records)
            runs = kept.slices(records)
        # Concurrent requests share the kept blocks: each checks a block against its own records
        # and sends the block it checked, so a block another request replaced meanwhile is
        # at worst encoded again by the next one.
        parts = [_OPEN]
        for position, run in enumerate(runs):
            block = kept.blocks[position]
            if block is None or not _same_objects(block.records, run):
                block = kept.blocks[position] = _Block(run)
                self.blocks_encoded += 1
            if block.encoded:
                if len(parts) > 1:
                    parts.append(b",")
                parts.append(block.encoded)
        parts.append(_CLOSE)
        self._keep(key, kept)
        return EncodedList(parts)

    def _keep(self, key, kept):
        with self._lock:
            self._lists[key] = kept
            self._lists.move_to_end(key)
            while self._lists and (len(self._lists) > self._max_lists
                                   or sum(k.nbytes() for k in self._lists.values()) > self._max_bytes):
                self._lists.popitem(last=False)


def _whole(records):
    return EncodedList([orjson.dumps({"instances": records})])


def _same_objects(kept, run):
    # Identity, not equality: equal records may still encode differently (key order, 1 and 1.0).
    return len(kept) == len(run) and all(map(operator.is_, kept, run))


def _unbalanced(kept, records, runs):
    """Cut again once ids came or went so that the blocks are far from their planned size: a
    list that shrank to a fraction of its blocks, or one block grown to several."""
    return (len(records) < (len(kept.blocks) - 1) * BLOCK_RECORDS // 2
            or max(map(len, runs)) > 4 * BLOCK_RECORDS)

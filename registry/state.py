"""The replicated state and its deterministic state machine.

`RegistryState.apply(command, index)` runs on every peer for every committed command, in log
order, and must leave every peer equal: it reads no clock, no randomness, no environment,
and it never raises (an exception inside a PySyncObj replicated method stalls the peer), so a
bad command becomes an error result instead.
"""

import contextlib
import gc
import hashlib
import json

from . import commands, health, instances, nodes, permissions
from .errors import INVALID, OK, failure, ok
from .instance_index import InstanceIndex
from .sessions import CommandSessions

SNAPSHOT_FORMAT = 1
# How digest_of() hashes a state; a checkpoint compares digests of the same format only, so that
# peers of two code versions can run side by side during a rolling upgrade.
DIGEST_FORMAT = 2
DIGEST_CHUNK = 500
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
GRANTS_MEMO_SIZE = 1024
# A query whose indexed candidates are more than this share of all instances walks every id in
# order instead: cheaper than sorting that many matches.
WALK_ALL_ABOVE = 0.25

_HANDLERS = {
    commands.REGISTER_INSTANCE: instances.apply_register,
    commands.REMOVE_INSTANCE: instances.apply_remove,
    commands.REPORT_NODE: nodes.apply_report,
    commands.REMOVE_NODE: nodes.apply_remove,
    commands.SET_PERMITS: permissions.apply_set,
    commands.SCAN_RESULTS: health.apply_scan,
    commands.RENEW_INSTANCES: health.apply_renewals,
}


@contextlib.contextmanager
def collector_paused():
    """Around loading a state: a load makes hundreds of thousands of records and lists, and
    each 700 of them start a collection that walks the young ones, a growing share of them
    the old ones too. None of them is garbage; without the collector a 100,000-instance load
    takes half the time (measured: the records' copying alone 0.42 -> 0.24 s)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _by_id(record):
    return record["id"]


class RegistryState:
    def __init__(self):
        self.instances = {}  # id -> record
        self.instance_by_url = {}  # url -> id, derived from instances
        self.instance_index = InstanceIndex()  # derived from instances
        self.nodes = {}  # url -> record
        self.permits = permissions.default_permits()  # also empties the grants memo
        self.index = 0  # Raft index of the last command applied
        # Raft index of the last command that changed each kind of data.
        self.kind_index = {commands.INSTANCES: 0, commands.NODES: 0, commands.PERMITS: 0}
        self.sessions = CommandSessions()  # ids of recent commands: a re-submission applies once

    @property
    def permits(self):
        return self._permits

    @permits.setter
    def permits(self, permits):
        # Permits are replaced whole, never changed in place (apply_set builds new ones).
        self._permits = permits
        self._grants = {}

    def grants(self, who):
        """permissions.grants under the current permits, remembered per caller until they change:
        every write is checked where it is received and again in apply on every peer."""
        if who is permissions.SYSTEM:
            return permissions.grants(self._permits, who)
        key = (who.get("slug"), tuple(who.get("roles") or ()))
        granted = self._grants.get(key)
        if granted is None:
            if len(self._grants) >= GRANTS_MEMO_SIZE:
                self._grants.clear()
            granted = self._grants[key] = permissions.grants(self._permits, who)
        return granted

    def apply(self, command, index):
        if isinstance(command, dict) and command.get("type") in commands.NO_STATE_CHANGE:
            return ok()  # changes nothing, not even the index
        self.index = index
        if not isinstance(command, dict):
            return failure(INVALID, "a command must be an object")
        command_id = command.get("cid")
        if command_id is None:
            return self._apply_once(command, index)
        earlier = self.sessions.answered(command_id)
        if earlier is not None:
            return earlier  # a re-submission: it changes nothing and answers as the first did
        result = self._apply_once(command, index)
        self.sessions.remember(command_id, index, result)
        return result

    def _apply_once(self, command, index):
        handler = _HANDLERS.get(command.get("type"))
        if handler is None or command.get("v") != commands.VERSION:
            return failure(INVALID, f"unknown command {command.get('type')!r} version {command.get('v')!r}")
        try:
            result = handler(self, command)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            # Handlers check before they change anything, so a malformed command changes nothing.
            return failure(INVALID, f"malformed {command['type']} command: {error!r}")
        if result["code"] == OK:
            self.kind_index[commands.KIND_OF[command["type"]]] = index
        return result

    def put_instance(self, record):
        """Store a record (as stored_record made it) under its id, new or replacing one."""
        instance_id = record["id"]
        previous = self.instances.get(instance_id)
        self.instances[instance_id] = record
        if previous is not None and previous["url"] != record["url"]:
            self.instance_by_url.pop(previous["url"], None)
        self.instance_by_url[record["url"]] = instance_id
        self.instance_index.replaced(previous, record, self.index)

    def replace_instance(self, record):
        """Store a new version of an existing instance's record."""
        self.put_instance(instances.stored_record(record))

    def drop_instance(self, record):
        del self.instances[record["id"]]
        self.instance_by_url.pop(record["url"], None)
        self.instance_index.replaced(record, None, self.index)

    def list_instances(self, filters, who=permissions.SYSTEM):
        """The instances matching `filters` that `who` may see (callers without view-all: their own),
        in id order."""
        own_slug = None if who is permissions.SYSTEM else instances.listing_slug(self, who)
        if own_slug is not None:
            if filters.get("slug", own_slug) != own_slug:
                return []
            filters = dict(filters, slug=own_slug)
        if "id" in filters:
            record = self.instances.get(filters["id"])
            return [record] if record is not None and instances.matches(record, filters) else []
        candidates = self.instance_index.candidates(filters)
        if candidates is None or len(candidates) > WALK_ALL_ABOVE * len(self.instances):
            # Most records are candidates: walking the ids in order saves sorting what matched.
            ordered = map(self.instances.__getitem__, self.instance_index.sorted_ids(self.instances))
            if not filters:
                return list(ordered)  # a full list: map() keeps the walk in C, under the state lock
            return [r for r in ordered if instances.matches(r, filters)]
        records = self.instances
        matched = [r for r in (records[i] for i in candidates) if instances.matches(r, filters)]
        matched.sort(key=_by_id)
        return matched

    def instance_counts_by_status(self):
        """{status: instances}, for the statuses any instance has (from the index: no walk)."""
        return {status: self.instance_index.count("status", status) for status in self.instance_index.by["status"]}

    def instance_counts_by_slug_and_status(self):
        """{(slug, status): instances} for the pairs any instance has (from the index: no walk)."""
        return self.instance_index.counts_by("slug", "status")

    def instances_changed_index(self, filters):
        """The Raft index of the last change to what `filters` select: their slug's, or any
        instance's when they name no slug (a blocking read waits on the same)."""
        slug = filters.get("slug")
        if slug is not None:
            return self.instance_index.slug_index(slug)
        return self.kind_index[commands.INSTANCES]

    def list_nodes(self, ids=None):
        return nodes.select((r for _, r in sorted(self.nodes.items())), ids)

    def to_snapshot(self):
        return snapshot_of(self.copy_parts())

    def copy_parts(self):
        """What a snapshot is made of, copied in time linear in the record count with no
        sorting or encoding: cheap enough under the lock the Raft thread applies under.
        Records are replaced, never mutated, so sharing them is safe; snapshot_of() finishes
        the snapshot outside the lock."""
        return self.index, list(self.instances.values()), list(self.nodes.values()), list(self.permits), \
            dict(self.kind_index), self.sessions.entries()

    @classmethod
    def from_snapshot(cls, data, values_shared=False):
        """values_shared: the records are as a state stored them, shared values shared (an
        unpickled snapshot of a state); else (decoded JSON) they are stored anew."""
        if not isinstance(data, dict) or data.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"unsupported snapshot format {data.get('format') if isinstance(data, dict) else data!r}")
        with collector_paused():
            return cls._from_snapshot(data, values_shared)

    @classmethod
    def _from_snapshot(cls, data, values_shared):
        state = cls()
        state.index = data["index"]
        for record in data["instances"]:
            if not values_shared:
                # A decoded record holds its own copy of every value, in a dict sized for growth:
                # about 770 bytes an instance more than the same record applied (at 100,000).
                record = instances.stored_record(record)
            state.instances[record["id"]] = record
            state.instance_by_url[record["url"]] = record["id"]
        state.instance_index = InstanceIndex.of(state.instances.values(), state.index)
        for record in data["nodes"]:
            state.nodes[record["url"]] = record
        if "permits" in data:
            state.permits = data["permits"]
        state.kind_index = dict(data.get("kindIndex") or dict.fromkeys(state.kind_index, state.index))
        state.sessions = CommandSessions.of(data.get("sessions"))
        return state

    def digest(self):
        """A hash of the replicated state: equal on two peers exactly when their states are equal."""
        return digest_of(self.to_snapshot())


def digest_of(snapshot):
    """The digest of a snapshot taken earlier: the costly hashing can run outside any lock.

    Lists are encoded DIGEST_CHUNK records at a time, so that no single call holds the
    interpreter lock long (one json.dumps of 100,000 records held it for a third of a second,
    long enough to delay the Raft thread past an election timeout)."""
    hashed = hashlib.sha256()
    encode = _CANONICAL.encode
    for key in sorted(snapshot):
        value = snapshot[key]
        if key == "sessions":
            # The ids, where they were applied and their outcome codes decide what a re-submission
            # does; the answers' wording may change between code versions without the states differing.
            value = [[command_id, result.get("index"), result.get("code")] for command_id, result in value]
        hashed.update(encode(key).encode("utf-8"))
        if isinstance(value, list):
            hashed.update(b"%d" % len(value))
            for start in range(0, len(value), DIGEST_CHUNK):
                hashed.update(encode(value[start:start + DIGEST_CHUNK]).encode("utf-8"))
        else:
            hashed.update(encode(value).encode("utf-8"))
    return {"index": snapshot["index"], "sha256": hashed.hexdigest()}


def snapshot_of(parts):
    index, instance_records, node_records, permits, kind_index, sessions = parts
    return {
        "format": SNAPSHOT_FORMAT,
        "index": index,
        "instances": sorted(instance_records, key=lambda r: r["id"]),
        "nodes": sorted(node_records, key=lambda r: r["url"]),
        "permits": permits,
        "kindIndex": kind_index,
        "sessions": sessions,
    }

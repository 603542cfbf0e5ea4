"""The registry state a process holds, the lock its readers and its one applier share, and the
waits of blocking reads on it.

The replica applies committed batches here; request threads read and wait here. Kept apart
from Raft so that anything else holding a copy of the state (a peer without Raft in the tests)
reads and waits with this same code.
"""

import threading

from registry import commands as registry_commands
from registry.state import RegistryState, digest_of, snapshot_of


class WatchedState:
    def __init__(self, state=None):
        self._state = RegistryState() if state is None else state
        self._lock = threading.Lock()
        # One condition per kind of data: a blocking read wakes only when its kind changes.
        self._changed = {kind: threading.Condition() for kind in self._state.kind_index}
        # Blocking reads filtered by slug wait on their slug's own condition: slug -> [it, waiters].
        self._slug_waits = {}
        self._slug_waits_lock = threading.Lock()
        self._digest_cache = None
        # Told of every batch applied and every state replaced (cluster/http_workers.py feeds its
        # workers' replicas so); a tuple replaced whole, so apply reads it without a lock of its own.
        self._listeners = ()
        self._applied = threading.Condition()
        self.batch_index = 0  # the Raft index of the last batch applied (barriers and no-ops too)

    @property
    def index(self):
        """The Raft index of the last registry command applied."""
        return self._state.index

    # -- the one writer -------------------------------------------------------------------------

    def apply(self, commands, index):
        """Apply a committed batch at Raft `index` and wake whoever waits on what it changed:
        (the apply results, [(checkpoint id, a copy of the state's parts at it)])."""
        taken = []
        with self._lock:
            state = self._state
            before = dict(state.kind_index)
            results = []
            for command in commands:
                results.append(state.apply(command, index))
                if isinstance(command, dict) and command.get("type") == registry_commands.CHECKPOINT:
                    taken.append((command.get("id"), state.copy_parts()))
            changed = [kind for kind, at in state.kind_index.items() if at != before[kind]]
            touched_slugs = state.instance_index.take_touched_slugs()
            self._digest_cache = None
            self.batch_index = index
            listeners = self._listeners
        for listener in listeners:
            listener.batch(index, commands)
        with self._applied:
            self._applied.notify_all()
        for kind in changed:
            with self._changed[kind]:
                self._changed[kind].notify_all()
        if touched_slugs and self._slug_waits:
            self._wake_slug_watchers(touched_slugs)
        return results, taken

    def replace(self, state):
        """Hold `state` instead (a dump loaded), waking every blocking read to look again."""
        with self._lock:
            self._state = state
            self._digest_cache = None
            parts = state.copy_parts() if self._listeners else None
            listeners = self._listeners
        for listener in listeners:
            listener.replaced(parts)
        with self._applied:
            self._applied.notify_all()
        for condition in self._changed.values():
            with condition:
                condition.notify_all()
        with self._slug_waits_lock:
            watched = list(self._slug_waits)
        self._wake_slug_watchers(watched)

    def drop_first_instance_for_test(self):
        """Drop the first instance from this copy alone (never through Raft); its id, or None."""
        with self._lock:
            record = next(iter(self._state.instances.values()), None)
            if record is not None:
                self._state.drop_instance(record)
                self._digest_cache = None
        return None if record is None else record["id"]

    # -- readers --------------------------------------------------------------------------------

    def read(self, query, kind=None):
        """(index, query(state)), both taken under the state lock, so the index is exactly the
        version of the data returned: the last change to `kind` of data, or to anything when
        kind is None. query must return data it will not mutate later."""
        with self._lock:
            state = self._state
            index = state.index if kind is None else state.kind_index[kind]
            return index, query(state)

    def peek(self, query):
        """query(state) without the lock: only for single dict and attribute reads, which the
        interpreter lock makes atomic, never for iterating what apply changes."""
        return query(self._state)

    def copy_parts(self):
        """The state's parts, copied under the lock (snapshot_of turns them into a snapshot)."""
        with self._lock:
            return self._state.copy_parts()

    def subscribe(self, listener):
        """Tell `listener` of what changes from now on: listener.batch(index, commands) after each
        batch applied, listener.replaced(parts) after a dump replaced the state."""
        with self._lock:
            self._listeners = self._listeners + (listener,)

    def with_parts(self, start):
        """start(the state's parts) under the state lock: what it queues comes before what the
        listeners are told of any batch applied after them (one applied just before may be told
        after it too: its index is not above the parts')."""
        with self._lock:
            start(self._state.copy_parts())

    def wait_until_holding(self, batch_index, state_index, timeout):
        """Block until the batch at Raft `batch_index` was applied here, or the state reached
        `state_index` (either shows a write is here: the second covers a batch that came within a
        snapshot); True if one did within timeout."""
        with self._applied:
            return self._applied.wait_for(
                lambda: self.batch_index >= batch_index or self._state.index >= state_index, timeout)

    def digest(self):
        with self._lock:
            cached = self._digest_cache
            if cached is not None and cached["index"] == self._state.index:
                return dict(cached)
            # Only the copy is taken under the lock the Raft thread applies under; sorting and
            # hashing a large state happen outside it.
            parts = self._state.copy_parts()
        digest = digest_of(snapshot_of(parts))
        with self._lock:
            if self._state.index == digest["index"]:
                self._digest_cache = digest
        return dict(digest)

    def wait_for_change(self, kind, after_index, timeout, slug=None):
        """Block (without polling) until `kind` of data changed at a Raft index above
        after_index (with `slug`: that slug's instances did), or timeout passed; True if it did."""
        if slug is None:
            condition = self._changed[kind]
            with condition:
                return condition.wait_for(lambda: self._state.kind_index[kind] > after_index, timeout)
        with self._slug_waits_lock:
            waits = self._slug_waits.setdefault(slug, [threading.Condition(), 0])
            waits[1] += 1
        try:
            with waits[0]:
                return waits[0].wait_for(lambda: self._state.instance_index.slug_index(slug) > after_index, timeout)
        finally:
            with self._slug_waits_lock:
                waits[1] -= 1
                if not waits[1]:
                    del self._slug_waits[slug]

    def _wake_slug_watchers(self, slugs):
        with self._slug_waits_lock:
            conditions = [self._slug_waits[slug][0] for slug in slugs if slug in self._slug_waits]
        for condition in conditions:
            with condition:
                condition.notify_all()

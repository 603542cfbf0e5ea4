"""The replica's full dumps: PySyncObj's serializer hooks, written by our own serializer.

Dumps are gzipped JSON (cluster/dumps.py, readable across code versions) instead of PySyncObj's
default, which pickles every attribute of the SyncObj. A mixin of RegistryReplica: the hooks
use its state lock, its state and its wake-ups.
"""

import logging
import os
import threading

from pysyncobj.serializer import SERIALIZER_STATE

from registry.state import snapshot_of

from . import dumps

log = logging.getLogger(__name__)

DUMP_THREAD_NICENESS = 10


class FullDumpHooks:
    def _write_dump(self, path, raft_data):
        """PySyncObj's serializer hook, on the Raft thread: the state and the Raft entries it ends at.

        Only the copy of the state is made here. Sorting, encoding, compressing and fsyncing
        take seconds at 100,000 instances, long enough for followers to miss heartbeats and
        elect another leader; a thread of its own does them, and _dump_progress reports to
        PySyncObj, which trims its log only once the dump is on disk.
        """
        last_entry, previous_entry, cluster = raft_data
        parts = self.state.copy_parts()
        self._commands_since_dump = 0
        # PySyncObj renames `path` over the dump once this returns. Leave nothing there to rename
        # (it then counts the call as failed, and _dump_progress overrides that).
        _remove_if_present(path)
        self._dump_state = SERIALIZER_STATE.SERIALIZING
        threading.Thread(target=self._finish_dump, args=(parts, last_entry, previous_entry,
                                                         [node.id for node in cluster]),
                         name="full-dump", daemon=True).start()

    def _finish_dump(self, parts, last_entry, previous_entry, members):
        try:
            # Behind the Raft thread and request threads for the CPU (Linux: per-thread nice).
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DUMP_THREAD_NICENESS)
        except (AttributeError, OSError):
            pass
        try:
            snapshot = snapshot_of(parts)
            dumps.write(self._dump_path, snapshot, last_entry, previous_entry, members)
        except Exception:
            log.exception("writing the full dump failed; the journal keeps every entry until the next try")
            self._dump_state = SERIALIZER_STATE.FAILED
            return
        log.info("wrote full dump at raft index %d (%d instances, %d nodes)",
                 last_entry[1], len(snapshot["instances"]), len(snapshot["nodes"]))
        self._dump_state = SERIALIZER_STATE.SUCCESS

    def _dump_progress(self):
        """PySyncObj's serializeChecker hook, each tick: where the dump thread is."""
        state = self._dump_state
        if state in (SERIALIZER_STATE.SUCCESS, SERIALIZER_STATE.FAILED):
            self._dump_state = SERIALIZER_STATE.NOT_SERIALIZING
        return state

    def _read_dump(self, path):
        """PySyncObj's deserializer hook: restore the state, give back the Raft entries."""
        verified, self._verified_dump = self._verified_dump, None
        from_own_disk = verified is not None
        # Read at start already (the state it built is used, not built twice), or one that
        # arrived from the leader since.
        document, state = verified if from_own_disk else dumps.read(path)
        self.state.replace(state)
        raft = document["raft"]
        log.info("loaded full dump %s at raft index %d", path, raft["lastEntry"][1])
        # PySyncObj makes the dump's member list the topology. At start the members file (what
        # otherNodes came from) is newer than our own dump; a dump sent by the leader carries the
        # leader's members, which a new peer may not have been told of. A restored backup has none.
        # Self must be left out: PySyncObj compares it as a Node, and these are strings.
        current = [node.id for node in self._SyncObj__otherNodes]
        if from_own_disk or not raft["cluster"]:
            cluster = current
        else:
            cluster = [address for address in raft["cluster"] if address != self.selfNode.id]
        return dumps.decode_entry(raft["lastEntry"]), dumps.decode_entry(raft["previousEntry"]), cluster


def _remove_if_present(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass

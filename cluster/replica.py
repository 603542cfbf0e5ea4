"""One peer's PySyncObj replica of the registry state.

The state lives in a `WatchedState` (cluster/watched_state.py): the Raft thread applies
committed batches to it and HTTP threads read and wait on it. Records are replaced, never
mutated, so a reader may keep the records it copied out after releasing the lock.

Full dumps are written by our own serializer (cluster/replica_dumps.py); the transport and its
work-arounds of PySyncObj are in cluster/transport.py.
"""

import logging
import os
import pickle
import struct
import time

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
from pysyncobj import syncobj as pysyncobj_module
from pysyncobj.serializer import SERIALIZER_STATE

from registry import commands as registry_commands

from . import dumps, durability, membership, raft_journal, tracing
from .apply_lag import READY_WITHIN_SECONDS, ApplyLag
from .checkpoints import CheckpointLedger
from .identity import ConfigurationError
from .replica_dumps import FullDumpHooks
from .transport import ContactTrackingTransport
from .watched_state import WatchedState

log = logging.getLogger(__name__)

# PySyncObj takes no journal object, only a file name it hands to this factory: every replica
# in this process keeps its log on disk with the offsets alone in memory (cluster/raft_journal.py).
pysyncobj_module.createJournal = raft_journal.create_journal

RAFT_STATES = {0: "follower", 1: "candidate", 2: "leader"}
# The log is also compacted once it holds this many commands per --compact-after-entries entry.
COMMANDS_PER_ENTRY_LIMIT = 4
# How long a leader asked to hand off keeps trying to find a caught-up successor.
HANDOFF_SECONDS = 5.0
# How long every peer holds new writes once a handoff is asked for (they wait, within their deadline).
HANDOFF_HOLD_SECONDS = 0.5


class RegistryReplica(FullDumpHooks, SyncObj):
    def __init__(self, raft_address, partners, *, data_dir, password, timings, compact_after_entries=5000,
                 on_state_changed=None, joining=False, sync_journal=True):
        # Set before SyncObj.__init__: its Raft thread may apply journal entries right away.
        self.state = WatchedState()
        self.checkpoints = CheckpointLedger()
        self.apply_lag = ApplyLag()
        self._user_state_callback = on_state_changed
        self._dump_path = os.path.join(data_dir, dumps.FILE_NAME)
        self._data_dir = data_dir
        self._persisted_partners = None
        self._journal_membership_replayed = False
        # A peer joining a running cluster must not campaign before it has heard the leader:
        # its empty log cannot win, and each try would bump the term and unseat the leader.
        self._joining = joining
        self._raft_max_timeout = timings.raft_max_timeout
        self._handoff_until = 0.0
        self._handoff_sent_at = 0.0
        self._handoff_target = None
        self._hold_writes_until = 0.0
        self._dump_state = SERIALIZER_STATE.NOT_SERIALIZING
        # Group commit packs up to hundreds of commands into one entry, so a limit in entries
        # alone would let the in-memory log hold millions of commands; this bounds them too.
        self._compact_after_commands = COMMANDS_PER_ENTRY_LIMIT * compact_after_entries
        self._commands_since_dump = 0
        journal_path = os.path.join(data_dir, dumps.JOURNAL_FILE_NAME)
        self.leader_silence_limit = timings.raft_max_timeout * 2  # seconds without contact that count as lost
        _check_writable(data_dir, journal_path, journal_path + ".meta", self._dump_path)
        # PySyncObj swallows a dump it cannot load and goes on with an empty state plus the
        # journal after the dump: a wrong replica served as current. Read it first, or refuse.
        self._verified_dump = dumps.read(self._dump_path) if os.path.exists(self._dump_path) else None
        conf = SyncObjConf(
            password=password,
            journalFile=journal_path,
            fullDumpFile=self._dump_path,
            logCompactionMinEntries=compact_after_entries,
            serializer=self._write_dump,
            deserializer=self._read_dump,
            serializeChecker=self._dump_progress,
            **timings.sync_obj_options(),
            onStateChanged=self._on_state_changed,
            dynamicMembershipChange=True,
            # Bind exactly the configured address, never a wildcard.
            bindAddress=raft_address,
        )
        try:
            super().__init__(raft_address, list(partners), conf, transportClass=ContactTrackingTransport)
        except (struct.error, ValueError, EOFError, IndexError, pickle.UnpicklingError, OSError) as error:
            raise ConfigurationError(
                f"the Raft journal {journal_path} cannot be read ({error!r}). {dumps.MOVE_ASIDE}") from None
        self.addOnTickCallback(self._on_tick)
        self.transport.on_follower_confirmed = self._on_follower_caught_up
        self._sync_journal = durability.make_durable(self._SyncObj__raftLog) if sync_journal else None
        self.transport.sync_journal = self._sync_journal

    # -- the replicated write path ------------------------------------------------------------

    @replicated
    def apply_batch(self, commands):
        # PySyncObj applies entries in order and counts raftLastApplied up after each one, so
        # the entry being applied now sits at raftLastApplied + 1 on every peer alike.
        index = self.raftLastApplied + 1
        self._commands_since_dump += len(commands)
        if self._sync_journal is not None and not self._SyncObj__otherNodes:
            self._sync_journal()  # a single peer commits without sending: flush before answering
        tracing.mark("apply.start", index)
        results, taken = self.state.apply(commands, index)
        if tracing.enabled():
            tracing.mark("apply.end", [[c.get("cid") for c in commands if isinstance(c, dict)], index])
        self.checkpoints.note_batch(commands, taken)
        for command in commands:
            kind = command.get("type") if isinstance(command, dict) else None
            if kind == registry_commands.LEADER_HANDOFF:
                # Every peer holds its new writes a moment, so the leader's log stops growing and
                # a follower can hold every entry, which PySyncObj requires of a successor.
                self._handoff_target = command.get("leader")
                self._hold_writes_until = time.monotonic() + HANDOFF_HOLD_SECONDS
                # Only a leader applying it now: one replayed from the journal at start is history.
                if command.get("leader") == self.selfNode.id and self._isLeader():
                    self._handoff_until = time.monotonic() + HANDOFF_SECONDS
        for result in results:
            result.setdefault("index", index)  # a re-submission's answer keeps its first index
        return results

    # -- reads ----------------------------------------------------------------------------------

    def corrupt_state_for_test(self):
        """Drop the first instance from this replica alone (never through Raft); its id, or None."""
        return self.state.drop_first_instance_for_test()

    @property
    def state_index(self):
        return self.state.index

    def state_digest(self):
        return self.state.digest()

    # -- membership -------------------------------------------------------------------------------

    @property
    def members(self):
        """Raft addresses of every member as this peer knows them, itself included, sorted."""
        return sorted([self.selfNode.id] + [node.id for node in self.otherNodes])

    def change_membership(self, change, address, timeout):
        """Propose adding ("add") or removing ("rem") a peer; PySyncObj's FAIL_REASON once
        committed or refused, None if neither happened within timeout."""
        waiter = membership.ChangeWaiter()
        propose = self.addNodeToCluster if change == "add" else self.removeNodeFromCluster
        propose(address, callback=waiter)
        return waiter.wait(timeout)

    def _checkCommandsToApply(self):
        """PySyncObj's: take queued commands into the log (a leader) or forward them (a follower).
        Traced: the entries this took in, as of when it started."""
        if not tracing.enabled():
            return super()._checkCommandsToApply()
        before, started = self._SyncObj__getCurrentLogIndex(), time.monotonic_ns()
        result = super()._checkCommandsToApply()
        for index in range(before + 1, self._SyncObj__getCurrentLogIndex() + 1):
            tracing.mark_at(started, "raft.picked", index)
        return result

    def _on_tick(self):
        """On the Raft thread, after each tick: the work PySyncObj has no hook for."""
        # Before the tick's poll waits for the followers' confirmations, not once one arrived.
        self.transport.flush_sent_entries()
        self.apply_lag.observe(time.monotonic(), self.leader_commit_index, self.raftLastApplied)
        if not self._journal_membership_replayed:
            self._journal_membership_replayed = True
            self._replay_journal_membership()
        partners = frozenset(node.id for node in self._SyncObj__otherNodes)
        if partners != self._persisted_partners:
            membership.write(self._data_dir, self.selfNode.id, partners | {self.selfNode.id})
            if self._persisted_partners is not None:
                log.info("members now %s", ", ".join(sorted(partners | {self.selfNode.id})))
            self._persisted_partners = partners
        if self.transport.divergence is not None:
            # It takes no entries any more: campaigning would only unseat a healthy leader.
            self._SyncObj__raftElectionDeadline = time.monotonic() + self._raft_max_timeout
        if self._joining:
            if self.transport.last_leader_contact is not None:
                self._joining = False
            else:
                self._SyncObj__raftElectionDeadline = time.monotonic() + self._raft_max_timeout
        if (self._commands_since_dump > self._compact_after_commands
                and self._dump_state == SERIALIZER_STATE.NOT_SERIALIZING):
            self._commands_since_dump = 0
            self.forceLogCompaction()
        if self._handoff_until and time.monotonic() > self._handoff_until:
            self._handoff_until = 0.0

    def holding_writes(self):
        """True while a leadership handoff asked for in the log is under way here."""
        until = self._hold_writes_until
        if not until:
            return False
        if time.monotonic() >= until or self.leader_address != self._handoff_target:
            self._hold_writes_until = 0.0
            return False
        return True

    def _on_follower_caught_up(self, node):
        """On the Raft thread, after a follower confirmed entries. A leader asked to hand off
        does it now: PySyncObj only hands leadership to a follower holding every entry, and
        under write load that is true just after a reply, rarely at a tick."""
        if not self._handoff_until or not self._isLeader():
            return
        now = time.monotonic()
        if now - self._handoff_sent_at < self._raft_max_timeout:
            return  # one forced election at a time; try again if it did not take

        def sent(_result, reason):
            if reason == FAIL_REASON.SUCCESS:
                self._handoff_sent_at = now
                log.info("handing leadership to %s", node.id)

        self.transferLeadership(node, callback=sent)

    def _replay_journal_membership(self):
        """Apply the membership entries the journal holds (PySyncObj only applies them as they
        arrive), in case this peer stopped before writing its members file."""
        partners = {node.id for node in self._SyncObj__otherNodes}
        entries = self._SyncObj__raftLog
        replayed = membership.replay(partners, (entries[i] for i in range(len(entries))), self.selfNode.id)
        if replayed != partners:
            log.info("journal membership entries change the partners to %s", ", ".join(sorted(replayed)))
            self._SyncObj__updateClusterConfiguration(sorted(replayed))

    # -- Raft status ------------------------------------------------------------------------------

    @property
    def raft_state(self):
        # PySyncObj exposes the role only through getStatus(), which iterates dicts the Raft
        # thread mutates; the single private int read here is safe from any thread.
        return RAFT_STATES.get(self._SyncObj__raftState, "unknown")

    @property
    def leader_address(self):
        """The leader this peer follows, or None when it knows none it has heard from lately.

        PySyncObj keeps a follower's last leader until an election starts, and a follower
        connected to no partner never starts one: cut off alone, it would trust a dead leader
        forever. A leader not heard from within the election timeout is not a known leader.
        """
        leader = self._getLeader()
        if leader is None:
            return None
        if leader.id != self.selfNode.id:
            contact = self.transport.last_leader_contact
            if contact is None or time.monotonic() - contact > self.leader_silence_limit:
                return None
        return leader.id

    @property
    def leader_commit_index(self):
        # The transport may hand the library a commit index cut back to an append's end
        # (cluster/log_matching.py): a peer is caught up only with the leader's own.
        library, heard = self._SyncObj__leaderCommitIndex, self.transport.leader_commit_heard
        if library is None or heard is None:
            return library if heard is None else heard
        return max(library, heard)

    @property
    def transport(self):
        return self._SyncObj__transport

    def last_contact_ms(self):
        """Milliseconds since this peer last heard from a leader; 0 on the leader; None if never."""
        if self._isLeader():
            return 0
        contact = self.transport.last_leader_contact
        if contact is None:
            return None
        return int((time.monotonic() - contact) * 1000)

    def last_heard_ms(self, address):
        heard = self.transport.last_heard.get(address)
        return None if heard is None else int((time.monotonic() - heard) * 1000)

    def raft_info(self):
        return {
            "address": self.selfNode.id,
            "state": self.raft_state,
            "term": self.raftCurrentTerm,
            "commitIndex": self.raftCommitIndex,
            "appliedIndex": self.raftLastApplied,
        }

    @property
    def divergence(self):
        """Why this replica's state may differ from the cluster's, or None: a committed entry that
        conflicts with the leader's (cluster/log_matching.py), or a checkpoint's digest that does
        not match (cluster/checkpoints.py)."""
        found = self.transport.divergence or self.checkpoints.mismatch
        return None if found is None else found.describe()

    def is_leader(self):
        return self._isLeader()

    def owed_apply_ms(self):
        """How long the oldest entry known committed has waited to be applied here (cluster/apply_lag.py)."""
        return int(self.apply_lag.owed_seconds(time.monotonic(), self.raftLastApplied) * 1000)

    def is_caught_up(self, owed_apply_ms):
        """`owed_apply_ms` as owed_apply_ms() just gave it (a status reads it once for both)."""
        return (
            self.isReady()
            and self.leader_address is not None
            and self.leader_commit_index is not None
            and owed_apply_ms <= READY_WITHIN_SECONDS * 1000
        )

    def _on_state_changed(self, old, new):
        if RAFT_STATES.get(new) == "leader":
            self.transport.last_leader_seen = self.selfNode.id
            self.transport.leader_changes += 1
        log.info("raft role %s -> %s (term %d)", RAFT_STATES.get(old), RAFT_STATES.get(new), self.raftCurrentTerm)
        if self._user_state_callback is not None:
            self._user_state_callback(RAFT_STATES.get(old), RAFT_STATES.get(new))


def _check_writable(*paths):
    for path in paths:
        if os.path.exists(path) and not os.access(path, os.W_OK):
            raise ConfigurationError(f"{path} is not writable by this user: a peer must write its journal and "
                                     "dumps. Give it back to the user the peer runs as (chown/chmod) and start again.")

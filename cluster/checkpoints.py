"""A corruption check, like etcd's periodic hash check: do the replicas still hold equal states?

Every --checkpoint-interval (and soon after a peer becomes leader) the leader commits a
checkpoint in two commands. Applying the first (`state.checkpoint`), every peer copies its
state at exactly that point of the log and hashes the copy on a thread of its own (apply itself
stays deterministic and cheap). Once its own digest is ready the leader commits the second
(`state.checkpoint.digest`) carrying it; each peer compares it with its own digest of the same
point. A mismatch is a real divergence: the peer logs it, goes not ready and says why in
/readyz, /metrics and /registry-svc/cluster. Nothing here can change the replicated state.
"""

import logging
import os
import random
import threading
import time

from registry import commands
from registry.state import DIGEST_FORMAT, digest_of, snapshot_of

from .submit import WriteUnavailable

log = logging.getLogger(__name__)

KEPT_CHECKPOINTS = 4
DIGEST_THREAD_NICENESS = 10
# A new leader checks soon after its election, once the first writes of its term are through.
AFTER_ELECTION_SECONDS = 2.0
OWN_DIGEST_TIMEOUT_SECONDS = 120.0

_checkpoint_ids = random.Random()


class DigestMismatch:
    def __init__(self, checkpoint_id, index, own, leader):
        self.checkpoint_id, self.index, self.own, self.leader = checkpoint_id, index, own, leader

    def describe(self):
        return (f"checkpoint {self.checkpoint_id}: this peer's state digest at index {self.index} is "
                f"{self.own[:16]}…, the leader's {self.leader[:16]}…: the two replicas differ. If the other "
                "followers agree with the leader, stop this peer, move its data directory aside and let it "
                "rejoin empty")


class _Checkpoint:
    __slots__ = ("index", "parts", "own", "leader", "ready", "compared")

    def __init__(self, index, parts):
        self.index = index
        self.parts = parts  # the state copied at the checkpoint, until it is hashed
        self.own = None
        self.leader = None
        self.ready = threading.Event()  # set once hashed, or once passed over for a newer one
        self.compared = False


class CheckpointLedger:
    """This peer's digests at recent checkpoints and what the leader's said: the replica side.

    A copy is hashed only once it is wanted (the leader's digest of it arrived, or this peer leads
    and is to publish its own), by one thread, newest first: a peer replaying a journal full of
    checkpoints at start hashes the last one, not each."""

    def __init__(self):
        self._cv = threading.Condition()
        self._checkpoints = {}  # checkpoint id -> _Checkpoint, oldest first
        self._wanted = set()
        self._hasher = None
        self.mismatch = None
        self.verified = 0
        self.last_verified_index = None

    def note_batch(self, batch, taken):
        """After a batch was applied: the checkpoints it took (WatchedState.apply's `taken`) and
        the leader's digests it carried."""
        for checkpoint_id, parts in taken:
            self.taken(checkpoint_id, parts)
        for command in batch:
            if isinstance(command, dict) and command.get("type") == commands.CHECKPOINT_DIGEST:
                self.published(command.get("id"), command.get("sha256"), command.get("format"),
                               command.get("stateIndex"))

    def taken(self, checkpoint_id, parts):
        """On the Raft thread, applying `state.checkpoint`: parts is the state copied at that point."""
        with self._cv:
            if checkpoint_id in self._checkpoints:
                return  # a re-submission: the first one fixed the point
            self._checkpoints[checkpoint_id] = _Checkpoint(parts[0], parts)
            while len(self._checkpoints) > KEPT_CHECKPOINTS:
                oldest = next(iter(self._checkpoints))
                self._checkpoints.pop(oldest).ready.set()
                self._wanted.discard(oldest)

    def published(self, checkpoint_id, sha256, digest_format, state_index):
        """On the Raft thread, applying `state.checkpoint.digest`: the leader's digest of that point."""
        with self._cv:
            checkpoint = self._checkpoints.get(checkpoint_id)
            if checkpoint is None or digest_format != DIGEST_FORMAT or checkpoint.index != state_index:
                # Nothing to compare with: this peer did not apply the first half (it loaded a dump
                # past it), or applied only a later copy of it (the checkpoint was re-submitted),
                # or it hashes states another way (another code version).
                return
            checkpoint.leader = sha256
            self._want(checkpoint_id)
        self._compare(checkpoint_id, checkpoint)

    def own_digest(self, checkpoint_id, timeout):
        """(this peer's digest at the checkpoint, the state index it was taken at), once computed;
        None if unknown or not in time."""
        with self._cv:
            checkpoint = self._checkpoints.get(checkpoint_id)
            if checkpoint is not None:
                self._want(checkpoint_id)
        if checkpoint is None or not checkpoint.ready.wait(timeout) or checkpoint.own is None:
            return None
        return checkpoint.own, checkpoint.index

    def _want(self, checkpoint_id):
        """Under the lock: have the checkpoint hashed."""
        self._wanted.add(checkpoint_id)
        if self._hasher is None:
            self._hasher = threading.Thread(target=self._hash_wanted, name="checkpoint-digest", daemon=True)
            self._hasher.start()
        self._cv.notify()

    def _hash_wanted(self):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DIGEST_THREAD_NICENESS)
        except (AttributeError, OSError):
            pass
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._wanted)
                order = [i for i in self._checkpoints if i in self._wanted]
                self._wanted.clear()
                if not order:
                    continue
                newest = order[-1]
                for passed_over in order[:-1]:
                    self._checkpoints[passed_over].parts = None
                    self._checkpoints[passed_over].ready.set()
                checkpoint = self._checkpoints[newest]
                parts, checkpoint.parts = checkpoint.parts, None
            if parts is None:
                continue  # hashed already
            started = time.monotonic()
            try:
                checkpoint.own = digest_of(snapshot_of(parts))["sha256"]
            except Exception:  # a bug here must not end every later check
                log.exception("hashing checkpoint %s failed", newest)
            checkpoint.ready.set()
            log.info("checkpoint %s: state digest at index %d in %.2f s", newest, checkpoint.index,
                     time.monotonic() - started)
            self._compare(newest, checkpoint)

    def _compare(self, checkpoint_id, checkpoint):
        with self._cv:
            if checkpoint.own is None or checkpoint.leader is None or checkpoint.compared:
                return
            checkpoint.compared = True
            own, leader, index = checkpoint.own, checkpoint.leader, checkpoint.index
            if own == leader:
                self.verified += 1
                self.last_verified_index = index
                return
            first = self.mismatch is None
            if first:
                self.mismatch = DigestMismatch(checkpoint_id, index, own, leader)
        if first:
            log.critical("replicas diverged: %s", self.mismatch.describe())


class CheckpointProposer:
    """The peer side: while this peer leads, commit a checkpoint every interval and after an election."""

    def __init__(self, peer, interval):
        self.peer = peer
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="checkpoints", daemon=True)

    def start(self):
        if self.interval > 0:
            self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self):
        replica = self.peer.replica
        led_since = None
        next_due = None
        while not self._stop.wait(0.25):
            if not replica.is_leader():
                led_since = next_due = None
                continue
            now = time.monotonic()
            if led_since is None:
                led_since, next_due = now, now + AFTER_ELECTION_SECONDS
            if now < next_due:
                continue
            next_due = now + self.interval
            try:
                self.check_once()
            except WriteUnavailable as error:
                log.info("checkpoint not committed: %s", error.message)
            except Exception:
                log.exception("checkpoint failed")

    def check_once(self):
        """Commit one checkpoint and then this peer's digest of it; the checkpoint's id."""
        checkpoint_id = "%016x" % _checkpoint_ids.getrandbits(64)
        self.peer.submit(commands.checkpoint(checkpoint_id))
        own = self.peer.replica.checkpoints.own_digest(checkpoint_id, OWN_DIGEST_TIMEOUT_SECONDS)
        if own is not None:
            sha256, state_index = own
            self.peer.submit(commands.checkpoint_digest(checkpoint_id, sha256, DIGEST_FORMAT, state_index))
        return checkpoint_id

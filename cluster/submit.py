"""Write submission: group commit with deadlines, and every PySyncObj failure made an answer.

Request threads hand commands to `GroupCommitter.submit`, which waits at most the deadline.
A single committer thread packs whatever is pending into one replicated `apply_batch` call,
so concurrent writers share Raft round trips, and keeps only a few batches outstanding (the
library loses callbacks and can wedge a follower under thousands of outstanding commands).
A write that finds nothing pending and a slot free is sent by its own thread, as the committer
would have sent it, without the hand-off.

A leader change can leave a write's outcome unknown (NOT_LEADER, LEADER_CHANGED,
UNKNOWN_OUTCOME, or a callback that never comes). A command that is safe to submit again (it
carries an id the state machine answers re-submissions by) is then submitted again until its
deadline, and its writer gets the answer of the attempt that is confirmed.
"""

import collections
import logging
import threading
import time

from pysyncobj import FAIL_REASON

from . import tracing

log = logging.getLogger(__name__)

MAX_BATCH_COMMANDS = 512
MAX_BATCH_BYTES = 48 * 1024  # below appendEntriesBatchSizeBytes (64 KiB): one message per batch
MAX_BATCHES_IN_FLIGHT = 2
# The second batch goes out only once the first has been on its way this long: a batch takes
# about 10 ms under load, so writes arriving meanwhile wait and go as one fuller batch, rather
# than one alone in the second slot and the rest after it. Two slots at once made batches of
# 15.2 writes instead of 25.5 at a follower (64 connections, 2 workers a peer), for the same CPU
# each: 2,439 -> 2,724 writes/s there, 1,989 -> 2,081 in one-process peers (latency budget under
# wrk, one sitting, 2026-12-04; README, "Writes at a worker, session 18"). The second slot stays
# for a batch held up (a slow flush, a callback lost with a leader).
SECOND_BATCH_AFTER_SECONDS = 0.05
RETRY_PAUSE_SECONDS = 0.05
# A batch in flight this long has lost its callback (a batch takes milliseconds): submit it again.
LOST_BATCH_SECONDS = 2.0
HOLD_RECHECK_SECONDS = 0.01


class WriteUnavailable(Exception):
    """The write was not (or may not have been) committed; the HTTP layer answers 503."""

    def __init__(self, message, *, outcome_unknown):
        super().__init__(message)
        self.message = message
        self.outcome_unknown = outcome_unknown


_NOT_APPLIED_RETRYABLE = {FAIL_REASON.MISSING_LEADER, FAIL_REASON.DISCARDED}
_OUTCOME_UNKNOWN = {FAIL_REASON.NOT_LEADER, FAIL_REASON.LEADER_CHANGED, FAIL_REASON.UNKNOWN_OUTCOME}
_MESSAGES = {
    FAIL_REASON.QUEUE_FULL: ("the Raft command queue is full; retry shortly", False),
    FAIL_REASON.MISSING_LEADER: ("no leader is known (an election is under way or this peer is cut off "
                                 "from the majority); the write was not applied", False),
    FAIL_REASON.DISCARDED: ("a new leader discarded the write before it was committed; it was not applied", False),
    FAIL_REASON.REQUEST_DENIED: ("the leader refused the write; it was not applied", False),
    FAIL_REASON.NOT_LEADER: ("the leader changed before the write was confirmed; it may or may not have "
                             "been applied (retrying the same request is safe)", True),
    FAIL_REASON.LEADER_CHANGED: ("the leader changed before the write was confirmed; it may or may not have "
                                 "been applied (retrying the same request is safe)", True),
    FAIL_REASON.UNKNOWN_OUTCOME: ("the write's outcome could not be tracked; it may or may not have been "
                                  "applied (retrying the same request is safe)", True),
}


def _deadline_passed(ticket, timeout, *, in_flight):
    """What the writer is told once its deadline passed."""
    if in_flight:
        return WriteUnavailable(
            f"the write was not confirmed within {timeout:g}s; it may or may not have been applied "
            "(retrying the same request is safe)", outcome_unknown=True)
    if ticket.maybe_applied:
        return WriteUnavailable(
            f"no leader confirmed the write within {timeout:g}s (an election is under way or this peer is "
            "cut off from the majority); an earlier attempt may or may not have been applied (retrying the "
            "same request is safe)", outcome_unknown=True)
    # Waiting for a leader all along: it was never sent, so it surely was not applied.
    return WriteUnavailable(_MESSAGES[FAIL_REASON.MISSING_LEADER][0] + f" within {timeout:g}s",
                            outcome_unknown=False)


class _Ticket:
    __slots__ = ("command", "size", "timeout", "deadline", "done", "result", "error", "maybe_applied", "on_done")

    def __init__(self, command, size, timeout, on_done=None):
        self.command = command
        self.size = size
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        # An async ticket's outcome goes to on_done and no thread waits on it: a plain flag will do.
        self.done = threading.Event() if on_done is None else _Told()
        self.result = None
        self.error = None
        self.maybe_applied = False  # an earlier attempt's outcome is unknown
        self.on_done = on_done  # submit_async's: told instead of a waiting thread

    def resolve(self, result):
        self.result = result
        self.done.set()
        if self.on_done is not None:
            self.on_done(result, None)

    def fail(self, error):
        if self.done.is_set():
            return  # told already (a deadline passed and then its batch's callback came)
        self.error = error
        self.done.set()
        if self.on_done is not None:
            self.on_done(None, error)


class _Told:
    """threading.Event's is_set and set without its lock and condition, for a ticket no thread waits on."""

    __slots__ = ("_set",)

    def __init__(self):
        self._set = False

    def is_set(self):
        return self._set

    def set(self):
        self._set = True


class _Batch:
    __slots__ = ("tickets", "started", "settled", "resubmittable")

    def __init__(self, tickets, resubmittable):
        self.tickets = tickets
        self.started = time.monotonic()
        self.settled = False
        self.resubmittable = resubmittable


class GroupCommitter:
    def __init__(self, replica, *, resubmittable=lambda command: False):
        """resubmittable(command): whether it may be submitted again while an earlier attempt
        may have been applied."""
        self._replica = replica
        self._resubmittable = resubmittable
        self.resubmitted_batches = 0  # sent again while an earlier attempt's outcome was unknown
        self._pending = collections.deque()
        self._in_flight = []
        self._cv = threading.Condition()
        self._stopped = False
        self._retry_at = 0.0
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()

    def submit(self, command, timeout, *, encoded_size=256):
        """Commit `command` and return its apply result once applied on this peer."""
        ticket = _Ticket(command, encoded_size, timeout)
        with self._cv:
            if self._stopped:
                raise WriteUnavailable("this peer is shutting down", outcome_unknown=False)
            lone = self._lone_batch(ticket)
        if lone is not None:
            self._send(lone)
        woken = ticket.done.wait(timeout)
        tracing.request_mark("writer.woken")
        if not woken:
            with self._cv:
                if ticket in self._pending:
                    self._pending.remove(ticket)
                    raise _deadline_passed(ticket, timeout, in_flight=False)
                if not ticket.done.is_set():
                    raise _deadline_passed(ticket, timeout, in_flight=True)
        if ticket.error is not None:
            raise ticket.error
        return ticket.result

    def submit_async(self, command, timeout, on_done, *, encoded_size=256):
        """Commit `command` without a thread waiting for it: on_done(result, None) once applied on
        this peer, or on_done(None, WriteUnavailable) as submit would raise it, exactly once; it
        runs on the Raft or the committer thread, so it must only hand the outcome on. (An HTTP
        worker's writes come this way, cluster/http_workers.py: one thread hand-off fewer each.)"""
        ticket = _Ticket(command, encoded_size, timeout, on_done)
        with self._cv:
            stopped = self._stopped
            lone = None if stopped else self._lone_batch(ticket)
        if stopped:
            ticket.fail(WriteUnavailable("this peer is shutting down", outcome_unknown=False))
        elif lone is not None:
            self._send(lone)

    def stop(self):
        with self._cv:
            self._stopped = True
            pending, self._pending = list(self._pending), collections.deque()
            self._cv.notify_all()
        for ticket in pending:
            ticket.fail(WriteUnavailable("this peer is shutting down; the write was not applied",
                                         outcome_unknown=False))

    def _lone_batch(self, ticket):
        """Under the lock: queue `ticket` for the committer thread, or, when that thread would send
        it alone and at once anyway (nothing pending, a slot free, a leader known, no pause), take
        it as a batch of its own for the caller to send: a lone write skips a thread hand-off
        (0.10 -> 0.05 ms median at a leader in the latency budget). Under load writes queue as before,
        and the committer packs them while the slots are busy."""
        now = time.monotonic()
        if self._pending or self._held() or not self._room_to_send(now):
            # With writes already pending, the committer's wait already ends when they may go (a
            # batch's callback notifies it; a pause, a hold and the second slot end its timed
            # wait), and this one's deadline, a whole write timeout away, is no earlier than
            # theirs. Woken for each write queued behind full slots, it only looked and waited
            # again: 65 -> 27-35 µs of CPU a write (scripts/bench_committer.py, 2026-12-04).
            if not self._pending or self._room_to_send(now):
                self._cv.notify()
            self._pending.append(ticket)
            return None
        batch = _Batch([ticket], self._resubmittable(ticket.command))
        self._in_flight.append(batch)
        return batch

    def _run(self):
        while True:
            with self._cv:
                batch = self._next_batch()
                if batch is None:
                    return
                self._in_flight.append(batch)
            self._send(batch)

    def _send(self, batch):
        """Outside the lock: hand an in-flight batch to PySyncObj (its callback settles it)."""
        commands = [t.command for t in batch.tickets]
        # Marked before the call: the Raft thread may forward or append it before the call returns.
        for command in commands:
            tracing.mark("committer.sent", command.get("cid"))
        try:
            self._replica.apply_batch(commands, callback=lambda res, err, b=batch: self._settle(b, res, err))
        except Exception as error:  # the replica is being destroyed
            log.warning("submitting a batch failed: %r", error)
            self._settle(batch, None, FAIL_REASON.REQUEST_DENIED)

    def _next_batch(self):
        """Under the lock: wait for work and a free slot, then take up to one batch of it."""
        while True:
            now = self._wait_for_work()
            if now is None:
                return None
            tickets, size = [], 0
            while self._pending and len(tickets) < MAX_BATCH_COMMANDS:
                ticket = self._pending[0]
                if ticket.deadline <= now:
                    # Re-submitted batches go back in front, so the queue is not in deadline order:
                    # a writer told its deadline passed may have retried elsewhere; never send it late.
                    self._pending.popleft().fail(_deadline_passed(ticket, ticket.timeout, in_flight=False))
                    continue
                if tickets and size + ticket.size > MAX_BATCH_BYTES:
                    break
                tickets.append(self._pending.popleft())
                size += ticket.size
            if tickets:
                return _Batch(tickets, all(self._resubmittable(t.command) for t in tickets))

    def _wait_for_work(self):
        """Under the lock: the time once there is work to send and room to send it; None once stopped."""
        while True:
            if self._stopped:
                return None
            now = time.monotonic()
            self._expire_lost_batches(now)
            earliest = self._expire_unsent_async(now)
            held = self._pending and self._held()
            if self._pending and not held and self._room_to_send(now):
                return now
            wait = 0.5
            if held:
                wait = HOLD_RECHECK_SECONDS
            elif self._pending and now < self._retry_at:
                wait = self._retry_at - now
            elif self._in_flight:
                wait = 0.1
                if self._pending:
                    wait = min(wait, max(0.001, self._second_slot_opens() - now))
            if earliest is not None:
                wait = min(wait, max(0.0, earliest - now))
            self._cv.wait(wait)

    def _held(self):
        """Under the lock: whether nothing may be sent now. The replica holds new batches while
        leadership is handed off (cluster/replica.py), and nothing is sent while no live leader is
        known: it would be lost on the way."""
        return self._replica.holding_writes() or self._replica.leader_address is None

    def _room_to_send(self, now):
        """Under the lock: no pause after a failed attempt, and a batch slot free (the second one
        only once the batch in flight is SECOND_BATCH_AFTER_SECONDS on its way)."""
        if now < self._retry_at:
            return False
        if not self._in_flight:
            return True
        return len(self._in_flight) < MAX_BATCHES_IN_FLIGHT and now >= self._second_slot_opens()

    def _second_slot_opens(self):
        return min(batch.started for batch in self._in_flight) + SECOND_BATCH_AFTER_SECONDS

    def _expire_unsent_async(self, now):
        """Under the lock: fail the unsent async writes whose deadline passed (a blocking writer
        does this itself); the earliest deadline of those left, or None."""
        waiting = [t for t in self._pending if t.on_done is not None]
        expired = [t for t in waiting if t.deadline <= now]
        for ticket in expired:
            self._pending.remove(ticket)
            ticket.fail(_deadline_passed(ticket, ticket.timeout, in_flight=False))
        return min((t.deadline for t in waiting if t.deadline > now), default=None)

    @staticmethod
    def _tell_expired_async(tickets, now):
        """What a blocking writer tells itself at its deadline, an async one in flight is told here."""
        for ticket in tickets:
            if ticket.on_done is not None and ticket.deadline <= now:
                ticket.fail(_deadline_passed(ticket, ticket.timeout, in_flight=True))

    def _expire_lost_batches(self, now):
        # PySyncObj can drop a callback (a follower's link to the leader breaks, say). A batch
        # that is safe to resend goes again; any other frees its slot once every writer in it
        # has passed its deadline, so later writes are not stuck. A late callback is ignored.
        for batch in self._in_flight:
            self._tell_expired_async(batch.tickets, now)
        for batch in list(self._in_flight):
            age = now - batch.started
            if batch.resubmittable and age > LOST_BATCH_SECONDS:
                log.info("a batch of %d writes was not confirmed within %.1fs; submitting it again",
                         len(batch.tickets), age)
                self._in_flight.remove(batch)
                self._resubmit(batch, maybe_applied=True)
            elif all(t.deadline <= now for t in batch.tickets) and age > 1.0:
                batch.settled = True
                self._in_flight.remove(batch)
                for ticket in batch.tickets:
                    ticket.fail(_deadline_passed(ticket, ticket.timeout, in_flight=True))

    def _resubmit(self, batch, *, maybe_applied):
        """Under the lock: put the batch's writers back in front, to go again after a pause."""
        batch.settled = True
        if maybe_applied:
            self.resubmitted_batches += 1
        now = time.monotonic()
        for ticket in batch.tickets:
            ticket.maybe_applied = ticket.maybe_applied or maybe_applied
        # A writer whose deadline passed has been told so, and may have retried elsewhere since.
        self._tell_expired_async(batch.tickets, now)
        self._pending.extendleft(reversed([t for t in batch.tickets if not t.done.is_set() and t.deadline > now]))
        self._retry_at = time.monotonic() + RETRY_PAUSE_SECONDS
        self._cv.notify()

    def _settle(self, batch, results, error):
        """PySyncObj's callback, on the Raft thread: hand each writer its result."""
        for ticket in batch.tickets:
            tracing.mark("callback", ticket.command.get("cid"))
        with self._cv:
            if batch.settled:
                return
            if batch in self._in_flight:
                self._in_flight.remove(batch)
            unknown = error in _OUTCOME_UNKNOWN
            if error in _NOT_APPLIED_RETRYABLE or (unknown and batch.resubmittable):
                # Retried until the writers' deadlines: not applied anywhere, or safe to send again.
                self._resubmit(batch, maybe_applied=unknown)
                return
            batch.settled = True
            self._cv.notify()
        if error == FAIL_REASON.SUCCESS:
            for ticket, result in zip(batch.tickets, results):
                if not ticket.done.is_set():
                    ticket.resolve(result)
            return
        message, unknown = _MESSAGES.get(error, (f"the write failed (PySyncObj reason {error})", True))
        failure = WriteUnavailable(message, outcome_unknown=unknown)
        for ticket in batch.tickets:
            ticket.fail(failure)

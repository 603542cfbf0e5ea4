"""Write submission: group commit with deadlines, and every PySyncObj failure made an answer.

Request threads hand commands to `GroupCommitter.submit`, which waits at most the deadline.
A single committer thread packs whatever is pending into one replicated `apply_batch` call,
so concurrent writers share Raft round trips, and keeps only a few batches outstanding (the
library loses callbacks and can wedge a follower under thousands of outstanding commands).
"""

import collections
import logging
import threading
import time

from pysyncobj import FAIL_REASON

log = logging.getLogger(__name__)

MAX_BATCH_COMMANDS = 512
MAX_BATCH_BYTES = 48 * 1024  # below appendEntriesBatchSizeBytes (64 KiB): one message per batch
MAX_BATCHES_IN_FLIGHT = 2
RETRY_PAUSE_SECONDS = 0.05
HOLD_RECHECK_SECONDS = 0.01


class WriteUnavailable(Exception):
    """The write was not (or may not have been) committed; the HTTP layer answers 503."""

    def __init__(self, message, *, outcome_unknown):
        super().__init__(message)
        self.message = message
        self.outcome_unknown = outcome_unknown


_NOT_APPLIED_RETRYABLE = {FAIL_REASON.MISSING_LEADER, FAIL_REASON.DISCARDED}
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


class _Ticket:
    __slots__ = ("command", "size", "deadline", "done", "result", "error")

    def __init__(self, command, size, deadline):
        self.command = command
        self.size = size
        self.deadline = deadline
        self.done = threading.Event()
        self.result = None
        self.error = None

    def resolve(self, result):
        self.result = result
        self.done.set()

    def fail(self, error):
        self.error = error
        self.done.set()


class _Batch:
    __slots__ = ("tickets", "started", "settled")

    def __init__(self, tickets):
        self.tickets = tickets
        self.started = time.monotonic()
        self.settled = False


class GroupCommitter:
    def __init__(self, replica, *, size_of=len):
        self._replica = replica
        self._size_of = size_of
        self._pending = collections.deque()
        self._in_flight = []
        self._cv = threading.Condition()
        self._stopped = False
        self._retry_at = 0.0
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()

    def submit(self, command, timeout, *, encoded_size=256):
        """Commit `command` and return its apply result once applied on this peer."""
        deadline = time.monotonic() + timeout
        ticket = _Ticket(command, encoded_size, deadline)
        with self._cv:
            if self._stopped:
                raise WriteUnavailable("this peer is shutting down", outcome_unknown=False)
            self._pending.append(ticket)
            self._cv.notify()
        if not ticket.done.wait(timeout):
            with self._cv:
                if ticket in self._pending:
                    # Still waiting for a leader: it was never sent, so it surely was not applied.
                    self._pending.remove(ticket)
                    raise WriteUnavailable(
                        _MESSAGES[FAIL_REASON.MISSING_LEADER][0] + f" within {timeout:g}s", outcome_unknown=False
                    )
            raise WriteUnavailable(
                f"the write was not confirmed within {timeout:g}s; it may or may not have been applied "
                "(retrying the same request is safe)",
                outcome_unknown=True,
            )
        if ticket.error is not None:
            raise ticket.error
        return ticket.result

    def stop(self):
        with self._cv:
            self._stopped = True
            pending, self._pending = list(self._pending), collections.deque()
            self._cv.notify_all()
        for ticket in pending:
            ticket.fail(WriteUnavailable("this peer is shutting down; the write was not applied",
                                         outcome_unknown=False))

    def _run(self):
        while True:
            with self._cv:
                batch = self._next_batch()
                if batch is None:
                    return
                self._in_flight.append(batch)
            commands = [t.command for t in batch.tickets]
            try:
                self._replica.apply_batch(commands, callback=lambda res, err, b=batch: self._settle(b, res, err))
            except Exception as error:  # the replica is being destroyed
                log.warning("submitting a batch failed: %r", error)
                self._settle(batch, None, FAIL_REASON.REQUEST_DENIED)

    def _next_batch(self):
        """Under the lock: wait for work and a free slot, then take up to one batch of it."""
        while True:
            if self._stopped:
                return None
            now = time.monotonic()
            self._expire_lost_batches(now)
            while self._pending and self._pending[0].deadline <= now:
                # Its writer has already been told the outcome is unknown: do not send it late.
                self._pending.popleft().fail(WriteUnavailable("deadline passed", outcome_unknown=True))
            # The replica holds new batches while leadership is handed off (cluster/replica.py).
            held = self._pending and self._replica.holding_writes()
            ready = now >= self._retry_at and not held
            if self._pending and ready and len(self._in_flight) < MAX_BATCHES_IN_FLIGHT:
                break
            wait = 0.5
            if held:
                wait = HOLD_RECHECK_SECONDS
            elif self._pending and not ready:
                wait = self._retry_at - now
            elif self._in_flight:
                wait = 0.1
            self._cv.wait(wait)
        tickets, size = [], 0
        while self._pending and len(tickets) < MAX_BATCH_COMMANDS:
            ticket = self._pending[0]
            if tickets and size + ticket.size > MAX_BATCH_BYTES:
                break
            tickets.append(self._pending.popleft())
            size += ticket.size
        return _Batch(tickets)

    def _expire_lost_batches(self, now):
        # PySyncObj can drop a callback (a follower's link to the leader breaks, say). Once every
        # writer in a batch has passed its deadline, free its slot so later writes are not stuck.
        for batch in list(self._in_flight):
            if all(t.deadline <= now for t in batch.tickets) and now - batch.started > 1.0:
                batch.settled = True
                self._in_flight.remove(batch)
                for ticket in batch.tickets:
                    ticket.fail(WriteUnavailable("deadline passed", outcome_unknown=True))

    def _settle(self, batch, results, error):
        """PySyncObj's callback, on the Raft thread: hand each writer its result."""
        with self._cv:
            if batch.settled:
                return
            batch.settled = True
            if batch in self._in_flight:
                self._in_flight.remove(batch)
            if error in _NOT_APPLIED_RETRYABLE:
                # Not applied anywhere: put the writers back in front to retry until their deadlines.
                self._pending.extendleft(reversed(batch.tickets))
                self._retry_at = time.monotonic() + RETRY_PAUSE_SECONDS
                self._cv.notify()
                return
            self._cv.notify()
        if error == FAIL_REASON.SUCCESS:
            for ticket, result in zip(batch.tickets, results):
                ticket.resolve(result)
            return
        message, unknown = _MESSAGES.get(error, (f"the write failed (PySyncObj reason {error})", True))
        failure = WriteUnavailable(message, outcome_unknown=unknown)
        for ticket in batch.tickets:
            ticket.fail(failure)

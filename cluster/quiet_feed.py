"""A quiet HTTP worker's feed: the batches its Raft process applied, held and sent with the next
status instead of one by one, until a request at the worker asks for them again.

Every worker of every peer is a read replica, so each batch a peer applies woke each of its
workers at once: on a 3-peer cluster with two workers a peer, a lone write woke six worker
processes, five of them serving nobody (the leader's and the other follower's, and the writing
worker's sibling), all wanting a core at the moment the write's own worker needed one to answer.
On two cores that contention, not the work, was most of the extra latency of a one-connection
write at a follower with workers: with three clusters up side by side and their runs interleaved
(scripts/bench_interleaved.py, 8 rounds, 2026-12-04), one-process peers 2.60 ms p50, workers fed
at once 3.17 ms, quiet workers 2.76 ms (README, "A quiet worker's feed").

So a worker that no request has needed for QUIET_AFTER_SECONDS (and that holds no blocking read
and awaits no call: a write waits for its own batch) tells its Raft process it is quiet (a QUIET
frame); the Raft process then holds its
batches and sends them, in order, right before each status (a few times a second), which keeps
its replica as far behind as the status age the supervisor and /readyz already judge it by. The
first request after that asks for the live feed (a "feed_live" call): the Raft process sends
what it held, then the reply, so once the reply is read the replica holds every batch applied
before it. A read waits for that reply (one round trip to the Raft process, once a quiet spell);
a write only sends the call ahead of its own, since its answer waits for its batch anyway.

Only the worker moves itself between quiet and live, each move sent on the channel under one
lock with the flag, so both ends agree in the channel's order: a worker that believes itself live
has sent its last "feed_live" after its last QUIET.
"""

import contextlib
import threading
import time

from .worker_channel import QUIET, ChannelClosed, encode

# A worker no request needed for this long goes quiet.
QUIET_AFTER_SECONDS = 1.0
# What a quiet worker's Raft process holds for it before sending it all the same: between two
# statuses even a busy peer applies far less (at 3,000 writes/s of 300-byte records, 50 ms is 0.2 MB).
MAX_HELD_BYTES = 4 * 1024 * 1024
FEED_LIVE = "feed_live"


class HeldFeed:
    """The Raft process's side of one worker's feed: batches sent at once while the worker is
    live, held while it is quiet; anything else sent (a status, a snapshot) goes after them."""

    def __init__(self, send):
        self._send = send
        self._lock = threading.Lock()
        self._quiet = False
        self._held = []
        self._held_bytes = 0

    @property
    def quiet(self):
        return self._quiet

    def batch(self, frame):
        """On the Raft thread: one applied batch's frame."""
        with self._lock:
            if not self._quiet:
                self._send(frame)
                return
            self._held.append(frame)
            self._held_bytes += len(frame)
            if self._held_bytes >= MAX_HELD_BYTES:
                self._send_held_locked()

    def after_held(self, frame):
        """Send `frame` after every batch held so far (a status, a snapshot, a call)."""
        with self._lock:
            self._send_held_locked()
            if frame is not None:
                self._send(frame)

    def go_quiet(self):
        with self._lock:
            self._quiet = True

    def go_live(self):
        """The worker asked for its batches: what was held is sent before this returns."""
        with self._lock:
            self._send_held_locked()
            self._quiet = False

    def _send_held_locked(self):
        held, self._held, self._held_bytes = self._held, [], 0
        for frame in held:
            self._send(frame)


class FeedDemand:
    """The worker's side: whether a request here needs the Raft process's batches as they come."""

    def __init__(self, channel, calls, quiet_after=None, live_call_timeout=5.0):
        self._channel = channel
        self._calls = calls
        self._quiet_after = QUIET_AFTER_SECONDS if quiet_after is None else quiet_after
        self._live_call_timeout = live_call_timeout
        self._lock = threading.Lock()
        self._quiet = False
        self._last_wanted = time.monotonic()
        self._holding = 0  # blocking reads waiting for a change: they need every batch at once
        self._live = threading.Event()
        self._live.set()

    @property
    def quiet(self):
        return self._quiet

    def want(self):
        """A request needs the live feed. True if it is live; else it is asked for (once for all
        the requests that find it quiet) and False until the Raft process has sent what it held."""
        with self._lock:
            self._last_wanted = time.monotonic()
            if self._quiet:
                self._quiet = False
                live = self._live = threading.Event()
                # Any outcome ends the wait: a failure means the channel is going, and the worker with it.
                self._calls.call_later(FEED_LIVE, [], self._live_call_timeout, lambda outcome: live.set())
            live = self._live
        return live.is_set()

    def wait_live(self, timeout):
        """After want() said False: until the held batches are here (True), or timeout (False)."""
        return self._live.wait(timeout)

    @contextlib.contextmanager
    def holding(self):
        """Around a blocking read's wait: the worker stays live however long it waits."""
        with self._lock:
            self._holding += 1
        try:
            yield
        finally:
            with self._lock:
                self._holding -= 1

    def quiet_if_idle(self, now):
        """Called a few times a second: go quiet if no request needed the feed for a while."""
        with self._lock:
            if (self._quiet or self._holding or now - self._last_wanted < self._quiet_after
                    or self._calls.any_waiting()):
                return False
            try:
                self._channel.send(encode(QUIET, None))
            except ChannelClosed:
                return False
            self._quiet = True
            return True

"""Reads answered on waitress' own loop thread, when their answer is already encoded.

waitress reads and parses every request on one thread (its asyncore loop), hands each to a
thread of its pool to run the app, and that thread hands the answer back to the loop to send:
two thread wake-ups and two passes of the interpreter lock for every request. For a list the
listing cache (api/listing_cache.py) already holds, that was more than half of a read's CPU: a
one-instance list at a follower, 64 connections, took 298 µs of CPU a read (3,729/s at 1.11
cores) through the pool and 171 µs (5,735/s at 0.98 cores) answered on the loop thread
(scripts/bench.py, before and after, 2026-12-03; the README's "Kept lists answered on waitress'
own loop thread").

So the loop thread answers a request itself when the app says it can at once: nothing to wait
for (no blocking read, no barrier, a replica that holds every write this peer answered), and
the answer a dictionary lookup away (HotPath.answers_at_once). Anything else, and anything in
doubt, goes to the pool as before.

waitress makes a thread that writes past its output high-water mark (16 MB) wait for the loop
to send, and the loop thread must never wait for itself. So it answers a request only while the
connection has no output queued (a pipelined request behind an answer not yet sent goes to the
pool, whose thread may wait as it always could), and a kept answer is at most
list_blocks.BLOCK_RECORDS records and the listing cache's MAX_BODY_BYTES (4 MB; should a batch
change the list between the check and the answer, it is built again here, one batch's records
larger at most), so one answer stays below the mark. Should waitress still ask the loop thread
to wait for room, it flushes what the socket takes and goes on instead (the loop sends the rest
as the client reads). The loop thread does take the state lock for the caller's permission and
the list's version, as a pool thread would: an apply holds it for a batch, which holds the
interpreter lock the loop needs anyway.

Registrations at an HTTP worker go further: the loop thread checks the token, the permission
and the body and sends the command to the Raft process (HotPath.start_later) without a pool
thread waiting on it; whichever thread learns the outcome (the replica's feed, as it applies the
write) serves the request again with its answer ready, as a pool thread would have (LaterAnswer).
Before, each such write took a pool thread's two hand-offs and a third to wake it when the
replica held the write. The request stays first on its connection meanwhile, so answers keep
their order; a pipelined one behind it waits, and goes to the pool once it is answered.

This leans on waitress 3's channel (its `received` hands a completed request to
`server.add_task`, and `service` answers the first queued request and hands on the next),
which setup.cfg pins to 3.x; tests/api/test_loop_answers.py runs it through a real server.
"""

import logging
import threading

from waitress.channel import HTTPChannel
from waitress.task import ThreadedTaskDispatcher, WSGITask

from .hot_path import LATER_ANSWER

log = logging.getLogger(__name__)


class LaterAnswerTask(WSGITask):
    """waitress' WSGI task, carrying the answer of a request started on the loop thread."""

    def get_environment(self):
        environ = super().get_environment()
        answer = getattr(self.request, "registry_later_answer", None)
        if answer is not None:
            environ[LATER_ANSWER] = answer
        return environ


class LaterAnswer:
    """A request the loop thread started (HotPath.start_later): its answer, once it came, served
    by the thread that brought it, through the channel as a pool thread serves a request."""

    def __init__(self, channel, request):
        self._channel = channel
        self._request = request
        self._lock = threading.Lock()
        self._started = False
        self._came_early = False

    def finish(self, answer):
        self._request.registry_later_answer = answer
        with self._lock:
            if not self._started:
                # Inside add_task, under the channel's requests lock, on the loop thread: it
                # serves the request itself once it leaves received().
                self._came_early = True
                return
        try:
            self._channel.service()
        except Exception:
            log.exception("sending an answer that came from another thread failed")

    def started(self):
        with self._lock:
            self._started = True
            came_early = self._came_early
        if came_early:
            self._channel.answer_here = True


class LoopAnsweringChannel(HTTPChannel):
    """A channel whose requests the loop thread may answer, or start, itself (LoopAnsweringDispatcher)."""

    task_class = LaterAnswerTask

    # The thread inside received(), the loop's: a request handed to add_task by that thread may be
    # answered by it. (A pool thread ending a request hands on the next pipelined one while the
    # loop may still be in here: that one is the pool's.)
    receiving_thread = None
    answer_here = False  # the dispatcher said so for the request now first in line

    def _flush_outbufs_below_high_watermark(self):
        if self.receiving_thread != threading.get_ident():
            return super()._flush_outbufs_below_high_watermark()
        # On the loop thread, which is the one that would send: never wait for it.
        if self.total_outbufs_len > self.adj.outbuf_high_watermark:
            with self.outbuf_lock:
                self._flush_exception(self._flush_some, do_close=False)

    def received(self, data):
        self.receiving_thread = threading.get_ident()
        try:
            taken = super().received(data)
            while self.answer_here:
                self.answer_here = False
                # Its end hands the next pipelined request to add_task, which may say "here" again.
                self.service()
        finally:
            self.receiving_thread = None
        return taken


class LoopAnsweringDispatcher:
    """waitress' thread pool, but a request the app answers at once runs on the loop thread."""

    def __init__(self, threads, answers_at_once, start_later=None):
        """A pool of `threads`; answers_at_once(method, path, query, authorization) -> bool and
        start_later(environ, finish) -> bool (HotPath's), on the loop thread: they must not
        wait for anything."""
        self._pool = ThreadedTaskDispatcher()
        self._pool.set_thread_count(threads)
        self._answers_at_once = answers_at_once
        self._start_later = start_later
        self.answered_on_loop = 0
        self.started_on_loop = 0

    def add_task(self, channel):
        if channel.receiving_thread == threading.get_ident() and not channel.total_outbufs_len:
            request = channel.requests[0]
            if self._answerable(request):
                self.answered_on_loop += 1
                channel.answer_here = True
                return
            if self._started(channel, request):
                self.started_on_loop += 1
                return
        self._pool.add_task(channel)

    def _started(self, channel, request):
        if self._start_later is None or request.error is not None or request.command != "PUT":
            return False
        environ = None
        try:
            environ = channel.task_class(channel, request).get_environment()
            later = LaterAnswer(channel, request)
            if self._start_later(environ, later.finish):
                later.started()
                return True
        except Exception:
            log.exception("starting %s %s on the loop thread failed; a pool thread answers it",
                          request.command, request.path)
        if environ is not None:
            environ["wsgi.input"].seek(0)  # the pool's task reads the same body again
        return False

    def _answerable(self, request):
        if request.error is not None or request.command is None:
            return False
        try:
            return self._answers_at_once(request.command.upper(), request.path, request.query,
                                         request.headers.get("AUTHORIZATION", ""))
        except Exception:
            log.exception("deciding where to answer %s %s failed; a pool thread answers it",
                          request.command, request.path)
            return False

    def shutdown(self, *args, **kwargs):
        return self._pool.shutdown(*args, **kwargs)

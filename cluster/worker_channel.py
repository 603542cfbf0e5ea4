"""The local channel between a peer's Raft process and one of its HTTP worker processes.

One Unix stream socket (a socketpair made before the worker starts) carries, in order, the
Raft process's applied batches and status to the worker, and calls both ways, each call with
an id so that many are in flight at once. A worker's write (a command with its own id) gets a
reply only if it failed: the worker answers it as its replica applies it (Calls.settle). A
frame is a 4-byte length, a 1-byte kind and an orjson payload, but for the snapshot, which is
pickled (below).

Sends never wait for the other side while they can help it: a frame goes straight into the
socket when nothing is queued before it (the Raft thread sends batches this way, and it must
never block on a slow worker); what does not fit is queued, in order, for the channel's writer
thread. A queue past its bound means the other side stopped reading: the channel closes, and
the Raft process starts the worker afresh from a snapshot (cluster/http_workers.py).
"""

import collections
import itertools
import logging
import pickle
import socket
import struct
import threading
import time

import orjson

log = logging.getLogger(__name__)

HEADER = struct.Struct("!IB")

# Frame kinds.
HELLO = 1  # Raft -> worker, first: what the worker needs to know of its peer
SNAPSHOT = 2  # Raft -> worker: the whole state, replacing the worker's
BATCH = 3  # Raft -> worker: [raft index, commands] applied at the Raft process
STATUS = 4  # Raft -> worker: the peer's Raft status, pushed a few times a second
CALL = 5  # either way: [call id, operation, arguments]
REPLY = 6  # either way: [call id, outcome]
PROGRESS = 7  # worker -> Raft: [the worker's state index, the last status' sentAt]
QUIET = 8  # worker -> Raft: nothing here needs batches at once: send them with the status (cluster/quiet_feed.py)

# What may sit queued behind a socket the other side does not read before the channel gives up.
MAX_QUEUED_BYTES = 256 * 1024 * 1024


class ChannelClosed(Exception):
    pass


def frame(kind, payload):
    """A frame of `payload` (already encoded with orjson)."""
    return HEADER.pack(len(payload), kind) + payload


def encode(kind, value):
    return frame(kind, orjson.dumps(value))


# A snapshot is pickled, in slices: records sharing a value (a slug, a tag list) share it after
# unpickling as they did before, so a worker's loaded state costs about what an applied one does
# (1,170 against 1,115 bytes an instance: ports and each slice's own copies are not shared) with
# no interning pass after the decode (at 100,000 instances orjson plus that pass took 0.5 s, the
# unpickling 0.1 s), and no slice holds the Raft process's interpreter lock more than a few
# milliseconds (one pickling of 100,000 records held it 0.2 s). Pickle runs code named in its
# data, which is safe here only because both ends are one peer's own processes.
SNAPSHOT_SLICE_RECORDS = 4096


def encode_snapshot(snapshot):
    records = snapshot["instances"]
    slices = [pickle.dumps(dict(snapshot, instances=None), pickle.HIGHEST_PROTOCOL)]
    slices += [pickle.dumps(records[start:start + SNAPSHOT_SLICE_RECORDS], pickle.HIGHEST_PROTOCOL)
               for start in range(0, len(records), SNAPSHOT_SLICE_RECORDS)]
    return frame(SNAPSHOT, pickle.dumps(slices, pickle.HIGHEST_PROTOCOL))


def decode_snapshot(payload):
    head, *slices = pickle.loads(payload)
    snapshot = pickle.loads(head)
    snapshot["instances"] = [record for piece in slices for record in pickle.loads(piece)]
    return snapshot


class Channel:
    def __init__(self, sock, name):
        self.name = name
        self._sock = sock
        self._reader = sock.makefile("rb", buffering=1 << 16)
        self._lock = threading.Lock()
        self._queue = collections.deque()  # bytes, or callables that make them when their turn comes
        self._queued_bytes = 0
        self._has_queue = threading.Condition(self._lock)
        self._closed = False
        self._writer = threading.Thread(target=self._write_queued, name=f"{name}-writer", daemon=True)
        self._writer.start()

    @property
    def closed(self):
        return self._closed

    @property
    def queued_bytes(self):
        return self._queued_bytes

    def send(self, data):
        """Send a frame, or a callable making one (made on the writer thread, in its turn)."""
        with self._lock:
            if self._closed:
                raise ChannelClosed(self.name)
            if self._queue or callable(data):
                self._enqueue(data)
                return
            try:
                sent = self._sock.send(data, socket.MSG_DONTWAIT)
            except BlockingIOError:
                sent = 0
            except OSError as error:
                self._close_locked(f"send failed: {error}")
                raise ChannelClosed(self.name) from None
            if sent < len(data):
                self._enqueue(memoryview(data)[sent:])

    def _enqueue(self, data):
        self._queue.append(data)
        self._queued_bytes += 0 if callable(data) else len(data)
        if self._queued_bytes > MAX_QUEUED_BYTES:
            self._close_locked(f"more than {MAX_QUEUED_BYTES >> 20} MB queued: the other side stopped reading")
            raise ChannelClosed(self.name)
        self._has_queue.notify()

    def _write_queued(self):
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._has_queue.wait()
                if self._closed:
                    return
                data = self._queue[0]
            if callable(data):
                try:
                    data = memoryview(data())
                except Exception:
                    log.exception("%s: making a frame failed", self.name)
                    self.close("a frame could not be made")
                    return
                with self._lock:
                    self._queue[0] = data
                    self._queued_bytes += len(data)
            try:
                sent = self._sock.send(data)  # blocks while the other side's buffer is full
            except OSError as error:
                self.close(f"send failed: {error}")
                return
            with self._lock:
                if self._closed:
                    return
                self._queued_bytes -= sent
                if sent < len(data):
                    self._queue[0] = memoryview(data)[sent:]
                else:
                    self._queue.popleft()

    def receive(self):
        """(kind, payload bytes) of the next frame; ChannelClosed once the other side is gone."""
        try:
            header = self._reader.read(HEADER.size)
            if len(header) < HEADER.size:
                self.close("closed by the other side")
                raise ChannelClosed(self.name)
            length, kind = HEADER.unpack(header)
            payload = self._reader.read(length)
        except (OSError, ValueError) as error:  # reset by a killed process, or read after close
            self.close(f"receive failed: {error}")
            raise ChannelClosed(self.name) from None
        if len(payload) < length:
            self.close("closed by the other side mid-frame")
            raise ChannelClosed(self.name)
        return kind, payload

    def close(self, why="closed"):
        with self._lock:
            self._close_locked(why)

    def _close_locked(self, why):
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._queued_bytes = 0
        self._has_queue.notify_all()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        log.debug("%s closed: %s", self.name, why)


class _Waiting:
    """A call awaiting its outcome: a thread waits on `done`, or `on_outcome` is told."""

    __slots__ = ("done", "on_outcome", "outcome", "deadline", "operation", "key")

    def __init__(self, operation, key, done=None, on_outcome=None, deadline=None):
        self.done = done
        self.on_outcome = on_outcome
        self.outcome = None
        self.deadline = deadline
        self.operation = operation
        self.key = key


class Calls:
    """Calls over a channel awaiting their replies: many in flight at once, each with its deadline.
    A call may also be settled by a key of its own (settle), by what the caller's side learns
    before any reply would come: an HTTP worker's write, by its replica applying it. A call
    either holds its thread until then (call) or has a callback told (call_later)."""

    def __init__(self, channel):
        self._channel = channel
        self._ids = itertools.count(1)
        self._waiting = {}  # call id -> _Waiting
        self._keyed = {}  # settled_by key -> call id
        self._lock = threading.Lock()

    def call(self, operation, arguments, timeout, *, settled_by=None):
        """The outcome the other side replied with, or the one settle gave for `settled_by`
        first; ChannelClosed, or TimeoutError past timeout."""
        waiting = _Waiting(operation, settled_by, done=threading.Event())
        call_id = self._register(waiting)
        try:
            self._channel.send(encode(CALL, [call_id, operation, arguments]))
            if not waiting.done.wait(timeout):
                if self._channel.closed:
                    raise ChannelClosed(self._channel.name)
                raise TimeoutError(f"{operation} not answered within {timeout:g}s")
        finally:
            with self._lock:
                self._forget_locked(call_id)
        if waiting.outcome is None:
            raise ChannelClosed(self._channel.name)
        return waiting.outcome

    def call_later(self, operation, arguments, timeout, on_outcome, *, settled_by=None):
        """call without a waiting thread: on_outcome(the outcome) once it comes, or on_outcome(
        ChannelClosed or TimeoutError), exactly once, on the thread that learns it (the channel's
        reader, a settle's caller, expire's caller; this one if the send fails). It must only
        hand the outcome on."""
        waiting = _Waiting(operation, settled_by, on_outcome=on_outcome, deadline=time.monotonic() + timeout)
        call_id = self._register(waiting)
        try:
            self._channel.send(encode(CALL, [call_id, operation, arguments]))
        except ChannelClosed as error:
            self._end(call_id, error)

    def _register(self, waiting):
        call_id = next(self._ids)
        with self._lock:
            self._waiting[call_id] = waiting
            if waiting.key is not None:
                self._keyed[waiting.key] = call_id
        return call_id

    def _forget_locked(self, call_id):
        waiting = self._waiting.pop(call_id, None)
        if waiting is not None and waiting.key is not None:
            self._keyed.pop(waiting.key, None)
        return waiting

    def any_waiting(self):
        """Whether a call made here still waits for its outcome."""
        return bool(self._waiting)

    def awaited_keys(self):
        """The settled_by keys of the calls waiting now (a copy)."""
        with self._lock:
            return set(self._keyed)

    def is_awaited(self, key):
        """Whether a waiting call may be settled by `key`; a lock-free look (a dict lookup is atomic),
        for a caller checking every key of a batch before it settles any."""
        return key in self._keyed

    def settle(self, outcomes):
        """Settle the waiting calls made with these keys: [(key, outcome)]; a key no call waits on
        (nor will: keys are unique, and registered before the call is sent) is passed over."""
        with self._lock:
            ended = [self._settle_locked(self._keyed.get(key), outcome) for key, outcome in outcomes]
        for waiting in ended:
            _tell(waiting)

    def replied(self, payload):
        call_id, outcome = orjson.loads(payload)
        with self._lock:
            waiting = self._settle_locked(call_id, outcome)
        _tell(waiting)

    def _settle_locked(self, call_id, outcome):
        """The first outcome of a call stands (a reply after a settle, or the other way, is late)."""
        waiting = self._waiting.get(call_id)
        if waiting is None or waiting.outcome is not None:
            return None
        waiting.outcome = outcome
        if waiting.on_outcome is not None:
            self._forget_locked(call_id)  # no thread of its own comes back for it
        return waiting

    def _end(self, call_id, error):
        with self._lock:
            waiting = self._forget_locked(call_id)
        if waiting is not None:
            _tell_later(waiting, error)

    def expire(self, now):
        """End the call_later calls whose deadline passed with TimeoutError (some thread must call
        this a few times a second: nothing else would, should the other side never answer)."""
        with self._lock:
            expired = [(call_id, waiting) for call_id, waiting in self._waiting.items()
                       if waiting.deadline is not None and waiting.deadline <= now]
            for call_id, _ in expired:
                self._forget_locked(call_id)
        for _, waiting in expired:
            _tell_later(waiting, TimeoutError(f"{waiting.operation} not answered in time"))

    def fail_all(self):
        """The channel is gone: every waiting call ends now, not at its deadline."""
        with self._lock:
            ended = list(self._waiting.items())
            for call_id, waiting in ended:
                if waiting.on_outcome is not None:
                    self._forget_locked(call_id)
        for _, waiting in ended:
            if waiting.done is not None:
                waiting.done.set()  # its thread finds no outcome: ChannelClosed
            else:
                _tell_later(waiting, ChannelClosed(self._channel.name))


def _tell(waiting):
    if waiting is None:
        return
    if waiting.on_outcome is not None:
        _tell_later(waiting, waiting.outcome)
    else:
        waiting.done.set()


def _tell_later(waiting, outcome):
    # Often on the thread reading the channel: a callback's failure must not end that thread.
    try:
        waiting.on_outcome(outcome)
    except Exception:
        log.exception("handing on the outcome of a %s call failed", waiting.operation)


def reply(channel, call_id, outcome):
    """Answer a call; a channel closed since means the caller is gone, with nobody left to tell."""
    try:
        channel.send(encode(REPLY, [call_id, outcome]))
    except ChannelClosed:
        pass

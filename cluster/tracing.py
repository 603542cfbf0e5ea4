"""Where a write's time goes: timestamps of each hop, for scripts/latency_budget.py.

Off unless a peer starts with REGISTRY_TRACE_DIR set; then each process keeps
(monotonic ns, hop, key) events in memory and writes them to DIR/trace-<pid>.json when it
exits. CLOCK_MONOTONIC is one clock for every process of a machine, so events of the peers of a
local cluster line up. Keys join the hops: a write's command id (cid) on the peer that took the
request, the Raft index of its entry between peers (an apply event says which cid went into
which index). Off, a hop costs a global read and a comparison.
"""

import atexit
import os
import threading
import time

import orjson

ENVIRONMENT_VARIABLE = "REGISTRY_TRACE_DIR"

_events = None  # [(ns, hop, key)] while tracing, None otherwise
_path = None
_request = threading.local()  # the request thread's write: its start time, then its cid
_flushing = threading.Lock()  # a worker flushes from its main thread and from a channel thread


def start_from_environment(owner_pid=None):
    directory = os.environ.get(ENVIRONMENT_VARIABLE)
    if directory:
        start(directory, owner_pid)


def start(directory, owner_pid=None):
    """Trace into DIR/trace-<pid>.json; a peer's HTTP worker names its Raft process as the owner
    (DIR/trace-<owner>-<pid>.json), whose events its own join."""
    global _events, _path
    os.makedirs(directory, exist_ok=True)
    _events = []
    name = f"trace-{os.getpid()}.json" if owner_pid is None else f"trace-{owner_pid}-{os.getpid()}.json"
    _path = os.path.join(directory, name)
    atexit.register(flush)


def flush():
    """Write the events out, whole or not at all: a process may be killed while it writes, and
    a worker that loses its channel flushes from that thread while its main thread may be
    flushing too (two writers of one partial file once left an empty trace behind), so one
    flush runs at a time."""
    if _events is not None and _path is not None:
        with _flushing:
            partial = _path + ".partial"
            with open(partial, "wb") as sink:
                sink.write(orjson.dumps(_events))
            os.replace(partial, _path)


def enabled():
    return _events is not None


def mark(hop, key):
    if _events is not None:
        _events.append((time.monotonic_ns(), hop, key))


def mark_at(ns, hop, key):
    if _events is not None:
        _events.append((ns, hop, key))


def request_started():
    """On a request thread, as a write request arrives (its cid is not known yet)."""
    if _events is not None:
        _request.started = time.monotonic_ns()
        _request.cid = None


def request_submitted(cid):
    """On the request thread, once its command has an id: the start is recorded under it."""
    if _events is not None:
        started = getattr(_request, "started", None)
        if started is not None:
            _events.append((started, "http.start", cid))
            _request.started = None
            _request.cid = cid
        _events.append((time.monotonic_ns(), "submit", cid))


def request_mark(hop):
    """A later hop of this thread's write (woken, answered)."""
    if _events is not None:
        cid = getattr(_request, "cid", None)
        if cid is not None:
            _events.append((time.monotonic_ns(), hop, cid))


def request_left():
    """The thread that started a write leaves its end to another (api/loop_answers.py)."""
    if _events is not None:
        _request.cid = None


def request_resumed(cid):
    """On the thread that ends a write another started: its later hops are this thread's."""
    if _events is not None:
        _request.cid = cid


def request_done():
    if _events is not None:
        request_mark("http.written")
        _request.cid = None

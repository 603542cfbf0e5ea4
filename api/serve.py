"""Running one peer: the replica and its heartbeat, and the HTTP API under waitress."""

import ctypes
import logging
import os
import resource
import signal
import socket
import threading
import time

from waitress import create_server

from cluster import collector, tracing
from cluster.config import split_address
from cluster.identity import ConfigurationError
from cluster.peer import Peer

from .app import create_app
from .loop_answers import LoopAnsweringChannel, LoopAnsweringDispatcher

log = logging.getLogger(__name__)

# waitress buffers a whole body before Flask sees it: cap that buffering too. Bodies up to
# this much beyond Flask's limit still get Flask's JSON 413; larger ones waitress' own.
WAITRESS_BODY_SLACK_BYTES = 1024 * 1024


# glibc gives each thread that allocates its own malloc arena, up to 8 per core. A peer runs
# hundreds of threads (HTTP, blocking reads, Raft, dumps): at 100,000 instances that spread the
# heap over many half-empty arenas, 2.8-3.2 KB of RSS per instance against 1.4-1.6 KB with two.
MALLOC_ARENAS = 2
# glibc raises its mmap threshold to the size of each large block freed (up to 32 MB), so the
# megabytes a full list takes to encode and send then come from the heap and stay there: RSS
# grew by 800 bytes per instance with each full list of 20,000. A fixed threshold gives every
# block of this size or more its own mapping, returned to the system when freed.
MMAP_THRESHOLD_BYTES = 1024 * 1024
# A fixed mmap threshold also fixes the trim threshold, at 128 KB: the heap was then given back
# and faulted in again around every 450 KB answer (a 1,000-instance list: 1,130 -> 910 req/s).
# Twice the mmap threshold is what glibc's own adjustment would pick.
TRIM_THRESHOLD_BYTES = 2 * MMAP_THRESHOLD_BYTES
_M_ARENA_MAX = -8  # mallopt's parameter numbers, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_M_TRIM_THRESHOLD = -1
# waitress' own default backlog.
LISTEN_BACKLOG = 1024
PORT_RELEASE_SECONDS = 3.0
# Descriptors a peer holds besides HTTP connections: Raft sockets, the journal, dumps, logs.
OTHER_OPEN_FILES = 256


def tune_malloc():
    """Before any thread starts; MALLOC_ARENA_MAX and MALLOC_MMAP_THRESHOLD_ in the environment
    win (glibc read them already)."""
    try:
        libc = ctypes.CDLL(None)
        if "MALLOC_ARENA_MAX" not in os.environ:
            libc.mallopt(_M_ARENA_MAX, MALLOC_ARENAS)
        if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
            libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
            libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


class RegistryChannel(LoopAnsweringChannel):
    """waitress' channel (answering cached reads on its loop thread: api/loop_answers.py), without
    its busy loop while a worker thread writes.

    While a request runs and has output queued, waitress' channel asks the main loop for POLLOUT,
    and the main loop, woken at once, tries the output lock without blocking and gives up when
    the worker holds it. It does this again on every turn, and each turn calls readable() and
    writable() on every open connection in Python: with 100 held blocking reads a single woken
    one kept the loop turning 10,000-15,000 times a second, holding the interpreter lock the
    worker needed to finish (reads beside it: p99 1.8 -> 230 ms). A worker holding the lock
    flushes as it writes, and pulls the trigger when it leaves output behind or waits for room,
    and every finished request pulls it too, so the main loop has nothing to do for this
    channel until then.
    """

    def writable(self):
        if self.requests and self.total_outbufs_len and not self.will_close and not self.close_when_flushed:
            if not self.outbuf_lock.acquire(blocking=False):
                return False
            self.outbuf_lock.release()
        return super().writable()


def connection_limit(config):
    """Every blocking read and every busy thread holds a connection, whatever was configured."""
    return max(config.max_connections, config.max_blocking_reads + config.http_threads)


def raise_open_files_limit(connections):
    """Each connection is a file descriptor: lift the soft limit toward the hard one if needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + OTHER_OPEN_FILES
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < wanted:
            log.warning("open files limited to %d (hard limit): fewer than %d connections can be served",
                        target, connections)


def make_server(app, config, **where):
    """waitress for `app`: at host= and port=, or on the given sockets= (an HTTP worker's)."""
    # Blocking reads sleep in threads of their own, so they never starve other requests.
    threads = config.http_threads + config.max_blocking_reads
    server = create_server(
        app, threads=threads, ident="registry",
        _dispatcher=LoopAnsweringDispatcher(threads, app.wsgi_app.answers_at_once, app.wsgi_app.start_later),
        max_request_body_size=config.max_body_bytes + WAITRESS_BODY_SLACK_BYTES,
        connection_limit=connection_limit(config),
        # select() cannot watch a descriptor numbered 1024 or more; poll() can.
        asyncore_use_poll=True, **where,
    )
    server.channel_class = RegistryChannel
    return server


def stop_on_signals():
    def shut_down(signum, _frame):
        log.info("signal %d: shutting down", signum)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)


def serve(config, timings=None, log_settings=None):
    tune_malloc()
    collector.tune()
    collector.settle()  # before the state exists: what is frozen is the code, which lives as long as the process
    tracing.start_from_environment()  # REGISTRY_TRACE_DIR: scripts/latency_budget.py
    raise_open_files_limit(connection_limit(config))
    host, port = split_address(config.http_address, "--http-address")
    options = {} if timings is None else {"timings": timings}
    if config.http_workers:
        # Held before the replica starts, as waitress binds: a port in use fails the start.
        reserved = reserve_http_port(host, port)
        peer = Peer(config, worker_log_settings=log_settings, **options)
        run, close = threading.Event().wait, reserved.close  # the workers serve; a signal ends the wait
        served_by = f" from {config.http_workers} worker processes"
    else:
        peer = Peer(config, **options)
        server = make_server(create_app(peer), config, host=host, port=port)
        run, close, served_by = server.run, server.close, ""
    stop_on_signals()
    peer.start()
    log.info("peer %s serving HTTP on %s:%d%s (raft %s, peers %s, data %s)", peer.url, host, port, served_by,
             config.raft_address, ", ".join(config.partners) or "none", config.data_dir)
    try:
        run()
    finally:
        close()
        peer.stop()
        log.info("stopped")


def _reuse_port_socket(host, port):
    family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


def reserve_http_port(host, port):
    """The HTTP port, held for this peer's workers: bound with SO_REUSEPORT and never listening,
    so it takes no connections itself while each worker listens on the port with a socket of its
    own (http_worker_socket) and the kernel spreads new connections evenly over them. (One socket
    shared by every worker left the accepting to whichever woke first: 52 of 64 connections went
    to one of two workers.) A port another program holds fails the start, as a bind would; one
    a listener still answers on (the workers of this peer's previous process, killed a moment
    ago, follow it within milliseconds) is waited for briefly, and fails the start if it stays."""
    deadline = time.monotonic() + PORT_RELEASE_SECONDS
    while _answers(host, port):
        if time.monotonic() > deadline:
            raise ConfigurationError(f"cannot listen on {host}:{port} for HTTP: something already answers there")
        time.sleep(0.05)
    sock = _reuse_port_socket(host, port)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port} for HTTP: {error.strerror}") from None
    return sock


def http_worker_socket(host, port):
    """An HTTP worker's own listening socket on its peer's port (see reserve_http_port)."""
    sock = _reuse_port_socket(host, port)
    sock.bind((host, port))
    sock.listen(LISTEN_BACKLOG)
    return sock


def _answers(host, port):
    try:
        socket.create_connection(("127.0.0.1" if host in ("", "0.0.0.0") else "::1" if host == "::" else host, port),
                                 timeout=0.5).close()
        return True
    except OSError:
        return False

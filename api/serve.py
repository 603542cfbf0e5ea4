"""Running one peer: the replica and its heartbeat, and the HTTP API under waitress."""

import ctypes
import logging
import os
import signal

from waitress import create_server

from cluster.config import split_address
from cluster.peer import Peer

from .app import create_app

log = logging.getLogger(__name__)

# waitress buffers a whole body before Flask sees it: cap that buffering too. Bodies up to
# this much beyond Flask's limit still get Flask's JSON 413; larger ones waitress' own.
WAITRESS_BODY_SLACK_BYTES = 1024 * 1024


# glibc gives each thread that allocates its own malloc arena, up to 8 per core. A peer runs
# hundreds of threads (HTTP, blocking reads, Raft, dumps): at 100,000 instances that spread the
# heap over many half-empty arenas, 2.8-3.2 KB of RSS per instance against 1.4-1.6 KB with two.
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h


def limit_malloc_arenas():
    """Before any thread starts; MALLOC_ARENA_MAX in the environment wins (glibc read it already)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, MALLOC_ARENAS)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


def serve(config, timings=None):
    limit_malloc_arenas()
    host, port = split_address(config.http_address, "--http-address")
    peer = Peer(config) if timings is None else Peer(config, timings)
    app = create_app(peer)
    server = create_server(
        # Blocking reads sleep in threads of their own, so they never starve other requests.
        app, host=host, port=port, threads=config.http_threads + config.max_blocking_reads, ident="registry",
        max_request_body_size=config.max_body_bytes + WAITRESS_BODY_SLACK_BYTES,
    )

    def shut_down(signum, _frame):
        log.info("signal %d: shutting down", signum)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    peer.start()
    log.info("peer %s serving HTTP on %s:%d (raft %s, peers %s, data %s)", peer.url, host, port,
             config.raft_address, ", ".join(config.partners) or "none", config.data_dir)
    try:
        server.run()
    finally:
        server.close()
        peer.stop()
        log.info("stopped")

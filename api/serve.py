"""Running one peer: the replica and its heartbeat, and the HTTP API under waitress."""

import logging
import signal

from waitress import create_server

from cluster.config import split_address
from cluster.peer import Peer

from .app import create_app

log = logging.getLogger(__name__)

# waitress buffers a whole body before Flask sees it: cap that buffering too. Bodies up to
# this much beyond Flask's limit still get Flask's JSON 413; larger ones waitress' own.
WAITRESS_BODY_SLACK_BYTES = 1024 * 1024


def serve(config, timings=None):
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

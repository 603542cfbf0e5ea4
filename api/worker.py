"""One HTTP worker process of a peer: the same Flask app and hot path under waitress, on the
peer's HTTP port (a listening socket of its own, api/serve.py's http_worker_socket), over a read replica of the peer (cluster/worker_replica.py).

Started by the peer's Raft process (cluster/http_workers.py), never by hand:
`python -m api.worker --number N --channel-fd C --board-fd B --workers W --parent-pid P`. It ends the
moment its Raft process does (the kernel's parent-death signal, and the channel closing): a
replica that no longer moves must not go on answering, so clients fail over to another peer.
"""

import argparse
import ctypes
import logging
import os
import signal
import socket
import sys

from cluster import collector, tracing
from cluster.answered_board import AnsweredBoard
from cluster.config import split_address
from cluster.worker_channel import Channel, ChannelClosed
from cluster.worker_replica import WorkerReplica

from . import logs
from .app import create_app
from .serve import http_worker_socket, make_server, stop_on_signals, tune_malloc

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with(parent_pid):
    # The signal comes when the thread that started this process ends (the Raft process's
    # supervisor, which therefore outlives its workers: cluster/http_workers.py), or its process.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the channel closing still ends this process
    if os.getppid() != parent_pid:
        os._exit(1)  # the Raft process died before the signal was set


def _lost(why):
    log.warning("stopping at once: %s", why)
    logging.shutdown()
    tracing.flush()  # os._exit skips atexit
    os._exit(0)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m api.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, required=True)
    parser.add_argument("--channel-fd", type=int, required=True)
    parser.add_argument("--board-fd", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    args = parser.parse_args(argv)
    _die_with(args.parent_pid)
    tune_malloc()  # before the channel's threads start
    collector.tune()
    collector.settle()  # before the snapshot arrives: what is frozen is the code
    tracing.start_from_environment(owner_pid=args.parent_pid)  # scripts/latency_budget.py --http-workers
    name = f"http-worker-{args.number}"
    logs.configure("info", "text", name)
    try:
        replica = WorkerReplica(Channel(socket.socket(fileno=args.channel_fd), name),
                                AnsweredBoard(args.board_fd, args.workers), on_lost=_lost)
    except ChannelClosed as error:
        log.error("no state from the Raft process: %s", error)
        return 1
    settings = replica.hello["log"]
    logs.configure(settings.get("level", "info"), settings.get("format", "text"), name)
    if not settings.get("accessLog"):
        logging.getLogger("registry.access").setLevel(logging.WARNING)
    try:
        listening = http_worker_socket(*split_address(replica.config.http_address, "--http-address"))
    except OSError as error:
        log.error("cannot listen on %s: %s", replica.config.http_address, error)
        return 1
    server = make_server(create_app(replica), replica.config, sockets=[listening])
    stop_on_signals()
    replica.start()
    log.info("serving HTTP for %s from a replica at index %d", replica.url, replica.state_index())
    try:
        server.run()
    finally:
        tracing.flush()  # before the channel closes: its Raft process then kills this one at once
        replica.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

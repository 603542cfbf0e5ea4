"""Helpers the tests of several files share: import them from here, not from one another's test files."""

import contextlib
import dataclasses
import json
import os
import socket
from concurrent.futures import ThreadPoolExecutor

import requests
from prometheus_client.parser import text_string_to_metric_families

from cluster.answered_board import AnsweredBoard
from cluster.config import PeerConfig
from cluster.worker_channel import HELLO, Channel, encode, encode_snapshot
from cluster.worker_replica import WorkerReplica
from registry import commands
from registry.instances import validate_registration
from registry.state import snapshot_of

# The cluster and chaos suites run once with one-process peers and once with HTTP workers
# (tox's cluster-workers and chaos-workers environments set this).
TEST_HTTP_WORKERS = os.environ.get("REGISTRY_TEST_HTTP_WORKERS", "0")


def with_test_workers(serve_args):
    """`registry serve` flags with the suite's --http-workers, unless they name their own."""
    if any(arg.split("=")[0] == "--http-workers" for arg in serve_args):
        return tuple(serve_args)
    return (*serve_args, "--http-workers", TEST_HTTP_WORKERS)


# A fixed time for commands that carry one: 2026-11-18T11:06:40Z.
NOW = 1_795_000_000_000_000_000


def register(state, body, generated="inst_gen", now=NOW, index=None):
    """Apply a registration of `body` to a RegistryState at the next index (or `index`)."""
    index = state.index + 1 if index is None else index
    return state.apply(commands.register_instance(validate_registration(body), generated, now), index)


def samples(client):
    """{(metric sample name, sorted labels): value} of a Flask test client's GET /metrics."""
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    found = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def write_many(cluster, peers, prefix, count):
    """Write `count` instances spread over `peers` of a RunningCluster; the urls it acknowledged."""
    def write(n):
        url = f"http://{prefix}-{n}:80"
        try:
            response = cluster.put_instance(peers[n % len(peers)], {"url": url})
        except requests.RequestException:
            return None
        return url if response.status_code == 201 else None

    with ThreadPoolExecutor(max_workers=8) as pool:
        return {url for url in pool.map(write, range(count)) if url}


def read_answer(reader):
    """(status, decoded JSON body) of the next HTTP answer on a connection's reader (pipelining)."""
    status, body = read_raw_answer(reader)
    return status, json.loads(body)


def read_raw_answer(reader):
    """(status, body bytes) of the next HTTP answer on a connection's reader."""
    status = int(reader.readline().split()[1])
    length = None
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return status, reader.read(length)


def greet_worker(channel, tmp_path, state, write_timeout_seconds):
    """What HttpWorkers first sends a worker: its hello, then `state`'s snapshot."""
    config = dataclasses.asdict(PeerConfig(data_dir=str(tmp_path), write_timeout_seconds=write_timeout_seconds))
    channel.send(encode(HELLO, {"number": 1, "config": config, "url": "http://127.0.0.1:1",
                                "clusterSecret": "secret", "log": {}}))
    channel.send(encode_snapshot(snapshot_of(state.copy_parts())))


@contextlib.contextmanager
def worker_replica_beside(make_raft_side, tmp_path):
    """(the Raft side, a real WorkerReplica) over a socketpair; make_raft_side(channel, tmp_path)
    plays the Raft process (it must greet the worker first); both ends closed after."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    raft_channel, worker_channel = Channel(ours, "raft-side"), Channel(theirs, "worker-side")
    raft = make_raft_side(raft_channel, tmp_path)
    replica = WorkerReplica(worker_channel, AnsweredBoard.create(1), on_lost=lambda why: None).start()
    try:
        yield raft, replica
    finally:
        replica.stop()
        raft_channel.close()

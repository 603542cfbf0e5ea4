#!/usr/bin/env python3
"""Measure a local 3-peer cluster: write latency at the leader and a follower, and failover.

It starts the peers on free loopback ports in a temporary directory, measures, stops them
(by pid, also on error) and prints a Markdown table and a JSON document.

    python scripts/measure_cluster.py [--writes 200] [--rounds 5]
"""

import argparse
import json
import os
import signal
import socket
import statistics
import sys
import tempfile
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from api import tokens  # noqa: E402
from api.local_clusters.loopback import LocalCluster, LocalPeer  # noqa: E402


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def leader_of(http, peers):
    for peer in peers:
        try:
            view = http.get(peer.url + "/registry-svc/cluster", timeout=1).json()
        except (requests.RequestException, ValueError):
            continue
        if view.get("leader"):
            raft = view["leader"]["raft"]
            return next((p for p in peers if p.raft == raft), None)
    return None


def write_latencies(http, peer, count, prefix):
    latencies = []
    for n in range(count):
        started = time.perf_counter()
        response = http.put(peer.url + "/registry-svc/instance", json={"url": f"http://{prefix}-{n}:80"}, timeout=10)
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status_code != 201:
            raise RuntimeError(f"write failed: {response.status_code} {response.text}")
    return latencies


def failover_round(http, local, round_number):
    leader = leader_of(http, local.peers)
    survivors = [p for p in local.peers if p is not leader]
    killed_at = time.perf_counter()
    os.kill(leader.pid, signal.SIGKILL)
    local._reap(leader, 10)
    elected = None
    while elected is None or elected is leader:
        elected = leader_of(http, survivors)
        if time.perf_counter() - killed_at > 30:
            raise RuntimeError("no new leader within 30 s")
        time.sleep(0.005)
    election_ms = (time.perf_counter() - killed_at) * 1000
    while True:
        try:
            response = http.put(survivors[0].url + "/registry-svc/instance",
                                json={"url": f"http://after-failover-{round_number}:80"}, timeout=10)
            if response.status_code == 201:
                break
        except requests.RequestException:
            pass
        time.sleep(0.005)
    first_write_ms = (time.perf_counter() - killed_at) * 1000
    local.start_peer(leader)
    local.wait_ready(timeout=60)
    return election_ms, first_write_ms


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="registry-measure-") as directory:
        peers = [LocalPeer(i + 1, "127.0.0.1", free_port(), free_port(), os.path.join(directory, f"peer-{i + 1}"))
                 for i in range(3)]
        local = LocalCluster(directory, peers, ["--heartbeat", "15", "--log-level", "warning"])
        http = requests.Session()
        token = tokens.mint(tokens.signing_key(local.prepare_secret()), "bench", ["admin"], 3600)
        http.headers["Authorization"] = f"Bearer {token}"
        try:
            local.start()
            local.wait_ready(timeout=60)
            leader = leader_of(http, peers)
            follower = next(p for p in peers if p is not leader)
            at_leader = write_latencies(http, leader, args.writes, "leader")
            at_follower = write_latencies(http, follower, args.writes, "follower")
            rounds = [failover_round(http, local, n) for n in range(args.rounds)]
        finally:
            local.stop()

    result = {
        "writes": args.writes,
        "leaderWriteMs": {"p50": percentile(at_leader, 0.5), "p99": percentile(at_leader, 0.99)},
        "followerWriteMs": {"p50": percentile(at_follower, 0.5), "p99": percentile(at_follower, 0.99)},
        "failoverRounds": args.rounds,
        "electionMs": {"median": statistics.median(r[0] for r in rounds), "max": max(r[0] for r in rounds)},
        "firstWriteAfterKillMs": {"median": statistics.median(r[1] for r in rounds), "max": max(r[1] for r in rounds)},
    }
    print("| measure | value |")
    print("|---|---|")
    print(f"| sequential write at the leader, p50 / p99 | {result['leaderWriteMs']['p50']:.1f} / "
          f"{result['leaderWriteMs']['p99']:.1f} ms |")
    print(f"| sequential write at a follower, p50 / p99 | {result['followerWriteMs']['p50']:.1f} / "
          f"{result['followerWriteMs']['p99']:.1f} ms |")
    print(f"| kill -9 of the leader to a new leader, median / max of {args.rounds} | "
          f"{result['electionMs']['median']:.0f} / {result['electionMs']['max']:.0f} ms |")
    print(f"| kill -9 of the leader to the first acknowledged write, median / max | "
          f"{result['firstWriteAfterKillMs']['median']:.0f} / {result['firstWriteAfterKillMs']['max']:.0f} ms |")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

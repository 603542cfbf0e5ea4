#!/usr/bin/env python3
"""Writes measured on two or more clusters at once, their runs interleaved.

On a 2-core machine whose speed drifts from minute to minute, one 10-second wrk run of each
version, one after the other, can differ by more than the change being judged (a one-connection
write's p50 at a follower with workers moved between 3.14 and 4.45 ms over three runs of the same
code on 2026-12-04). So this starts every variant's 3-peer cluster first, each from its own source
tree if asked (a `git worktree` of the code before a change), and then runs wrk against each in
turn, round after round: every variant meets the same drift, and the medians over the rounds are
what it prints. scripts/bench.py's workers stage measures its one-connection writes this way too
(interleaved_writes below).

    git worktree add /tmp/before HEAD~1
    python scripts/bench_interleaved.py --variant one=. --variant before=/tmp/before:--http-workers=2 \\
        --variant after=.:--http-workers=2 [--connections 1,64] [--at follower,leader] [--rounds 8] [--seconds 3]

A variant is NAME=TREE[:SERVE-ARG,SERVE-ARG...]; TREE is the project root its peers import
`api`, `cluster` and `registry` from. The idle clusters stay up during each run (their heartbeats
and statuses are the same for every variant). Everything is on 127.0.0.1 and stopped by pid. It
exits 1 if any run had a failed request or none acknowledged.
"""

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from api.local_clusters import loopback  # noqa: E402
from bench_cluster import Registry  # noqa: E402
from bench_support import PEER_ARGS, PROCESSES, PUT_LUA, ensure_package, log  # noqa: E402
from bench_wrk import Wrk  # noqa: E402


def interleaved_writes(wrk_binary, clusters, *, spots=("follower",), connection_counts=(1,), rounds, seconds):
    """{(variant, spot, connections): [wrk's result of each round]}: writes at each cluster's
    leader or a follower (`spots`), every variant once a round, in turn."""
    runs = {(name, spot, c): [] for name in clusters for spot in spots for c in connection_counts}
    for round_number in range(rounds):
        for name, cluster in clusters.items():
            leader = cluster.leader()
            follower = next(p for p in cluster.peers if p is not leader)
            wrk = Wrk(wrk_binary, cluster.token)
            for spot in spots:
                peer = leader if spot == "leader" else follower
                for connections in connection_counts:
                    runs[(name, spot, connections)].append(wrk.run(
                        peer.url + "/registry-svc/instance", connections=connections, duration=seconds,
                        script=PUT_LUA, script_args=[f"{name}{spot[0]}{round_number}c{connections}"],
                        watch_pids={f"peer{n}": p.pid for n, p in enumerate(cluster.peers)},
                        label=f"{name} at the {spot} c{connections}, round {round_number + 1}"))
    return runs


def summary(results):
    """The medians of one variant's rounds (and each round's p50), for a report."""
    rates = [r["requestsPerSecond"] for r in results]
    cpu = [sum(r["cpuCores"].values()) / r["requestsPerSecond"] * 1000 for r in results if r["requestsPerSecond"]]
    return {"rounds": len(results), "p50Ms": statistics.median(r["p50Ms"] for r in results),
            "p50MsEachRound": [r["p50Ms"] for r in results], "requestsPerSecond": statistics.median(rates),
            "cpuMsPerWrite": statistics.median(cpu) if cpu else None,
            "failed": sum(r["failed"] for r in results), "ok": sum(r["ok"] for r in results)}


def variant(text):
    name, sep, rest = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"a variant is NAME=TREE[:ARGS], not {text!r}")
    tree, _, args = rest.partition(":")
    tree = os.path.abspath(tree or ".")
    if not os.path.isdir(os.path.join(tree, "cluster")):
        raise argparse.ArgumentTypeError(f"{tree} is not a checkout of this project (no cluster/ in it)")
    return name, tree, [a for a in args.split(",") if a]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", type=variant, action="append", required=True, help="NAME=TREE[:ARGS]")
    parser.add_argument("--connections", default="1", help="comma-separated wrk connection counts")
    parser.add_argument("--at", default="follower", help="comma-separated: follower, leader")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0, help="per wrk run")
    args = parser.parse_args()
    connection_counts = [int(c) for c in args.connections.split(",")]
    spots = [s for s in args.at.split(",") if s]
    if set(spots) - {"follower", "leader"}:
        parser.error("--at takes follower and leader")
    wrk_binary = ensure_package("wrk", "wrk")
    if wrk_binary is None:
        print("bench_interleaved: wrk is missing (apt-get install -y wrk)", file=sys.stderr)
        return 1

    def terminate(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, terminate)
    workdir = tempfile.mkdtemp(prefix="registry-interleaved-")
    clusters = {}
    try:
        for name, tree, serve_args in args.variant:
            loopback._project_root = lambda tree=tree: tree  # where its peers' processes run from
            clusters[name] = Registry(workdir, name, serve_args).start()
            log(f"{name}: a cluster from {tree} with {' '.join(PEER_ARGS + serve_args)}")
        runs = interleaved_writes(wrk_binary, clusters, spots=spots, connection_counts=connection_counts,
                                  rounds=args.rounds, seconds=args.seconds)
    except KeyboardInterrupt:
        log("interrupted: stopping everything started")
        return 130
    finally:
        PROCESSES.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    print("| variant | at | conns | p50 ms, median (range) | writes/s, median | CPU per write, median | failed |")
    print("|---|---|---|---|---|---|---|")
    for (name, spot, connections), results in runs.items():
        s = summary(results)
        each = s["p50MsEachRound"]
        cpu = "-" if s["cpuMsPerWrite"] is None else f"{s['cpuMsPerWrite']:.2f} ms"
        print(f"| {name} | {spot} | {connections} | {s['p50Ms']:.2f} ({min(each):.2f}-{max(each):.2f}) "
              f"| {s['requestsPerSecond']:,.0f} | {cpu} | {s['failed']} |")
    broken = [f"{name} at the {spot} c{c}" for (name, spot, c), results in runs.items()
              if any(r["failed"] or not r["ok"] for r in results)]
    if broken:
        print(f"bench_interleaved: failed or no acknowledged writes in {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

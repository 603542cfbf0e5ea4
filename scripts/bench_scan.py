#!/usr/bin/env python3
"""Scan benchmark: many instances on a local 3-peer cluster, scanned every cycle.

It opens `--ports` listening ports on 127.0.0.1 (plus some ports nobody listens on), registers
`--instances` instances with distinct URLs spread over them, lets the peers scan for
`--cycles` cycles, and reports per peer: cycle time, instances scanned, commands per cycle
(Raft index growth beyond the node heartbeats) and bytes per scan command. Everything it
starts it stops, by pid, also on error.

    python scripts/bench_scan.py [--instances 10000] [--ports 300] [--cycles 3] [--interval 15]
"""

import argparse
import json
import os
import selectors
import socket
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from api import tokens  # noqa: E402
from api.local_clusters.loopback import LocalCluster, LocalPeer  # noqa: E402


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Acceptors:
    """Many listening sockets served by one thread: accept and close."""

    def __init__(self, count):
        self.selector = selectors.DefaultSelector()
        self.sockets = []
        for _ in range(count):
            server = socket.socket()
            server.bind(("127.0.0.1", 0))
            server.listen(1024)
            server.setblocking(False)
            self.selector.register(server, selectors.EVENT_READ)
            self.sockets.append(server)
        self.ports = [s.getsockname()[1] for s in self.sockets]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopped.is_set():
            for key, _ in self.selector.select(timeout=0.2):
                try:
                    connection, _ = key.fileobj.accept()
                    connection.close()
                except BlockingIOError:
                    pass

    def close(self):
        self.stopped.set()
        self.thread.join(timeout=5)
        for server in self.sockets:
            server.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=10000)
    parser.add_argument("--ports", type=int, default=300)
    parser.add_argument("--unreachable-fraction", type=float, default=0.1)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--interval", type=float, default=15.0)
    parser.add_argument("--heartbeat", type=float, default=15.0)
    args = parser.parse_args()

    acceptors = Acceptors(args.ports)
    dead_ports = [free_port() for _ in range(max(1, args.ports // 10))]
    with tempfile.TemporaryDirectory(prefix="registry-bench-scan-") as directory:
        peers = [LocalPeer(i + 1, "127.0.0.1", free_port(), free_port(), os.path.join(directory, f"peer-{i + 1}"))
                 for i in range(3)]
        local = LocalCluster(directory, peers, ["--heartbeat", str(args.heartbeat), "--scan-interval",
                                                str(args.interval), "--log-level", "warning"])
        http = requests.Session()
        http.headers["Authorization"] = "Bearer " + tokens.mint(
            tokens.signing_key(local.prepare_secret()), "bench", ["admin"], 3600)
        try:
            local.start()
            local.wait_ready(timeout=60)
            registered = register(http, peers, acceptors.ports, dead_ports, args)
            samples = observe(http, peers, args)
        finally:
            local.stop()
            acceptors.close()
    report(samples, registered, args)


def register(http, peers, live_ports, dead_ports, args):
    dead_every = int(1 / args.unreachable_fraction) if args.unreachable_fraction > 0 else 0

    def put(n):
        port = dead_ports[n % len(dead_ports)] if dead_every and n % dead_every == 0 else live_ports[n % len(live_ports)]
        body = {"id": f"inst_bench_{n}", "url": f"http://127.0.0.1:{port}/svc-{n}"}
        for _ in range(5):
            response = http.put(peers[n % 3].url + "/registry-svc/instance", json=body, timeout=30)
            if response.status_code == 201:
                return True
        return False

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        registered = sum(pool.map(put, range(args.instances)))
    print(f"registered {registered} instances in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return registered


def observe(http, peers, args):
    """Poll each peer's lastScan until every peer completed --cycles full cycles."""
    seen = {p.url: {} for p in peers}  # url -> startedNs -> (report, applied index at first sight)
    deadline = time.monotonic() + args.interval * (args.cycles + 3) + 60
    while time.monotonic() < deadline:
        for peer in peers:
            view = http.get(peer.url + "/registry-svc/cluster", timeout=10).json()["self"]
            scan = view.get("lastScan")
            if scan and scan["scanned"] > 0 and scan["startedNs"] not in seen[peer.url]:
                seen[peer.url][scan["startedNs"]] = (scan, view["appliedIndex"])
        # The first cycle after registration may have seen only part of the instances: skip it.
        if all(len(cycles) >= args.cycles + 1 for cycles in seen.values()):
            break
        time.sleep(0.5)
    return seen


def report(samples, registered, args):
    rows = []
    for url, cycles in samples.items():
        # The first cycle seen may predate the last registrations: leave it out.
        ordered = [cycles[k] for k in sorted(cycles)][1:]
        if len(ordered) < 2:
            continue
        span = len(ordered) - 1
        growth = (ordered[-1][1] - ordered[0][1]) / span  # Raft entries per cycle, whole cluster
        heartbeats = 3 * args.interval / args.heartbeat
        rows.append({
            "peer": url,
            "cycles": len(ordered),
            "scannedPerCycle": statistics.median(c[0]["scanned"] for c in ordered),
            "cycleMsMedian": statistics.median(c[0]["durationMs"] for c in ordered),
            "cycleMsMax": max(c[0]["durationMs"] for c in ordered),
            "checkMsMedian": statistics.median(c[0]["checkMs"] for c in ordered),
            "commitMsMedian": statistics.median(c[0]["commitMs"] for c in ordered),
            "commandBytesMedian": statistics.median(c[0]["commandBytes"] for c in ordered),
            "unreachable": ordered[-1][0]["unreachable"],
            # Spread over the three peers, node heartbeats taken out.
            "entriesPerPeerPerCycle": (growth - heartbeats) / 3,
        })
    print(f"\n{registered} instances, {args.ports} listening ports, {args.interval:g} s cycles, 3 peers\n")
    print("| peer | cycles | scanned / cycle | cycle median / max | checks | commit | command bytes "
          "| unreachable | Raft entries / peer / cycle |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['peer']} | {r['cycles']} | {r['scannedPerCycle']:.0f} | {r['cycleMsMedian']:.0f} / "
              f"{r['cycleMsMax']:.0f} ms | {r['checkMsMedian']:.0f} ms | {r['commitMsMedian']:.0f} ms | "
              f"{r['commandBytesMedian']:.0f} | {r['unreachable']} | {r['entriesPerPeerPerCycle']:.2f} |")
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()

"""The latency budget of one write (issue 17): where a lone write's milliseconds go, hop by hop.

    python scripts/latency_budget.py [--writes 1000] [--http-workers N] [--json-out FILE]
    python scripts/latency_budget.py --load-connections 64 [--at follower] [--http-workers N]

Starts a 3-peer local cluster with tracing on (cluster/tracing.py: every process records when a
write reaches each hop, on the machine's one monotonic clock), sends --writes sequential
registrations over one connection to the leader and then as many to a follower, stops the
cluster (each peer writes its trace as it exits) and prints the median and p99 of every hop.
A write is followed by its command id on the peer that took it and by its Raft index between
peers (the answer's X-Registry-Index is that index); between the leader's append and its
commit, the follower followed is the one whose confirmation made the majority. With
--http-workers, the request's hops are a worker's, joined to its Raft process's by the command
id the worker gave: the hand-off to the committer then crosses the worker's channel, and so does
the writer's wake-up, which also waits for the worker's replica to apply the batch.

With --load-connections, the writes come instead from wrk (that many connections at --at, for
--load-seconds after a 2-second warm-up), and what is printed is where a write waits under load:
every write's hops inside the peer that took it (its command id's marks), and every batch's
Raft hops from the follower's forward to its callback (a batch followed by its first command).
"""

import argparse
import bisect
import collections
import glob
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench_cluster import Registry  # noqa: E402
from bench_support import PUT_LUA, ensure_package, record_body  # noqa: E402
from bench_wrk import Wrk  # noqa: E402
from cluster import tracing  # noqa: E402

LEADER_HOPS = (
    ("waitress: accept, read and parse the request", "client.sent", "T:http.start"),
    ("handler: token, permission, validation", "T:http.start", "T:submit"),
    ("to the committer (a lone write: no thread hop; with workers: the channel)", "T:submit", "T:committer.sent"),
    ("submitted to PySyncObj, its Raft thread picks it up, appends it", "T:committer.sent", "L:raft.picked"),
    ("append entries sent", "L:raft.picked", "L:append.sent"),
    ("to the follower", "L:append.sent", "M:append.received"),
    ("follower flush", "M:append.received", "M:journal.flushed"),
    ("follower reply sent", "M:journal.flushed", "M:reply.sent"),
    ("back to the leader", "M:reply.sent", "L:reply.received"),
    ("leader counts it, commits", "L:reply.received", "L:apply.start"),
    ("apply", "L:apply.start", "L:apply.end"),
    ("callback", "L:apply.end", "T:callback"),
    ("writer woken", "T:callback", "T:writer.woken"),
    ("answer built", "T:writer.woken", "T:http.written"),
    ("answer sent and read by the client", "T:http.written", "client.received"),
)
FOLLOWER_HOPS = LEADER_HOPS[:3] + (
    ("submitted to PySyncObj, the follower's Raft thread forwards it", "T:committer.sent", "T:forward.sent"),
    ("to the leader, picked up, appended", "T:forward.sent", "L:raft.picked"),
) + LEADER_HOPS[4:10] + (
    ("the leader sends the commit on", "L:apply.start", "L:commit.sent"),
    ("commit reaches this follower", "L:commit.sent", "T:commit.heard"),
    ("this follower applies", "T:commit.heard", "T:apply.start"),
    ("apply", "T:apply.start", "T:apply.end"),
    ("callback", "T:apply.end", "T:callback"),
) + LEADER_HOPS[12:]
SIDE_HOPS = (("(beside) the leader's own flush of the entry", "L:append.sent", "L:journal.flushed"),)
# Under load, a write's hops inside the peer that took it, by its command id (no client marks: wrk sends).
IN_PEER_HOPS = (
    ("handler: token, permission, validation", "http.start", "submit"),
    ("to the committer, and waiting there for a batch slot", "submit", "committer.sent"),
    ("its batch's way through Raft, until the callback", "committer.sent", "callback"),
    ("writer woken (with workers: the answer back over the channel)", "callback", "writer.woken"),
    ("answer built", "writer.woken", "http.written"),
    ("all of it, from the handler's start to the answer written", "http.start", "http.written"),
)


class Trace:
    """One process's events: exact (hop, key) lookups and, for hops that cover every index up
    to theirs (flushes, confirmations, commits), the first covering one after a moment."""

    def __init__(self, events):
        self.exact = {}
        self.cid_of = {}  # Raft index -> the command id applied there (a lone write is one entry)
        self.covering = collections.defaultdict(list)  # hop -> [(ns, index, node)] in time order
        for ns, hop, key in sorted(events, key=lambda event: event[0]):
            if hop == "apply.end":
                cids, index = key
                self.exact.setdefault(("apply.end", index), ns)
                for cid in cids:
                    self.cid_of.setdefault(index, cid)
            elif hop in ("journal.flushed", "reply.sent", "commit.heard", "reply.received", "append.sent", "commit.sent"):
                index, node = (key[0], key[1]) if isinstance(key, list) else (key, None)
                self.covering[hop].append((ns, index, node))
            elif hop == "forward.sent":
                self.covering[hop].append((ns, None, None))
            else:
                self.exact.setdefault((hop, tuple(key) if isinstance(key, list) else key), ns)

    def first(self, hop, index, after, node=None):
        """The first `hop` covering `index` at or after `after`: (ns, node) or None."""
        runs = self.covering.get(hop, ())
        start = bisect.bisect_left(runs, (after,))
        for ns, covered, by in runs[start:]:
            if (covered is None or covered >= index) and (node is None or by == node):
                return ns, by
        return None


def follow(write, traces, target, leader, others):
    """{event name: ns} for one write, or None when its trace is incomplete."""
    t, lead = traces[target.pid], traces[leader.pid]
    cid = t.cid_of.get(write["index"])
    if cid is None:
        return None
    at = {"client.sent": write["sent"], "client.received": write["received"]}
    for hop in ("http.start", "submit", "committer.sent", "callback", "writer.woken", "http.written"):
        at[f"T:{hop}"] = t.exact.get((hop, cid))
    index = write["index"]
    at["L:raft.picked"] = lead.exact.get(("raft.picked", index))
    at["L:apply.start"] = lead.exact.get(("apply.start", index))
    at["L:apply.end"] = lead.exact.get(("apply.end", index))
    if at["L:raft.picked"] is None:
        return None
    sent = lead.first("append.sent", index, at["L:raft.picked"])
    at["L:append.sent"] = sent and sent[0]
    flushed = lead.first("journal.flushed", index, at["L:raft.picked"])
    at["L:journal.flushed"] = flushed and flushed[0]
    reply = lead.first("reply.received", index, at["L:raft.picked"])
    if reply is not None:
        at["L:reply.received"], majority_raft = reply
        majority = next((p for p in others + [target] if p.raft == majority_raft), None)
        if majority is not None:
            m = traces[majority.pid]
            sent_to = lead.first("append.sent", index, at["L:raft.picked"], node=majority_raft)
            at["L:append.sent"] = sent_to and sent_to[0]
            at["M:append.received"] = m.exact.get(("append.received", index))
            if at["M:append.received"] is not None:
                flush = m.first("journal.flushed", index, at["M:append.received"])
                at["M:journal.flushed"] = flush and flush[0]
                confirmed = m.first("reply.sent", index, at["M:append.received"])
                at["M:reply.sent"] = confirmed and confirmed[0]
    if target is not leader:
        forwarded = t.first("forward.sent", 0, at["T:committer.sent"] or 0)
        at["T:forward.sent"] = forwarded and forwarded[0]
        passed_on = lead.first("commit.sent", index, at["L:apply.start"] or 0, node=target.raft)
        at["L:commit.sent"] = passed_on and passed_on[0]
        heard = t.first("commit.heard", index, at["L:apply.start"] or 0)
        at["T:commit.heard"] = heard and heard[0]
        at["T:apply.start"] = t.exact.get(("apply.start", index))
        at["T:apply.end"] = t.exact.get(("apply.end", index))
    return at


def table(title, hops, followed, unit="writes"):
    lines = [f"### {title} ({len(followed)} {unit} followed)", "",
             f"| hop | median ms | p99 ms | {unit} |", "|---|---|---|---|"]
    rows = {}
    for label, start, end in hops + SIDE_HOPS + (("total, as the client saw it", "client.sent", "client.received"),):
        deltas = sorted((at[end] - at[start]) / 1e6 for at in followed if at.get(start) and at.get(end))
        if not deltas:
            lines.append(f"| {label} | – | – | 0 |")
            continue
        p99 = deltas[min(len(deltas) - 1, int(len(deltas) * 0.99))]
        rows[label] = {"medianMs": round(statistics.median(deltas), 3), "p99Ms": round(p99, 3), "writes": len(deltas)}
        lines.append(f"| {label} | {statistics.median(deltas):.3f} | {p99:.3f} | {len(deltas)} |")
    return lines, rows


def send_writes(peer, token, name, count):
    connection = http.client.HTTPConnection("127.0.0.1", int(peer.url.rsplit(":", 1)[1]), timeout=15)
    writes = []
    for n in range(count):
        body = record_body("budget", name, n)
        sent = time.monotonic_ns()
        connection.request("PUT", "/registry-svc/instance", body=body,
                           headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        received = time.monotonic_ns()
        if response.status == 201:
            writes.append({"sent": sent, "received": received, "index": int(response.getheader("X-Registry-Index"))})
    connection.close()
    return writes


def load_budget(trace_dir, cluster, target, leader, wrk_result, measured_from):
    """The report of a loaded run: every write's hops in `target`, every batch's through Raft,
    of those that began at or after `measured_from` (monotonic ns: the warm-up's are left out)."""
    events = traces_by_peer(trace_dir, cluster)
    traces = {pid: Trace(found) for pid, found in events.items()}
    taken = traces[target.pid]
    marks = {hop for _, start, end in IN_PEER_HOPS for hop in (start, end)}
    writes = collections.defaultdict(dict)
    for ns, hop, key in events[target.pid]:
        if isinstance(key, str) and hop in marks:
            writes[key].setdefault(hop, ns)
    writes = {cid: at for cid, at in writes.items() if at.get("http.start", 0) >= measured_from}
    sizes = [len(key[0]) for ns, hop, key in events[target.pid] if hop == "apply.end" and ns >= measured_from]
    lines = [f"wrk: {wrk_result['requestsPerSecond']:,.0f} writes/s, p50 {wrk_result['p50Ms']:.2f} ms, "
             f"p99 {wrk_result['p99Ms']:.2f} ms, {wrk_result['failed']} failed; "
             f"{len(sizes)} batches applied at the peer that took them, "
             f"{sum(sizes) / max(1, len(sizes)):.1f} commands each on average, {sizes.count(1)} of them alone", "",
             f"### each write inside the peer that took it ({len(writes)} writes)", "",
             "| hop | median ms | p90 ms | writes |", "|---|---|---|---|"]
    for label, start, end in IN_PEER_HOPS:
        deltas = sorted((at[end] - at[start]) / 1e6 for at in writes.values() if start in at and end in at)
        if deltas:
            lines.append(f"| {label} | {statistics.median(deltas):.2f} | {deltas[int(len(deltas) * 0.9)]:.2f} "
                         f"| {len(deltas)} |")
    others = [p for p in cluster.peers if p is not leader and p is not target]
    followed = [at for at in (follow({"index": index, "sent": None, "received": None}, traces, target, leader, others)
                              for index in sorted(taken.cid_of)) if at is not None and at["T:http.start"]
                and at["T:http.start"] >= measured_from]
    if not writes or not followed:
        sys.exit(f"the traces followed {len(writes)} writes and {len(followed)} batches of the load run: "
                 f"a hop is no longer marked (the cluster's files are kept in {os.path.dirname(trace_dir)})")
    hops = (LEADER_HOPS if target is leader else FOLLOWER_HOPS)[2:-1]
    batch_lines, _ = table("each batch through Raft, by its first write", hops, followed, unit="batches")
    return lines + [""] + [line for line in batch_lines if "as the client saw it" not in line]


def traces_by_peer(trace_dir, cluster):
    """{a peer's pid: its events and its HTTP workers'}; exits when a peer left no whole trace."""
    events = collections.defaultdict(list)
    for path in glob.glob(os.path.join(trace_dir, "trace-*.json")):
        owner = int(os.path.basename(path)[len("trace-"):-len(".json")].split("-")[0])
        with open(path, "rb") as source:
            try:
                events[owner] += json.load(source)
            except ValueError as error:
                sys.exit(f"{path} is not a whole trace ({error}); the cluster's files are kept in "
                         f"{os.path.dirname(trace_dir)}")
    missing = [p.index for p in cluster.peers if p.pid not in events]
    if missing:
        sys.exit(f"peers {missing} left no trace in {trace_dir}")
    return events


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--http-workers", type=int, default=0, help="HTTP worker processes per peer (default 0)")
    parser.add_argument("--json-out", help="also write the figures as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the cluster's directory (its traces and logs)")
    parser.add_argument("--load-connections", type=int,
                        help="writes from wrk with this many connections instead of one at a time (see above)")
    parser.add_argument("--load-seconds", type=float, default=8.0, help="wrk's run with --load-connections (default 8)")
    parser.add_argument("--at", choices=("leader", "follower"), default="follower",
                        help="the peer wrk writes at with --load-connections (default follower)")
    parser.add_argument("--require-every-hop", action="store_true",
                        help="exit 1 unless every hop was seen for most writes (the smoke run: the tracing cannot rot)")
    args = parser.parse_args()
    if args.load_connections is not None and args.load_connections < 1:
        parser.error(f"--load-connections must be at least 1, got {args.load_connections}")
    if args.load_seconds <= 0:
        parser.error(f"--load-seconds must be above 0, got {args.load_seconds:g}")
    workdir = tempfile.mkdtemp(prefix="registry-budget-")
    trace_dir = os.path.join(workdir, "traces")
    os.environ[tracing.ENVIRONMENT_VARIABLE] = trace_dir
    cluster = Registry(workdir, "budget", ["--scan-interval", "86400", "--http-workers", str(args.http_workers)]).start()
    if args.load_connections:
        return run_loaded(args, workdir, trace_dir, cluster)
    try:
        leader = cluster.leader()
        follower = next(p for p in cluster.peers if p is not leader)
        runs = {"leader": (leader, send_writes(leader, cluster.token, "leader", args.writes)),
                "follower": (follower, send_writes(follower, cluster.token, "follower", args.writes))}
    finally:
        cluster.stop()
    traces = {pid: Trace(found) for pid, found in traces_by_peer(trace_dir, cluster).items()}
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    report, document = [], {"writes": args.writes, "httpWorkers": args.http_workers}
    for name, (target, writes) in runs.items():
        others = [p for p in cluster.peers if p is not leader and p is not target]
        followed = [at for at in (follow(w, traces, target, leader, others) for w in writes) if at is not None]
        title = f"a write at the {name}" + (f", {args.http_workers} HTTP workers a peer" if args.http_workers else "")
        lines, rows = table(title, LEADER_HOPS if target is leader else FOLLOWER_HOPS, followed)
        report += lines + [""]
        document[name] = rows
    print("\n".join(report))
    if args.require_every_hop:
        thin = [f"{name}: {label}" for name in runs for label, row in document[name].items()
                if row["writes"] < args.writes * 0.9]
        hops = {name: LEADER_HOPS if name == "leader" else FOLLOWER_HOPS for name in ("leader", "follower")}
        absent = [f"{name}: {label}" for name, listed in hops.items() for label, _, _ in listed + SIDE_HOPS
                  if label not in document[name]]
        if thin or absent:
            sys.exit(f"hops not followed for 90 % of the writes: {thin + absent}")
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as sink:
            json.dump(document, sink, indent=2)


def run_loaded(args, workdir, trace_dir, cluster):
    wrk_binary = ensure_package("wrk", "wrk")
    if wrk_binary is None:
        cluster.stop()
        sys.exit("--load-connections needs wrk (apt-get install wrk)")
    try:
        leader = cluster.leader()
        target = leader if args.at == "leader" else next(p for p in cluster.peers if p is not leader)
        wrk = Wrk(wrk_binary, cluster.token)
        url = target.url + "/registry-svc/instance"
        wrk.run(url, connections=args.load_connections, duration=2, script=PUT_LUA, script_args=["warm"],
                label="warm-up")
        measured_from = time.monotonic_ns()
        result = wrk.run(url, connections=args.load_connections, duration=args.load_seconds, script=PUT_LUA,
                         script_args=["load"], label=f"writes at the {args.at} c{args.load_connections}")
    finally:
        cluster.stop()
    workers = f", {args.http_workers} HTTP workers a peer" if args.http_workers else ", one process a peer"
    print(f"## writes at the {args.at}, {args.load_connections} connections{workers}\n")
    print("\n".join(load_budget(trace_dir, cluster, target, leader, result, measured_from)))
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

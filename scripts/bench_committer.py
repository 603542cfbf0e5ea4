#!/usr/bin/env python3
"""CPU per write of the group committer alone (cluster/submit.py), as an HTTP worker's writes
reach it: submit_async from `--writers` threads at `--rate` writes a second in all, into a
stand-in replica whose every batch is confirmed `--batch-ms` later by one thread of its own, as
PySyncObj's Raft thread confirms them. No cluster, no HTTP: on a 2-core machine whose speed
drifts, the committer's share of a follower's CPU is too small to judge from a whole cluster's
runs, and here it is measured alone (the process's CPU over the writes). Run it on two source
trees to compare them:

    python scripts/bench_committer.py [--tree DIR] [--writes 20000] [--rate 4000] [--batch-ms 10]
"""

import argparse
import heapq
import json
import os
import statistics
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A committer that stops telling its writers fails the run instead of hanging it (tox bench-smoke runs it).
ANSWER_TIMEOUT_SECONDS = 30.0


class StandInReplica:
    """What the committer asks of a replica: a leader known, no hold, batches confirmed later."""

    leader_address = "127.0.0.1:1"

    def __init__(self, batch_seconds):
        self._batch_seconds = batch_seconds
        self._due = []  # (when, batch number, callback, size)
        self._cv = threading.Condition()
        self.batches = 0
        threading.Thread(target=self._confirm, name="stand-in-raft", daemon=True).start()

    def holding_writes(self):
        return False

    def apply_batch(self, commands, callback):
        with self._cv:
            self.batches += 1
            heapq.heappush(self._due, (time.monotonic() + self._batch_seconds, self.batches, callback, len(commands)))
            self._cv.notify()

    def _confirm(self):
        from pysyncobj import FAIL_REASON
        while True:
            with self._cv:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._cv.wait(None if not self._due else self._due[0][0] - time.monotonic())
                _, _, callback, size = heapq.heappop(self._due)
            callback([{"code": 0}] * size, FAIL_REASON.SUCCESS)


def run_once(writes, writers, rate, batch_seconds):
    from cluster.submit import GroupCommitter
    replica = StandInReplica(batch_seconds)
    committer = GroupCommitter(replica)
    told = threading.Semaphore(0)

    def on_done(_result, _error):
        told.release()

    def writer(number, count):
        interval = writers / rate
        next_at = time.monotonic()
        for n in range(count):
            committer.submit_async({"type": "bench", "cid": f"w{number}-{n}"}, 30.0, on_done)
            next_at += interval
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)

    started_cpu, started = time.process_time(), time.monotonic()
    threads = [threading.Thread(target=writer, args=(n, writes // writers)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for told_so_far in range((writes // writers) * writers):
        if not told.acquire(timeout=ANSWER_TIMEOUT_SECONDS):
            raise SystemExit(f"bench_committer: {told_so_far} writes told, then none for {ANSWER_TIMEOUT_SECONDS:g} s")
    cpu, seconds = time.process_time() - started_cpu, time.monotonic() - started
    committer.stop()
    total = (writes // writers) * writers
    return {"usCpuPerWrite": cpu / total * 1e6, "writesPerSecond": total / seconds,
            "commandsPerBatch": total / replica.batches}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", default=ROOT, help="the project root to import cluster/ from")
    parser.add_argument("--writes", type=int, default=20000)
    parser.add_argument("--writers", type=int, default=2, help="threads submitting (an HTTP worker's feed each)")
    parser.add_argument("--rate", type=float, default=4000.0, help="writes a second offered, all writers together")
    parser.add_argument("--batch-ms", type=float, default=10.0, help="how long a batch takes to be confirmed")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, os.path.abspath(args.tree))
    runs = [run_once(args.writes, args.writers, args.rate, args.batch_ms / 1000) for _ in range(args.rounds)]
    # The sleeping writers' own CPU is in every figure alike; the difference between two trees is the committer's.
    print(json.dumps({
        "tree": os.path.abspath(args.tree), "writes": args.writes, "rate": args.rate, "batchMs": args.batch_ms,
        "usCpuPerWrite": round(statistics.median(r["usCpuPerWrite"] for r in runs), 1),
        "usCpuPerWriteRounds": [round(r["usCpuPerWrite"], 1) for r in runs],
        "writesPerSecond": round(statistics.median(r["writesPerSecond"] for r in runs)),
        "commandsPerBatch": round(statistics.median(r["commandsPerBatch"] for r in runs), 1),
    }))


if __name__ == "__main__":
    main()

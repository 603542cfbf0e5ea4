#!/usr/bin/env python3
"""One raw PySyncObj process for scripts/bench.py: the engine's ceiling, without the registry.

It runs a SyncObj with exactly the configuration `cluster/replica.py` gives a registry peer
(the same `RaftTimings`, password, file journal, full-dump file with a non-forking serializer,
compaction threshold, `commandsWaitLeader=False`, and the registry's transport class with its
nextIndex fix), whose one replicated method counts the commands it applies. bench.py starts
three of them and drives them over stdin/stdout, one JSON object per line:

    status            -> {"isLeader", "ready", "applied", "commitIndex", "lastApplied"}
    load N WINDOW B   -> at most WINDOW commands of B bytes outstanding, N in all, submitted
                         asynchronously (callbacks); -> {"submitted", "succeeded", "failed",
                         "reasons", "seconds", "commitsPerSecond", "latencyMs"}
    quit              -> exits

    python scripts/bench_raw_pysyncobj.py --self 127.0.0.1:P1 --partners 127.0.0.1:P2,127.0.0.1:P3 \
        --data-dir DIR --secret-file FILE
"""

import argparse
import dataclasses
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated  # noqa: E402

from cluster.config import RaftTimings  # noqa: E402
from cluster.transport import ContactTrackingTransport  # noqa: E402


class RawCounter(SyncObj):
    def __init__(self, self_address, partners, *, data_dir, password, timings, compact_after_entries=5000):
        self.applied = 0
        self.applied_bytes = 0
        conf = SyncObjConf(
            password=password,
            journalFile=os.path.join(data_dir, "raft.journal"),
            fullDumpFile=os.path.join(data_dir, "raft.dump"),
            logCompactionMinEntries=compact_after_entries,
            # A serializer of our own, as the registry has: PySyncObj then dumps in-process, no fork.
            serializer=self._write_dump,
            deserializer=self._read_dump,
            **timings.sync_obj_options(),
            bindAddress=self_address,
        )
        super().__init__(self_address, list(partners), conf, transportClass=ContactTrackingTransport)

    @replicated
    def apply_command(self, command):
        self.applied += 1
        self.applied_bytes += len(command)
        return self.applied

    def _write_dump(self, path, raft_data):
        last_entry, previous_entry, cluster = raft_data
        document = {
            "applied": self.applied,
            "appliedBytes": self.applied_bytes,
            "lastEntry": [last_entry[0].hex(), last_entry[1], last_entry[2]],
            "previousEntry": [previous_entry[0].hex(), previous_entry[1], previous_entry[2]],
            "cluster": sorted(node.id for node in cluster),
        }
        with open(path, "w", encoding="utf-8") as out:
            json.dump(document, out)
            out.flush()
            os.fsync(out.fileno())

    def _read_dump(self, path):
        with open(path, encoding="utf-8") as source:
            document = json.load(source)
        self.applied = document["applied"]
        self.applied_bytes = document["appliedBytes"]

        def entry(e):
            return (bytes.fromhex(e[0]), e[1], e[2])

        return entry(document["lastEntry"]), entry(document["previousEntry"]), list(document["cluster"])


def record(prefix, n, size):
    """A distinct command of exactly `size` bytes, shaped like the registry's instance records."""
    head = (f'{{"id":"i-{prefix}-0-{n}","url":"http://{prefix}-0-{n}.bench.internal:8080/api/v1/items",'
            f'"slug":"bench-{prefix}","details":"')
    return (head + "x" * max(0, size - len(head) - 2) + '"}').encode()


def run_load(obj, count, window, size):
    outstanding = threading.Semaphore(window)
    lock = threading.Lock()
    finished = threading.Event()
    latencies = []
    reasons = {}
    counts = {"succeeded": 0, "failed": 0, "settled": 0}
    prefix = f"raw{os.getpid()}x{int(time.time())}"
    commands = [record(prefix, n, size) for n in range(count)]

    def callback_for(sent):
        def settled(_result, error):
            elapsed = time.perf_counter() - sent
            with lock:
                if error == FAIL_REASON.SUCCESS:
                    counts["succeeded"] += 1
                    latencies.append(elapsed)
                else:
                    counts["failed"] += 1
                    reasons[str(error)] = reasons.get(str(error), 0) + 1
                counts["settled"] += 1
                if counts["settled"] == count:
                    finished.set()
            outstanding.release()
        return settled

    started = time.perf_counter()
    submitted = 0
    deadline = started + max(30.0, count / 500.0)
    for command in commands:
        while not outstanding.acquire(timeout=1.0):
            if time.perf_counter() > deadline:
                break
        if time.perf_counter() > deadline:
            break
        obj.apply_command(command, callback=callback_for(time.perf_counter()))
        submitted += 1
    if submitted == count:
        finished.wait(max(1.0, deadline - time.perf_counter()))
    seconds = time.perf_counter() - started
    with lock:
        ordered = sorted(latencies)
        result = {
            "submitted": submitted, "succeeded": counts["succeeded"], "failed": counts["failed"],
            "unsettled": submitted - counts["settled"], "reasons": reasons, "seconds": seconds,
            "commitsPerSecond": counts["succeeded"] / seconds if seconds > 0 else 0.0,
            "window": window, "bytes": size,
        }
    if ordered:
        result["latencyMs"] = {
            "p50": ordered[len(ordered) // 2] * 1000,
            "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        }
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--self", dest="self_address", required=True)
    parser.add_argument("--partners", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--secret-file", required=True)
    parser.add_argument("--compact-after-entries", type=int, default=5000)
    parser.add_argument("--append-entries-batch", action="store_true",
                        help="turn PySyncObj's appendEntriesUseBatch on (its default; the registry turns it off)")
    args = parser.parse_args()

    os.makedirs(args.data_dir, exist_ok=True)
    with open(args.secret_file, encoding="utf-8") as source:
        password = source.read().strip()
    partners = [p for p in args.partners.split(",") if p]
    timings = RaftTimings()
    if args.append_entries_batch:
        timings = dataclasses.replace(timings, append_entries_use_batch=True)
    obj = RawCounter(args.self_address, partners, data_dir=args.data_dir, password=password,
                     timings=timings, compact_after_entries=args.compact_after_entries)

    def answer(document):
        sys.stdout.write(json.dumps(document) + "\n")
        sys.stdout.flush()

    try:
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            if words[0] == "status":
                answer({
                    "isLeader": obj._isLeader(), "ready": obj.isReady(), "applied": obj.applied,
                    "commitIndex": obj.raftCommitIndex, "lastApplied": obj.raftLastApplied,
                    "leader": None if obj._getLeader() is None else obj._getLeader().id,
                })
            elif words[0] == "load":
                answer(run_load(obj, int(words[1]), int(words[2]), int(words[3])))
            elif words[0] == "quit":
                break
            else:
                answer({"error": f"unknown command {words[0]!r}"})
    finally:
        obj.destroy()


if __name__ == "__main__":
    main()

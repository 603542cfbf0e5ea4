#!/usr/bin/env python3
"""CPU per command of applying committed batches, as an HTTP worker's replica feed does it.

With `--http-workers N` every write is applied by each peer's Raft process and by each of its
N workers: with two workers, nine applies a write across a 3-peer cluster, so the pure apply is
a large share of CPU per write (README, "HTTP workers"). This measures that cost alone, in one
process, with no cluster: a state seeded with `--instances` instances, then `--commands`
registrations (new instances and re-registrations of seeded ones, `--updates` of them) in
batches of `--batch` as the group committer packs them, each decoded from its channel frame
(orjson), applied under the state lock (WatchedState.apply) and noted by the checkpoint ledger,
exactly as cluster/worker_replica.py does, with the collector tuned as a peer's processes tune
it. It prints CPU per command and the digest of the state reached, which must not change
between two versions of the code given the same arguments (the commands are made the same way
each time).

    python scripts/bench_apply.py [--instances 30000] [--commands 24000] [--batch 12] [--updates 0.25]
"""

import argparse
import json
import os
import statistics
import sys
import time

import orjson

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from bench_support import record_body  # noqa: E402
from cluster import collector  # noqa: E402
from cluster.checkpoints import CheckpointLedger  # noqa: E402
from cluster.watched_state import WatchedState  # noqa: E402
from registry import commands, instances  # noqa: E402
import registry.state  # noqa: E402

ADMIN = {"slug": "bench", "roles": ["admin"]}
START_NS = 1_764_000_000_000_000_000


def registration(prefix, n, now_ns, fleet):
    fields = instances.validate_registration(json.loads(record_body(prefix, 0, n, fleet=fleet)))
    command = commands.register_instance(fields, f"inst_{prefix}{n}", now_ns, ADMIN)
    return commands.with_id(command, f"cid-{prefix}-{n}-{now_ns}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=30_000, help="instances in the state before the run")
    parser.add_argument("--commands", type=int, default=24_000, help="registrations applied in the run")
    parser.add_argument("--batch", type=int, default=12, help="commands a batch (the benchmark's c64 writes: 12-16)")
    parser.add_argument("--updates", type=float, default=0.25, help="share of the run re-registering seeded instances")
    parser.add_argument("--rounds", type=int, default=5, help="runs over fresh states; the median is printed")
    parser.add_argument("--fleet", action="store_true", help="spread records over 1,000 slugs (the scale stage's)")
    args = parser.parse_args()
    collector.tune()  # as a peer's processes run (api/serve.py, api/worker.py)

    seed = [registration("seed", n, START_NS + n, args.fleet) for n in range(args.instances)]
    run = []
    every = round(1 / args.updates) if args.updates > 0 else 0
    for n in range(args.commands):
        now = START_NS + 10**12 + n * 1000
        if every and n % every == 0:
            run.append(registration("seed", (n * 7919) % max(1, args.instances), now, args.fleet))
        else:
            run.append(registration("run", n, now, args.fleet))
    index = args.instances + 1
    frames = []
    for start in range(0, len(run), args.batch):
        frames.append(orjson.dumps([index, run[start:start + args.batch]]))
        index += 1

    per_command = []
    digest = None
    for _ in range(args.rounds):
        state = WatchedState()
        with registry.state.collector_paused():
            for n, command in enumerate(seed, start=1):
                state.apply([command], n)
        ledger = CheckpointLedger()
        started = time.process_time()
        for frame in frames:
            at, batch = orjson.loads(frame)
            _, taken = state.apply(batch, at)
            ledger.note_batch(batch, taken)
        per_command.append((time.process_time() - started) / len(run) * 1e6)
        reached = state.digest()
        if digest is not None and reached != digest:
            raise SystemExit(f"the same commands reached two states: {digest} and {reached}")
        digest = reached
    print(json.dumps({
        "instances": args.instances, "commands": args.commands, "batch": args.batch, "updates": args.updates,
        "fleet": args.fleet, "usPerCommand": round(statistics.median(per_command), 2),
        "usPerCommandRounds": [round(us, 2) for us in per_command], "digest": digest,
    }))


if __name__ == "__main__":
    main()

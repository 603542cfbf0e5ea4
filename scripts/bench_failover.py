"""The failover stage (issue 21), run by scripts/bench.py on a cluster of its own.

A write every 20 ms at a survivor, each in its own worker, while the leader is killed -9; the
killed peer is restarted between rounds. A peer holds a write whose outcome a leader change
left unknown and re-submits it through the election, so from the client's view no write should
fail: each round reports the gap between the last write acknowledged before the kill and the
first after it, and every write that was not acknowledged, with its status.

Everything here talks HTTP to the peers or signals their pids; the bench passes in what it owns
(the cluster, its record maker, its log and error type), so this module starts nothing itself.
"""

import concurrent.futures
import os
import signal
import statistics
import threading
import time

import requests

WRITE_INTERVAL_SECONDS = 0.020
BEFORE_KILL_SECONDS = 1.0
AFTER_KILL_LIMIT_SECONDS = 30.0
# Longer than the peers' write deadline (5 s by default): a held write is answered, not abandoned.
CLIENT_TIMEOUT_SECONDS = 10


def measure(cluster, rounds, *, record_body, log, stage_error):
    outcomes = []
    for number in range(rounds):
        leader = cluster.leader()
        survivor = next(p for p in cluster.peers if p is not leader)
        outcome = one_round(cluster, leader, survivor, number, record_body, stage_error)
        outcomes.append(outcome)
        log(f"  failover round {number + 1}: gap {outcome['gapMs']:.0f} ms "
            f"(first ack {outcome['firstAckAfterKillMs']:.0f} ms after the kill), "
            f"{outcome['failed']} failed writes")
        cluster.local.start_peer(leader)
        try:
            cluster.local.wait_ready(timeout=60)
        except Exception as error:
            raise stage_error(f"the killed peer did not come back: {error}") from None
    gaps = [r["gapMs"] for r in outcomes]
    return {
        "rounds": outcomes,
        "gapMsMedian": statistics.median(gaps),
        "gapMsMax": max(gaps),
        "firstAckAfterKillMsMedian": statistics.median(r["firstAckAfterKillMs"] for r in outcomes),
        "failedWrites": sum(r["failed"] for r in outcomes),
        "writeIntervalMs": WRITE_INTERVAL_SECONDS * 1000,
    }


def one_round(cluster, leader, survivor, number, record_body, stage_error):
    """Write every 20 ms at `survivor` (each write in its own worker) while `leader` is killed -9."""
    records = []  # (sent, acked or None, status)
    lock = threading.Lock()
    acked_after_kill = threading.Event()
    killed_at = [None]

    def write(n):
        body = record_body(f"fo{number}", 0, n)
        sent = time.monotonic()
        status = 0
        try:
            response = cluster.session().put(survivor.url + "/registry-svc/instance", data=body,
                                             timeout=CLIENT_TIMEOUT_SECONDS,
                                             headers={"Content-Type": "application/json"})
            status = response.status_code
        except requests.RequestException:
            pass
        acked = time.monotonic() if status == 201 else None
        with lock:
            records.append((sent, acked, status))
        if acked is not None and killed_at[0] is not None and acked > killed_at[0]:
            acked_after_kill.set()

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=128)
    try:
        start = time.monotonic()
        n = 0
        while True:
            now = time.monotonic()
            if killed_at[0] is None and now - start >= BEFORE_KILL_SECONDS:
                killed_at[0] = time.monotonic()
                os.kill(leader.pid, signal.SIGKILL)
            if killed_at[0] is not None:
                if acked_after_kill.is_set() and now - killed_at[0] > 0.3:
                    break
                if now - killed_at[0] > AFTER_KILL_LIMIT_SECONDS:
                    break
            n += 1
            pool.submit(write, n)
            time.sleep(max(0.0, start + n * WRITE_INTERVAL_SECONDS - time.monotonic()))
    finally:
        pool.shutdown(wait=True)
        cluster.local.kill_peer(leader)  # reaps it
    kill = killed_at[0]
    acks_before = [r[1] for r in records if r[1] is not None and r[1] < kill]
    acks_after = [r[1] for r in records if r[1] is not None and r[1] >= kill]
    if not acks_after:
        raise stage_error(f"failover round {number + 1}: no write was acknowledged within "
                          f"{AFTER_KILL_LIMIT_SECONDS:.0f} s of killing the leader")
    if not acks_before:
        raise stage_error(f"failover round {number + 1}: no write was acknowledged before the kill")
    return {
        "gapMs": round((min(acks_after) - max(acks_before)) * 1000, 1),
        "firstAckAfterKillMs": round((min(acks_after) - kill) * 1000, 1),
        "writes": len(records),
        "failed": sum(1 for r in records if r[1] is None),
        "statuses": sorted({r[2] for r in records}),
        "slowestWriteMs": round(max((r[1] - r[0]) for r in records if r[1] is not None) * 1000, 1),
    }

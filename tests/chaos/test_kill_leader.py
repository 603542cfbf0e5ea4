"""Kill -9 of the leader, round after round, while writers at every peer go on."""

import time

import pytest

from tests.chaos.workload import Writers, found_at_leader, record_figures, wait_converged

pytestmark = pytest.mark.chaos

ROUNDS = 10
# The killed peer stays down until the survivors acknowledged this many writes, so that it
# returns well behind: more than one append batch (64 KiB) of entries to catch up on.
WRITES_WHILE_DOWN = 250


@pytest.mark.timeout(330)
def test_killing_the_leader_ten_times_under_writers_at_every_peer_loses_no_acknowledged_write(chaos_cluster):
    cluster = chaos_cluster()
    writers = Writers(cluster, "killed", per_peer=2, pace_seconds=0.05, max_writes=3000, max_seconds=280)
    kill_to_first_ack = []
    found, converged = None, False
    writers.start()
    try:
        for round_number in range(1, ROUNDS + 1):
            leader = cluster.leader(timeout=30)
            survivors = [p for p in cluster.peers if p is not leader]
            writers.wait_for_acks(3, at=[leader], after=time.monotonic(), timeout=20)

            killed_at = time.monotonic()
            cluster.kill(leader)
            new_leader = cluster.leader(among=survivors, timeout=20)
            assert new_leader is not leader
            writers.wait_for_acks(1, at=survivors, after=killed_at, timeout=20)
            first_ack = min(w.finished for w in writers.writes(at=survivors, started_after=killed_at,
                                                               outcome="acknowledged"))
            kill_to_first_ack.append(round(first_ack - killed_at, 3))
            writers.wait_for_acks(WRITES_WHILE_DOWN, at=survivors, after=killed_at, timeout=30)

            restarted_at = time.monotonic()
            cluster.start_peer(leader)
            cluster.wait_ready([leader], timeout=60)
            writers.wait_for_acks(3, at=[leader], after=restarted_at, timeout=30)

            # A quiet moment, so that every peer can be found at one index with one digest.
            writers.pause()
            wait_converged(cluster, writers.acknowledged_urls(), timeout=30)
            print(f"round {round_number}: killed {leader.name}, {new_leader.name} acknowledged "
                  f"{kill_to_first_ack[-1]} s later; {len(writers.acknowledged_urls())} acknowledged so far")
            writers.resume()
        writers.stop()
        found = wait_converged(cluster, writers.acknowledged_urls(), timeout=30)
        converged = True
    finally:
        writers.stop()
        record_figures("kill-9-leader-rounds", writers, found if converged else found_at_leader(cluster),
                       converged=converged, rounds=len(kill_to_first_ack), killToFirstAckSeconds=kill_to_first_ack)

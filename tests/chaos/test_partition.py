"""A leader cut off from the majority by a real network partition, then healed."""

import time

import pytest

from tests.chaos.conftest import WRITE_TIMEOUT_SECONDS
from tests.chaos.workload import Writers, found_at_leader, record_figures, wait_converged

pytestmark = pytest.mark.chaos

# A refusal may arrive a little after the deadline on a loaded 2-core machine, never much later.
ANSWER_SLACK_SECONDS = 1.5


@pytest.mark.timeout(180)
def test_a_leader_cut_off_from_the_majority_acknowledges_nothing_and_the_majority_goes_on(chaos_cluster):
    cluster = chaos_cluster()
    old_leader = cluster.leader()
    majority = [p for p in cluster.peers if p is not old_leader]
    writers = Writers(cluster, "partition", per_peer=2, pace_seconds=0.05, max_writes=1500, max_seconds=120)
    found, converged, at_minority, elected_after, cut_at, heal_at = None, False, [], None, None, None
    writers.start()
    try:
        writers.wait_for_acks(10, at=[old_leader], timeout=20)

        cut_at = time.monotonic()
        cluster.topology.cut(old_leader.index)
        new_leader = cluster.leader(among=majority, timeout=20)
        assert new_leader is not old_leader
        elected_after = time.monotonic() - cut_at
        writers.wait_for_acks(30, at=majority, after=cut_at, timeout=20)
        # Enough answers at the minority to see it refuse once it has stopped believing it leads.
        writers.wait_for_answers(6, at=[old_leader], after=cut_at, timeout=30)

        at_minority = writers.writes(at=[old_leader], started_after=cut_at)
        # An acknowledgement is judged below; every other answer must be a timely 503.
        not_refused_in_time = [(w.status, round(w.seconds, 2), w.detail) for w in at_minority if w.status != 201
                               and (w.status != 503 or w.seconds > WRITE_TIMEOUT_SECONDS + ANSWER_SLACK_SECONDS)]
        assert not not_refused_in_time, (
            f"writes at the partitioned peer must be refused with 503 within the {WRITE_TIMEOUT_SECONDS} s write "
            f"deadline; these were not: {not_refused_in_time}")
        # Anything the old leader acknowledged must be committed, hence known to the majority's
        # leader; one it alone acknowledged would be a write acknowledged by two rival leaders.
        acknowledged_at_minority = {w.url for w in at_minority if w.outcome == "acknowledged"}
        known_to_majority = cluster.instance_urls([new_leader])[new_leader]
        assert acknowledged_at_minority <= known_to_majority, sorted(acknowledged_at_minority - known_to_majority)

        heal_at = time.monotonic()
        cluster.topology.heal(old_leader.index)
        # Back in touch, the old leader must drop what it appended alone and catch up.
        cluster.wait_ready([old_leader], timeout=30, what="the healed old leader to catch up")
        cluster.leader(timeout=30)
        writers.wait_for_acks(5, at=[old_leader], after=heal_at, timeout=30)
        writers.stop()

        found = wait_converged(cluster, writers.acknowledged_urls(), timeout=30)
        converged = True
        assert acknowledged_at_minority <= found, sorted(acknowledged_at_minority - found)
    finally:
        writers.stop()
        record_figures(
            "partition-leader-from-majority", writers, found if converged else found_at_leader(cluster),
            converged=converged,
            writesAtMinorityDuringPartition=len(at_minority),
            acknowledgedAtMinorityDuringPartition=sum(w.outcome == "acknowledged" for w in at_minority),
            slowestMinorityAnswerSeconds=round(max((w.seconds for w in at_minority), default=0), 3),
            cutToNewLeaderSeconds=elected_after and round(elected_after, 3),
            partitionSeconds=heal_at and round(heal_at - cut_at, 3))

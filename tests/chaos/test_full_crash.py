"""Every peer killed -9 at the same instant while writers run, then restarted."""

import time

import pytest

from tests.chaos.workload import Writers, found_at_leader, record_figures, wait_converged

pytestmark = pytest.mark.chaos


@pytest.mark.timeout(150)
def test_a_full_cluster_crash_under_writers_brings_every_acknowledged_write_back(chaos_cluster):
    cluster = chaos_cluster()
    writers = Writers(cluster, "crashed", per_peer=2, pace_seconds=0.05, max_writes=1500, max_seconds=90)
    found, converged, crash_to_first_ack = None, False, None
    writers.start()
    try:
        writers.wait_for_acks(400, timeout=30)
        acknowledged_before_crash = writers.acknowledged_urls()

        crashed_at = time.monotonic()
        cluster.kill(*cluster.peers)
        for peer in cluster.peers:
            cluster.start_peer(peer)
        cluster.wait_ready(timeout=60)
        writers.wait_for_acks(20, after=crashed_at, timeout=30)
        crash_to_first_ack = round(min(w.finished for w in writers.writes(started_after=crashed_at,
                                                                           outcome="acknowledged")) - crashed_at, 3)
        writers.stop()

        acknowledged = writers.acknowledged_urls()
        assert acknowledged_before_crash <= acknowledged
        found = wait_converged(cluster, acknowledged, timeout=30)
        converged = True
    finally:
        writers.stop()
        record_figures("full-cluster-kill-9", writers, found if converged else found_at_leader(cluster),
                       converged=converged, crashToFirstAckSeconds=crash_to_first_ack)

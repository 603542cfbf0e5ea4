"""How long a peer has owed applies: measured from when the oldest unapplied commit was heard."""

from cluster.apply_lag import MAX_KEPT, ApplyLag


def test_a_peer_that_applies_what_it_hears_owes_nothing():
    lag = ApplyLag()
    for tick in range(100):
        lag.observe(tick * 0.01, commit_index=tick, applied_index=tick)
    assert lag.owed_seconds(1.0, applied_index=99) == 0.0


def test_owed_time_runs_from_the_first_hearing_of_the_oldest_unapplied_commit():
    lag = ApplyLag()
    lag.observe(10.0, commit_index=5, applied_index=4)
    lag.observe(11.0, commit_index=8, applied_index=4)
    lag.observe(12.0, commit_index=8, applied_index=4)  # nothing new heard: the first hearing counts
    assert lag.owed_seconds(12.5, applied_index=4) == 2.5
    # Index 5 applied: what is owed now (6..8) was first heard at 11.0.
    assert lag.owed_seconds(12.5, applied_index=5) == 1.5
    lag.observe(13.0, commit_index=9, applied_index=6)
    assert lag.owed_seconds(13.0, applied_index=6) == 2.0
    assert lag.owed_seconds(14.0, applied_index=9) == 0.0


def test_a_steady_lag_is_measured_as_steady_not_as_a_saw_tooth():
    # A peer 30 entries behind a leader committing one every 0.1 s: it owes entry n-29, 2.9 s old.
    lag = ApplyLag()
    owed = []
    for tick in range(200):
        now = tick * 0.1
        applied = max(0, tick - 30)
        lag.observe(now, commit_index=tick, applied_index=applied)
        if tick >= 40:
            owed.append(lag.owed_seconds(now, applied))
    assert min(owed) > 2.85 and max(owed) < 2.95, (min(owed), max(owed))


def test_far_behind_it_keeps_bounded_memory_and_the_oldest_hearing():
    lag = ApplyLag()
    for n in range(1, 3 * MAX_KEPT):
        lag.observe(float(n), commit_index=n, applied_index=0)
    assert len(lag._heard) == MAX_KEPT
    assert lag.owed_seconds(3.0 * MAX_KEPT, applied_index=0) == 3.0 * MAX_KEPT - 1.0
    # The newest index is still known, so owing ends only once it is applied.
    assert lag.owed_seconds(3.0 * MAX_KEPT, applied_index=3 * MAX_KEPT - 2) > 0
    assert lag.owed_seconds(3.0 * MAX_KEPT, applied_index=3 * MAX_KEPT - 1) == 0.0


def test_no_commit_index_known_owes_nothing():
    lag = ApplyLag()
    lag.observe(1.0, commit_index=None, applied_index=0)
    assert lag.owed_seconds(5.0, applied_index=0) == 0.0

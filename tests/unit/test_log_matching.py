"""A follower's log is truncated only where an append conflicts with it (cluster/log_matching.py)."""

from cluster.log_matching import trim_append


def follower(terms, last_applied=0):
    """A follower whose log holds index -> term for 1..len(terms) (index 0: the initial entry, term 0)."""
    log = {0: 0, **{i + 1: t for i, t in enumerate(terms)}}
    return dict(term_at=log.get, last_index=max(log), last_applied=last_applied)


def append(prev_index, prev_term, entries, commit=0):
    """entries: [(index, term)] as PySyncObj sends them: (command, index, term)."""
    return {"type": "append_entries", "term": max([prev_term] + [t for _, t in entries]), "commit_index": commit,
            "prevLogIdx": prev_index, "prevLogTerm": prev_term,
            "entries": [(b"cmd%d" % i, i, t) for i, t in entries]}


def trim(message, log):
    return trim_append(message, log["term_at"], log["last_index"], log["last_applied"], "127.0.0.1:1")


def test_a_new_append_past_the_followers_end_is_left_alone():
    message = append(3, 1, [(4, 1), (5, 1)])
    assert trim(message, follower([1, 1, 1])).message is message


def test_a_repeated_append_of_entries_held_is_cut_to_what_is_new():
    trimmed = trim(append(2, 1, [(3, 1), (4, 1), (5, 1)], commit=4), follower([1, 1, 1, 1], last_applied=3))
    assert trimmed.message["prevLogIdx"] == 4 and trimmed.message["prevLogTerm"] == 1
    assert [e[1] for e in trimmed.message["entries"]] == [5]
    assert trimmed.confirm_next_index is None and trimmed.divergence is None


def test_a_late_append_ending_before_the_followers_end_truncates_nothing_and_confirms_only_its_end():
    # The follower holds 1..6 and may have confirmed all of them; a late append carries 3..4.
    trimmed = trim(append(2, 1, [(3, 1), (4, 1)], commit=6), follower([1] * 6, last_applied=2))
    assert trimmed.message["entries"] == []
    assert trimmed.message["prevLogIdx"] == 6 and trimmed.message["prevLogTerm"] == 1  # nothing past it to cut
    assert trimmed.confirm_next_index == 5  # confirms what the append carried, no more
    assert trimmed.message["commit_index"] == 4  # and commits no further than it reached


def test_a_heartbeat_behind_the_followers_end_truncates_nothing():
    trimmed = trim(append(3, 1, [], commit=3), follower([1] * 5, last_applied=3))
    assert trimmed.message["prevLogIdx"] == 5 and trimmed.confirm_next_index == 4
    assert trimmed.message["commit_index"] == 3


def test_a_conflict_above_the_last_applied_index_is_left_to_the_library_to_truncate_from():
    # 4 and 5 came from a leader of term 1 that never committed them; the term-2 leader differs at 5.
    trimmed = trim(append(3, 1, [(4, 1), (5, 2), (6, 2)]), follower([1, 1, 1, 1, 1], last_applied=3))
    assert trimmed.message["prevLogIdx"] == 4 and [e[1] for e in trimmed.message["entries"]] == [5, 6]
    assert trimmed.divergence is None


def test_a_conflict_at_or_below_the_last_applied_index_is_a_divergence_and_the_append_is_dropped():
    trimmed = trim(append(2, 1, [(3, 2)]), follower([1, 1, 1, 1], last_applied=3))
    assert trimmed.message is None
    divergence = trimmed.divergence
    assert (divergence.index, divergence.local_term, divergence.leader_term, divergence.last_applied) == (3, 1, 2, 3)
    assert "index 3" in divergence.describe() and "rejoin" in divergence.describe()


def test_a_mismatched_previous_entry_is_left_for_the_library_to_reject():
    message = append(3, 2, [(4, 2)])
    assert trim(message, follower([1, 1, 1])).message is message
    message = append(9, 1, [(10, 1)])  # past the follower's end
    assert trim(message, follower([1, 1, 1])).message is message

import pytest

from tests.linearizability import READ, WRITE, Op, check


def w(value, start, end):
    return Op(WRITE, value, start, end)


def r(value, start, end):
    return Op(READ, value, start, end)


def test_a_sequential_history_is_linearizable():
    ok, order = check([w(1, 0, 1), r(1, 2, 3), w(2, 4, 5), r(2, 6, 7)])
    assert ok and [op.value for op in order] == [1, 1, 2, 2]


def test_overlapping_operations_may_take_effect_in_either_order():
    assert check([w(1, 0, 10), r(None, 1, 2), r(1, 3, 4)])[0]
    assert check([w(1, 0, 10), w(2, 0, 10), r(2, 11, 12), r(2, 13, 14)])[0]


def test_a_stale_read_after_a_completed_write_is_rejected():
    assert not check([w(1, 0, 1), w(2, 2, 3), r(1, 4, 5)])[0]


def test_a_value_never_written_is_rejected():
    assert not check([w(1, 0, 1), r(7, 2, 3)])[0]


def test_reads_cannot_go_back_in_time_across_clients():
    # Client A sees 2, then, strictly later, client B sees the older 1.
    assert not check([w(1, 0, 1), w(2, 2, 10), r(2, 3, 4), r(1, 5, 6)])[0]


def test_a_write_with_unknown_outcome_may_apply_late_or_never():
    assert check([w(1, 0, 1), w(2, 2, None), r(1, 3, 4), r(2, 10, 11)])[0]
    assert check([w(1, 0, 1), w(2, 2, None), r(1, 3, 4), r(1, 10, 11)])[0]


def test_a_write_with_unknown_outcome_cannot_apply_before_it_was_made():
    assert not check([w(1, 0, 1), r(2, 2, 3), w(2, 4, None)])[0]


def test_an_unknown_write_cannot_flip_back_and_forth():
    assert not check([w(1, 0, 1), w(2, 2, None), r(2, 3, 4), r(1, 5, 6)])[0]


def test_reads_without_answers_are_not_history():
    with pytest.raises(ValueError):
        check([r(1, 0, None)])

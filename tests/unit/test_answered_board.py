"""The answered board: read-your-writes across the HTTP workers of one peer."""

import threading
import time

from cluster import worker_replica
from cluster.answered_board import AnsweredBoard
from cluster.worker_replica import CatchingUpState
from registry import commands
from registry.instances import validate_registration
from tests.helpers import NOW


def registration(n):
    return commands.register_instance(validate_registration({"url": f"http://127.0.0.1:{9000 + n}"}), f"inst_{n}", NOW)


def test_a_board_is_shared_by_every_process_holding_its_fd_and_only_grows():
    made = AnsweredBoard.create(3)
    attached = AnsweredBoard(made.fd, 3)  # as a worker opens it, from the fd it was passed
    assert made.highest() == attached.highest() == 0
    attached.note(2, 40)
    made.note(0, 12)
    assert made.highest() == attached.highest() == 40
    attached.note(2, 7)  # an answer showing less never lowers what was answered
    assert made.highest() == 40
    made.note(1, 41)
    assert attached.highest() == 41


def test_a_read_waits_until_the_replica_holds_what_another_worker_answered():
    board = AnsweredBoard.create(2)
    state = CatchingUpState(board)
    state.apply([registration(1)], 1)
    board.note(1, 2)  # the other worker answered a write at index 2, not yet applied here
    seen = []
    reader = threading.Thread(target=lambda: seen.append(state.read(lambda s: len(s.instances))))
    reader.start()
    reader.join(0.3)
    assert reader.is_alive() and not seen, "the read answered from a replica behind an answered write"
    state.apply([registration(2)], 2)
    reader.join(5)
    assert seen == [(2, 2)]
    # Caught up, a read does not wait.
    assert state.read(lambda s: len(s.instances)) == (2, 2)
    assert state.peek(lambda s: s.index) == 2


def test_a_replica_too_far_behind_answers_from_what_it_has_after_the_bound(monkeypatch):
    monkeypatch.setattr(worker_replica, "READY_LAG_SECONDS", 0.05)
    board = AnsweredBoard.create(1)
    state = CatchingUpState(board)
    state.apply([registration(1)], 1)
    board.note(0, 99)
    assert state.read(lambda s: len(s.instances)) == (1, 1)
    assert state.peek(lambda s: s.index) == 1


def test_a_thread_whose_request_arrived_caught_up_reads_without_waiting_for_later_answers(monkeypatch):
    board = AnsweredBoard.create(2)
    state = CatchingUpState(board)
    state.apply([registration(1)], 1)
    board.note(1, 2)
    assert not state.holds_every_answer()  # behind an answered write: such a request waits on a pool thread
    state.apply([registration(2)], 2)
    assert state.holds_every_answer()
    # Answered after this thread's request arrived: concurrent with it, so either answer is right,
    # and waitress' loop thread, answering it, must not wait.
    board.note(0, 3)
    assert state.read(lambda s: len(s.instances)) == (2, 2)
    # Another thread's read still waits for it.
    seen = []
    reader = threading.Thread(target=lambda: seen.append(state.read(lambda s: len(s.instances))))
    reader.start()
    reader.join(0.3)
    assert reader.is_alive() and not seen
    state.apply([registration(3)], 3)
    reader.join(5)
    assert seen == [(3, 3)]
    # Asked again while behind, this thread's reads wait again: here for the bound, as nothing comes.
    monkeypatch.setattr(worker_replica, "READY_LAG_SECONDS", 0.05)
    board.note(0, 4)
    assert not state.holds_every_answer()
    started = time.monotonic()
    assert state.read(lambda s: len(s.instances)) == (3, 3)
    assert time.monotonic() - started >= 0.05

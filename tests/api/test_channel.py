"""waitress' channel as a peer serves it: not writable while a worker holds its output lock."""

import threading

from api.serve import RegistryChannel


def channel(requests=("a request",), queued=257):
    made = RegistryChannel.__new__(RegistryChannel)  # the attributes writable() reads, no socket
    made.requests = list(requests)
    made.total_outbufs_len = queued
    made.will_close = made.close_when_flushed = False
    made.outbuf_lock = threading.Condition()
    return made


def held_by_another_thread(lock):
    taken, release = threading.Event(), threading.Event()

    def hold():
        with lock:
            taken.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert taken.wait(10)
    return release, thread


def test_a_running_request_whose_worker_holds_the_output_lock_is_not_polled_for_writing():
    busy = channel()
    release, thread = held_by_another_thread(busy.outbuf_lock)
    try:
        assert not busy.writable()
    finally:
        release.set()
        thread.join(10)
    assert busy.writable()  # the worker let go: the main loop flushes what is left


def test_otherwise_writable_is_waitress_own():
    finished = channel(requests=())
    release, thread = held_by_another_thread(finished.outbuf_lock)
    try:
        assert finished.writable()  # no running request: the main loop must flush
        closing = channel()
        closing.will_close = True
        assert closing.writable()
        assert not channel(queued=0).writable()
    finally:
        release.set()
        thread.join(10)

"""The trace a process leaves is whole, even when two of its threads flush at once (a worker's
main thread as its server stops, and its channel thread as the Raft process goes)."""

import json
import os
import threading

from cluster import tracing


def test_concurrent_flushes_leave_one_whole_trace(tmp_path, monkeypatch):
    monkeypatch.setattr(tracing, "_events", None)
    monkeypatch.setattr(tracing, "_path", None)
    monkeypatch.setattr(tracing.atexit, "register", lambda function: None)
    tracing.start(str(tmp_path), owner_pid=1)
    for n in range(20000):
        tracing.mark("hop", n)
    barrier = threading.Barrier(4)
    seen = []

    def flush_repeatedly():
        barrier.wait()
        for _ in range(25):
            tracing.flush()
            with open(tracing._path, "rb") as source:
                seen.append(len(json.load(source)))

    threads = [threading.Thread(target=flush_repeatedly) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [20000] * 100
    assert os.listdir(tmp_path) == [os.path.basename(tracing._path)]

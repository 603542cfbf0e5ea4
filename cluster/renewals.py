"""Instance heartbeats, coalesced: renewals arriving within one flush interval share a command.

A renewal is answered only once its command is applied on this peer, so the caller knows it
counted, but a thousand instances renewing every few seconds cost one Raft entry per interval
instead of a thousand.
"""

import logging
import threading
import time

from registry import commands

from .submit import WriteUnavailable

log = logging.getLogger(__name__)


class _Pending:
    __slots__ = ("renewal", "done", "result", "error")

    def __init__(self, renewal):
        self.renewal = renewal
        self.done = threading.Event()
        self.result = None
        self.error = None


class RenewalCoalescer:
    def __init__(self, peer, *, flush_seconds=0.5):
        self.peer = peer
        self.flush_seconds = flush_seconds
        self._pending = []
        self._cv = threading.Condition()
        self._stopped = False
        self.commands_sent = 0
        self._thread = threading.Thread(target=self._run, name="renewals", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        with self._cv:
            self._stopped = True
            self._cv.notify_all()
        self._thread.join(timeout=5)

    def renew(self, instance_id, fields, caller):
        """The apply result of this renewal, once committed; WriteUnavailable otherwise."""
        entry = _Pending({"id": instance_id, **fields, "at": time.time_ns(), "caller": caller})
        with self._cv:
            if self._stopped:
                raise WriteUnavailable("this peer is shutting down", outcome_unknown=False)
            self._pending.append(entry)
            self._cv.notify()
        timeout = self.flush_seconds + self.peer.config.write_timeout_seconds + 1
        if not entry.done.wait(timeout):
            raise WriteUnavailable(f"the heartbeat was not confirmed within {timeout:g}s; retry it",
                                   outcome_unknown=True)
        if entry.error is not None:
            raise entry.error
        return entry.result

    def _run(self):
        while True:
            with self._cv:
                while not self._pending and not self._stopped:
                    self._cv.wait()
                if self._stopped:
                    for entry in self._pending:
                        entry.error = WriteUnavailable("this peer is shutting down", outcome_unknown=False)
                        entry.done.set()
                    return
            # Let the interval's renewals gather, then send them all as one command.
            time.sleep(self.flush_seconds)
            with self._cv:
                batch, self._pending = self._pending, []
            self._send(batch)

    def _send(self, batch):
        try:
            result = self.peer.submit(commands.renew_instances([e.renewal for e in batch]))
            self.commands_sent += 1
        except WriteUnavailable as error:
            for entry in batch:
                entry.error = error
                entry.done.set()
            return
        results = result.get("results") or [result] * len(batch)
        for entry, outcome in zip(batch, results):
            entry.result = dict(outcome, index=result.get("index"))
            entry.done.set()

"""An HTTP worker's replica of its peer: the peer's face (cluster/face.py) in a worker process.

It holds its own copy of the state in a WatchedState, built from the Raft process's snapshot
and moved on by the Raft process's applied batches, applied in order with the same pure apply,
so reads, filters, blocking reads and the listing cache run here exactly as in a one-process
peer (PeerReads). Writes, barriers and everything about Raft are calls to the Raft process
(cluster/http_workers.py); a write is answered once this replica holds it, and noted on the
peer's answered board, so the next request, whichever worker takes it, reads it (every read
waits for the board's highest index). The Raft side's status arrives a few times a second, and
with it the batches of a worker no request needed for a while (cluster/quiet_feed.py).
"""

import contextlib
import logging
import math
import threading
import time

import orjson

from registry.permissions import SYSTEM
from registry.state import RegistryState, collector_paused

from . import tracing
from .checkpoints import CheckpointLedger
from .config import PeerConfig
from .face import PeerStatus
from .membership import MembershipError
from .peer_reads import PeerReads
from .peer_writes import PeerWrites
from .quiet_feed import FeedDemand
from .submit import WriteUnavailable
from .watched_state import WatchedState
from .worker_channel import BATCH, CALL, HELLO, PROGRESS, REPLY, SNAPSHOT, STATUS, Calls, ChannelClosed, decode_snapshot, encode, reply

log = logging.getLogger(__name__)

# Ready only while this replica has read the Raft process's stream up to this recently.
READY_LAG_SECONDS = 1.0
# Calls that are not writes (a cluster view asks every worker for its digest) get this long.
CALL_TIMEOUT_SECONDS = 15.0
DEADLINE_CHECK_SECONDS = 0.1


class ScanProgress:
    """The Raft process's last scan cycle as its CycleReport.as_json() gave it, read as that report
    is (cluster/scanner.py)."""

    def __init__(self, reported):
        self._reported = reported
        self.duration_ms = reported.get("durationMs", 0.0)
        self.scanned = reported.get("scanned", 0)

    def as_json(self):
        return self._reported


class CatchingUpState(WatchedState):
    """A worker's copy of the state: a read first waits until it holds every write any worker of
    this peer answered (cluster/answered_board.py), for at most READY_LAG_SECONDS; a replica
    further behind than that is one /readyz calls not ready, and it answers from what it has."""

    def __init__(self, board, demand=None):
        """demand: the worker's FeedDemand (cluster/quiet_feed.py); None for a replica always fed at once."""
        super().__init__()
        self._board = board
        self._demand = demand
        # Set on a thread whose request arrived while this replica held every answered write
        # (holds_every_answer): its reads need not wait, whatever was answered since (api/loop_answers.py
        # answers such requests on waitress' loop thread, which must never wait).
        self._arrived_caught_up = threading.local()

    def holds_every_answer(self):
        """Whether this replica holds every write any worker of this peer has answered; if so,
        reads on this thread take that as their catch-up until it is asked again."""
        held = (self._demand is None or self._demand.want()) and self._state.index >= self._board.highest()
        self._arrived_caught_up.held = held
        return held

    def _catch_up(self):
        if getattr(self._arrived_caught_up, "held", False):
            return
        if self._demand is not None and not self._demand.want():
            self._demand.wait_live(READY_LAG_SECONDS)
        target = self._board.highest()
        if self._state.index < target:
            self.wait_until_holding(math.inf, target, READY_LAG_SECONDS)

    def read(self, query, kind=None):
        self._catch_up()
        return super().read(query, kind)

    def peek(self, query):
        self._catch_up()
        return super().peek(query)

    def wait_for_change(self, kind, after_index, timeout, slug=None):
        with self._demand.holding() if self._demand is not None else contextlib.nullcontext():
            return super().wait_for_change(kind, after_index, timeout, slug=slug)


class WorkerReplica(PeerReads, PeerWrites):
    def __init__(self, channel, board, on_lost):
        """Read the Raft process's hello and snapshot from `channel`; `board` is the peer's
        AnsweredBoard; on_lost(why) is called once the Raft process is gone (the worker must
        stop serving at once)."""
        self.channel = channel
        self.calls = Calls(channel)
        self._on_lost = on_lost
        kind, payload = channel.receive()
        if kind != HELLO:
            raise ChannelClosed(f"expected the hello frame, got kind {kind}")
        hello = orjson.loads(payload)
        self.number = hello["number"]
        self.hello = hello
        self.config = PeerConfig(**{k: tuple(v) if k == "raft_peers" else v for k, v in hello["config"].items()})
        self.url = hello["url"]
        self.cluster_secret = hello["clusterSecret"]
        self.board = board
        self.feed_demand = FeedDemand(channel, self.calls)
        self.state = CatchingUpState(board, self.feed_demand)
        self.checkpoints = CheckpointLedger()
        self._status = None
        self._status_received = threading.Event()
        kind, payload = channel.receive()
        if kind != SNAPSHOT:
            raise ChannelClosed(f"expected the snapshot frame, got kind {kind}")
        self.state.replace(_loaded(payload))
        self._reader = threading.Thread(target=self._read, name="replica-feed", daemon=True)
        self._deadlines = threading.Thread(target=self._expire_calls, name="call-deadlines", daemon=True)
        self._stopped = threading.Event()

    def start(self):
        self._reader.start()
        self._deadlines.start()
        self._status_received.wait(5.0)
        return self

    def stop(self):
        self._stopped.set()
        self.channel.close("the worker stops")

    def _expire_calls(self):
        # Writes no thread waits for (register_instance_later) end at their deadline here, should
        # the Raft process never answer them.
        while not self._stopped.wait(DEADLINE_CHECK_SECONDS):
            now = time.monotonic()
            self.calls.expire(now)
            self.feed_demand.quiet_if_idle(now)

    # -- the stream from the Raft process ---------------------------------------------------------

    def _read(self):
        try:
            while True:
                kind, payload = self.channel.receive()
                if kind == BATCH:
                    index, batch = orjson.loads(payload)
                    if index > self.state.index:  # else it was in the snapshot already
                        results, taken = self.state.apply(batch, index)
                        self.checkpoints.note_batch(batch, taken)
                        self._settle_own_writes(batch, results, index)
                elif kind == STATUS:
                    self._status = orjson.loads(payload)
                    self._status["receivedAt"] = time.monotonic()
                    self._status_received.set()
                    if self.checkpoints.mismatch is not None:
                        # Its own copy went wrong (the Raft process's agreed with the leader): start afresh.
                        self._on_lost(f"this replica differs from the cluster's: {self.checkpoints.mismatch.describe()}")
                    self.channel.send(encode(PROGRESS, [self.state.index, self._status["sentAt"]]))
                elif kind == REPLY:
                    self.calls.replied(payload)
                elif kind == SNAPSHOT:
                    self.state.replace(_loaded(payload))
                    self._settle_writes_in_snapshot()
                elif kind == CALL:
                    threading.Thread(target=self._answer, args=(payload,), daemon=True).start()
        except ChannelClosed:
            self.calls.fail_all()
            self._on_lost("its Raft process is gone")
        except Exception:
            log.exception("the replica's feed failed")
            self._on_lost("its feed failed")

    def _settle_own_writes(self, batch, results, index):
        """Answer this worker's writes in a batch just applied here, with this replica's own apply
        results: apply is deterministic, so they are the Raft process's, which sends no reply for
        them (only a failure), and the write is held here, as its answer requires."""
        calls = self.calls
        settled = []
        for command, result in zip(batch, results):
            command_id = command.get("cid") if isinstance(command, dict) else None
            if command_id is not None and calls.is_awaited(command_id):
                result.setdefault("index", index)  # as the Raft process's apply_batch answers it
                settled.append((command_id, {"ok": {"result": result, "stateIndex": self.state.index}}))
        if settled:
            calls.settle(settled)

    def _settle_writes_in_snapshot(self):
        """A snapshot may hold writes this worker awaits whose batches it will never be sent: their
        results are in the snapshot's table of recent command ids (registry/sessions.py)."""
        settled = []
        for command_id in self.calls.awaited_keys():
            earlier = self.state.peek(lambda state, command_id=command_id: state.sessions.answered(command_id))
            if earlier is not None:
                settled.append((command_id, {"ok": {"result": earlier, "stateIndex": self.state.index}}))
        self.calls.settle(settled)

    def _answer(self, payload):
        call_id, operation, _arguments = orjson.loads(payload)
        reply(self.channel, call_id, self.state.digest() if operation == "digest" else None)

    # -- calls to the Raft process -------------------------------------------------------------------

    def _call(self, operation, arguments, timeout=CALL_TIMEOUT_SECONDS, settled_by=None):
        self.feed_demand.want()  # a write's answer waits for its batch: the feed must be live by then
        try:
            outcome = self.calls.call(operation, arguments, timeout, settled_by=settled_by)
        except (ChannelClosed, TimeoutError) as error:
            outcome = error
        return self._outcome_of(operation, outcome)

    @staticmethod
    def _outcome_of(operation, outcome):
        """What a call's outcome (or its ChannelClosed or TimeoutError) returns or raises."""
        if isinstance(outcome, Exception):
            raise WriteUnavailable(f"this peer's Raft process did not answer ({outcome or 'it is gone'}); "
                                   "it may or may not have been applied (retrying the same request is safe)",
                                   outcome_unknown=True)
        if "ok" in outcome:
            return outcome["ok"]
        if "unavailable" in outcome:
            message, unknown = outcome["unavailable"]
            raise WriteUnavailable(message, outcome_unknown=unknown)
        if "membership" in outcome:
            raise MembershipError(*outcome["membership"])
        raise RuntimeError(f"the Raft process failed a {operation} call: {outcome.get('failed')}")

    def _write(self, operation, arguments, timeout, settled_by=None):
        return self._held(self._call(operation, arguments, timeout, settled_by), timeout)

    def _held(self, answer, timeout):
        """The write's result once this replica holds it, waiting at most `timeout` for that."""
        # Here already when this replica settled it (a submitted command with an id), and normally
        # when the Raft process replied: the batch came down the channel before the reply did.
        result = answer["result"]
        written_at = result.get("index", answer["stateIndex"])
        if not self.state.wait_until_holding(written_at, answer["stateIndex"], timeout):
            raise WriteUnavailable("the write was committed, but this HTTP worker's replica did not receive it in "
                                   "time; retrying the same request is safe", outcome_unknown=True)
        # The state index the answer shows: the write's own, or less if it changed nothing (a
        # barrier, a removal of what was gone), which every replica reaches all the same.
        self.board.note(self.number - 1, min(self.state.index, written_at))
        tracing.request_mark("writer.woken")
        return result

    def _write_timeout(self):
        # The Raft process answers within its own deadline (a tenth of a second past it at most);
        # a second more covers the channel.
        return self.config.write_timeout_seconds + 1.0

    def submit(self, command):
        """Commit through the Raft process's group committer. A read barrier (PeerReads) comes here
        too: its answer's state index is what this replica must reach before the read."""
        command = self._identified(command)
        # A command with an id is answered by this replica applying it (_settle_own_writes); a
        # barrier has none, and its reply says which state index the read must wait for.
        return self._write("submit", [command], self._write_timeout(), settled_by=command.get("cid"))

    def renew_instance(self, instance_id, fields, caller=SYSTEM):
        timeout = self.config.renewal_flush_seconds + self._write_timeout() + 1.0
        return self._write("renew", [instance_id, fields, caller], timeout)

    def registers_later(self):
        return True

    def register_instance_later(self, fields, caller, on_done):
        """The registration answered from the thread that settles it (the feed's, as this replica
        applies it: _settle_own_writes), with no thread waiting for it: waitress' loop thread
        starts it and that thread sends the answer (api/loop_answers.py)."""
        command = self._identified(self._registration(fields, caller))
        command_id = command["cid"]
        self.feed_demand.want()

        def outcome(answer):
            tracing.request_resumed(command_id)
            try:
                # Held already when settled here; a reply (only a failure comes so) waits for nothing.
                result = self._held(self._outcome_of("submit", answer), timeout=0)
            except (WriteUnavailable, MembershipError) as error:
                on_done(None, error)
            except Exception as error:
                log.exception("a registration's outcome could not be read")
                on_done(None, error)
            else:
                on_done(result, None)

        self.calls.call_later("submit", [command], self._write_timeout(), outcome, settled_by=command_id)
        tracing.request_left()

    def report_self(self):
        return self._write("report_self", [], self._write_timeout())

    def add_member(self, address, timeout):
        return self._call("add_member", [address, timeout], timeout + 2.0)

    def remove_member(self, address, timeout):
        return self._call("remove_member", [address, timeout], timeout + 2.0)

    def cluster_view(self):
        return self._call("cluster_view", [])

    def scan_progress(self):
        cycles, last = self._call("scan_progress", [])
        return cycles, (ScanProgress(last) if last is not None else None)

    def http_workers(self):
        return self._call("workers", [])

    def corrupt_state_for_test(self):
        return self._call("corrupt_state_for_test", [])

    # -- the Raft side, as last pushed ------------------------------------------------------------

    def _pushed(self):
        status = self._status
        if status is None:
            raise WriteUnavailable("this HTTP worker has not yet heard from its Raft process", outcome_unknown=False)
        return status

    def lag_seconds(self):
        """How far behind the Raft process this replica is: the age of the newest status read."""
        status = self._status
        return float("inf") if status is None else max(0.0, time.monotonic() - status["sentAt"])

    def status(self):
        pushed = dict(self._pushed())
        lag = self.lag_seconds()
        pushed.pop("sentAt"), pushed.pop("receivedAt")
        pushed["members"] = tuple(pushed["members"])
        pushed["state_index"] = self.state.index
        if pushed["divergence"] is None and self.checkpoints.mismatch is not None:
            pushed["divergence"] = self.checkpoints.mismatch.describe()
        pushed["caught_up"] = pushed["caught_up"] and lag <= READY_LAG_SECONDS
        pushed["http_worker"] = {"number": self.number, "lagMs": int(lag * 1000),
                                 "behind": lag > READY_LAG_SECONDS}
        return PeerStatus(**pushed)

    def known_leader(self):
        status = self._status
        return None if status is None else status["leader"]

    def last_contact_ms(self):
        status = self._status
        if status is None:
            return 0
        if status["last_contact_ms"] == 0 and status["role"] == "leader":
            return 0
        return status["last_contact_ms"] + int((time.monotonic() - status["sentAt"]) * 1000)

    def state_index(self):
        return self.state.index

    def reads_at_once(self):
        return self.state.holds_every_answer()


def _loaded(snapshot_frame):
    with collector_paused():
        return RegistryState.from_snapshot(decode_snapshot(snapshot_frame), values_shared=True)

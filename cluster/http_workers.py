"""A peer's HTTP worker processes, from its Raft process's side.

With `--http-workers N` the Raft process serves no HTTP itself: it holds the HTTP port (bound
with SO_REUSEPORT, api/serve.py) and starts N worker processes (api/worker.py), each listening
on that port with a socket of its own, among which the kernel spreads connections evenly; each
is a read replica of this peer (cluster/worker_replica.py). Over each worker's channel
(cluster/worker_channel.py) this module sends a snapshot of the state and then every batch the
Raft thread applies, in order (held for a worker that no request needs, and sent with its next
status: cluster/quiet_feed.py), and a status of the Raft side a few times a second; it answers
the worker's calls: writes into the same group committer, barriers, membership, the cluster view.

A worker that dies is started again (its acknowledged writes were committed before it answered
them); one whose channel backs up, or whose replica falls too far behind, is killed and started
again from a fresh snapshot. Each worker kills itself when this process dies (api/worker.py).
"""

import concurrent.futures
import dataclasses
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import orjson

from registry.state import snapshot_of

from . import membership
from .answered_board import AnsweredBoard
from .quiet_feed import FEED_LIVE, HeldFeed
from .submit import WriteUnavailable
from .worker_channel import (
    BATCH, CALL, HELLO, PROGRESS, QUIET, REPLY, STATUS, Calls, Channel, ChannelClosed, encode, encode_snapshot,
    reply,
)

log = logging.getLogger(__name__)

STATUS_PERIOD_SECONDS = 0.05
SUPERVISE_PERIOD_SECONDS = 0.1
# A worker whose replica is this far behind (it has not read the stream for this long) is
# started again from a snapshot rather than left serving an ever older state.
MAX_LAG_SECONDS = 10.0
# How long a worker may take from its start to reading its snapshot before that counts as lag.
START_GRACE_SECONDS = 60.0
RESTART_BACKOFF_SECONDS = (0.0, 0.5, 1.0, 2.0, 5.0)
# A worker that lived this long before it died is restarted at once again.
STABLE_SECONDS = 30.0
DIGEST_TIMEOUT_SECONDS = 5.0
REPLAY_WAIT_SECONDS = 30.0
STOP_GRACE_SECONDS = 5.0


class _SharedSnapshot:
    """The frame of one snapshot for every channel it was queued on: made by the first channel
    writer to reach it (off the Raft thread and the state lock), the others waiting for it, and
    let go once every channel has it (at 100,000 instances an encoding costs about 0.1 s)."""

    __slots__ = ("parts", "_frame", "_lock", "__weakref__")

    def __init__(self, parts):
        self.parts = parts
        self._frame = None
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            if self._frame is None:
                self._frame = encode_snapshot(snapshot_of(self.parts))
            return self._frame


class WorkerLink:
    """One worker process, its channel, and what it last said of its replica."""

    def __init__(self, workers, number):
        self.workers = workers
        self.number = number
        self.process = None
        self.channel = None
        self.calls = None
        self.started = 0.0
        self.state_index = None  # the worker's replica's, as it last reported
        self.status_seen_at = None  # monotonic time the last status it had read was sent
        self.restarts = 0
        self.failures_in_a_row = 0
        self.retiring = None  # why it is being replaced
        self.restart_at = None  # once its ended process was detached: when to start another
        self.fed = False  # its snapshot is queued: the stream and statuses may follow
        self.feed = None  # its channel's HeldFeed

    # -- the feed: frames HttpWorkers made once for every fed worker ------------------------------

    def send_batch(self, frame):
        self.feed.batch(frame)

    def send_after_held(self, frame):
        """A status's frame, or a callable making a snapshot's, after every batch held before it
        (None: only those)."""
        self.feed.after_held(frame)

    def _send(self, frame):
        channel = self.channel
        if channel is not None and not channel.closed:
            try:
                channel.send(frame)
            except ChannelClosed:
                pass  # the supervisor replaces the worker

    # -- its life -----------------------------------------------------------------------------

    def spawn(self, hello):
        """Start the process and say hello: it imports and sets itself up while this process may
        still be replaying its journal, then waits for the snapshot that HttpWorkers._feed queues."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        board = self.workers.board
        command = [sys.executable, "-m", "api.worker", "--number", str(self.number),
                   "--channel-fd", str(theirs.fileno()), "--board-fd", str(board.fd),
                   "--workers", str(self.workers.count), "--parent-pid", str(os.getpid())]
        environment = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=self.workers.metrics_dir)
        try:
            self.process = subprocess.Popen(command, pass_fds=(theirs.fileno(), board.fd),
                                            stdin=subprocess.DEVNULL, env=environment)
        finally:
            theirs.close()
        self.started = time.monotonic()
        self.state_index = self.status_seen_at = None
        self.retiring = self.restart_at = None
        self.fed = False
        self.channel = Channel(ours, f"http-worker-{self.number}")
        self.calls = Calls(self.channel)
        self.feed = HeldFeed(self._send)
        self.channel.send(encode(HELLO, dict(hello, number=self.number)))
        threading.Thread(target=self._read, args=(self.channel,), name=f"http-worker-{self.number}-reader",
                         daemon=True).start()
        log.info("http worker %d started (pid %d)", self.number, self.process.pid)

    def retire(self, why):
        """Kill the worker (the supervisor starts another): it serves an old or unknown state."""
        if self.retiring is None:
            self.retiring = why
            log.warning("http worker %d (pid %d) replaced: %s", self.number, self.process.pid, why)
        self._kill()

    def _kill(self):
        if self.process is not None and self.process.poll() is None:
            try:
                self.process.kill()
            except OSError:
                pass

    def detach(self):
        """After its process ended: stop feeding it."""
        self.workers.unfeed(self)
        if self.channel is not None:
            self.channel.close("the worker ended")
            self.calls.fail_all()

    def lag_seconds(self, now):
        if self.status_seen_at is None:
            return max(0.0, now - self.started - START_GRACE_SECONDS)
        return max(0.0, now - self.status_seen_at)

    def describe(self, now):
        alive = self.process is not None and self.process.poll() is None
        return {
            "number": self.number, "pid": self.process.pid if self.process else None, "running": alive,
            "stateIndex": self.state_index, "lagMs": int(self.lag_seconds(now) * 1000) if alive else None,
            "restarts": self.restarts, "feed": ("quiet" if self.feed.quiet else "live") if alive else None,
        }

    def digest(self):
        """The worker's own state digest {index, sha256}, or None if it did not answer in time."""
        try:
            self.feed.after_held(None)  # of its replica as current as this process's
            return self.calls.call("digest", [], DIGEST_TIMEOUT_SECONDS)
        except (ChannelClosed, TimeoutError, AttributeError):
            return None

    # -- what it sends ----------------------------------------------------------------------------

    def _read(self, channel):
        calls = self.calls
        try:
            while True:
                kind, payload = channel.receive()
                if kind == CALL:
                    call_id, operation, arguments = orjson.loads(payload)
                    if operation == "submit":
                        self.workers.submit(channel, call_id, arguments[0])
                    elif operation == FEED_LIVE:
                        self.feed.go_live()  # what it held goes first: the reply says the worker holds it
                        reply(channel, call_id, {"ok": None})
                    else:
                        self.workers.executor.submit(self.workers.answer, channel, call_id, operation, arguments)
                elif kind == PROGRESS:
                    self.state_index, self.status_seen_at = orjson.loads(payload)
                elif kind == QUIET:
                    self.feed.go_quiet()
                elif kind == REPLY:
                    calls.replied(payload)
        except ChannelClosed:
            calls.fail_all()
            if not self.workers.stopping:  # a worker that stops closes its channel as it ends
                self._kill()  # a worker without its channel serves nothing current


class HttpWorkers:
    def __init__(self, peer, count, *, log_settings):
        self.peer = peer
        self.count = count
        # The workers whose snapshot is queued: the state's one listener feeds them what it applies.
        self._fed = ()
        self._fed_lock = threading.Lock()
        self.metrics_dir = os.path.join(peer.config.data_dir, "http-workers-metrics")
        self._log_settings = log_settings
        self.links = [WorkerLink(self, number) for number in range(1, count + 1)]
        self.board = AnsweredBoard.create(count)  # read-your-writes across workers (answered_board.py)
        # Calls block on commits: enough threads for every HTTP thread of every worker at once.
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=count * (peer.config.http_threads + 8), thread_name_prefix="worker-call")
        # A worker's parent-death signal (api/worker.py) fires when the *thread* that started it
        # ends, not only its process: the supervisor, which starts them, must outlive them. So a
        # stop first stops restarts (_stopping), ends the workers, and only then the threads (_stop).
        self._stopping = threading.Event()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._push_status, name="worker-status", daemon=True),
                         threading.Thread(target=self._supervise, name="worker-supervisor", daemon=True)]

    @property
    def stopping(self):
        return self._stopping.is_set()

    def _hello(self):
        return {
            "config": dataclasses.asdict(self.peer.config), "url": self.peer.url,
            "clusterSecret": self.peer.cluster_secret, "log": self._log_settings,
        }

    def start(self):
        # Counters of an earlier run's workers would be summed into this run's.
        shutil.rmtree(self.metrics_dir, ignore_errors=True)
        os.makedirs(self.metrics_dir, mode=0o700)
        for thread in self._threads:
            thread.start()
        return self

    def _start_once_replayed(self):
        """Feed the workers their snapshot once this process applied what its journal says was
        committed: the snapshot then holds it all, rather than every worker applying the
        journal's entries once more (at 100,000 instances that made a full-cluster restart 20 s
        instead of 5). Not longer than REPLAY_WAIT_SECONDS: a peer cut off at start still
        answers (503 not ready). Their processes start at once, so their imports overlap the
        replay (on 2 busy cores that gained nothing measurable: README, "Where a follower's
        writes with workers wait")."""
        spawned = [link for link in self.links if self._spawn(link, time.monotonic())]
        replica = self.peer.replica
        committed, deadline = replica.raftCommitIndex, time.monotonic() + REPLAY_WAIT_SECONDS
        while replica.raftLastApplied < committed and time.monotonic() < deadline:
            if self._stopping.wait(0.02):
                return False  # stop() ends the processes spawned
        self.peer.state.subscribe(self)
        self._feed(spawned)
        return True

    def _feed(self, links):
        """Queue the state's snapshot for `links`, one copy and one encoding for them all."""
        if not links:
            return

        def start(parts):
            # Under the state lock: every batch applied after these parts follows them in each channel.
            make_frame = _SharedSnapshot(parts)
            for link in links:
                link.send_after_held(make_frame)
            with self._fed_lock:
                self._fed += tuple(links)

        self.peer.state.with_parts(start)
        for link in links:
            link.fed = True  # statuses only after the snapshot: the worker reads hello, snapshot, then the stream

    def unfeed(self, link):
        with self._fed_lock:
            self._fed = tuple(known for known in self._fed if known is not link)

    # -- the state's listener: on the Raft thread (cluster/watched_state.py) ----------------------

    def batch(self, index, commands):
        fed = self._fed
        if not fed:
            return
        try:
            frame = encode(BATCH, [index, commands])
        except Exception:
            log.exception("a batch at index %d could not be encoded for the http workers", index)
            for link in fed:
                link.retire("a batch could not be encoded for it")
            return
        for link in fed:
            link.send_batch(frame)

    def replaced(self, parts):
        make_frame = _SharedSnapshot(parts)
        for link in self._fed:
            link.send_after_held(make_frame)

    def stop(self):
        self._stopping.set()
        for link in self.links:
            if link.process is not None and link.process.poll() is None:
                link.process.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for link in self.links:
            if link.process is None:
                continue
            try:
                link.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                link.process.kill()
                link.process.wait()
            log.info("http worker %d (pid %d) stopped, exit status %s", link.number, link.process.pid,
                     link.process.returncode)
            link.detach()
        self._stop.set()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def describe(self, *, digests=False):
        """Every worker as this process knows it, for the cluster view and /metrics."""
        now = time.monotonic()
        described = [link.describe(now) for link in self.links]
        if digests:
            # Reported, not acted on: which of two differing copies is wrong is for the leader's
            # checkpoints to say (a worker that fails one starts afresh: cluster/worker_replica.py).
            # Only of a worker that reported a replica: one still starting reads no calls until it
            # holds its snapshot, so asking it would hold the view DIGEST_TIMEOUT_SECONDS for nothing.
            for entry, link in zip(described, self.links):
                entry["stateDigest"] = link.digest() if entry["running"] and link.state_index is not None else None
        return described

    # -- the status every worker's answers carry ---------------------------------------------------

    def _push_status(self):
        while not self._stop.wait(STATUS_PERIOD_SECONDS):
            frame = None
            try:
                status = dataclasses.asdict(self.peer.status())
                status["sentAt"] = time.monotonic()
                frame = encode(STATUS, status)
            except Exception:
                log.exception("the peer's status could not be read for its workers")
            for link in self.links:
                if link.fed:
                    # A quiet worker's batches come with it, and still come without one.
                    link.send_after_held(frame)

    def _supervise(self):
        launched = self._start_once_replayed()
        while not self._stop.wait(SUPERVISE_PERIOD_SECONDS):
            if not launched or self._stopping.is_set():
                continue  # this thread lives on until the workers it started have ended
            try:
                self._look_after(time.monotonic())
            except Exception:
                log.exception("supervising the http workers failed; trying again")

    def _look_after(self, now):
        for link in self.links:
            if link.process is not None and link.process.poll() is None:
                if link.lag_seconds(now) > MAX_LAG_SECONDS:
                    link.retire(f"its replica is {link.lag_seconds(now):.1f}s behind (limit {MAX_LAG_SECONDS:g}s)")
                elif link.channel.closed:
                    link.retire("its channel closed")
                continue
            self._restart(link, now)

    def _restart(self, link, now):
        """The worker's process has ended (or never started): detach it once, then start another
        after a backoff."""
        if link.restart_at is None:
            if link.retiring is None and not self._stopping.is_set():
                log.error("http worker %d (pid %d) exited with status %s", link.number, link.process.pid,
                          link.process.returncode)
            link.detach()
            lived = now - link.started
            link.failures_in_a_row = 0 if lived > STABLE_SECONDS else link.failures_in_a_row + 1
            link.restart_at = now + RESTART_BACKOFF_SECONDS[min(link.failures_in_a_row,
                                                                len(RESTART_BACKOFF_SECONDS) - 1)]
        if self._stopping.is_set() or now < link.restart_at:
            return
        link.restarts += 1
        if self._spawn(link, now):
            self._feed([link])

    def _spawn(self, link, now):
        try:
            link.spawn(self._hello())
            return True
        except OSError as error:
            log.error("http worker %d could not be started: %s", link.number, error)
            link.restart_at = now + RESTART_BACKOFF_SECONDS[-1]
            return False

    # -- the workers' calls ---------------------------------------------------------------------

    def submit(self, channel, call_id, command):
        """A worker's write, into the group committer without a thread waiting on it: the outcome
        goes back from the thread that learns it (the Raft thread, on a commit)."""
        peer = self.peer
        # The worker answers a command with an id once its replica applies it, with the result it
        # computes there (cluster/worker_replica.py): only its failure needs a reply.
        settled_by_worker = isinstance(command, dict) and "cid" in command

        def done(result, error):
            if error is None and settled_by_worker:
                return
            reply(channel, call_id, {"ok": self._write_answer(result)} if error is None else _refusal(error))

        try:
            peer.submit_async(command, done)
        except Exception as error:
            log.exception("a worker's write could not be submitted")
            reply(channel, call_id, _refusal(error))

    def answer(self, channel, call_id, operation, arguments):
        """On an executor thread: run one call of a worker and send its outcome back."""
        try:
            outcome = {"ok": self._run(operation, arguments)}
        except Exception as error:
            if not isinstance(error, (WriteUnavailable, membership.MembershipError)):
                log.exception("a worker's %s call failed", operation)
            outcome = _refusal(error)
        reply(channel, call_id, outcome)

    def _run(self, operation, arguments):
        peer = self.peer
        if operation == "renew":
            result = peer.renew_instance(*arguments)
        elif operation == "report_self":
            result = peer.report_self()
        elif operation == "add_member":
            return peer.add_member(*arguments)
        elif operation == "remove_member":
            return peer.remove_member(*arguments)
        elif operation == "cluster_view":
            return peer.cluster_view()
        elif operation == "scan_progress":
            cycles, last = peer.scan_progress()
            return [cycles, last.as_json() if last is not None else None]
        elif operation == "workers":
            return self.describe()
        elif operation == "corrupt_state_for_test":
            return peer.corrupt_state_for_test()
        else:
            raise ValueError(f"no such call {operation!r}")
        return self._write_answer(result)

    def _write_answer(self, result):
        # The worker answers once its replica holds this: read-your-writes there (worker_replica.py).
        return {"result": result, "stateIndex": self.peer.state_index()}


def _refusal(error):
    """A call's failure as the worker raises it again (WorkerReplica._call)."""
    if isinstance(error, WriteUnavailable):
        return {"unavailable": [error.message, error.outcome_unknown]}
    if isinstance(error, membership.MembershipError):
        return {"membership": [error.code, error.message]}
    return {"failed": f"{type(error).__name__}: {error}"}

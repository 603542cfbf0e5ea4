"""Writers that keep a history of what the cluster acknowledged, and the checks made on it.

Every write registers a new instance with a url no other write uses, so a url found in the
registry afterwards proves exactly that write was applied. A write is `acknowledged` (201),
`failed` (any other answer, or the connection was refused so nothing was sent) or `unknown`
(sent, but no answer came: it may or may not have been applied).
"""

import collections
import dataclasses
import json
import os
import tempfile
import threading
import time

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from api.local_clusters.netns import NamespacedSession, enter_namespace
from tests.waiting import wait_until

RESULTS_PATH = os.environ.get(
    "REGISTRY_CHAOS_RESULTS", os.path.join(tempfile.gettempdir(), "registry-svc-chaos", "results.jsonl"))

# The figures of every scenario run in this session, for the terminal summary.
scenario_figures = []


@dataclasses.dataclass(frozen=True)
class Write:
    url: str
    peer: int
    started: float  # time.monotonic()
    finished: float
    status: object  # the HTTP status, or None when nothing answered
    outcome: str  # acknowledged | failed | unknown
    detail: str = ""

    @property
    def seconds(self):
        return self.finished - self.started


class Writers:
    """`per_peer` writer threads at each peer, each inside its peer's namespace.

    Bounded: a writer stops after `max_writes` writes or `max_seconds`, whichever comes first.
    `pause()` returns once no write is in flight, so a check sees a quiet cluster.
    """

    def __init__(self, cluster, prefix, *, peers=None, per_peer=2, pace_seconds=0.1, max_writes=2000,
                 max_seconds=240.0, client_timeout=10.0):
        self.cluster = cluster
        self.prefix = prefix
        self.peers = list(peers or cluster.peers)
        self.per_peer = per_peer
        self.pace_seconds = pace_seconds
        self.max_writes = max_writes
        self.max_seconds = max_seconds
        self.client_timeout = client_timeout
        self.history = []
        self.windows = []  # (start, end) of each stretch the writers ran, for unavailability
        self._window_start = None
        self._condition = threading.Condition()
        self._in_flight = 0
        self._paused = False
        self._stopping = threading.Event()
        self._threads = []

    # -- running --------------------------------------------------------------------------------

    def start(self):
        self._window_start = time.monotonic()
        deadline = self._window_start + self.max_seconds
        for peer in self.peers:
            for number in range(self.per_peer):
                thread = threading.Thread(target=self._write_loop, args=(peer, number, deadline),
                                          name=f"writer-{peer.name}-{number}", daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def pause(self):
        with self._condition:
            self._paused = True
            while self._in_flight:
                self._condition.wait()
            self._close_window()

    def resume(self):
        with self._condition:
            self._paused = False
            self._window_start = time.monotonic()
            self._condition.notify_all()

    def stop(self):
        self._stopping.set()
        with self._condition:
            self._condition.notify_all()
        for thread in self._threads:
            thread.join(timeout=self.client_timeout + 5)
        alive = [t.name for t in self._threads if t.is_alive()]
        with self._condition:
            if not self._paused:
                self._close_window()
            self._paused = True
        assert not alive, f"writers still running after stop: {alive}"

    def _close_window(self):
        if self._window_start is not None:
            self.windows.append((self._window_start, time.monotonic()))
            self._window_start = None

    def _write_loop(self, peer, number, deadline):
        enter_namespace(peer.namespace)
        session = NamespacedSession(peer.namespace, self.cluster.admin_token)
        try:
            for sequence in range(self.max_writes):
                with self._condition:
                    while self._paused and not self._stopping.is_set():
                        self._condition.wait()
                    if self._stopping.is_set() or time.monotonic() > deadline:
                        return
                    self._in_flight += 1
                try:
                    write = self._write(session, peer, f"http://{self.prefix}-{peer.name}w{number}-{sequence}:80")
                finally:
                    with self._condition:
                        self._in_flight -= 1
                        self._condition.notify_all()
                # Paces the writers; a dead peer is retried less often, so that refused
                # connections do not swamp the history.
                refused = write.outcome == "failed" and write.status is None
                self._stopping.wait(self.pace_seconds * (4 if refused else 1))
        finally:
            session.close()

    def _write(self, session, peer, url):
        started = time.monotonic()
        status, detail = None, ""
        try:
            response = session.put(peer.url + "/registry-svc/instance", json={"url": url},
                                   timeout=self.client_timeout)
            status = response.status_code
            outcome = "acknowledged" if status == 201 else "failed"
            if status != 201:
                detail = response.text[:200]
        except requests.ConnectionError as error:
            # Refused or not connected, so nothing was sent: certainly not applied. Anything later: unknown.
            refused = _caused_by(error, (NewConnectionError, ConnectTimeoutError))
            outcome, detail = ("failed" if refused else "unknown"), type(error).__name__
        except requests.RequestException as error:
            outcome, detail = "unknown", type(error).__name__
        write = Write(url, peer.index, started, time.monotonic(), status, outcome, detail)
        with self._condition:
            self.history.append(write)
        return write

    # -- what happened -------------------------------------------------------------------------

    def writes(self, *, at=None, started_after=None, finished_before=None, outcome=None):
        with self._condition:
            history = list(self.history)
        indexes = None if at is None else {peer.index for peer in at}
        return [w for w in history
                if (indexes is None or w.peer in indexes)
                and (started_after is None or w.started >= started_after)
                and (finished_before is None or w.finished <= finished_before)
                and (outcome is None or w.outcome == outcome)]

    def acknowledged_urls(self, **filters):
        return {w.url for w in self.writes(outcome="acknowledged", **filters)}

    def wait_for_acks(self, count, *, at=None, after=None, timeout=30.0):
        """Wait until `count` writes started after `after` at peers `at` were acknowledged."""
        names = ", ".join(p.name for p in (at or self.peers))

        def enough():
            acknowledged = len(self.writes(at=at, started_after=after, outcome="acknowledged"))
            assert acknowledged >= count, f"{acknowledged} of {count} acknowledged"
            return True

        wait_until(enough, timeout, f"{count} acknowledged writes at {names}", interval=0.02)

    def wait_for_answers(self, count, *, at, after, timeout=30.0):
        """Wait until `count` writes started after `after` at peers `at` were answered one way or another."""
        def enough():
            return len(self.writes(at=at, started_after=after)) >= count

        wait_until(enough, timeout, f"{count} answered writes at {', '.join(p.name for p in at)}", interval=0.02)

    def longest_unavailable_seconds(self):
        """The longest gap between consecutive acknowledged writes, cluster-wide, while writers ran.

        A stretch of running counts from its first write to its last answer, so an outage at
        either end counts, and a pause between stretches does not.
        """
        acknowledged = sorted(w.finished for w in self.writes(outcome="acknowledged"))
        everything = self.writes()
        longest = 0.0
        for start, end in self.windows:
            inside = [w for w in everything if start <= w.started <= end]
            if not inside:
                continue
            first = min(w.started for w in inside)
            last = max(w.finished for w in inside)
            points = [first] + [t for t in acknowledged if first <= t <= last] + [last]
            longest = max([longest] + [b - a for a, b in zip(points, points[1:])])
        return longest


def _caused_by(error, kind):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, kind):
            return True
        # requests wraps urllib3's MaxRetryError in args; MaxRetryError keeps the cause in `reason`.
        nested = [getattr(error, "reason", None), *getattr(error, "args", ()), error.__context__]
        error = next((e for e in nested if isinstance(e, BaseException)), None)
    return False


class Diverged(Exception):
    """Two peers hold different states at the same index. Not an AssertionError on purpose:
    `wait_until` retries those, and a divergence must end the wait at once."""


def wait_converged(cluster, acknowledged, *, peers=None, timeout=30.0):
    """Wait until every peer holds every acknowledged write and all report one stateDigest.

    Returns the instance urls the peers then list (the same at every peer).
    """
    peers = list(peers or cluster.peers)

    def every_peer_holds_every_ack():
        listed = cluster.instance_urls(peers)
        missing = {peer.name: len(acknowledged - urls) for peer, urls in listed.items()}
        assert not any(missing.values()), f"acknowledged writes missing per peer: {missing}; e.g. " + str(
            sorted(next(acknowledged - urls for urls in listed.values() if acknowledged - urls))[:3])
        return True

    wait_until(every_peer_holds_every_ack, timeout, "every peer to hold every acknowledged write", interval=0.2)

    def digests_agree():
        views = cluster.views(peers)
        digests = {peer.name: (view["self"]["stateDigest"] if view else None) for peer, view in views.items()}
        assert all(digests.values()), f"not every peer answered: {digests}"
        by_index = collections.defaultdict(set)
        for digest in digests.values():
            by_index[digest["index"]].add(digest["sha256"])
        for index, hashes in by_index.items():
            if len(hashes) > 1:
                raise Diverged(f"peers hold different states at index {index}: {digests}")
        assert len(by_index) == 1, f"peers at different indexes: {digests}"
        return digests

    digests = wait_until(digests_agree, timeout, "every peer to report the same stateDigest", interval=0.1)
    listed = cluster.instance_urls(peers)
    distinct = {frozenset(urls) for urls in listed.values()}
    assert len(distinct) == 1, f"peers with the same stateDigest {digests} list different instances"
    return set(next(iter(distinct)))


def record_figures(scenario, writers, found_urls, **extra):
    """Print the scenario's figures and append them as one JSON line to RESULTS_PATH."""
    writes = writers.writes()
    acknowledged = {w.url for w in writes if w.outcome == "acknowledged"}
    outcomes = collections.Counter(w.outcome for w in writes)
    figures = {
        "scenario": scenario,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "attempted": len(writes),
        "acknowledged": len(acknowledged),
        "failed": outcomes["failed"],
        "unknown": outcomes["unknown"],
        "foundAfterwards": len({w.url for w in writes} & found_urls),
        "acknowledgedFound": len(acknowledged & found_urls),
        "acknowledgedLost": len(acknowledged - found_urls),
        "longestUnavailableSeconds": round(writers.longest_unavailable_seconds(), 3),
        **extra,
    }
    os.makedirs(os.path.dirname(RESULTS_PATH), exist_ok=True)
    with open(RESULTS_PATH, "a", encoding="utf-8") as results:
        results.write(json.dumps(figures) + "\n")
    scenario_figures.append(figures)
    print(f"chaos figures ({RESULTS_PATH}): {json.dumps(figures)}")
    return figures


def found_at_leader(cluster):
    """The instance urls the current leader lists, for figures when the peers never converged."""
    try:
        leader = cluster.leader(timeout=10)
        return cluster.instance_urls([leader])[leader]
    except Exception as error:  # figures are best effort here: the test's own failure is what matters
        print(f"no leader's listing for the figures: {error}")
        return set()

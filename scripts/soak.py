#!/usr/bin/env python3
"""Issue 19's soak: a mixed load on a real cluster while peers are killed -9 (and, in network
namespaces, cut off), then every acknowledged write checked at every peer.

    python scripts/soak.py --minutes 30                  # processes on 127.0.0.1: kill -9 faults
    sudo python scripts/soak.py --minutes 30 --netns     # peers in namespaces: kills and partitions

Load, from threads in this process (in the hub namespace with --netns, as clients on the network):
--writers writers spread over the peers, each registering instances with ids of its own as fast
as it is answered and, once it holds --window of them, removing its oldest (so the state stays
bounded however long it runs), renewing one in ten; consistent reads of an acknowledged
instance at a random peer (a miss is a stale read); blocking reads on a slug at a random peer.

Faults, one at a time every --fault-every seconds: kill -9 of a random peer, restarted on its
data after --down-seconds; with --netns, by turns with that, a random peer's link cut for
--partition-seconds.
Peers run with --checkpoint-interval 20, so the corruption check runs throughout.

At the end every peer is brought back and must become ready; then every acknowledged
registration never removed must be at every peer, every acknowledged removal gone, the state
digests equal, and no peer's log may hold a divergence line. Printed: those checks, writes and
reads by outcome and cause, the faults, and each peer's RSS (first and last sample of each
process). Exit status 0 when every check passed, 1 otherwise. Every process it starts is stopped
by pid, also on error or Ctrl-C.
"""

import argparse
import collections
import json
import os
import random
import shlex
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import requests  # noqa: E402

from api.local_clusters.waiting import wait_until  # noqa: E402
from soak_cluster import SERVE_ARGS, Harness, NetnsHarness, RssSampler  # noqa: E402
# What PySyncObj and the registry log when replicas (may) differ.
DIVERGENCE_MARKS = ("may have diverged", "replicas diverged", "truncating already-applied")
SLUGS = 8
REQUEST_TIMEOUT = 10.0


def log(message):
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cause_of(error):
    text = str(error).lower()
    for words, cause in (("refused", "connection refused"), ("timed out", "timeout"), ("reset", "connection reset"),
                         ("unreachable", "unreachable"), ("aborted", "connection aborted")):
        if words in text:
            return cause
    return type(error).__name__


class Load:
    def __init__(self, harness, writers, window, readers):
        self.harness = harness
        self.writers = writers
        self.window = window
        self.readers = readers
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.outcomes = collections.Counter()  # (operation, outcome or cause)
        self.registered = set()  # ids whose registration was acknowledged
        self.removal_tried = {}  # id -> when its removal was first sent (monotonic seconds)
        self.removed = set()  # ids whose removal was acknowledged
        self.stale_reads = []
        self.threads = []

    def start(self):
        jobs = [(self._write, w) for w in range(self.writers)]
        jobs += [(self._read_consistently, r) for r in range(self.readers)] + [(self._watch, r) for r in range(self.readers)]
        for target, number in jobs:
            thread = threading.Thread(target=self._in_client_network, args=(target, number), daemon=True)
            thread.start()
            self.threads.append(thread)

    def finish(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=REQUEST_TIMEOUT + 30)

    def _in_client_network(self, target, number):
        self.harness.enter_client_network()
        session = requests.Session()
        session.trust_env = False
        session.headers["Authorization"] = f"Bearer {self.harness.token}"
        target(session, number)

    def _call(self, operation, session, method, url, **kwargs):
        try:
            response = session.request(method, url, timeout=REQUEST_TIMEOUT, **kwargs)
        except requests.RequestException as error:
            self.outcomes[(operation, cause_of(error))] += 1
            self.stop.wait(0.1)  # a peer that is down refuses at once: do not spin on it
            return None
        self.outcomes[(operation, str(response.status_code))] += 1
        return response

    def _write(self, session, writer):
        peer = self.harness.peers[writer % len(self.harness.peers)]
        mine = collections.deque()
        n = 0
        while not self.stop.is_set():
            n += 1
            instance_id = f"inst_soak_{writer}_{n}"
            body = {"id": instance_id, "url": f"http://127.0.0.1:{20000 + writer}/{n}", "slug": f"soak-{n % SLUGS}"}
            answer = self._call("register", session, "PUT", peer.url + "/registry-svc/instance", json=body)
            if answer is not None and answer.status_code == 201:
                with self.lock:
                    self.registered.add(instance_id)
                mine.append(instance_id)
            if n % 10 == 0 and mine:
                self._call("renew", session, "PUT", f"{peer.url}/registry-svc/instance/{random.choice(mine)}/heartbeat",
                           json={"status": "Healthy"})
            if len(mine) > self.window:
                oldest = mine.popleft()
                with self.lock:
                    self.removal_tried[oldest] = time.monotonic()
                answer = self._call("remove", session, "DELETE", f"{peer.url}/registry-svc/instance/{oldest}")
                if answer is not None and answer.status_code == 204:
                    with self.lock:
                        self.removed.add(oldest)

    def _read_consistently(self, session, _):
        while not self.stop.wait(0.05):
            with self.lock:
                candidates = list(self.registered - self.removal_tried.keys())
            if not candidates:
                continue
            instance_id = random.choice(candidates)  # acknowledged before this read began
            peer = random.choice(self.harness.peers)
            invoked = time.monotonic()
            answer = self._call("consistent read", session, "GET", peer.url + "/registry-svc/instances",
                                params={"id": instance_id, "consistent": ""})
            completed = time.monotonic()
            if answer is None or answer.status_code != 200 or answer.json().get("instances"):
                continue
            with self.lock:
                removal_sent = self.removal_tried.get(instance_id)
            # Its writer may have removed it while the read waited (a barrier can wait out an
            # election): only a miss with no removal sent before the answer came is stale.
            if removal_sent is None or removal_sent > completed:
                self.stale_reads.append({"id": instance_id, "peer": peer.url, "at": time.time(),
                                         "seconds": round(completed - invoked, 3),
                                         "index": answer.headers.get("X-Registry-Index")})
            else:
                self.outcomes[("consistent read", "miss after a removal was sent")] += 1

    def _watch(self, session, number):
        index = 0
        while not self.stop.is_set():
            peer = random.choice(self.harness.peers)
            answer = self._call("blocking read", session, "GET", peer.url + "/registry-svc/instances",
                                params={"slug": f"soak-{number}", "index": index, "wait": "2s"})
            if answer is None or answer.status_code != 200:
                self.stop.wait(0.2)
                continue
            index = int(answer.headers.get("X-Registry-Index", index))


class Faults:
    def __init__(self, harness, every, down_seconds, partition_seconds):
        self.harness = harness
        self.every, self.down_seconds, self.partition_seconds = every, down_seconds, partition_seconds
        self.done = []
        self.error = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        kinds = ["kill", "partition"] if self.harness.partitions else ["kill"]
        while not self.stop.wait(self.every):
            peer = random.choice(self.harness.peers)
            kind = kinds[len(self.done) % len(kinds)]  # by turns
            started = time.monotonic()
            try:
                if kind == "kill":
                    self.harness.kill(peer)
                    self.stop.wait(self.down_seconds)
                    self.harness.restart(peer)
                else:
                    self.harness.cut(peer)
                    self.stop.wait(self.partition_seconds)
                    self.harness.heal(peer)
            except Exception as error:  # the soak must not go on without its faults, nor pass
                self.error = f"{kind} of peer {peer.index}: {error!r}"
                log(f"a fault could not be staged: {self.error}")
                return
            self.done.append({"kind": kind, "peer": peer.index, "seconds": round(time.monotonic() - started, 2)})


class Diverged(Exception):
    pass


def check(harness, load, deadline_seconds=180):
    """Bring every peer back, wait until all are ready and agree, and judge what they hold (from
    the clients' network)."""
    session = requests.Session()
    session.trust_env = False
    session.headers["Authorization"] = f"Bearer {harness.token}"
    for peer in harness.peers:
        if not harness.running(peer):
            harness.restart(peer)

    harness.wait_ready(timeout=deadline_seconds)
    must_hold = load.registered - load.removal_tried.keys()
    result = {}

    def held():
        ids_at = {}
        for peer in harness.peers:
            ids = set()
            for slug in range(SLUGS):
                answer = session.get(peer.url + "/registry-svc/instances", params={"slug": f"soak-{slug}"}, timeout=30)
                answer.raise_for_status()
                ids.update(r["id"] for r in answer.json().get("instances") or [])
            ids_at[peer.index] = ids
        result["missing"] = {i: len(must_hold - ids) for i, ids in ids_at.items()}
        result["resurrected"] = {i: len(load.removed & ids) for i, ids in ids_at.items()}
        return not any(result["missing"].values()) and not any(result["resurrected"].values())

    def one_digest():
        # Node heartbeats move the state every second: ask every peer at once, and compare the
        # digests of peers at the same index (equal there, or the replicas differ).
        with ThreadPoolExecutor(len(harness.peers), initializer=harness.enter_client_network) as pool:
            views = list(pool.map(lambda p: requests.get(p.url + "/registry-svc/cluster", timeout=30,
                                                         headers=session.headers).json()["self"], harness.peers))
        result["checkpointsVerified"] = {p.index: v["checkpoints"]["verified"] for p, v in zip(harness.peers, views)}
        by_index = collections.defaultdict(set)
        for view in views:
            by_index[view["stateDigest"]["index"]].add(view["stateDigest"]["sha256"])
        result["digests"] = max(len(hashes) for hashes in by_index.values())
        if result["digests"] > 1:
            raise Diverged(f"peers at one index hold different states: {dict(by_index)}")
        return len(by_index) == 1

    try:
        wait_until(held, deadline_seconds, "every peer to hold every acknowledged write", interval=1.0)
        wait_until(one_digest, deadline_seconds, "every peer to report one state digest at one index", interval=0.05)
    except (AssertionError, Diverged) as error:
        result["error"] = str(error)
    result["divergenceLines"] = {}
    for peer in harness.peers:
        with open(peer.log_path, encoding="utf-8", errors="replace") as source:
            lines = [line.strip() for line in source if any(mark in line for mark in DIVERGENCE_MARKS)]
        result["divergenceLines"][peer.index] = len(lines)
        if lines:
            result.setdefault("divergenceExamples", []).extend(lines[:3])
    result["acknowledgedRegistrations"], result["acknowledgedRemovals"] = len(load.registered), len(load.removed)
    result["checkedPresent"] = len(must_hold)
    return result


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def in_client_network(harness, work):
    """work() from a thread in the clients' network (the main thread stays where it is: the
    harness runs `ip` there)."""
    outcome = {}

    def run():
        harness.enter_client_network()
        try:
            outcome["value"] = work()
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--peers", type=int, default=3)
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--readers", type=int, default=2, help="consistent readers, and as many blocking readers")
    parser.add_argument("--window", type=int, default=2000, help="instances each writer keeps before removing")
    parser.add_argument("--fault-every", type=float, default=6.0)
    parser.add_argument("--down-seconds", type=float, default=1.5)
    parser.add_argument("--partition-seconds", type=float, default=4.0)
    parser.add_argument("--netns", action="store_true", help="peers in network namespaces (root): partitions too")
    parser.add_argument("--base-port", type=int, default=14337, help="first HTTP port without --netns")
    parser.add_argument("--serve-args", default=" ".join(SERVE_ARGS), help="flags for every `registry serve`")
    parser.add_argument("--dir", default=None, help="where the peers' data and logs go (default: a new temp dir)")
    parser.add_argument("--json-out", default=None)
    options = parser.parse_args(argv)
    directory = os.path.abspath(options.dir or tempfile.mkdtemp(prefix="registry-soak-"))
    harness = (NetnsHarness if options.netns else Harness)(directory, options.peers, options.base_port,
                                                           shlex.split(options.serve_args))
    signal.signal(signal.SIGTERM, _interrupt)
    document = {"settings": vars(options) | {"dir": directory}, "startedAt": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    ok = False
    try:
        harness.start()
        log(f"{options.peers} peers ready in {directory}; load and faults for {options.minutes:g} min")
        load, faults, rss = Load(harness, options.writers, options.window, options.readers), Faults(
            harness, options.fault_every, options.down_seconds, options.partition_seconds), RssSampler(harness)
        rss.thread.start()
        load.start()
        faults.thread.start()
        time.sleep(options.minutes * 60)
        faults.stop.set()
        faults.thread.join()
        load.finish()
        log(f"load stopped after {len(faults.done)} faults; checking every peer")
        document["check"] = in_client_network(harness, lambda: check(harness, load))
        rss.stop.set()
        rss.thread.join()
        document.update(faults=collections.Counter(f["kind"] for f in faults.done), faultList=faults.done,
                        outcomes={f"{op}: {cause}": n for (op, cause), n in sorted(load.outcomes.items())},
                        staleConsistentReads=load.stale_reads, rss=rss.report())
        checked = document["check"]
        document["faultError"] = faults.error
        ok = ("error" not in checked and not any(checked["divergenceLines"].values()) and not load.stale_reads
              and faults.error is None)
    except KeyboardInterrupt:
        log("interrupted: stopping every peer")
        document["error"] = "interrupted"
    except Exception as error:  # reported with whatever was measured; the peers are stopped below
        log(f"the soak broke: {error!r}")
        document["error"] = repr(error)
    finally:
        harness.close()
    document["passed"] = ok
    text = json.dumps(document, indent=2, default=str)
    if options.json_out:
        with open(options.json_out, "w", encoding="utf-8") as target:
            target.write(text + "\n")
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

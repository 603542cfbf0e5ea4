"""The benchmark's registry clusters (scripts/bench.py): three `registry serve` processes on
127.0.0.1, started and stopped by pid, and what the stages ask of them."""

import concurrent.futures
import os
import re
import threading
import time

import psutil
import requests

from api import tokens
from bench_support import HOST, PEER_ARGS, PROCESSES, StageError, free_port, rss_bytes
from api.local_clusters.loopback import LocalCluster, LocalPeer, tail


# -- registry clusters --------------------------------------------------------------------------------

class Registry:
    """A 3-peer registry cluster of real `registry serve` processes on free loopback ports."""

    def __init__(self, directory, name, extra_args=()):
        self.directory = os.path.join(directory, name)
        peers = [LocalPeer(i + 1, HOST, free_port(), free_port(), os.path.join(self.directory, f"peer-{i + 1}"))
                 for i in range(3)]
        self.local = LocalCluster(self.directory, peers, PEER_ARGS + list(extra_args))
        self.secret = self.local.prepare_secret()
        self.token = tokens.mint(tokens.signing_key(self.secret), "bench", ["admin"], 24 * 3600)
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {self.token}"
        self._local_sessions = threading.local()

    @property
    def peers(self):
        return self.local.peers

    def session(self):
        """A requests session for the calling thread (sessions are not thread-safe)."""
        session = getattr(self._local_sessions, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {self.token}"
            self._local_sessions.session = session
        return session

    def start(self, timeout=60.0):
        PROCESSES.add_cluster(self.local)
        try:
            self.local.start()
            self.local.wait_ready(timeout=timeout)
        except Exception as error:
            raise StageError(f"the registry cluster did not start: {error}\n{self.log_tails()}") from None
        return self

    def stop(self):
        PROCESSES.stop_cluster(self.local)

    def role_changes(self):
        """Every Raft role change the peers logged (elections during a stage are evidence)."""
        changes = []
        for p in self.peers:
            try:
                with open(p.log_path, encoding="utf-8", errors="replace") as source:
                    for line in source:
                        if "raft role" in line:
                            changes.append(f"peer {p.index}: {line.strip()[:160]}")
            except OSError:
                pass
        return sorted(changes, key=lambda line: line.split(": ", 1)[1])

    def log_tails(self, lines=15):
        return "\n".join(f"--- {p.log_path}\n{tail(p.log_path, lines)}" for p in self.peers)

    def leader(self, among=None, timeout=30.0):
        """The peer every asked peer names as leader (asking /registry-svc/cluster)."""
        among = self.peers if among is None else among
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for peer in among:
                try:
                    view = self.http.get(peer.url + "/registry-svc/cluster", timeout=5).json()
                except (requests.RequestException, ValueError):
                    continue
                raft = (view.get("leader") or {}).get("raft")
                found = next((p for p in among if p.raft == raft), None)
                if found is not None:
                    return found
            time.sleep(0.05)
        raise StageError(f"no leader among {[p.url for p in among]} within {timeout:.0f}s")

    def put(self, peer, body, timeout=15.0, attempts=5):
        for attempt in range(attempts):
            try:
                response = self.session().put(peer.url + "/registry-svc/instance", data=body, timeout=timeout,
                                              headers={"Content-Type": "application/json"})
                if response.status_code == 201:
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.05 * (attempt + 1))
        return False

    def put_many(self, peer, bodies, workers=16):
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            return sum(pool.map(lambda body: self.put(peer, body), bodies))

    def list_instances(self, peer, query="", timeout=120.0):
        """(status, body bytes, X-Registry-Index, seconds)."""
        started = time.perf_counter()
        response = self.session().get(peer.url + "/registry-svc/instances" + query, timeout=timeout)
        seconds = time.perf_counter() - started
        return response.status_code, response.content, int(response.headers.get("X-Registry-Index", -1)), seconds

    def state_index(self, peer):
        # A filtered read that matches nothing: its X-Registry-Index is the peer's applied state.
        return self.list_instances(peer, "?id=no-such-instance")[2]

    def rss(self):
        return {p.index: rss_bytes(p.pid) for p in self.peers}

    def rss_by_process(self):
        """Per peer: the Raft process's RSS and each of its HTTP workers' (by worker number, from
        the peer's cluster view), so that a copy of the state per process shows as such."""
        out = {}
        for p in self.peers:
            processes = {"raft": rss_bytes(p.pid)}
            try:
                view = self.session().get(p.url + "/registry-svc/cluster", timeout=30).json()
                for worker in view["self"].get("httpWorkers") or []:
                    processes[f"worker{worker['number']}"] = rss_bytes(worker["pid"]) if worker["running"] else None
            except (requests.RequestException, ValueError, KeyError):
                pass
            out[p.index] = processes
        return out

    def memory(self):
        """Per peer: RSS split into file-backed/shared pages (mapped files: libraries, the HTTP workers' answered board) and the rest."""
        out = {}
        for p in self.peers:
            try:
                info = psutil.Process(p.pid).memory_info()
                out[p.index] = {"rss": info.rss, "shared": info.shared, "anon": info.rss - info.shared}
            except psutil.Error:
                out[p.index] = None
        return out

    def latency_buckets(self, peer, endpoint):
        """The peer's own request-latency histogram for one endpoint ({le seconds: count}), from
        GET /metrics; None when the peer has no such metric (best effort: evidence, not a result)."""
        try:
            text = self.session().get(peer.url + "/metrics", timeout=10).text
        except requests.RequestException:
            return None
        buckets = {}
        pattern = re.compile(r'^registry_http_request_duration_seconds_bucket\{(.*)\} ([0-9.e+]+)$', re.M)
        for labels, value in pattern.findall(text):
            fields = dict(re.findall(r'(\w+)="([^"]*)"', labels))
            if fields.get("endpoint") == endpoint:
                buckets[fields.get("le")] = float(value)
        return buckets or None


def server_latency(before, after):
    """From two cumulative histogram scrapes: requests seen and the bucket bounds holding p50/p99."""
    if not after:
        return None
    before = before or {}  # no such series yet: nothing counted before
    delta = {le: after.get(le, 0) - before.get(le, 0) for le in after}
    total = delta.get("+Inf", 0)
    if total <= 0:
        return None
    bounds = sorted((float(le), count) for le, count in delta.items() if le != "+Inf")

    def bound(fraction):
        for le, count in bounds:
            if count >= fraction * total:
                return le * 1000
        return None
    return {"requests": int(total), "p50AtMostMs": bound(0.5), "p99AtMostMs": bound(0.99),
            "bucketsMs": {f"{float(le) * 1000:g}": int(c) for le, c in delta.items() if le != "+Inf"}}

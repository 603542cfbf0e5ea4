#!/usr/bin/env python3
"""Issue 8's benchmark: the registry measured side by side with its anchors, in one command.

It starts what it measures on 127.0.0.1 (3-peer registry clusters, a bare Flask + waitress
server, 3 raw PySyncObj processes, with --with-etcd a 3-member etcd 3.4), drives every HTTP
target with the same generator (wrk, one thread, Lua scripts in scripts/bench_lua/), stops
everything it started by pid (also on error, Ctrl-C or SIGTERM), and prints a Markdown table
and a JSON document (also written to --json-out).

Stages (--only picks some):
  registry  1000 instances seeded; reads at a follower (one-instance filter, 1,000-instance
            list; 1 and --connections connections); writes (distinct 300-byte records) at the
            leader and a follower with 1 and --connections connections
  failover  a cluster of its own: a write every 20 ms at a survivor while the leader is killed
            -9; --rounds rounds, the killed peer restarted between rounds (bench_failover.py)
  bare      bare Flask + waitress (16 threads, the registry's default): PUT parsing the same
            JSON body -> 201, and GETs answering the follower's exact list bytes
  raw       raw PySyncObj, 3 processes, the registry's settings and password: 300-byte commands
            one at a time (the engine's commit latency) and --raw-window at a time (commits/s);
            then, for context only, the same with PySyncObj's default append-entries batching
  etcd      (--with-etcd) 3 members: put and serializable range of the same bytes via /v3/kv
  scale     a fresh cluster with --instances instances over 1,000 slugs (prod/dev tags): RSS
            per instance, list latency at a follower; slug, slug+tag, slug+status and full-list
            reads at a follower with no writes and under --churn-rate re-registrations/s at the
            leader, and 500 blocking watchers on distinct slugs while one slug changes
            (scripts/bench_churn.py); full-cluster restart until every peer serves them all again

Registry peers run with their defaults except `--scan-interval 86400` (TCP scans of thousands
of made-up hosts would otherwise fire at random moments of the runs; bench_scan.py measures
scans); --peer-arg adds serve flags (e.g. --peer-arg=--no-access-log). Each wrk run reports
the CPU (in cores) of every server process, of wrk, and of everything else on the machine
("foreign"): other work on a shared 2-core box disturbs the numbers, and the table says so.
--profile-dir samples the target peer of each registry run with py-spy (summarise with
scripts/bench_profile.py).

    python scripts/bench.py [--duration 10] [--with-etcd] [--json-out FILE]   # ~15 min
    python scripts/bench.py --smoke          # ~40 s; exits non-zero if a stage breaks

Exit status: 0 when every stage ran, 1 when one broke (a server did not start, every request
of a run failed, ...), 130 on Ctrl-C. Nothing about speed is asserted.
"""

import argparse
import concurrent.futures
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import psutil
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import bench_churn  # noqa: E402
import bench_failover  # noqa: E402
from api import tokens  # noqa: E402
from cluster.local import LocalCluster, LocalPeer, tail  # noqa: E402

LUA_DIR = os.path.join(ROOT, "scripts", "bench_lua")
PUT_LUA = os.path.join(LUA_DIR, "put_instance.lua")
GET_LUA = os.path.join(LUA_DIR, "get.lua")
RECORD_BYTES = 300
FLEET_SLUGS = 1000  # the scale stage's instances are spread over this many slugs, as in put_instance.lua
HOST = "127.0.0.1"
STAGES = ("registry", "failover", "bare", "raw", "etcd", "scale")
PY_SPY = None  # set from --profile-dir: py-spy's path
# The registry's default HTTP thread count (PeerConfig.http_threads): the bare server gets as many.
BARE_THREADS = 16
# Peers of the benchmark clusters scan once a day: TCP scans of thousands of made-up hosts would
# otherwise run at random moments during the load runs (bench_scan.py measures scans).
PEER_ARGS = ["--scan-interval", "86400"]


class StageError(Exception):
    """A stage could not measure what it should (a server did not start, every request failed)."""


# -- processes we started: stopped by pid, whatever happens ----------------------------------------

class Processes:
    def __init__(self):
        self.clusters = []
        self.popens = []
        self.lock = threading.Lock()

    def add_cluster(self, local):
        with self.lock:
            self.clusters.append(local)
        return local

    def add(self, popen):
        with self.lock:
            self.popens.append(popen)
        return popen

    def stop_popen(self, popen, grace=10.0):
        if popen.poll() is None:
            try:
                popen.terminate()
                popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(timeout=grace)
            except ProcessLookupError:
                pass
        with self.lock:
            if popen in self.popens:
                self.popens.remove(popen)

    def stop_cluster(self, local):
        try:
            local.stop(only_started_here=True)
        finally:
            with self.lock:
                if local in self.clusters:
                    self.clusters.remove(local)

    def stop_all(self):
        for popen in list(self.popens):
            try:
                self.stop_popen(popen, grace=5.0)
            except Exception as error:  # keep stopping the others
                print(f"bench: stopping pid {popen.pid}: {error!r}", file=sys.stderr)
        for local in list(self.clusters):
            try:
                self.stop_cluster(local)
            except Exception as error:
                print(f"bench: stopping cluster {local.data_dir}: {error!r}", file=sys.stderr)


PROCESSES = Processes()


# -- small helpers ------------------------------------------------------------------------------------

def free_port():
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values, fraction):
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def record_body(prefix, tid, n, size=RECORD_BYTES, fleet=False):
    """The same bytes as record_body() in scripts/bench_lua/put_instance.lua (fleet: its "fleet"
    format, FLEET_SLUGS slugs tagged prod or dev)."""
    name = f"{prefix}-{tid}-{n}"
    slug, first_tag = (f"svc-{n % FLEET_SLUGS}", "prod" if n % 2 == 0 else "dev") if fleet else (f"bench-{prefix}",
                                                                                                  "bench")
    head = (f'{{"id":"i-{name}","url":"http://{name}.bench.internal:8080/api/v1/items",'
            f'"slug":"{slug}","tags":["{first_tag}","generated","tier-backend","zone-a"],'
            f'"deploymentId":"depl-{name}","nodeUrl":"http://node-a.bench.internal:11337","details":"')
    tail_ = '"}'
    return (head + "x" * max(0, size - len(head) - len(tail_)) + tail_).encode()


def cpu_seconds(pids):
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
        except psutil.Error:
            pass
    return total


def system_busy_seconds():
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def rss_bytes(pid):
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return None


def ensure_package(binary, package):
    """The path of `binary`, installing the Debian package when missing (as root)."""
    found = shutil.which(binary)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    log(f"{binary} is missing: apt-get install -y {package}")
    for update_first in (False, True):
        if update_first:
            subprocess.run(["apt-get", "update", "-qq"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=300, check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", package], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=600, check=False,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        found = shutil.which(binary)
        if found:
            return found
    return None


def tool_version(command):
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


# -- the load generator -------------------------------------------------------------------------------

class Wrk:
    """wrk, one thread, a Lua script; the result of a run as a dict (see bench_lua/*.lua)."""

    def __init__(self, binary, token):
        self.binary = binary
        self.token = token
        self.own_pids = {os.getpid()}

    def run(self, url, *, connections, duration, script, script_args=(), watch_pids=(), auth=True,
            label="", stop_file=None, profile=None):
        command = [self.binary, "-t1", f"-c{connections}", f"-d{max(1, int(round(duration)))}s", "--timeout", "10s",
                   "-s", script]
        if auth and self.token:
            command += ["-H", f"Authorization: Bearer {self.token}"]
        command += [url, "--", *[str(a) for a in script_args]]
        # {name: pid} (or pids, named by themselves): each one's CPU is reported under its name.
        if not isinstance(watch_pids, dict):
            watch_pids = {str(pid): pid for pid in watch_pids}
        names = {pid: name for name, pid in watch_pids.items() if pid}
        watch_pids = list(names)
        busy_before = system_busy_seconds()
        watched_before = {pid: cpu_seconds([pid]) for pid in watch_pids}
        own_before = cpu_seconds(self.own_pids)
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        load_before = os.getloadavg()[0]
        profiler = None
        if profile and PY_SPY:
            # py-spy samples the server process while wrk drives it (collapsed stacks, as text).
            profile_pid, profile_path = profile
            profiler = PROCESSES.add(subprocess.Popen(
                [PY_SPY, "record", "--pid", str(profile_pid), "--duration", str(max(1, int(round(duration)))),
                 "--rate", "100", "--format", "raw", "--nonblocking", "--output", profile_path],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        started = time.monotonic()
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as popen:
            PROCESSES.add(popen)
            try:
                if stop_file:
                    # The Lua script writes stop_file once its quota is sent; wrk itself would sleep
                    # out the whole duration, so SIGINT ends it (it still prints its summary).
                    while popen.poll() is None and not os.path.exists(stop_file):
                        if time.monotonic() - started > duration + 60:
                            break
                        time.sleep(0.1)
                    if popen.poll() is None:
                        time.sleep(0.5)  # the responses in flight
                        popen.send_signal(signal.SIGINT)
                stdout, stderr = popen.communicate(timeout=duration + 60)
            except subprocess.TimeoutExpired:
                popen.kill()
                stdout, stderr = popen.communicate()
            finally:
                PROCESSES.stop_popen(popen)
        out = subprocess.CompletedProcess(command, popen.returncode, stdout, stderr)
        wall = time.monotonic() - started
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        watched = {pid: cpu_seconds([pid]) - before for pid, before in watched_before.items()}
        own = cpu_seconds(self.own_pids) - own_before
        busy = system_busy_seconds() - busy_before
        load_after = os.getloadavg()[0]
        if profiler is not None:
            try:
                profiler.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
            PROCESSES.stop_popen(profiler)
        match = re.search(r"^WRKJSON (\{.*\})$", out.stdout, re.M)
        if not match:
            raise StageError(f"wrk {label} gave no result (exit {out.returncode}): {out.stderr.strip()[-500:]} "
                             f"{out.stdout.strip()[-500:]}")
        raw = json.loads(match.group(1))
        seconds = raw["durationUs"] / 1e6
        wrk_cpu = (children_after.ru_utime + children_after.ru_stime
                   - children_before.ru_utime - children_before.ru_stime)
        errors = raw["errors"]
        socket_errors = errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]
        result = {
            "label": label,
            "url": url,
            "connections": connections,
            "seconds": round(seconds, 3),
            "requests": raw["requests"],
            "ok": raw["ok"],
            "failed": raw["non2xx"] + socket_errors,
            "non2xx": raw["non2xx"],
            "statusCodes": raw["codes"],
            "socketErrors": errors,
            "requestsPerSecond": round(raw["ok"] / seconds, 1) if seconds > 0 else 0.0,
            "p50Ms": raw["latencyUs"]["p50"] / 1000,
            "p90Ms": raw["latencyUs"]["p90"] / 1000,
            "p99Ms": raw["latencyUs"]["p99"] / 1000,
            "maxMs": raw["latencyUs"]["max"] / 1000,
            "bytesPerResponse": round(raw["bytes"] / raw["requests"]) if raw["requests"] else 0,
            # CPU in cores (seconds of CPU per second of wall time) of each watched process, of
            # wrk, and of everything else on the machine (other test runs disturb the numbers).
            "cpuCores": {names[pid]: round(used / wall, 2) for pid, used in watched.items()},
            "wrkCpuCores": round(wrk_cpu / wall, 2),
            "foreignCpuCores": round(max(0.0, busy - sum(watched.values()) - wrk_cpu - own) / wall, 2),
            "loadAverage1m": [round(load_before, 2), round(load_after, 2)],
        }
        log(f"  {label}: {result['requestsPerSecond']:.0f} req/s, p50 {result['p50Ms']:.2f} ms, "
            f"p99 {result['p99Ms']:.2f} ms, failed {result['failed']} of {raw['requests']}"
            f"{' (' + raw['codes'] + ')' if raw['codes'] else ''}; foreign CPU {result['foreignCpuCores']}")
        if raw["ok"] == 0:
            raise StageError(f"every request of {label} failed ({raw['requests']} requests, "
                             f"codes {raw['codes'] or '-'}, socket errors {errors})")
        return result


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

    def memory(self):
        """Per peer: RSS split into file-backed/shared pages (the mmap'd Raft journal) and the rest."""
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


# -- the stages ----------------------------------------------------------------------------------------

class Bench:
    def __init__(self, args, workdir, wrk_binary):
        self.args = args
        self.workdir = workdir
        self.wrk_binary = wrk_binary
        self.results = {}
        self.errors = {}
        self.files = {}  # the follower's list answers, for the bare server and etcd

    def wrk(self, token):
        return Wrk(self.wrk_binary, token)

    def ensure_list_files(self):
        """The follower's list answers (saved by the registry stage), or the same shapes made up here."""
        if "list" in self.files:
            return
        records = [json.loads(record_body("list", 0, n)) for n in range(1, self.args.list_size + 1)]
        self.files["one"] = os.path.join(self.workdir, "one.json")
        self.files["list"] = os.path.join(self.workdir, "list.json")
        with open(self.files["one"], "wb") as f:
            f.write(json.dumps({"instances": records[:1]}, separators=(",", ":")).encode())
        with open(self.files["list"], "wb") as f:
            f.write(json.dumps({"instances": records}, separators=(",", ":")).encode())
        self.files["oneQuery"] = "?id=i-list-0-1"

    def profile_target(self, peer, name):
        if not self.args.profile_dir or not PY_SPY:
            return None
        return peer.pid, os.path.join(self.args.profile_dir, f"{name}.txt")

    # registry: reads and writes on one cluster ----------------------------------------------------

    def stage_failover(self):
        out = self.results.setdefault("failover", {})
        cluster = Registry(self.workdir, "failover", self.args.peer_arg).start()
        try:
            out.update(bench_failover.measure(cluster, self.args.rounds, record_body=record_body, log=log,
                                              stage_error=StageError))
            # The election timeouts the peers ran with (cluster/config.py RaftTimings).
            out["raftTimings"] = raft_timings()
        except StageError as error:
            raise StageError(f"{error}\n{cluster.log_tails()}") from None
        finally:
            cluster.stop()

    def stage_registry(self):
        a = self.args
        out = self.results.setdefault("registry", {})
        cluster = Registry(self.workdir, "registry", self.args.peer_arg).start()
        try:
            leader = cluster.leader()
            follower = next(p for p in cluster.peers if p is not leader)
            other = next(p for p in cluster.peers if p is not leader and p is not follower)
            pids = {"leader": leader.pid, "follower": follower.pid, "follower2": other.pid}
            out["peers"] = {"leader": leader.url, "follower": follower.url, "follower2": other.url}
            out["threadsPerPeer"] = psutil.Process(follower.pid).num_threads()
            wrk = self.wrk(cluster.token)

            log(f"registry: seeding {a.list_size} instances")
            seeded = cluster.put_many(leader, [record_body("list", 0, n) for n in range(1, a.list_size + 1)])
            if seeded != a.list_size:
                raise StageError(f"only {seeded} of {a.list_size} seed registrations succeeded")
            # The follower answers once it applied them all.
            index = cluster.state_index(leader)
            deadline = time.monotonic() + 30
            while cluster.state_index(follower) < index:
                if time.monotonic() > deadline:
                    raise StageError("the follower did not catch up with the seed registrations in 30 s")
                time.sleep(0.05)
            one_query = f"?id=i-list-0-{(a.list_size + 1) // 2}"
            status_one, one_body, _, _ = cluster.list_instances(follower, one_query)
            status_list, list_body, _, _ = cluster.list_instances(follower)
            if status_one != 200 or status_list != 200:
                raise StageError(f"reads at the follower answered {status_one} / {status_list}")
            listed = len(json.loads(list_body)["instances"])
            if listed != a.list_size or len(json.loads(one_body)["instances"]) != 1:
                raise StageError(f"the follower lists {listed} instances, expected {a.list_size}")
            self.files["one"] = os.path.join(self.workdir, "one.json")
            self.files["list"] = os.path.join(self.workdir, "list.json")
            with open(self.files["one"], "wb") as f:
                f.write(one_body)
            with open(self.files["list"], "wb") as f:
                f.write(list_body)
            out["listBytes"] = {"one": len(one_body), "list": len(list_body), "instances": listed}
            self.files["oneQuery"] = one_query
            self.files["fromRegistry"] = True

            reads = out.setdefault("reads", {})
            for key, query in (("one", one_query), ("list", "")):
                url = follower.url + "/registry-svc/instances" + query
                if a.warmup:
                    wrk.run(url, connections=a.connections, duration=a.warmup, script=GET_LUA, watch_pids=pids,
                            label="warm-up")
                for connections, name in ((a.connections, key), (1, f"{key}C1")):
                    histogram = cluster.latency_buckets(follower, "instances.list_instances")
                    reads[name] = wrk.run(url, connections=connections, duration=a.duration, script=GET_LUA,
                                          watch_pids=pids, label=f"registry read {key} at follower c{connections}",
                                          profile=self.profile_target(follower, f"read-{key}-follower-c{connections}"))
                    reads[name]["serverLatency"] = server_latency(
                        histogram, cluster.latency_buckets(follower, "instances.list_instances"))

            writes = out.setdefault("writes", {})
            for where, peer in (("leader", leader), ("follower", follower)):
                for connections in (1, a.connections):
                    key = f"{where}C{connections}"
                    url = peer.url + "/registry-svc/instance"
                    if a.warmup:
                        wrk.run(url, connections=connections, duration=a.warmup, script=PUT_LUA,
                                script_args=[f"warm{where[0]}{connections}"], watch_pids=pids, label="warm-up")
                    index_before = cluster.state_index(peer)
                    histogram = cluster.latency_buckets(peer, "instances.register_instance")
                    result = wrk.run(url, connections=connections, duration=a.duration, script=PUT_LUA,
                                     script_args=[f"w{where[0]}{connections}"], watch_pids=pids,
                                     label=f"registry write at {where} c{connections}",
                                     profile=self.profile_target(peer, f"write-{where}-c{connections}"))
                    # The peer's own view (its WSGI app, hot path or Flask): the rest of wrk's latency is
                    # waitress and queueing.
                    result["serverLatency"] = server_latency(
                        histogram, cluster.latency_buckets(peer, "instances.register_instance"))
                    entries = cluster.state_index(peer) - index_before
                    result["raftEntries"] = entries
                    result["commandsPerEntry"] = round(result["ok"] / entries, 1) if entries > 0 else None
                    writes[key] = result
            out["instancesAfterWrites"] = len(json.loads(cluster.list_instances(follower)[1])["instances"])
            out["roleChanges"] = cluster.role_changes()
        except StageError as error:
            raise StageError(f"{error}\n{cluster.log_tails()}") from None
        finally:
            cluster.stop()


    # bare Flask + waitress ---------------------------------------------------------------------------

    def stage_bare(self):
        a = self.args
        out = self.results.setdefault("bare", {})
        self.ensure_list_files()
        out["listBytes"] = {"one": os.path.getsize(self.files["one"]), "list": os.path.getsize(self.files["list"]),
                            "fromRegistry": self.files.get("fromRegistry", False)}
        port = free_port()
        log_path = os.path.join(self.workdir, "bare.log")
        with open(log_path, "ab") as log_file:
            popen = PROCESSES.add(subprocess.Popen(
                [sys.executable, os.path.join(ROOT, "scripts", "bench_bare_http.py"), "--port", str(port),
                 "--threads", str(BARE_THREADS), "--list-file", self.files["list"], "--one-file", self.files["one"]],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True))
        try:
            base = f"http://{HOST}:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    if requests.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if popen.poll() is not None or time.monotonic() > deadline:
                    raise StageError(f"the bare waitress server did not start:\n{tail(log_path)}")
                time.sleep(0.1)
            out["threads"] = BARE_THREADS
            wrk = self.wrk(tokens.mint(os.urandom(32), "bench", ["admin"], 3600))  # same header size, unchecked
            url = base + "/registry-svc/instance"
            writes = out.setdefault("writes", {})
            for connections in (1, a.connections):
                if a.warmup:
                    wrk.run(url, connections=connections, duration=a.warmup, script=PUT_LUA,
                            script_args=[f"warmbare{connections}"], watch_pids={"bare": popen.pid}, label="warm-up")
                writes[f"c{connections}"] = wrk.run(url, connections=connections, duration=a.duration,
                                                    script=PUT_LUA, script_args=[f"bare{connections}"],
                                                    watch_pids={"bare": popen.pid}, label=f"bare PUT c{connections}")
            reads = out.setdefault("reads", {})
            for key, query in (("one", self.files["oneQuery"]), ("list", "")):
                reads[key] = wrk.run(base + "/registry-svc/instances" + query, connections=a.connections,
                                     duration=a.duration, script=GET_LUA, watch_pids={"bare": popen.pid},
                                     label=f"bare GET {key} c{a.connections}")
                reads[f"{key}C1"] = wrk.run(base + "/registry-svc/instances" + query, connections=1,
                                            duration=a.duration, script=GET_LUA, watch_pids={"bare": popen.pid},
                                            label=f"bare GET {key} c1")
        finally:
            PROCESSES.stop_popen(popen)

    # raw PySyncObj -------------------------------------------------------------------------------------

    def stage_raw(self):
        a = self.args
        out = self.results.setdefault("raw", {})
        # The registry's settings: the anchor of issue 8's "same version and settings".
        single, batched = self.raw_cluster("raw", use_batch=False, single=a.raw_single)
        out["leaderWindow1"], out["leader"] = single, batched
        # For context only: PySyncObj's own default of batching append entries on the timer (the
        # registry turns it off for millisecond commits; the 17,000/s quoted in issue 8 had it on).
        _, out["leaderLibraryBatching"] = self.raw_cluster("raw-batching", use_batch=True, single=0)

    def raw_cluster(self, name, *, use_batch, single):
        a = self.args
        directory = os.path.join(self.workdir, name)
        os.makedirs(directory, exist_ok=True)
        secret_file = os.path.join(directory, "secret")
        with open(secret_file, "w", encoding="utf-8") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        os.chmod(secret_file, 0o600)
        addresses = [f"{HOST}:{free_port()}" for _ in range(3)]
        nodes = []
        what = "raw PySyncObj" + (" (append-entries batching on)" if use_batch else "")
        try:
            for i, address in enumerate(addresses):
                partners = ",".join(x for x in addresses if x != address)
                stderr = open(os.path.join(directory, f"node-{i + 1}.log"), "ab")
                popen = PROCESSES.add(subprocess.Popen(
                    [sys.executable, os.path.join(ROOT, "scripts", "bench_raw_pysyncobj.py"), "--self", address,
                     "--partners", partners, "--data-dir", os.path.join(directory, f"node-{i + 1}"),
                     "--secret-file", secret_file] + (["--append-entries-batch"] if use_batch else []),
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1,
                    start_new_session=True))
                stderr.close()
                nodes.append(popen)

            def ask(popen, line, timeout=30.0):
                popen.stdin.write(line + "\n")
                popen.stdin.flush()
                answer = [None]

                def read():
                    answer[0] = popen.stdout.readline()
                reader = threading.Thread(target=read, daemon=True)
                reader.start()
                reader.join(timeout)
                if not answer[0]:
                    raise StageError(f"{what} process {popen.pid} did not answer {line!r}:\n"
                                     f"{tail(os.path.join(directory, f'node-{nodes.index(popen) + 1}.log'))}")
                return json.loads(answer[0])

            deadline = time.monotonic() + 60
            leader = None
            while leader is None:
                statuses = [ask(n, "status") for n in nodes]
                leaders = [n for n, st in zip(nodes, statuses) if st["isLeader"]]
                if leaders and all(st["ready"] and st["leader"] for st in statuses):
                    leader = leaders[0]
                elif time.monotonic() > deadline:
                    raise StageError(f"{what} elected no leader in 60 s: {statuses}")
                else:
                    time.sleep(0.2)
            one_at_a_time = None
            if single:
                # One command at a time: the engine's own commit latency, a floor for a 1-connection write.
                one_at_a_time = ask(leader, f"load {single} 1 {RECORD_BYTES}", timeout=max(60.0, single / 20.0 + 30))
                log(f"  {what}, one command at a time: {one_at_a_time['commitsPerSecond']:.0f} commits/s, "
                    f"p50 {(one_at_a_time.get('latencyMs') or {}).get('p50', 0):.2f} ms")
                if one_at_a_time["succeeded"] == 0:
                    raise StageError(f"{what} committed nothing: {one_at_a_time}")
            deadline = time.monotonic() + 30
            while True:  # every process has applied what came before
                applied_before = [ask(n, "status")["applied"] for n in nodes]
                if len(set(applied_before)) == 1 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            pids = [n.pid for n in nodes]
            busy_before, own_before = system_busy_seconds(), cpu_seconds([os.getpid()])
            cpu_before, started = {p: cpu_seconds([p]) for p in pids}, time.monotonic()
            result = ask(leader, f"load {a.raw_commands} {a.raw_window} {RECORD_BYTES}",
                         timeout=max(60.0, a.raw_commands / 500.0 + 30))
            wall = time.monotonic() - started
            cpu = {p: cpu_seconds([p]) - cpu_before[p] for p in pids}
            result["cpuCores"] = {("leader" if p == leader.pid else f"follower-{p}"): round(c / wall, 2)
                                  for p, c in cpu.items()}
            result["foreignCpuCores"] = round(max(0.0, system_busy_seconds() - busy_before - sum(cpu.values())
                                                  - (cpu_seconds([os.getpid()]) - own_before)) / wall, 2)
            # Every process applies every committed command.
            deadline = time.monotonic() + 30
            while True:
                applied = [ask(n, "status")["applied"] - b for n, b in zip(nodes, applied_before)]
                if min(applied) >= result["succeeded"] or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            result["appliedPerProcess"] = applied
            result["leaderPid"] = leader.pid
            result["appendEntriesBatching"] = use_batch
            log(f"  {what}: {result['commitsPerSecond']:.0f} commits/s ({result['succeeded']} of "
                f"{result['submitted']}, window {a.raw_window}), applied per process {applied}; "
                f"foreign CPU {result['foreignCpuCores']}")
            if result["succeeded"] == 0:
                raise StageError(f"{what} committed nothing: {result}")
            if min(applied) < result["succeeded"]:
                raise StageError(f"{what}: a process applied only {min(applied)} of {result['succeeded']}")
            return one_at_a_time, result
        finally:
            for popen in nodes:
                try:
                    popen.stdin.write("quit\n")
                    popen.stdin.flush()
                except (OSError, ValueError):
                    pass
            for popen in nodes:
                try:
                    popen.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
                PROCESSES.stop_popen(popen)

    # etcd ------------------------------------------------------------------------------------------------

    def stage_etcd(self):
        import base64

        a = self.args
        out = self.results.setdefault("etcd", {})
        binary = ensure_package("etcd", "etcd-server")
        if binary is None:
            out["skipped"] = "etcd could not be installed (apt-get install -y etcd-server failed)"
            log("etcd: could not be installed; going on without it")
            return
        out["version"] = tool_version([binary, "--version"])
        directory = os.path.join(self.workdir, "etcd")
        members = [{"name": f"m{i + 1}", "client": free_port(), "peer": free_port()} for i in range(3)]
        initial = ",".join(f"{m['name']}=http://{HOST}:{m['peer']}" for m in members)
        popens = []
        try:
            for m in members:
                log_path = os.path.join(directory, f"{m['name']}.log")
                os.makedirs(directory, exist_ok=True)
                with open(log_path, "ab") as log_file:
                    popen = PROCESSES.add(subprocess.Popen(
                        [binary, "--name", m["name"], "--data-dir", os.path.join(directory, m["name"]),
                         "--listen-client-urls", f"http://{HOST}:{m['client']}",
                         "--advertise-client-urls", f"http://{HOST}:{m['client']}",
                         "--listen-peer-urls", f"http://{HOST}:{m['peer']}",
                         "--initial-advertise-peer-urls", f"http://{HOST}:{m['peer']}",
                         "--initial-cluster", initial, "--initial-cluster-token", "registry-bench",
                         "--initial-cluster-state", "new", "--logger", "zap", "--log-level", "warn"],
                        stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True))
                m["pid"] = popen.pid
                m["url"] = f"http://{HOST}:{m['client']}"
                m["log"] = log_path
                popens.append(popen)
            http = requests.Session()
            deadline = time.monotonic() + 60
            leader_id = None
            statuses = {}
            while True:
                try:
                    for m in members:
                        status = http.post(m["url"] + "/v3/maintenance/status", json={}, timeout=2).json()
                        statuses[m["name"]] = status
                        m["id"] = status["header"]["member_id"]
                    leaders = {s.get("leader") for s in statuses.values()}
                    if len(leaders) == 1 and None not in leaders and "0" not in leaders:
                        leader_id = leaders.pop()
                        break
                except (requests.RequestException, ValueError, KeyError):
                    pass
                if any(p.poll() is not None for p in popens) or time.monotonic() > deadline:
                    raise StageError("etcd did not form a cluster: " + " ".join(
                        f"\n--- {m['log']}\n{tail(m['log'])}" for m in members))
                time.sleep(0.2)
            self.ensure_list_files()
            leader = next(m for m in members if m["id"] == leader_id)
            follower = next(m for m in members if m is not leader)
            out["members"] = {"leader": leader["url"], "follower": follower["url"]}

            def b64(data):
                return base64.b64encode(data).decode()

            with open(self.files["one"], "rb") as f:
                one = f.read()
            with open(self.files["list"], "rb") as f:
                listing = f.read()
            for key, value in ((b"/bench/read/one", one), (b"/bench/read/list", listing)):
                response = http.post(leader["url"] + "/v3/kv/put", json={"key": b64(key), "value": b64(value)},
                                     timeout=10)
                if response.status_code != 200:
                    raise StageError(f"etcd put of {key!r} answered {response.status_code}: {response.text[:300]}")
            time.sleep(0.5)  # the follower applies them
            wrk = self.wrk(None)
            third = next(m for m in members if m is not leader and m is not follower)
            pids = {"leader": leader["pid"], "follower": follower["pid"], "follower2": third["pid"]}
            puts = out.setdefault("puts", {})
            for where, m in (("leader", leader), ("follower", follower)):
                for connections in (1, a.connections):
                    url = m["url"] + "/v3/kv/put"
                    if a.warmup:
                        wrk.run(url, connections=connections, duration=a.warmup, script=PUT_LUA,
                                script_args=[f"warm{where[0]}{connections}", 0, "etcd"], auth=False,
                                watch_pids=pids, label="warm-up")
                    puts[f"{where}C{connections}"] = wrk.run(
                        url, connections=connections, duration=a.duration, script=PUT_LUA,
                        script_args=[f"e{where[0]}{connections}", 0, "etcd"], watch_pids=pids, auth=False,
                        label=f"etcd put at {where} c{connections}")
            ranges = out.setdefault("ranges", {})
            for key, name in (("one", b"/bench/read/one"), ("list", b"/bench/read/list")):
                body = json.dumps({"key": b64(name), "serializable": True}, separators=(",", ":"))
                probe = http.post(follower["url"] + "/v3/kv/range", data=body, timeout=10).json()
                if base64.b64decode(probe["kvs"][0]["value"]) != (one if key == "one" else listing):
                    raise StageError(f"etcd range of {name!r} did not return the bytes put")
                ranges[key] = wrk.run(follower["url"] + "/v3/kv/range", connections=a.connections,
                                      duration=a.duration, script=GET_LUA, script_args=[body], watch_pids=pids,
                                      auth=False, label=f"etcd serializable range {key} at follower "
                                                        f"c{a.connections}")
        finally:
            for popen in popens:
                PROCESSES.stop_popen(popen)

    # scale -------------------------------------------------------------------------------------------------

    def stage_scale(self):
        a = self.args
        out = self.results.setdefault("scale", {"instances": a.instances})
        # Room for the churn measurement's 500 blocking watchers.
        cluster = Registry(self.workdir, "scale", ["--max-blocking-reads", str(bench_churn.WATCHERS + 100)]
                           + self.args.peer_arg).start()
        try:
            leader = cluster.leader()
            follower = next(p for p in cluster.peers if p is not leader)
            time.sleep(1.0)
            rss_before = cluster.rss()
            out["rssBeforeBytes"] = rss_before
            memory_before = cluster.memory()
            log(f"scale: registering {a.instances} instances at the leader ({a.connections} connections)")
            wrk = self.wrk(cluster.token)
            started = time.monotonic()
            stop_file = os.path.join(self.workdir, "scale-quota-sent")
            load = wrk.run(leader.url + "/registry-svc/instance", connections=a.connections,
                           duration=a.instances / 100 + 60, script=PUT_LUA,
                           script_args=["scale", a.instances, "fleet", stop_file], stop_file=stop_file,
                           watch_pids={"leader": leader.pid, "follower": follower.pid,
                                       "follower2": next(p for p in cluster.peers if p not in (leader, follower)).pid},
                           label=f"scale registration c{a.connections}")
            out["registration"] = load
            # Top up what the wrk run left out (failed requests, the requests in flight at its stop).
            status, body, _, _ = cluster.list_instances(follower, "?tag=generated")
            have = {r["id"] for r in json.loads(body)["instances"]} if status == 200 else set()
            missing = [n for n in range(1, a.instances + 1) if f"i-scale-0-{n}" not in have]
            if missing:
                log(f"scale: topping up {len(missing)} instances")
                cluster.put_many(leader, [record_body("scale", 0, n, fleet=True) for n in missing])
            out["registrationSeconds"] = round(time.monotonic() - started, 1)
            out["toppedUp"] = len(missing)
            # More than the first election's lines means a leader was lost under this load.
            out["roleChangesDuringRegistration"] = cluster.role_changes()
            index = cluster.state_index(leader)
            for peer in cluster.peers:
                deadline = time.monotonic() + 60
                while cluster.state_index(peer) < index:
                    if time.monotonic() > deadline:
                        raise StageError(f"{peer.url} did not catch up with the registrations")
                    time.sleep(0.1)
            counts = {}
            for peer in cluster.peers:
                status, body, _, _ = cluster.list_instances(peer, "?tag=generated")
                counts[peer.index] = len(json.loads(body)["instances"]) if status == 200 else None
            out["countsPerPeer"] = counts
            if any(c != a.instances for c in counts.values()):
                raise StageError(f"not every peer holds {a.instances} instances: {counts}")
            time.sleep(2.0)
            rss_after = cluster.rss()
            out["rssAfterBytes"] = rss_after
            per_peer = {i: (rss_after[i] - rss_before[i]) / a.instances for i in rss_after
                        if rss_after[i] is not None and rss_before[i] is not None}
            out["rssPerInstanceBytes"] = {str(i): round(v) for i, v in per_peer.items()}
            out["rssPerInstanceBytesMean"] = round(statistics.mean(per_peer.values()))
            out["rssPerInstanceBytesMax"] = round(max(per_peer.values()))
            # Of which file-backed (the Raft journal is mmap'd) and anonymous (heap: state, in-memory log).
            memory_after = cluster.memory()
            out["memoryBytes"] = {"before": memory_before, "after": memory_after}
            out["perInstanceSplitBytes"] = {
                str(i): {part: round((memory_after[i][part] - memory_before[i][part]) / a.instances)
                         for part in ("shared", "anon")}
                for i in memory_after if memory_after[i] and memory_before.get(i)}
            # Full-list latency at a follower (sequential GETs), and a one-instance filter at this size.
            full, one = [], []
            size = 0
            for _ in range(a.list_samples):
                status, body, _, seconds = cluster.list_instances(follower)
                if status != 200:
                    raise StageError(f"the full list at a follower answered {status}")
                full.append(seconds * 1000)
                size = len(body)
                status, _, _, seconds = cluster.list_instances(follower, f"?id=i-scale-0-{a.instances // 2}")
                one.append(seconds * 1000)
            out["fullListMs"] = {"median": round(statistics.median(full), 1), "max": round(max(full), 1),
                                 "samples": len(full), "bytes": size}
            out["oneInstanceFilterMs"] = {"median": round(statistics.median(one), 1), "max": round(max(one), 1)}
            log(f"  RSS per instance {out['rssPerInstanceBytes']} B; full list {out['fullListMs']['median']} ms "
                f"({size} bytes); one-instance filter {out['oneInstanceFilterMs']['median']} ms")
            out["churn"] = bench_churn.measure(
                cluster, leader, follower, wrk, instances=a.instances, duration=a.duration,
                connections=a.connections, churn_rate=a.churn_rate, get_script=GET_LUA,
                body_of=lambda n: record_body("scale", 0, n, fleet=True), log=log, fail=StageError)
            out["restart"] = self.full_restart(cluster, a.instances)
            log(f"  full-cluster restart: every peer serves all {a.instances} instances after "
                f"{out['restart']['servingSeconds']} s")
        except StageError as error:
            raise StageError(f"{error}\n{cluster.log_tails()}") from None
        finally:
            cluster.stop()

    def full_restart(self, cluster, instances):
        """Stop every peer (SIGTERM), start them all, and time until each serves every instance."""
        probe = f"?id=i-scale-0-{instances}"
        index = max(cluster.state_index(p) for p in cluster.peers)
        stop_started = time.monotonic()
        cluster.local.stop(only_started_here=True)
        stopped = time.monotonic() - stop_started
        started = time.monotonic()
        for peer in cluster.peers:
            cluster.local.start_peer(peer)
        waiting = {p.index: p for p in cluster.peers}
        ready_at = {}
        deadline = started + 300
        while waiting:
            for key, peer in list(waiting.items()):
                if peer.process.poll() is not None:
                    raise StageError(f"{peer.url} exited during the restart:\n{tail(peer.log_path)}")
                try:
                    if cluster.session().get(peer.url + "/readyz", timeout=2).status_code != 200:
                        continue
                    status, body, at_index, _ = cluster.list_instances(peer, probe, timeout=10)
                except requests.RequestException:
                    continue
                if status == 200 and at_index >= index and json.loads(body)["instances"]:
                    ready_at[key] = round(time.monotonic() - started, 2)
                    del waiting[key]
            if time.monotonic() > deadline:
                raise StageError(f"peers {sorted(waiting)} did not serve all instances within 300 s of a restart")
            time.sleep(0.05)
        serving = round(time.monotonic() - started, 2)
        counts = {}
        for peer in cluster.peers:
            status, body, _, _ = cluster.list_instances(peer, "?tag=generated")
            counts[peer.index] = len(json.loads(body)["instances"]) if status == 200 else None
        if any(c != instances for c in counts.values()):
            raise StageError(f"after the restart not every peer lists {instances} instances: {counts}")
        return {"stopSeconds": round(stopped, 2), "servingSeconds": serving, "perPeerSeconds": ready_at,
                "countsPerPeer": counts, "indexBefore": index,
                "dumpBytesPerPeer": {p.index: _size(os.path.join(p.data_dir, "raft.dump")) for p in cluster.peers},
                "journalBytesPerPeer": {p.index: _size(os.path.join(p.data_dir, "raft.journal"))
                                        for p in cluster.peers}}


def raft_timings():
    try:
        import dataclasses

        from cluster.config import RaftTimings
        return dataclasses.asdict(RaftTimings())
    except Exception as error:  # the peers' own module changed shape: report, do not fail
        return {"error": repr(error)}


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return None


# -- the report --------------------------------------------------------------------------------------------

def get(document, *path):
    for key in path:
        if not isinstance(document, dict) or key not in document:
            return None
        document = document[key]
    return document


def fmt(value, digits=0, unit=""):
    if value is None:
        return "–"
    if isinstance(value, float):
        text = f"{value:,.{digits}f}"
    else:
        text = f"{value:,}"
    return text + unit


def cpu_text(cores):
    """'L 0.85 · F 0.07 · F 0.06': leader first, then followers (the first follower is the target)."""
    if not cores:
        return ""
    short = {"leader": "L", "follower": "F", "follower2": "F", "bare": ""}
    parts = []
    for name, value in cores.items():
        label = short.get(name, "F" if name.startswith("follower") else name)
        parts.append(f"{label} {value:.2f}".strip())
    return " · ".join(parts)


def ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


def goals(results, connections):
    """(goal, measured, target, ratio text, met) rows for issue 8's Goals."""
    rows = []
    c = connections
    follower = get(results, "registry", "writes", f"followerC{c}")
    bare_put = get(results, "bare", "writes", f"c{c}")
    etcd_put = get(results, "etcd", "puts", f"followerC{c}")
    if follower and bare_put:
        r = ratio(follower["requestsPerSecond"], bare_put["requestsPerSecond"])
        rows.append((f"writes at a follower (c{c}) ≥ 0.7 × bare waitress JSON handler (c{c})",
                     f"{follower['requestsPerSecond']:,.0f} vs {bare_put['requestsPerSecond']:,.0f} req/s",
                     "≥ 0.70×", f"{r:.2f}×", r >= 0.7))
    if follower and etcd_put:
        r = ratio(follower["requestsPerSecond"], etcd_put["requestsPerSecond"])
        rows.append((f"writes at a follower (c{c}) ≥ 0.4 × etcd gateway put at a follower (c{c})",
                     f"{follower['requestsPerSecond']:,.0f} vs {etcd_put['requestsPerSecond']:,.0f} req/s",
                     "≥ 0.40×", f"{r:.2f}×", r >= 0.4))
    if follower:
        failed = sum(get(results, "registry", "writes", k, "failed") or 0
                     for k in ("leaderC1", f"leaderC{c}", "followerC1", f"followerC{c}"))
        rows.append(("0 failed write requests (all four write runs)", f"{failed}", "0", "", failed == 0))
    for where, limit in (("leader", 2.0), ("follower", 3.0)):
        run = get(results, "registry", "writes", f"{where}C1")
        if run:
            etcd_c1 = get(results, "etcd", "puts", f"{where}C1")
            extra = f" (etcd {etcd_c1['p50Ms']:.2f} ms)" if etcd_c1 else ""
            rows.append((f"write p50 with 1 connection at the {where} ≤ {limit:g} ms",
                         f"{run['p50Ms']:.2f} ms{extra}", f"≤ {limit:g} ms", f"{run['p50Ms'] / limit:.2f}× of limit",
                         run["p50Ms"] <= limit))
    for key, what in (("one", "one-instance filtered list"), ("list", "1,000-instance list")):
        mine = get(results, "registry", "reads", key)
        bare = get(results, "bare", "reads", key)
        if mine and bare:
            r = ratio(mine["requestsPerSecond"], bare["requestsPerSecond"])
            rows.append((f"reads at a follower, {what} (c{c}) ≥ 0.8 × bare waitress, same bytes",
                         f"{mine['requestsPerSecond']:,.0f} vs {bare['requestsPerSecond']:,.0f} req/s",
                         "≥ 0.80×", f"{r:.2f}×", r >= 0.8))
    raw = get(results, "raw", "leader")
    if raw and follower and follower.get("commandsPerEntry") is not None:
        r = ratio(follower["requestsPerSecond"], raw["commitsPerSecond"])
        rows.append((f"(context) writes at a follower (c{c}) vs raw PySyncObj, same settings, async",
                     f"{follower['requestsPerSecond']:,.0f} req/s vs {raw['commitsPerSecond']:,.0f} commits/s",
                     "–", f"{r:.2f}×", None))
    failover = get(results, "failover")
    if failover and "rounds" in failover:
        rows.append((f"failed writes from the client's view over {len(failover['rounds'])} failover rounds = 0",
                     f"{failover['failedWrites']:,}", "0", "", failover["failedWrites"] == 0))
        rows.append((f"failover gap, median of {len(failover['rounds'])} ≤ 2 s",
                     f"{failover['gapMsMedian']:,.0f} ms (max {failover['gapMsMax']:,.0f})", "≤ 2,000 ms",
                     f"{failover['gapMsMedian'] / 2000:.2f}× of limit", failover["gapMsMedian"] <= 2000))
    scale = results.get("scale") or {}
    if "rssPerInstanceBytesMax" in scale:
        worst = scale["rssPerInstanceBytesMax"]
        rows.append((f"RSS per instance at {scale['instances']:,} instances ≤ 2 KB (worst peer)",
                     f"{worst:,} B (per peer {', '.join(str(v) for v in scale['rssPerInstanceBytes'].values())})",
                     "≤ 2,048 B", f"{worst / 2048:.2f}× of limit", worst <= 2048))
    if get(scale, "restart", "servingSeconds") is not None:
        s = scale["restart"]["servingSeconds"]
        rows.append((f"full-cluster restart until every peer serves all {scale['instances']:,} ≤ 10 s",
                     f"{s:.1f} s", "≤ 10 s", f"{s / 10:.2f}× of limit", s <= 10))
    rows += bench_churn.goal_rows(scale)
    return rows


def markdown(document):
    results = document["results"]
    c = document["settings"]["connections"]
    lines = []
    s = document["settings"]
    lines.append(f"Benchmark of {document['startedAt']} on {document['machine']['cpus']} CPUs "
                 f"({'smoke' if s['smoke'] else 'full'}: {s['duration']} s wrk runs after {s['warmup']} s warm-ups, "
                 f"wrk 1 thread; {s['rounds']} failover rounds; {s['instances']:,} instances for scale; "
                 f"records of {RECORD_BYTES} bytes)")
    lines.append("")
    lines.append("| # | what | conns | req/s | p50 ms | p99 ms | failed | server CPU (cores) | vs anchor |")
    lines.append("|---|---|---|---|---|---|---|---|---|")

    def row(number, what, run, anchor=None, anchor_name=""):
        if not run:
            return
        cpu = cpu_text(run.get("cpuCores"))
        versus = ""
        if anchor:
            versus = f"{run['requestsPerSecond'] / anchor['requestsPerSecond']:.2f}× {anchor_name}"
        lines.append(f"| {number} | {what} | {run['connections']} | {run['requestsPerSecond']:,.0f} | "
                     f"{run['p50Ms']:.2f} | {run['p99Ms']:.2f} | {run['failed']} | {cpu} | {versus} |")

    bare_w = get(results, "bare", "writes") or {}
    etcd_p = get(results, "etcd", "puts") or {}
    for where in ("leader", "follower"):
        for conns in (1, c):
            run = get(results, "registry", "writes", f"{where}C{conns}")
            row(1, f"registry PUT instance at the {where}", run, bare_w.get(f"c{conns}"), "bare")
    raw_rows = (
        ("leader", lambda run: f"raw PySyncObj, async commands at the leader (window {run['window']})", "–", True),
        ("leaderLibraryBatching", lambda run: "raw PySyncObj, same but append-entries batching on "
                                              "(library default; context)", "–", True),
        ("leaderWindow1", lambda run: "raw PySyncObj, one command at a time at the leader", "1", False),
    )
    for key, label, conns_text, with_cpu in raw_rows:
        run = get(results, "raw", key)
        if run:
            lat = run.get("latencyMs") or {}
            lines.append(f"| 2 | {label(run)} | {conns_text} | {run['commitsPerSecond']:,.0f} commits/s | "
                         f"{fmt(lat.get('p50'), 2)} | {fmt(lat.get('p99'), 2)} | "
                         f"{run['failed'] + run.get('unsettled', 0)} | "
                         f"{cpu_text(run['cpuCores']) if with_cpu else ''} | |")
    for conns in (1, c):
        row(3, "bare waitress + Flask PUT (parse JSON, 201)", bare_w.get(f"c{conns}"))
    for key, what in (("one", "one-instance list"), ("list", "1,000-instance list")):
        for suffix in ("C1", ""):
            row(3, f"bare waitress + Flask GET, {what} bytes", get(results, "bare", "reads", key + suffix))
    for key, what in (("one", "one-instance filtered list"), ("list", "1,000-instance list")):
        for suffix in ("C1", ""):
            row(4, f"registry GET {what} at a follower", get(results, "registry", "reads", key + suffix),
                get(results, "bare", "reads", key + suffix), "bare")
    for where in ("leader", "follower"):
        for conns in (1, c):
            row(5, f"etcd put at the {where} (JSON gateway)", etcd_p.get(f"{where}C{conns}"))
    for key, what in (("one", "one-instance list bytes"), ("list", "1,000-instance list bytes")):
        row(5, f"etcd serializable range at a follower, {what}", get(results, "etcd", "ranges", key),
            get(results, "bare", "reads", key), "bare")
    if get(results, "etcd", "skipped"):
        lines.append(f"| 5 | etcd | | | | | | | skipped: {results['etcd']['skipped']} |")
    failover = get(results, "failover")
    if failover and "rounds" in failover:
        gaps = ", ".join(f"{r['gapMs']:.0f}" for r in failover["rounds"])
        lines.append(f"| 6 | failover: gap between acknowledged writes around a kill -9 of the leader "
                     f"(writes every 20 ms at a survivor) | | | median {failover['gapMsMedian']:,.0f} ms | "
                     f"max {failover['gapMsMax']:,.0f} ms | "
                     f"{sum(r['failed'] for r in failover['rounds'])} | | rounds: {gaps} ms |")
    scale = results.get("scale") or {}
    if "rssPerInstanceBytes" in scale:
        split = scale.get("perInstanceSplitBytes") or {}
        split_text = "; file-backed (mmap'd journal) / anonymous: " + ", ".join(
            f"{v['shared']:,} / {v['anon']:,} B" for v in split.values()) if split else ""
        lines.append(f"| 7 | scale: RSS per instance at {scale['instances']:,} (per peer) | | | | | | | "
                     f"{', '.join(f'{v:,} B' for v in scale['rssPerInstanceBytes'].values())}{split_text} |")
        reg = scale.get("registration") or {}
        if reg:
            lines.append(f"| 7 | scale: registration at the leader | {reg['connections']} | "
                         f"{reg['requestsPerSecond']:,.0f} | {reg['p50Ms']:.2f} | {reg['p99Ms']:.2f} | {reg['failed']} | "
                         f"{cpu_text(reg.get('cpuCores'))} | "
                         f"{scale['registrationSeconds']} s in all, {scale['toppedUp']} topped up |")
        lines.append(f"| 7 | scale: full list at a follower ({scale['fullListMs']['bytes']:,} bytes), "
                     f"{scale['fullListMs']['samples']} sequential GETs | 1 | | {scale['fullListMs']['median']:,.1f} | "
                     f"max {scale['fullListMs']['max']:,.1f} | | | |")
        lines.append(f"| 7 | scale: one-instance filtered list at {scale['instances']:,} | 1 | | "
                     f"{scale['oneInstanceFilterMs']['median']:,.1f} | max {scale['oneInstanceFilterMs']['max']:,.1f} "
                     f"| | | |")
    if get(scale, "restart"):
        r = scale["restart"]
        lines.append(f"| 7 | scale: full-cluster restart (SIGTERM all, start all) until every peer serves all | | | "
                     f"{r['servingSeconds']:.2f} s | | | | per peer {r['perPeerSeconds']} s |")
    lines.append("")
    rows = goals(results, c)
    if rows:
        lines.append("| goal (issue 8) | measured | target | ratio | met |")
        lines.append("|---|---|---|---|---|")
        for goal, measured, target, r, met in rows:
            verdict = "–" if met is None else ("yes" if met else "**no**")
            lines.append(f"| {goal} | {measured} | {target} | {r} | {verdict} |")
        lines.append("")
    server_side = []
    for name, path in (("write at the leader, c1", ("writes", "leaderC1")),
                       ("write at a follower, c1", ("writes", "followerC1")),
                       ("one-instance read, c1", ("reads", "oneC1"))):
        run = get(results, "registry", *path)
        seen = (run or {}).get("serverLatency")
        if run and seen and seen.get("p50AtMostMs") is not None:
            server_side.append(f"{name}: p50 {run['p50Ms']:.2f} ms at wrk, ≤ {seen['p50AtMostMs']:g} ms inside the peer's WSGI app")
    if server_side:
        lines.append("Latency the peers' own /metrics histogram saw (bucket bounds) against wrk's: "
                     + "; ".join(server_side) + ".")
    follower = get(results, "registry", "writes", f"followerC{c}")
    if follower and follower.get("commandsPerEntry") is not None:
        lines.append(f"Group commit packed {follower.get('commandsPerEntry')} writes per Raft entry during the "
                     f"follower c{c} write run.")
    for path, what in ((("registry", "roleChanges"), "the read and write runs"),
                       (("scale", "roleChangesDuringRegistration"), "the scale registration")):
        changes = get(results, *path)
        if changes is not None:
            elected = sum(1 for line in changes if "-> leader" in line)
            lines.append(f"Leaders elected during {what}: {elected} (1 is the cluster's first election; more means a "
                         f"leader was lost under load)." + (" " + "; ".join(changes[-4:]) if elected > 1 else ""))
    foreign = [run.get("foreignCpuCores", 0) for run in _runs(results)]
    if foreign:
        lines.append(f"CPU used by other processes during the wrk runs: up to {max(foreign):.2f} cores "
                     f"(median {statistics.median(foreign):.2f}); above ~0.2 the numbers were disturbed.")
    lines += bench_churn.markdown_lines(results.get("scale") or {})
    if document["errors"]:
        lines.append("")
        for stage, error in document["errors"].items():
            lines.append(f"**stage {stage} broke:** {error.splitlines()[0]}")
    return "\n".join(lines)


def _runs(node):
    if isinstance(node, dict):
        if "foreignCpuCores" in node and "requestsPerSecond" in node:
            yield node
        for value in node.values():
            yield from _runs(value)


# -- main -----------------------------------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--smoke", action="store_true", help="everything very briefly (CI); etcd skipped")
    parser.add_argument("--with-etcd", action="store_true", help="also measure etcd 3.4 (installs etcd-server)")
    parser.add_argument("--only", default=",".join(STAGES), help=f"comma-separated stages of {', '.join(STAGES)}")
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 10; smoke 1)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up before a run (default 2; smoke 0)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, help="failover rounds (default 10; smoke 1)")
    parser.add_argument("--instances", type=int, help="instances for the scale stage (default 100000; smoke 1000)")
    parser.add_argument("--list-size", type=int, default=1000, help="instances in the listed reads")
    parser.add_argument("--list-samples", type=int, help="full-list GETs at scale (default 5; smoke 2)")
    parser.add_argument("--churn-rate", type=float, default=20.0,
                        help="re-registrations per second at the leader while the scale stage reads under churn")
    parser.add_argument("--raw-commands", type=int, help="raw PySyncObj commands (default 50000; smoke 2000)")
    parser.add_argument("--raw-window", type=int, default=1000, help="raw PySyncObj commands outstanding")
    parser.add_argument("--raw-single", type=int, help="raw PySyncObj commands sent one at a time, for the "
                        "engine's commit latency (default 1000; smoke 50)")
    parser.add_argument("--json-out", help="where to write the JSON document (default: a file in the tmp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (data dirs, logs)")
    parser.add_argument("--peer-arg", action="append", default=[],
                        help="extra `registry serve` argument for every registry peer, repeatable "
                        "(e.g. --peer-arg=--no-access-log); default: the registry's defaults")
    parser.add_argument("--profile-dir", help="sample the target peer of each registry read and write run with "
                        "py-spy (must be on PATH or beside python) into DIR/<run>.txt (collapsed stacks)")
    args = parser.parse_args(argv)
    smoke = args.smoke
    defaults = {"duration": (10.0, 1.0), "warmup": (2.0, 0.0), "rounds": (10, 1), "instances": (100000, 1000),
                "list_samples": (5, 2), "raw_commands": (50000, 2000), "raw_single": (1000, 50)}
    for name, (full, brief) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, brief if smoke else full)
    args.stages = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.stages) - set(STAGES)
    if unknown:
        parser.error(f"unknown stages {sorted(unknown)}; choose from {', '.join(STAGES)}")
    if "etcd" in args.stages and (smoke or not args.with_etcd):
        args.stages.remove("etcd")
    if args.json_out is None:
        args.json_out = os.path.join(tempfile.gettempdir(),
                                     f"registry-bench-{time.strftime('%Y%m%d-%H%M%S')}{'-smoke' if smoke else ''}.json")
    return args


def git_revision():
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("+uncommitted changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)

    def terminate(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    # Explicitly, also SIGINT: a shell starting this in the background leaves SIGINT ignored.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, terminate)

    global PY_SPY
    if args.profile_dir:
        PY_SPY = shutil.which("py-spy") or shutil.which("py-spy", path=os.path.dirname(sys.executable))
        if PY_SPY is None:
            print("bench: --profile-dir needs py-spy (pip install py-spy)", file=sys.stderr)
            return 1
        os.makedirs(args.profile_dir, exist_ok=True)
    wrk_binary = ensure_package("wrk", "wrk")
    if wrk_binary is None:
        print("bench: wrk is missing and could not be installed (apt-get install -y wrk, as root)", file=sys.stderr)
        return 1
    from importlib.metadata import version

    def package_version(name):
        try:
            return version(name)
        except Exception:
            return None

    workdir = tempfile.mkdtemp(prefix="registry-bench-")
    document = {
        "startedAt": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadAverageAtStart": [round(x, 2) for x in os.getloadavg()]},
        "versions": {"registry": git_revision(), "pysyncobj": package_version("pysyncobj"),
                     "flask": package_version("flask"), "waitress": package_version("waitress"),
                     "wrk": tool_version([wrk_binary, "--version"])},
        "settings": {"smoke": args.smoke, "duration": args.duration, "warmup": args.warmup,
                     "connections": args.connections, "rounds": args.rounds, "instances": args.instances,
                     "listSize": args.list_size, "rawCommands": args.raw_commands, "rawWindow": args.raw_window,
                     "rawSingle": args.raw_single,
                     "stages": args.stages, "recordBytes": RECORD_BYTES, "peerArgs": PEER_ARGS + args.peer_arg,
                     "bareThreads": BARE_THREADS},
        "results": {},
        "errors": {},
    }
    bench = Bench(args, workdir, wrk_binary)
    bench.results = document["results"]
    interrupted = False
    started = time.monotonic()
    try:
        for stage in STAGES:
            if stage not in args.stages:
                continue
            log(f"stage {stage}")
            stage_started = time.monotonic()
            try:
                getattr(bench, f"stage_{stage}")()
            except StageError as error:
                document["errors"][stage] = f"{type(error).__name__}: {error}"
                log(f"stage {stage} broke: {error}")
            except Exception as error:  # a bug here or a changed server: report it, run the other stages
                document["errors"][stage] = f"{type(error).__name__}: {error}\n{traceback.format_exc()}"
                log(f"stage {stage} broke: {type(error).__name__}: {error}\n{traceback.format_exc()}")
            finally:
                document["results"].setdefault(stage, {})["stageSeconds"] = round(time.monotonic() - stage_started, 1)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: stopping everything started")
    finally:
        PROCESSES.stop_all()
        document["seconds"] = round(time.monotonic() - started, 1)
        document["machine"]["loadAverageAtEnd"] = [round(x, 2) for x in os.getloadavg()]
        if args.keep or document["errors"]:
            document["workdir"] = workdir
            log(f"working directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if interrupted:
        return 130
    table = markdown(document)
    document["markdown"] = table
    with open(args.json_out, "w", encoding="utf-8") as out:
        json.dump(document, out, indent=2)
    print(table)
    print()
    print(json.dumps(document))
    log(f"JSON written to {args.json_out}; {document['seconds']} s in all")
    return 1 if document["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())

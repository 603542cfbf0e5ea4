"""The benchmark's shared ground (scripts/bench.py): constants, the processes it started (stopped by
pid whatever happens), and small measuring helpers."""

import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import psutil


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LUA_DIR = os.path.join(ROOT, "scripts", "bench_lua")
PUT_LUA = os.path.join(LUA_DIR, "put_instance.lua")
GET_LUA = os.path.join(LUA_DIR, "get.lua")
RECORD_BYTES = 300
FLEET_SLUGS = 1000  # the scale stage's instances are spread over this many slugs, as in put_instance.lua
HOST = "127.0.0.1"
STAGES = ("registry", "workers", "failover", "bare", "raw", "etcd", "scale")
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
    """CPU time of the processes and of every process below them (a peer's HTTP workers), living or ended."""
    total = 0.0
    for pid in pids:
        try:
            process = psutil.Process(pid)
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
            for child in process.children(recursive=True):
                try:
                    times = child.cpu_times()
                    total += times.user + times.system
                except psutil.Error:
                    pass
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

def raft_timings():
    try:
        import dataclasses

        from cluster.config import RaftTimings
        return dataclasses.asdict(RaftTimings())
    except Exception as error:  # the peers' own module changed shape: report, do not fail
        return {"error": repr(error)}


def file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return None

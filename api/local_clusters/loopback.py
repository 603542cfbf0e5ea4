"""A cluster of registry peers on this machine: separate processes on 127.0.0.1.

`registry cluster up|down|status` and the cluster tests both use this module, so what the
tests exercise is what an operator runs. Each peer is a `registry serve` process with its own
data directory, log file and ports; `DIR/cluster.json` records them for scripts and the CLI.
"""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psutil

from cluster.identity import ConfigurationError, read_secret_file, write_private

CLUSTER_FILE = "cluster.json"
SECRET_FILE = "cluster.secret"
STOP_GRACE_SECONDS = 10.0


class LocalPeer:
    def __init__(self, index, host, http_port, raft_port, data_dir, pid=None):
        self.index = index
        self.host = host
        self.http_port = http_port
        self.raft_port = raft_port
        self.data_dir = data_dir
        self.pid = pid
        self.process = None  # set when started by this process

    @property
    def url(self):
        return f"http://{self.host}:{self.http_port}"

    @property
    def raft(self):
        return f"{self.host}:{self.raft_port}"

    @property
    def log_path(self):
        return os.path.join(self.data_dir, "registry.log")

    def as_json(self):
        return {"url": self.url, "raft": self.raft, "pid": self.pid, "dataDir": self.data_dir, "log": self.log_path}


class PeerProcesses:
    """Starting, watching and stopping peer processes by pid; shared by every cluster launcher
    (this module's, and the tests' one in network namespaces)."""

    def launch(self, peer, command, *, new_session):
        os.makedirs(peer.data_dir, mode=0o700, exist_ok=True)
        with open(peer.log_path, "ab") as log_file:
            peer.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file,
                                            stderr=subprocess.STDOUT, start_new_session=new_session,
                                            cwd=_project_root())
        peer.pid = peer.process.pid
        return peer

    def is_running(self, peer):
        if not peer.pid:
            return False
        if peer.process is not None:
            return peer.process.poll() is None
        try:
            process = psutil.Process(peer.pid)
            # A pid can be reused: only a `serve` of this peer's data directory is ours.
            cmdline = process.cmdline()
            return process.status() != psutil.STATUS_ZOMBIE and "serve" in cmdline and peer.data_dir in cmdline
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False

    def kill_peers(self, peers):
        """SIGKILL every given peer before reaping any, so a crash of several is one instant."""
        signalled = [peer for peer in peers if self.is_running(peer)]
        for peer in signalled:
            os.kill(peer.pid, signal.SIGKILL)
        for peer in signalled:
            self._reap(peer, STOP_GRACE_SECONDS)

    def stop_peers(self, peers):
        """SIGTERM to all at once, SIGKILL to any still running after the grace period."""
        signalled = [peer for peer in peers if self.is_running(peer)]
        for peer in peers:
            if peer not in signalled:
                self._reap(peer, 0)
        for peer in signalled:
            os.kill(peer.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for peer in signalled:
            if not self._reap(peer, max(0.0, deadline - time.monotonic())):
                os.kill(peer.pid, signal.SIGKILL)
                self._reap(peer, STOP_GRACE_SECONDS)

    def _reap(self, peer, timeout):
        deadline = time.monotonic() + timeout
        while True:
            if peer.process is not None:
                try:
                    peer.process.wait(timeout=max(0.0, deadline - time.monotonic()))
                    return True
                except subprocess.TimeoutExpired:
                    return False
            if not self.is_running(peer):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


class LocalCluster(PeerProcesses):
    def __init__(self, data_dir, peers, extra_args=(), admin_token=None):
        self.data_dir = os.path.abspath(data_dir)
        self.peers = peers
        self.extra_args = list(extra_args)
        self.admin_token = admin_token
        self.already_running = []  # peers start() found running and left alone

    @property
    def secret_path(self):
        return os.path.join(self.data_dir, SECRET_FILE)

    @property
    def cluster_file(self):
        return os.path.join(self.data_dir, CLUSTER_FILE)

    # -- describing -------------------------------------------------------------------------

    @classmethod
    def create(cls, data_dir, count, *, host="127.0.0.1", http_port, raft_port, extra_args=()):
        data_dir = os.path.abspath(data_dir)
        peers = [
            LocalPeer(i + 1, host, http_port + i, raft_port + i, os.path.join(data_dir, f"peer-{i + 1}"))
            for i in range(count)
        ]
        return cls(data_dir, peers, extra_args)

    @classmethod
    def load(cls, data_dir):
        data_dir = os.path.abspath(data_dir)
        path = os.path.join(data_dir, CLUSTER_FILE)
        try:
            with open(path, encoding="utf-8") as source:
                document = json.load(source)
        except FileNotFoundError:
            raise ConfigurationError(f"no cluster in {data_dir}: {path} does not exist (run `registry cluster up`)")
        except (OSError, ValueError) as error:
            raise ConfigurationError(f"cannot read {path}: {error}") from None
        peers = []
        for index, entry in enumerate(document.get("peers", []), start=1):
            host, _, raft_port = entry["raft"].rpartition(":")
            http_port = int(entry["url"].rsplit(":", 1)[1])
            peers.append(LocalPeer(index, host, http_port, int(raft_port), entry["dataDir"], entry.get("pid")))
        return cls(data_dir, peers, document.get("serveArgs", []), document.get("adminToken"))

    def save(self):
        document = {
            "peers": [peer.as_json() for peer in self.peers],
            "secretFile": self.secret_path,
            "serveArgs": self.extra_args,
            "adminToken": self.admin_token,
        }
        write_private(self.cluster_file, json.dumps(document, indent=2) + "\n")

    # -- starting and stopping --------------------------------------------------------------

    def prepare_secret(self):
        """The cluster secret, generated on first use and kept in DIR/cluster.secret (mode 0600)."""
        os.makedirs(self.data_dir, mode=0o700, exist_ok=True)
        if not os.path.exists(self.secret_path):
            write_private(self.secret_path, secrets.token_urlsafe(32) + "\n")
        return read_secret_file(self.secret_path)

    def start(self):
        """Start every peer that is not running and leave the running ones as they are (a peer
        killed in a running cluster comes back alone); `already_running` lists the others."""
        self.prepare_secret()
        self.already_running = [peer for peer in self.peers if self.is_running(peer)]
        down = [peer for peer in self.peers if peer not in self.already_running]
        for peer in down:
            for port in (peer.http_port, peer.raft_port):
                if not port_is_free(peer.host, port):
                    raise ConfigurationError(
                        f"port {port} on {peer.host} is in use by another program; stop it, or choose other "
                        f"ports for a new cluster with --http-port/--raft-port"
                    )
        for peer in down:
            self.start_peer(peer)
        self.save()
        return self

    def serve_command(self, peer):
        return serve_command(peer, self.peers, self.secret_path, self.extra_args)

    def start_joining_peer(self):
        """Start one more peer, on the next free ports, to join this running cluster (it does
        not campaign until the leader, told by `add-peer`, reaches it)."""
        self.prepare_secret()
        last = max(self.peers, key=lambda p: p.index)
        http_port = max(p.http_port for p in self.peers) + 1
        raft_port = max(p.raft_port for p in self.peers) + 1
        while not (port_is_free(last.host, http_port) and port_is_free(last.host, raft_port)):
            http_port, raft_port = http_port + 1, raft_port + 1
            if raft_port > 65535 or http_port > 65535:
                raise ConfigurationError("no free ports left above the cluster's for a new peer")
        index = last.index + 1
        # A removed peer's data directory stays (for inspection): a new peer never reuses one.
        while os.path.exists(os.path.join(self.data_dir, f"peer-{index}")):
            index += 1
        peer = LocalPeer(index, last.host, http_port, raft_port, os.path.join(self.data_dir, f"peer-{index}"))
        self.peers.append(peer)
        self.launch(peer, self.serve_command(peer) + ["--join"], new_session=True)
        try:
            self.wait_listening(peer)
        except ConfigurationError:
            self.stop_peers([peer])
            self.peers.remove(peer)
            raise
        return peer

    def wait_listening(self, peer, timeout=30.0):
        """Wait until the peer's Raft port takes connections (it must, before it is added)."""
        deadline = time.monotonic() + timeout
        while not port_answers(peer.host, peer.raft_port):
            if not self.is_running(peer):
                raise ConfigurationError(f"peer {peer.url} exited while starting; its log {peer.log_path} ends "
                                         f"with:\n{tail(peer.log_path)}")
            if time.monotonic() > deadline:
                raise ConfigurationError(f"peer {peer.url} did not listen on {peer.raft} within {timeout:.0f}s")
            time.sleep(0.05)

    def start_peer(self, peer):
        # Its own session: a terminal's Ctrl-C reaches `cluster up`, which stops peers in order.
        return self.launch(peer, self.serve_command(peer), new_session=True)

    def kill_peer(self, peer, sig=signal.SIGKILL):
        if self.is_running(peer):
            os.kill(peer.pid, sig)
        self._reap(peer, STOP_GRACE_SECONDS)

    def stop_peer(self, peer):
        self.stop_peers([peer])

    def stop(self, only_started_here=False):
        """Stop every peer (only those this process started, if asked)."""
        self.stop_peers([peer for peer in self.peers if peer.process is not None or not only_started_here])
        if os.path.exists(self.cluster_file):
            self.save()

    # -- observing ----------------------------------------------------------------------------

    def wait_ready(self, timeout=60.0, peers=None):
        """Wait until every given peer answers /readyz (a leader is known and it caught up)."""
        peers = self.peers if peers is None else peers
        deadline = time.monotonic() + timeout
        waiting = list(peers)
        while waiting:
            for peer in list(waiting):
                if peer.process is not None and peer.process.poll() is not None:
                    raise ConfigurationError(
                        f"peer {peer.url} exited with status {peer.process.returncode}; its log "
                        f"{peer.log_path} ends with:\n{tail(peer.log_path)}"
                    )
                status, _ = http_json(peer.url + "/readyz", timeout=1.0)
                if status == 200:
                    waiting.remove(peer)
            if waiting and time.monotonic() > deadline:
                raise ConfigurationError(
                    "peers not ready within %.0fs: %s" % (timeout, ", ".join(p.url for p in waiting))
                )
            if waiting:
                time.sleep(0.1)

    def status_rows(self):
        rows = []
        headers = {"Authorization": f"Bearer {self.admin_token}"} if self.admin_token else {}
        for peer in self.peers:
            status, view = http_json(peer.url + "/registry-svc/cluster", timeout=2.0, headers=headers)
            me = (view or {}).get("self") or {}
            leader = (view or {}).get("leader") or {}
            rows.append({
                "url": peer.url, "raft": peer.raft, "pid": peer.pid if self.is_running(peer) else None,
                "state": me.get("state") if status == 200 else "down",
                "leader": leader.get("raft"), "appliedIndex": me.get("appliedIndex"),
                "commitIndex": me.get("commitIndex"), "httpWorkers": me.get("httpWorkers") or [],
            })
        return rows


def serve_command(peer, peers, secret_path, extra_args=()):
    """`registry serve` for `peer` of a cluster of `peers` on this machine (each launcher may
    put its own prefix in front, such as `ip netns exec`)."""
    return [
        sys.executable, "-m", "api.cli", "serve",
        "--raft-address", peer.raft,
        "--raft-peers", ",".join(p.raft for p in peers),
        "--http-address", f"{peer.host}:{peer.http_port}",
        "--self-url", peer.url,
        "--data-dir", peer.data_dir,
        "--cluster-secret-file", secret_path,
        # Several peers share this machine's cores already: one process each, unless asked.
        *([] if any(arg.split("=")[0] == "--http-workers" for arg in extra_args) else ["--http-workers", "0"]),
        *extra_args,
    ]


def http_json(url, *, method="GET", body=None, timeout=2.0, headers=None):
    """(status, decoded JSON or None); status 0 when nothing answered."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return error.code, json.loads(raw) if raw else None
        except ValueError:
            return error.code, None
    except (urllib.error.URLError, OSError, ValueError):
        return 0, None


def port_is_free(host, port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers do: connections lingering in TIME_WAIT do not make a port busy.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def port_answers(host, port):
    try:
        socket.create_connection((host, port), timeout=1.0).close()
        return True
    except OSError:
        return False


def tail(path, lines=20):
    try:
        with open(path, "rb") as source:
            return b"".join(source.readlines()[-lines:]).decode("utf-8", "replace")
    except OSError:
        return "(no log)"


def _project_root():
    # The peers import `api`, `cluster` and `registry`: run them where those packages live.
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

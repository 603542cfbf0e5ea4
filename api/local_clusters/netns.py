"""A registry cluster in network namespaces (namespaces.py): its peers, started with
`ip netns exec`, stopped by pid, asked over HTTP from threads inside their namespaces.

The chaos env, `scripts/netns_cluster.py` and `scripts/soak.py --netns` use it.
"""

import json
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from cluster.identity import read_secret_file, write_private

from .. import tokens
from .loopback import LocalPeer, PeerProcesses, serve_command, tail  # noqa: F401  (tail: the chaos tests read peer logs with it)
from .namespaces import (  # noqa: F401  (the names callers of this module use with it)
    DEFAULT_SUBNET, HTTP_PORT, HUB_BRIDGE, RAFT_PORT, CommandFailed, NamespacedSession, NamespacesUnavailable,
    Topology, check_namespace_support, enter_namespace, ip,
)
from .waiting import wait_until


class NetnsPeer(LocalPeer):
    """A peer in namespace `namespace` at `address`, on the default ports (each has its own address)."""

    def __init__(self, index, namespace, address, data_dir, pid=None):
        super().__init__(index, address, HTTP_PORT, RAFT_PORT, data_dir, pid)
        self.namespace = namespace

    @property
    def address(self):
        return self.host

    @property
    def name(self):
        return f"p{self.index}"

    def __repr__(self):
        return f"<peer {self.name} {self.address} pid={self.pid}>"


class PeerHttp:
    """HTTP to one peer from threads inside its namespace, callable from any thread of the test."""

    def __init__(self, peer, token, threads=2):
        self.peer = peer
        self.token = token
        self._sessions = []
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"http-{peer.name}",
                                        initializer=enter_namespace, initargs=(peer.namespace,))

    def _session(self):
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = NamespacedSession(self.peer.namespace, self.token)
            self._sessions.append(session)
        return session

    def submit(self, method, path, *, json=None, params=None, timeout=5.0):
        def send():
            return self._session().request(method, self.peer.url + path, json=json, params=params, timeout=timeout)
        return self._pool.submit(send)

    def call(self, method, path, **kwargs):
        return self.submit(method, path, **kwargs).result()

    def close(self):
        self._pool.shutdown(wait=True, cancel_futures=True)
        for session in self._sessions:
            session.close()


class NetnsCluster(PeerProcesses):
    """Peers as `ip netns exec NS registry serve` processes, one namespace each."""

    def __init__(self, directory, topology, peers, serve_args=(), admin_token=None):
        self.directory = os.path.abspath(directory)
        self.topology = topology
        self.peers = peers
        self.serve_args = list(serve_args)
        self.admin_token = admin_token
        self._http = {}

    @classmethod
    def create(cls, directory, count=3, *, serve_args=(), subnet=DEFAULT_SUBNET, run_id=None):
        topology = Topology(run_id or secrets.token_hex(3), count, subnet)
        directory = os.path.abspath(directory)
        peers = [NetnsPeer(i, topology.namespace(i), topology.address(i), os.path.join(directory, f"peer-{i}"))
                 for i in range(1, count + 1)]
        return cls(directory, topology, peers, serve_args)

    @property
    def secret_path(self):
        return os.path.join(self.directory, "cluster.secret")

    @property
    def state_path(self):
        return os.path.join(self.directory, "netns-cluster.json")

    def prepare_secret(self):
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        if not os.path.exists(self.secret_path):
            write_private(self.secret_path, secrets.token_urlsafe(32) + "\n")
        return read_secret_file(self.secret_path)

    def mint_token(self, slug, roles, ttl_seconds):
        return tokens.mint(tokens.signing_key(self.prepare_secret()), slug, roles, ttl_seconds)

    # -- building and tearing down ----------------------------------------------------------

    def start(self, ready_timeout=60.0, detach=False, token_ttl_seconds=3600):
        self.admin_token = self.admin_token or self.mint_token("admin", ["admin"], token_ttl_seconds)
        self.topology.create()
        try:
            for peer in self.peers:
                self.start_peer(peer, detach=detach)
            self.save()
            self.wait_ready(timeout=ready_timeout)
        except BaseException:
            self.close()
            raise
        return self

    def serve_command(self, peer):
        # `ip netns exec` execs the command in place, so the pid is the peer's own.
        return ["ip", "netns", "exec", peer.namespace,
                *serve_command(peer, self.peers, self.secret_path, self.serve_args)]

    def start_peer(self, peer, detach=False):
        # `ip netns exec` execs the command in place, so the pid is the peer's own.
        return self.launch(peer, self.serve_command(peer), new_session=detach)

    def kill(self, *peers):
        self.kill_peers(peers)

    def stop(self):
        self.stop_peers(self.peers)

    def close(self):
        """Stop every peer, the test's own threads in the namespaces, then every namespace."""
        errors = []
        for step in (self.stop, self.close_http, self.topology.destroy):
            try:
                step()
            except Exception as error:  # every step runs: a failed stop must not leave namespaces behind
                errors.append(f"{step.__name__}: {error}")
        if errors:
            raise CommandFailed("cleaning up the namespace cluster: " + "; ".join(errors))

    def close_http(self):
        for http in self._http.values():
            http.close()
        self._http.clear()

    # -- a record for scripts/netns_cluster.py --------------------------------------------------

    def save(self):
        document = {
            "runId": self.topology.run_id,
            "subnet": self.topology.subnet,
            "namespaces": self.topology.namespaces,
            "peers": [{"index": p.index, "namespace": p.namespace, "url": p.url, "raft": p.raft, "pid": p.pid,
                       "dataDir": p.data_dir, "log": p.log_path} for p in self.peers],
            "serveArgs": self.serve_args,
            "adminToken": self.admin_token,
            "cut": sorted(self.topology.cut_peers),
        }
        write_private(self.state_path, json.dumps(document, indent=2) + "\n")

    @classmethod
    def load(cls, directory):
        with open(os.path.join(os.path.abspath(directory), "netns-cluster.json"), encoding="utf-8") as source:
            document = json.load(source)
        topology = Topology(document["runId"], len(document["peers"]), document["subnet"])
        topology.cut_peers = set(document.get("cut", []))
        peers = [NetnsPeer(p["index"], p["namespace"], p["url"].split("//")[1].rsplit(":", 1)[0], p["dataDir"],
                           p.get("pid")) for p in document["peers"]]
        return cls(directory, topology, peers, document.get("serveArgs", []), document.get("adminToken"))

    # -- talking to peers -------------------------------------------------------------------------

    def http(self, peer):
        if peer.index not in self._http:
            self._http[peer.index] = PeerHttp(peer, self.admin_token)
        return self._http[peer.index]

    def ask_all(self, peers, method, path, timeout=5.0):
        """{peer: response or the exception}, asked of every peer at once."""
        futures = {peer: self.http(peer).submit(method, path, timeout=timeout) for peer in peers}
        answers = {}
        for peer, future in futures.items():
            try:
                answers[peer] = future.result()
            except Exception as error:
                answers[peer] = error
        return answers

    def views(self, peers=None):
        """{peer: its /registry-svc/cluster view, or None when it did not answer 200}."""
        answers = self.ask_all(peers or self.peers, "GET", "/registry-svc/cluster", timeout=3.0)
        return {peer: (a.json() if isinstance(a, requests.Response) and a.status_code == 200 else None)
                for peer, a in answers.items()}

    def instance_urls(self, peers=None):
        """{peer: the set of instance urls it lists}; fails when a peer does not answer 200."""
        answers = self.ask_all(peers or self.peers, "GET", "/registry-svc/instances", timeout=20.0)
        listed = {}
        for peer, answer in answers.items():
            assert isinstance(answer, requests.Response), f"{peer.name} did not answer the listing: {answer}"
            assert answer.status_code == 200, (
                f"{peer.name} answered the listing with {answer.status_code}: {answer.text}")
            listed[peer] = {record["url"] for record in answer.json().get("instances") or []}
        return listed

    def leader(self, among=None, timeout=30.0):
        """The peer every running peer in `among` names as leader, and which says so itself."""
        among = [p for p in (among or self.peers) if self.is_running(p)]
        by_raft = {p.raft: p for p in among}

        def agreed():
            views = self.views(among)
            named = {p.name: (v["leader"] or {}).get("raft") if v else "no answer" for p, v in views.items()}
            assert len(set(named.values())) == 1, f"leaders named: {named}"
            leader = by_raft.get(next(iter(named.values())))
            assert leader is not None and views[leader]["self"]["isLeader"], f"leaders named: {named}"
            return leader

        return wait_until(agreed, timeout, f"{', '.join(p.name for p in among)} to agree on a leader among them")

    def wait_ready(self, peers=None, timeout=60.0, what="peers to be ready"):
        """Wait until every given peer answers /readyz: it knows a leader and applied its commits."""
        waiting = list(peers or self.peers)

        def all_ready():
            for peer in waiting:
                if peer.process is not None and peer.process.poll() is not None:
                    raise CommandFailed(f"peer {peer.name} exited with status {peer.process.returncode}; "
                                        f"its log {peer.log_path} ends with:\n{tail(peer.log_path)}")
            answers = self.ask_all(waiting, "GET", "/readyz", timeout=2.0)
            for peer, answer in answers.items():
                if isinstance(answer, requests.Response) and answer.status_code == 200:
                    waiting.remove(peer)
            assert not waiting, "not ready: " + ", ".join(
                f"{p.name} ({a.text.strip() if isinstance(a, requests.Response) else a})"
                for p, a in answers.items() if p in waiting)
            return True

        wait_until(all_ready, timeout, what, interval=0.1)

    def logs(self, lines=40):
        return "\n".join(f"--- {p.name} {p.log_path}\n{tail(p.log_path, lines)}" for p in self.peers)

"""Registry peers in their own network namespaces on this machine, with links that can be cut.

The topology of one run (RUN is a short random id, N counts peers from 1):

    rgtest-RUN-hub   bridge `rg-br` with address SUBNET.1/24; one port `rg-pN` per peer
    rgtest-RUN-pN    `lo` and `rg-link` (the other end of `rg-pN`), address SUBNET.(10+N)/24

Nothing is created in the root namespace: no interface, address or route, so the machine's
own network is never touched, and nothing in a namespace has a route anywhere but the test
subnet. The test process reaches a peer from threads that joined that peer's namespace
(setns), where the peer's address is local: it answers even while the peer's link is cut, so
a test can keep writing to a partitioned peer. From the hub a client reaches every peer whose
link is up, as a client on the network would (the soak's load runs there). A link is cut by setting the hub's end down: the
peer's end loses carrier and every packet to or from the other peers is dropped, as with a
pulled cable, while the peer keeps its address and its listening sockets.

`scripts/netns_cluster.py` builds the same thing by hand for debugging.
"""

import ctypes
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from cluster.identity import read_secret_file, write_private
from cluster.local import PeerProcesses, tail
from cluster.waiting import wait_until

from . import tokens

NAMESPACE_PREFIX = "rgtest"
DEFAULT_SUBNET = "10.213.7"
HTTP_PORT = 11337
RAFT_PORT = 21337
HUB_BRIDGE = "rg-br"
PEER_LINK = "rg-link"
_CLONE_NEWNET = 0x40000000


class NamespacesUnavailable(RuntimeError):
    """This machine (or this user) cannot build the topology; the message says what to do."""


class CommandFailed(RuntimeError):
    pass


def ip(*args, check=True):
    try:
        done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise NamespacesUnavailable("the `ip` command (iproute2) is not installed") from None
    if check and done.returncode != 0:
        raise CommandFailed(f"`ip {' '.join(args)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done


def check_namespace_support():
    """Raise NamespacesUnavailable unless network namespaces, veth pairs and bridges can be made."""
    if shutil.which("ip") is None:
        raise NamespacesUnavailable(
            "the chaos tests need the `ip` command (iproute2) to build network namespaces; install iproute2")
    if os.geteuid() != 0:
        raise NamespacesUnavailable(
            "the chaos tests build network namespaces, which needs root: run them as root "
            "(CI does), e.g. `sudo -E python -m pytest -m chaos tests/chaos`")
    probe = f"{NAMESPACE_PREFIX}-probe-{os.getpid()}-{secrets.token_hex(2)}"
    try:
        ip("netns", "add", probe)
        ip("-n", probe, "link", "add", "rg-probe-br", "type", "bridge")
        ip("-n", probe, "link", "add", "rg-probe-a", "type", "veth", "peer", "name", "rg-probe-b")
    except CommandFailed as error:
        raise NamespacesUnavailable(f"cannot build network namespaces, bridges and veth pairs here: {error}") from None
    finally:
        ip("netns", "del", probe, check=False)


def enter_namespace(namespace):
    """Move the calling thread (only it) into a network namespace: the sockets it opens live there."""
    libc = ctypes.CDLL(None, use_errno=True)
    descriptor = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        if libc.setns(descriptor, _CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into {namespace}: {os.strerror(errno)}")
    finally:
        os.close(descriptor)
    _thread_namespace.name = namespace


_thread_namespace = threading.local()


class NamespacedSession(requests.Session):
    """A requests session that only sends from a thread inside its namespace.

    From the root namespace a test address would be routed out of the machine's default
    route; refusing there keeps every request on the test subnet.
    """

    def __init__(self, namespace, token=None):
        super().__init__()
        self.namespace = namespace
        # Proxies from the environment would be unreachable from a namespace, and wrong anyway.
        self.trust_env = False
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def request(self, *args, **kwargs):
        current = getattr(_thread_namespace, "name", None)
        if current != self.namespace:
            raise RuntimeError(f"a request meant for namespace {self.namespace} was made from "
                               f"{current or 'the root namespace'}")
        return super().request(*args, **kwargs)


class Topology:
    """The namespaces, bridge and veth links of one run."""

    def __init__(self, run_id, count, subnet=DEFAULT_SUBNET):
        octets = subnet.split(".")
        # Only ever a private 10.x.y.0/24: these addresses must never mean a real machine.
        if len(octets) != 3 or octets[0] != "10" or not all(o.isdigit() and int(o) < 256 for o in octets):
            raise ValueError(f"the subnet must be the first three octets of a 10.x.y.0/24, got {subnet!r}")
        if not 1 <= count <= 200:
            raise ValueError(f"between 1 and 200 peers, not {count}")
        self.run_id = run_id
        self.count = count
        self.subnet = subnet
        self.cut_peers = set()

    @property
    def hub(self):
        return f"{NAMESPACE_PREFIX}-{self.run_id}-hub"

    @property
    def hub_address(self):
        return f"{self.subnet}.1"

    def namespace(self, index):
        return f"{NAMESPACE_PREFIX}-{self.run_id}-p{index}"

    def address(self, index):
        return f"{self.subnet}.{10 + index}"

    @property
    def namespaces(self):
        return [self.hub] + [self.namespace(i) for i in range(1, self.count + 1)]

    def hub_port(self, index):
        return f"rg-p{index}"

    def create(self):
        try:
            ip("netns", "add", self.hub)
            ip("-n", self.hub, "link", "add", HUB_BRIDGE, "type", "bridge")
            ip("-n", self.hub, "link", "set", HUB_BRIDGE, "up")
            # The hub has an address of its own: a load generator (or a person) in it reaches every
            # peer whose link is up, as a client on the network would.
            ip("-n", self.hub, "addr", "add", f"{self.hub_address}/24", "dev", HUB_BRIDGE)
            ip("-n", self.hub, "link", "set", "lo", "up")
            for index in range(1, self.count + 1):
                namespace = self.namespace(index)
                ip("netns", "add", namespace)
                # Both ends are made inside their namespaces: no name ever appears in the root one.
                ip("link", "add", PEER_LINK, "netns", namespace, "type", "veth",
                   "peer", "name", self.hub_port(index), "netns", self.hub)
                ip("-n", self.hub, "link", "set", self.hub_port(index), "master", HUB_BRIDGE)
                ip("-n", self.hub, "link", "set", self.hub_port(index), "up")
                ip("-n", namespace, "link", "set", "lo", "up")
                ip("-n", namespace, "addr", "add", f"{self.address(index)}/24", "dev", PEER_LINK)
                ip("-n", namespace, "link", "set", PEER_LINK, "up")
        except BaseException:
            self.destroy()
            raise
        return self

    def cut(self, index):
        ip("-n", self.hub, "link", "set", self.hub_port(index), "down")
        self.cut_peers.add(index)

    def heal(self, index):
        ip("-n", self.hub, "link", "set", self.hub_port(index), "up")
        self.cut_peers.discard(index)

    def existing(self):
        listed = ip("netns", "list", check=False).stdout.split("\n")
        present = {line.split()[0] for line in listed if line.strip()}
        return [name for name in self.namespaces if name in present]

    def destroy(self):
        """Delete every namespace of this run; the links and bridge inside go with them."""
        problems = []
        for namespace in self.existing():
            lingering = ip("netns", "pids", namespace, check=False).stdout.split()
            if lingering:
                problems.append(f"{namespace} still holds processes {', '.join(lingering)}")
            done = ip("netns", "del", namespace, check=False)
            if done.returncode != 0:
                problems.append(f"cannot delete {namespace}: {done.stderr.strip()}")
        if problems:
            raise CommandFailed("; ".join(problems))


class NetnsPeer:
    def __init__(self, index, namespace, address, data_dir, pid=None):
        self.index = index
        self.namespace = namespace
        self.address = address
        self.data_dir = data_dir
        self.pid = pid
        self.process = None  # set when started by this process

    @property
    def name(self):
        return f"p{self.index}"

    @property
    def url(self):
        return f"http://{self.address}:{HTTP_PORT}"

    @property
    def raft(self):
        return f"{self.address}:{RAFT_PORT}"

    @property
    def log_path(self):
        return os.path.join(self.data_dir, "registry.log")

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
        return [
            "ip", "netns", "exec", peer.namespace,
            sys.executable, "-m", "api.cli", "serve",
            "--raft-address", peer.raft,
            "--raft-peers", ",".join(p.raft for p in self.peers),
            "--http-address", f"{peer.address}:{HTTP_PORT}",
            "--self-url", peer.url,
            "--data-dir", peer.data_dir,
            "--cluster-secret-file", self.secret_path,
            *self.serve_args,
        ]

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

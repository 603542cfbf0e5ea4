"""Network namespaces on this machine for registry peers, one each, with links that can be cut.

The topology of one run (RUN is a short random id, N counts peers from 1):

    rgtest-RUN-hub   bridge `rg-br` with address SUBNET.1/24; one port `rg-pN` per peer
    rgtest-RUN-pN    `lo` and `rg-link` (the other end of `rg-pN`), address SUBNET.(10+N)/24

Nothing is created in the root namespace: no interface, address or route, so the machine's
own network is never touched, and nothing in a namespace has a route anywhere but the test
subnet. The test process reaches a peer from threads that joined that peer's namespace
(setns), where the peer's address is local: it answers even while the peer's link is cut, so
a test can keep writing to a partitioned peer. From the hub a client reaches every peer whose
link is up, as a client on the network would (the soak's load runs there). A link is cut by
setting the hub's end down: the peer's end loses carrier and every packet to or from the other
peers is dropped, as with a pulled cable, while the peer keeps its address and its listening
sockets.

`netns.py` runs a registry cluster in them; `scripts/netns_cluster.py` builds one by
hand for debugging.
"""

import ctypes
import os
import secrets
import shutil
import subprocess
import threading

import requests

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

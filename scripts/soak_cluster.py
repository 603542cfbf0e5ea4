"""The soak's cluster (scripts/soak.py): how it is started, hurt and watched.

`Harness` runs peers as processes on 127.0.0.1 (kill -9 faults); `NetnsHarness` runs them in
network namespaces (root), where a peer's link can also be cut and the load runs in the hub
namespace, as clients on the network would. Both start peers in the soak's own session, so
that a soak killed from outside takes its peers with it.
"""

import collections
import threading

import psutil

from api import tokens
from api.local_clusters import netns
from api.local_clusters.loopback import LocalCluster

# Checkpoints every 20 s: the corruption check runs throughout a soak.
SERVE_ARGS = ["--heartbeat", "1", "--scan-interval", "86400", "--checkpoint-interval", "20"]
TOKEN_TTL_SECONDS = 7 * 86400


class Harness:
    """The cluster under test and how to hurt it: the base runs processes on 127.0.0.1."""

    partitions = False

    def __init__(self, directory, peers, base_port, serve_args):
        self.cluster = LocalCluster.create(directory, peers, http_port=base_port, raft_port=base_port + 1000,
                                           extra_args=serve_args)

    @property
    def peers(self):
        return self.cluster.peers

    def start(self):
        self.cluster.prepare_secret()
        for peer in self.peers:
            self.restart(peer)
        self.token = tokens.mint(tokens.signing_key(self.cluster.prepare_secret()), "soak", ["admin"], TOKEN_TTL_SECONDS)
        self.wait_ready(timeout=90)

    def wait_ready(self, timeout):
        self.cluster.wait_ready(timeout=timeout)

    def restart(self, peer):
        # The soak's own session (see above).
        self.cluster.launch(peer, self.cluster.serve_command(peer), new_session=False)

    def kill(self, peer):
        self.cluster.kill_peers([peer])

    def running(self, peer):
        return self.cluster.is_running(peer)

    def enter_client_network(self):
        pass

    def close(self):
        self.cluster.stop()


class NetnsHarness(Harness):
    partitions = True

    def __init__(self, directory, peers, base_port, serve_args):
        self.cluster = netns.NetnsCluster.create(directory, peers, serve_args=serve_args)

    def start(self):
        self.cluster.start(ready_timeout=90)
        self.token = self.cluster.mint_token("soak", ["admin"], TOKEN_TTL_SECONDS)

    def restart(self, peer):
        self.cluster.start_peer(peer)

    def cut(self, peer):
        self.cluster.topology.cut(peer.index)

    def heal(self, peer):
        self.cluster.topology.heal(peer.index)

    def enter_client_network(self):
        netns.enter_namespace(self.cluster.topology.hub)

    def close(self):
        for index in list(self.cluster.topology.cut_peers):
            self.cluster.topology.heal(index)
        self.cluster.close()


class RssSampler:
    def __init__(self, harness, every=5.0):
        self.harness = harness
        self.every = every
        self.samples = collections.defaultdict(list)  # (peer index, pid) -> [rss bytes]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while True:
            for peer in self.harness.peers:
                try:
                    self.samples[(peer.index, peer.pid)].append(psutil.Process(peer.pid).memory_info().rss)
                except (psutil.Error, TypeError):
                    pass
            if self.stop.wait(self.every):
                return

    def report(self):
        return [{"peer": index, "pid": pid, "firstMB": round(values[0] / 2**20, 1), "lastMB": round(values[-1] / 2**20, 1),
                 "samples": len(values)} for (index, pid), values in sorted(self.samples.items()) if values]

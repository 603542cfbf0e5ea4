"""What a peer answers from its own copy of the state: every read the HTTP layer asks of it.

Mixed into cluster.peer.Peer (over its replica's state) and into anything else that holds a
copy of the state behind the same face (the tests' peer without Raft), so they read alike.
A class using it provides `state` (a cluster.watched_state.WatchedState), `config`, `url` and
`submit` (for the read barrier).
"""

import time

from registry import commands, health
from registry.permissions import SYSTEM


class PeerReads:
    # Each read returns (index, data): the Raft index of the last command the data reflects.

    def list_instances(self, filters, who=SYSTEM):
        """(the Raft index of the last change to what `filters` select, the matching records)."""
        _, listed = self.state.read(
            lambda state: (state.instances_changed_index(filters), state.list_instances(filters, who)))
        return listed

    def instance_counts_by_status(self):
        return self.state.read(lambda state: state.instance_counts_by_status())[1]

    def instance_counts_by_slug_and_status(self):
        return self.state.read(lambda state: state.instance_counts_by_slug_and_status())[1]

    def reads_at_once(self):
        """Whether a read now would wait for nothing before reading this copy of the state (one
        that a worker's replica must first catch up to may: cluster/worker_replica.py)."""
        return True

    def instances_version(self, filters):
        """What a list of `filters` depends on, read without waiting for the state lock: the
        last change to what they select, and to the permits (they decide who sees what)."""
        return self.state.peek(
            lambda state: (state.instances_changed_index(filters), state.kind_index[commands.PERMITS]))

    def wait_for_change(self, kind, after_index, timeout, slug=None):
        return self.state.wait_for_change(kind, after_index, timeout, slug=slug)

    def permits(self):
        return self.state.read(lambda state: [dict(p) for p in state.permits], commands.PERMITS)

    def snapshot(self):
        """A consistent copy of the whole registry, as of a read barrier: the backup format."""
        self.read_barrier()
        _, snapshot = self.state.read(lambda state: state.to_snapshot())
        # The command ids answer re-submissions to this cluster; a restored one starts afresh.
        del snapshot["sessions"]
        return snapshot

    def read_barrier(self):
        """Return once this replica holds every write committed before the call (linearizable
        reads): a no-op through the Raft log, so a leader cut off from the majority cannot pass."""
        self.submit(commands.read_barrier())

    def list_nodes(self, ids=None):
        return self.state.read(lambda state: state.list_nodes(ids), commands.NODES)

    def list_nodes_with_status(self, ids=None):
        """Node records with `status`: Stale once three heartbeat periods pass without a report."""
        index, records = self.list_nodes(ids)
        now = time.time_ns()
        period = self.config.heartbeat_seconds
        return index, [dict(r, status=health.node_status(r, now, period)) for r in records]

    def node(self, url):
        return self.state.read(lambda state: state.nodes.get(url), commands.NODES)

    def self_node(self):
        index, record = self.node(self.url)
        if record is not None:
            record = dict(record, status=health.node_status(record, time.time_ns(), self.config.heartbeat_seconds))
        return index, record

    def grants(self, caller):
        """What `caller` may do under the permits this peer's copy of the state holds now."""
        return self.state.read(lambda state: state.grants(caller))[1]

    def state_index(self):
        return self.state.index

"""A peer without Raft: the same face the HTTP layer and the peer's own workers (scanner,
renewals) use, over a real RegistryState that each submitted command is applied to at once,
as a single-peer cluster would. For unit tests of what sits on top of a peer; the cluster
tests run the real one."""

import itertools
import threading
import time

from cluster.config import PeerConfig
from cluster.peer import PeerStatus
from cluster.submit import WriteUnavailable
from registry import commands
from registry.permissions import SYSTEM
from registry.state import RegistryState


class FakePeer:
    def __init__(self, url="http://127.0.0.1:11337", raft="127.0.0.1:21337", members=None, **config):
        self.url = url
        self.raft = raft
        self.members = tuple(members or (raft,))
        self.config = PeerConfig(self_url=url, raft_address=raft, **config)
        self.state = RegistryState()
        self.submitted = []
        self.unavailable = None  # a WriteUnavailable every submit raises, when set
        self._lock = threading.Lock()
        self._indexes = itertools.count(2)

    def submit(self, command):
        if self.unavailable is not None:
            raise self.unavailable
        with self._lock:
            self.submitted.append(command)
            index = next(self._indexes)
            return dict(self.state.apply(command, index), index=index)

    def register_instance(self, fields, caller=SYSTEM):
        return self.submit(commands.register_instance(fields, f"inst_{len(self.submitted)}", time.time_ns(), caller))

    def report_node(self, record):
        return self.submit(commands.report_node(record, time.time_ns()))

    def list_instances(self, filters, who=SYSTEM):
        with self._lock:
            return self.state.instances_changed_index(filters), self.state.list_instances(filters, who)

    def list_nodes(self, ids=None):
        with self._lock:
            return self.state.kind_index[commands.NODES], self.state.list_nodes(ids)

    def known_leader(self):
        return self.raft

    def status(self):
        return PeerStatus(role="leader", term=1, commit_index=self.state.index, applied_index=self.state.index,
                          state_index=self.state.index, leader=self.raft, leader_commit_index=self.state.index,
                          last_contact_ms=0, leader_changes=1, members=self.members, caught_up=True, divergence=None,
                          checkpoints_verified=0, writes_resubmitted=0)


def unavailable(message="no leader is known; the write was not applied"):
    return WriteUnavailable(message, outcome_unknown=False)

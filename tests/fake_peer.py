"""A peer without Raft: the face the HTTP layer and the peer's own workers (scanner, renewals)
use (cluster/face.py), over a real state that each submitted command is applied to at once,
as a single-peer cluster would. Its reads and blocking waits are the real peer's own code
(cluster/peer_reads.py, cluster/watched_state.py); only Raft is missing. For tests of what sits
on top of a peer, in milliseconds; the cluster tests run the real one."""

import itertools
import threading
import time

from cluster import membership
from cluster.config import PeerConfig
from cluster.face import PeerStatus
from cluster.peer_reads import PeerReads
from cluster.scanner import InstanceScanner
from cluster.selfreport import SelfReport
from cluster.submit import WriteUnavailable
from cluster.watched_state import WatchedState
from registry import commands
from registry.errors import CONFLICT, NOT_FOUND
from registry.permissions import SYSTEM

CLUSTER_SECRET = "fake-peer-secret-for-tests-only"


class FakePeer(PeerReads):
    def __init__(self, url="http://127.0.0.1:11337", raft="127.0.0.1:21337", members=None, data_dir=None, **config):
        self.url = url
        self.raft = raft
        self.members = list(members or (raft,))
        self.config = PeerConfig(self_url=url, raft_address=raft, **config)
        self.cluster_secret = CLUSTER_SECRET
        self.node_id = "node_fake"
        self.state = WatchedState()
        self.submitted = []
        self.unavailable = None  # a WriteUnavailable every submit raises, when set
        # Registrations started on waitress' loop thread and answered from another, as an HTTP
        # worker's replica does (api/loop_answers.py); off, as in a one-process peer.
        self.writes_later = False
        self.later_delay = 0.0
        self.leader = raft  # None: no leader known
        self.corrupted = []
        self._lock = threading.Lock()
        self._indexes = itertools.count(2)
        self._data_dir = data_dir
        self._scanner = InstanceScanner(self, interval=3600, timeout=1)

    def start(self):
        return self

    def stop(self):
        pass

    # -- writes: applied at once, at the next index ----------------------------------------------

    def submit(self, command):
        if self.unavailable is not None:
            raise self.unavailable
        with self._lock:
            self.submitted.append(command)
            index = next(self._indexes)
            (result,), _ = self.state.apply([command], index)
            return dict(result, index=index)

    def register_instance(self, fields, caller=SYSTEM):
        return self.submit(commands.register_instance(fields, f"inst_{len(self.submitted)}", time.time_ns(), caller))

    def registers_later(self):
        return self.writes_later

    def register_instance_later(self, fields, caller, on_done):
        """As an HTTP worker's replica does: the outcome told from another thread (here one of its
        own, after `later_delay` seconds), never the caller's."""
        def commit():
            time.sleep(self.later_delay)
            try:
                result, error = self.register_instance(fields, caller), None
            except WriteUnavailable as failed:
                result, error = None, failed
            on_done(result, error)

        threading.Thread(target=commit, daemon=True).start()

    def remove_instance(self, instance_id, caller=SYSTEM):
        return self.submit(commands.remove_instance(instance_id, caller))

    def renew_instance(self, instance_id, fields, caller=SYSTEM):
        renewal = {"id": instance_id, **fields, "at": time.time_ns(), "caller": caller}
        result = self.submit(commands.renew_instances([renewal]))
        return dict((result.get("results") or [result])[0], index=result["index"])

    def remove_node(self, url, caller=SYSTEM):
        return self.submit(commands.remove_node(url, caller))

    def set_permits(self, permits, caller=SYSTEM):
        return self.submit(commands.set_permits(permits, caller))

    def report_node(self, record):
        return self.submit(commands.report_node(record, time.time_ns()))

    def report_self(self):
        if self._data_dir is None:
            return self.report_node({"id": self.node_id, "url": self.url})
        report = SelfReport(node_id=self.node_id, url=self.url, region=self.config.region,
                            availability_zone=self.config.availability_zone,
                            data_dir=self._data_dir)
        return self.report_node(report.record({"address": self.raft, "state": "leader"}))

    def add_member(self, address, timeout):
        if address in self.members:
            return {"added": False, "members": sorted(self.members), "message": f"{address} is already a member"}
        self.members.append(address)
        return {"added": True, "members": sorted(self.members), "message": f"{address} is a member"}

    def remove_member(self, address, timeout):
        if address not in self.members:
            raise membership.MembershipError(NOT_FOUND, f"{address} is not a member")
        if len(self.members) == 1:
            raise membership.MembershipError(CONFLICT, "the last member cannot be removed")
        self.members.remove(address)
        return {"removed": True, "members": sorted(self.members), "message": f"{address} is no longer a member"}

    def instance(self, instance_id):
        """The stored record of an instance, or None (tests look inside)."""
        return self.state.peek(lambda state: state.instances.get(instance_id))

    # -- status: a leader of its own cluster, heard from just now -----------------------------------

    def known_leader(self):
        return self.leader

    def last_contact_ms(self):
        return 0

    def status(self):
        index = self.state.index
        return PeerStatus(role="leader" if self.leader == self.raft else "follower", term=1, commit_index=index,
                          applied_index=index, state_index=index, leader=self.leader, leader_commit_index=index,
                          last_contact_ms=0, leader_changes=1, members=tuple(sorted(self.members)), caught_up=True,
                          divergence=None, checkpoints_verified=0, writes_resubmitted=0)

    def cluster_view(self):
        me = {"url": self.url, "raft": self.raft, "state": self.status().role, "isLeader": self.leader == self.raft,
              "lastContactMs": 0, "commitIndex": self.state.index, "appliedIndex": self.state.index,
              "reachable": True, "stateDigest": self.state.digest(), "divergence": None,
              "checkpoints": {"verified": 0, "lastVerifiedIndex": None}, "lastScan": None,
              "httpWorkers": []}
        members = sorted(self.members)
        return {"self": me, "leader": me if me["isLeader"] else None, "peers": [me], "members": members,
                "quorum": {"members": len(members), "reachable": 1, "needed": len(members) // 2 + 1}}

    def scan_progress(self):
        return self._scanner.cycles, self._scanner.last_cycle

    def http_workers(self):
        return []

    def corrupt_state_for_test(self):
        dropped = self.state.drop_first_instance_for_test()
        self.corrupted.append(dropped)
        return dropped


def unavailable(message="no leader is known; the write was not applied"):
    return WriteUnavailable(message, outcome_unknown=False)

"""A registry peer: its replica, its write path and its own node heartbeat, wired together
behind the face the HTTP layer sees (cluster/face.py); its reads are cluster/peer_reads.py."""

import logging
import threading
import time

import orjson

from registry import commands
from registry.permissions import SYSTEM

from . import cluster_view, identity, membership
from .checkpoints import CheckpointProposer
from .config import PeerConfig, RaftTimings
from .face import PeerStatus
from .http_workers import HttpWorkers
from .peer_reads import PeerReads
from .peer_writes import PeerWrites
from .renewals import RenewalCoalescer
from .replica import RegistryReplica
from .scanner import InstanceScanner
from .selfreport import SelfReport
from .submit import GroupCommitter, WriteUnavailable

log = logging.getLogger(__name__)

# Until the first node record is committed, retry at this pace rather than once a heartbeat.
FIRST_REPORT_RETRY_SECONDS = 0.5


class Peer(PeerReads, PeerWrites):
    def __init__(self, config: PeerConfig, timings: RaftTimings = RaftTimings(), *, gpu_probe=None,
                 worker_log_settings=None):
        self.config = config
        self.started_monotonic = time.monotonic()
        data_dir = identity.prepare_data_dir(config.data_dir)
        self.node_id = identity.node_id(data_dir, config.node_id)
        partners = membership.starting_partners(data_dir, config.raft_address, config.partners)
        password = identity.cluster_secret(data_dir, config.cluster_secret, multi_peer=bool(partners) or config.join)
        # Kept for deriving the API token key; never logged, reported or serialised.
        self.cluster_secret = password
        self.url = config.public_url
        self.replica = RegistryReplica(
            config.raft_address, partners, data_dir=data_dir, password=password, timings=timings,
            compact_after_entries=config.compact_after_entries, joining=config.join,
            sync_journal=config.sync_journal,
        )
        self.state = self.replica.state
        self.committer = GroupCommitter(self.replica, resubmittable=commands.resubmittable)
        self.self_report = SelfReport(
            node_id=self.node_id, url=self.url, region=config.region,
            availability_zone=config.availability_zone, data_dir=data_dir, gpu_probe=gpu_probe,
        )
        self.scanner = InstanceScanner(self, interval=config.scan_interval_seconds,
                                       timeout=config.scan_timeout_seconds)
        self.renewals = RenewalCoalescer(self, flush_seconds=config.renewal_flush_seconds)
        self.checkpoints = CheckpointProposer(self, config.checkpoint_interval_seconds)
        self.workers = None  # the HTTP worker processes (cluster/http_workers.py), when there are any
        if config.http_workers:
            self.workers = HttpWorkers(self, config.http_workers, log_settings=worker_log_settings or {})
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._heartbeat_loop, name="node-heartbeat", daemon=True)

    def start(self):
        self._heartbeat.start()
        self.scanner.start()
        self.renewals.start()
        self.checkpoints.start()
        if self.workers is not None:
            self.workers.start()
        return self

    def stop(self):
        self._stop.set()
        if self.workers is not None:
            self.workers.stop()
        self.checkpoints.stop()
        self.scanner.stop()
        self.renewals.stop()
        self.committer.stop()
        if self._heartbeat.is_alive():
            self._heartbeat.join(timeout=self.config.write_timeout_seconds + 1)
        self.replica.destroy()

    # -- writes -----------------------------------------------------------------------------

    def submit(self, command):
        """Commit a command through the leader; its apply result once applied on this peer.

        The committer re-submits it through a leader change until the deadline, so it carries
        an id that makes every attempt after an applied one answer as that one did."""
        command = self._identified(command)
        return self.committer.submit(
            command, self.config.write_timeout_seconds, encoded_size=len(orjson.dumps(command)),
        )

    def submit_async(self, command, on_done):
        """submit without a waiting thread: on_done(result, None) or on_done(None, WriteUnavailable)
        (GroupCommitter.submit_async); for the Raft process's HTTP workers (cluster/http_workers.py)."""
        command = self._identified(command)
        self.committer.submit_async(command, self.config.write_timeout_seconds, on_done,
                                    encoded_size=len(orjson.dumps(command)))

    def renew_instance(self, instance_id, fields, caller=SYSTEM):
        """An instance's heartbeat, coalesced with others' into one command (cluster/renewals.py)."""
        return self.renewals.renew(instance_id, fields, caller)

    def add_member(self, address, timeout):
        return membership.add_peer(self, address, timeout)

    def remove_member(self, address, timeout):
        return membership.remove_peer(self, address, timeout)

    def report_self(self):
        record = self.self_report.record(self.replica.raft_info())
        return self.submit(commands.report_node(record, time.time_ns()))

    def _heartbeat_loop(self):
        reported = False
        next_report = time.monotonic()
        while not self._stop.is_set():
            try:
                self.report_self()
                if not reported:
                    log.info("node %s reported as %s", self.node_id, self.url)
                reported = True
            except WriteUnavailable as error:
                log.info("node heartbeat not committed: %s", error.message)
            except Exception:
                log.exception("node heartbeat failed")
            # Fixed rate once reported, so a heartbeat period is a period whatever a commit took.
            next_report = (max(next_report + self.config.heartbeat_seconds, time.monotonic()) if reported
                           else time.monotonic() + FIRST_REPORT_RETRY_SECONDS)
            self._stop.wait(max(0.0, next_report - time.monotonic()))

    # -- status ---------------------------------------------------------------------------------

    def status(self):
        replica = self.replica
        owed_apply_ms = replica.owed_apply_ms()
        return PeerStatus(
            role=replica.raft_state, term=replica.raftCurrentTerm, commit_index=replica.raftCommitIndex,
            applied_index=replica.raftLastApplied, state_index=replica.state_index, leader=replica.leader_address,
            leader_commit_index=replica.leader_commit_index, last_contact_ms=self.last_contact_ms(),
            leader_changes=replica.transport.leader_changes, members=tuple(replica.members),
            caught_up=replica.is_caught_up(owed_apply_ms), divergence=replica.divergence,
            checkpoints_verified=replica.checkpoints.verified,
            writes_resubmitted=self.committer.resubmitted_batches, owed_apply_ms=owed_apply_ms)

    def scan_progress(self):
        """(scan cycles run here, the last cycle's ScanCycle or None)."""
        return self.scanner.cycles, self.scanner.last_cycle

    def http_workers(self):
        """This peer's HTTP worker processes as its Raft process knows them; [] when it has none."""
        return self.workers.describe() if self.workers is not None else []

    def known_leader(self):
        """The live leader's Raft address, or None: the one status field every answer carries."""
        return self.replica.leader_address

    def corrupt_state_for_test(self):
        """Only behind REGISTRY_TEST_HOOKS: drop one instance from this replica alone, bypassing
        Raft, so that a test can see the corruption check find it."""
        return self.replica.corrupt_state_for_test()

    def last_contact_ms(self):
        known = self.replica.last_contact_ms()
        if known is None:
            # Never heard from a leader since start: at least this long.
            return int((time.monotonic() - self.started_monotonic) * 1000)
        return known

    def cluster_view(self):
        """What this peer knows of every peer, for GET /registry-svc/cluster (cluster/cluster_view.py)."""
        return cluster_view.of(self)

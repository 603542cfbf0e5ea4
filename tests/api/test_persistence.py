"""A peer's data directory: full dumps written by our serializer bring the state back."""

import os

from cluster.config import PeerConfig
from cluster.peer import Peer
from registry.instances import validate_registration
from tests.ports import free_port
from tests.waiting import wait_until


def start_peer(data_dir, raft_port):
    config = PeerConfig(raft_address=f"127.0.0.1:{raft_port}", data_dir=str(data_dir), heartbeat_seconds=3600,
                        scan_interval_seconds=3600)
    peer = Peer(config).start()
    wait_until(lambda: peer.replica.leader_address is not None, 30, "the single peer to lead")
    return peer


def test_a_full_dump_and_the_journal_after_it_restore_the_state(tmp_path):
    raft_port = free_port()
    peer = start_peer(tmp_path, raft_port)
    try:
        for n in range(20):
            peer.register_instance(validate_registration({"url": f"http://dumped-{n}:80", "tags": ["d"]}))
        peer.replica.forceLogCompaction()
        dump = tmp_path / "raft.dump"
        wait_until(dump.exists, 10, "the full dump file")
        # Written after the dump: must come back from the journal.
        for n in range(5):
            peer.register_instance(validate_registration({"url": f"http://journal-{n}:80"}))
        records = peer.list_instances({})[1]
    finally:
        peer.stop()
    assert os.stat(dump).st_size > 0

    again = start_peer(tmp_path, raft_port)
    try:
        # (The restarted peer's own heartbeat adds a node record, so compare the instances.)
        wait_until(lambda: again.list_instances({})[1] == records, 15, "the restored instances")
        assert len(records) == 25
    finally:
        again.stop()

"""A damaged data directory: the peer refuses to start and says which file and what to do;
once the directory is moved aside it recovers everything from the leader."""

import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import write_many
from tests.ports import free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

SERVE_ARGS = ("--heartbeat", "1", "--scan-interval", "3600", "--compact-after-entries", "20")


def damage_journal(data_dir):
    path = os.path.join(data_dir, "raft.journal")
    with open(path, "r+b") as journal:
        journal.truncate(300)


def damage_dump(data_dir):
    with open(os.path.join(data_dir, "raft.dump"), "wb") as dump:
        dump.write(b"not a dump")


@pytest.mark.parametrize("damage, named", [(damage_journal, "raft.journal"), (damage_dump, "raft.dump")])
def test_a_damaged_peer_refuses_to_start_then_recovers_from_the_leader(start_cluster, damage, named):
    cluster = start_cluster(serve_args=SERVE_ARGS)
    victim = cluster.followers(cluster.leader())[0]
    acknowledged = write_many(cluster, cluster.peers, "before-damage", 40)
    assert len(acknowledged) == 40
    wait_until(lambda: os.path.exists(os.path.join(victim.data_dir, "raft.dump")), 20, "a dump on the victim")
    wait_until(lambda: acknowledged <= cluster.instance_urls(victim), 10, "the victim to hold every write")
    cluster.local.stop_peer(victim)
    damage(victim.data_dir)

    cluster.local.start_peer(victim)
    assert victim.process.wait(timeout=60) != 0
    with open(victim.log_path, encoding="utf-8") as log:
        text = log.read()
    assert os.path.join(victim.data_dir, named) in text and "Move this peer's data directory aside" in text
    assert "Traceback" not in text

    # What the message says to do works: aside, restart, and the leader fills it in again.
    shutil.move(victim.data_dir, victim.data_dir + ".damaged")
    more = write_many(cluster, [p for p in cluster.peers if p is not victim], "while-away", 10)
    cluster.local.start_peer(victim)
    cluster.local.wait_ready(timeout=60, peers=[victim])
    wait_until(lambda: (acknowledged | more) <= cluster.instance_urls(victim), 30, "recovery from the leader")


def test_a_data_dir_the_peer_cannot_write_is_refused_with_the_path(tmp_path):
    # Root writes through any mode bits, so the directory is made immutable instead.
    data_dir = tmp_path / "immutable"
    data_dir.mkdir()
    made = subprocess.run(["chattr", "+i", str(data_dir)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.fail(f"cannot make {data_dir} immutable to take away write access: {made.stderr.strip()}")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "api.cli", "serve", "--raft-address", f"127.0.0.1:{free_port()}",
             "--http-address", f"127.0.0.1:{free_port()}", "--data-dir", str(data_dir)],
            capture_output=True, text=True, timeout=60,
        )
    finally:
        subprocess.run(["chattr", "-i", str(data_dir)], check=True)
    assert result.returncode != 0
    assert str(data_dir) in result.stderr and "not writable" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr

"""Membership at runtime: grow 3 -> 5 and shrink 5 -> 3 under write load, losing nothing."""

import os
import threading
import time

import requests
from click.testing import CliRunner

from api.cli import main
from tests.cluster.conftest import SERVE_ARGS
from tests.waiting import wait_until

MAX_WRITES_PER_WRITER = 3000
MAX_WRITER_SECONDS = 150.0


class BoundedWriters:
    """Writers registering distinct urls at whichever peers are in `targets` (the test moves
    them off a peer before removing it); they keep every acknowledged url."""

    def __init__(self, cluster, targets, count=3, pace_seconds=0.02):
        self.cluster = cluster
        self.targets = list(targets)
        self.acknowledged = []
        self.failures = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n, pace_seconds), daemon=True)
                         for n in range(count)]

    def start(self):
        for thread in self._threads:
            thread.start()
        return self

    def retarget(self, targets):
        with self._lock:
            self.targets = list(targets)

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        assert not any(t.is_alive() for t in self._threads), "a writer did not stop"

    def acks(self):
        with self._lock:
            return len(self.acknowledged)

    def _run(self, number, pace_seconds):
        session = requests.Session()
        session.headers["Authorization"] = self.cluster.http.headers["Authorization"]
        deadline = time.monotonic() + MAX_WRITER_SECONDS
        for sequence in range(MAX_WRITES_PER_WRITER):
            if self._stop.is_set() or time.monotonic() > deadline:
                break
            with self._lock:
                target = self.targets[(number + sequence) % len(self.targets)]
            url = f"http://member-w{number}-{sequence}:80"
            try:
                response = session.put(target.url + "/registry-svc/instance", json={"url": url}, timeout=15)
            except requests.RequestException as error:
                with self._lock:
                    self.failures.append((target.url, type(error).__name__))
                continue
            with self._lock:
                if response.status_code == 201:
                    self.acknowledged.append(url)
                else:
                    self.failures.append((target.url, response.status_code, response.text[:200]))
            self._stop.wait(pace_seconds)
        session.close()


def logged(peer, text):
    with open(peer.log_path, encoding="utf-8") as log:
        return text in log.read()


def members_at(cluster, peer):
    response = cluster.get(peer, "/registry-svc/cluster/peers", timeout=5)
    assert response.status_code == 200, response.text
    return sorted(response.json()["members"])


def wait_for_members(cluster, peers, expected):
    expected = sorted(expected)

    def agreed():
        for peer in peers:
            found = members_at(cluster, peer)
            assert found == expected, f"{peer.url} has members {found}"
        return True

    wait_until(agreed, 30, f"every peer to list members {expected}")


def wait_for_more_acks(writers, count=20):
    before = writers.acks()
    wait_until(lambda: writers.acks() >= before + count, 30, f"{count} more acknowledged writes")


def test_grow_three_to_five_and_shrink_to_three_under_writes(start_cluster):
    # Frequent dumps: peers that join late get the state as a dump from the leader, members list included.
    cluster = start_cluster(3, SERVE_ARGS + ("--compact-after-entries", "100"))
    local = cluster.local
    original = list(cluster.peers)
    writers = BoundedWriters(cluster, original).start()
    try:
        wait_for_more_acks(writers)
        wait_until(lambda: all(logged(p, "wrote full dump") for p in original), 60, "a full dump at every peer")

        # Grow: each new peer starts with --join, then is added through a follower's API.
        added = []
        for _ in range(2):
            leader = cluster.leader()
            via = next(p for p in cluster.followers(leader) if p in original)
            newcomer = local.start_joining_peer()
            response = cluster.http.post(via.url + "/registry-svc/cluster/peers", json={"raft": newcomer.raft},
                                         timeout=30)
            assert response.status_code == 201, response.text
            local.wait_ready(timeout=60, peers=[newcomer])
            added.append(newcomer)
            wait_for_more_acks(writers)
        five = original + added
        for newcomer in added:
            assert logged(newcomer, "loaded full dump"), f"{newcomer.url} caught up without a dump"
        wait_for_members(cluster, five, [p.raft for p in five])
        writers.retarget(five)
        wait_for_more_acks(writers)

        # Shrink: remove the leader (it hands leadership off first) and one other original peer.
        leader = cluster.leader()
        leaving = [leader] + [p for p in original if p is not leader][:1]
        staying = [p for p in five if p not in leaving]
        writers.retarget(staying)
        for peer in leaving:
            response = cluster.http.delete(staying[0].url + "/registry-svc/cluster/peers/" + peer.raft, timeout=30)
            assert response.status_code == 200, response.text
            assert peer.raft not in response.json()["members"]
            local.stop_peer(peer)
            wait_for_more_acks(writers)
        wait_for_members(cluster, staying, [p.raft for p in staying])
        assert cluster.leader(among=staying) in staying
    finally:
        writers.stop()

    # Nothing the cluster acknowledged is missing at any remaining peer, and they agree.
    assert writers.acks() > 100
    for peer in staying:
        response = cluster.get(peer, "/registry-svc/instances?consistent", timeout=30)
        assert response.status_code == 200, response.text
        found = {record["url"] for record in response.json()["instances"]}
        missing = set(writers.acknowledged) - found
        assert not missing, f"{peer.url} lacks {len(missing)} acknowledged writes, e.g. {sorted(missing)[:3]}"

    def same_digest():
        digests = {tuple(sorted(cluster.view(p)["self"]["stateDigest"].items())) for p in staying}
        return len(digests) == 1

    wait_until(same_digest, 30, "the remaining peers to hold the same state")
    # Writes fail only while a change is under way, and say so (503), never vanish silently.
    for failure in writers.failures:
        assert failure[1] in (503, "ConnectionError", "ReadTimeout"), failure

    # A restart keeps the new membership, though its --raft-peers still names all five.
    restarted = staying[0]
    local.stop_peer(restarted)
    local.start_peer(restarted)
    local.wait_ready(timeout=60, peers=[restarted])
    assert members_at(cluster, restarted) == sorted(p.raft for p in staying)


def test_adding_a_peer_through_the_command_line_and_removing_it(start_cluster):
    cluster = start_cluster(3)
    local = cluster.local
    local.save()
    runner = CliRunner()
    result = runner.invoke(main, ["cluster", "add-peer", "--data-dir", local.data_dir])
    assert result.exit_code == 0, result.output
    assert "caught up with the leader" in result.output
    local_after = type(local).load(local.data_dir)
    assert len(local_after.peers) == 4
    newcomer = local_after.peers[-1]
    leftovers = []
    try:
        wait_for_members(cluster, cluster.peers, [p.raft for p in local_after.peers])
        result = runner.invoke(main, ["cluster", "remove-peer", newcomer.raft, "--data-dir", local.data_dir])
        assert result.exit_code == 0, result.output
        assert f"stopped {newcomer.url}" in result.output
        assert not local_after.is_running(newcomer)
        wait_for_members(cluster, cluster.peers, [p.raft for p in cluster.peers])
        assert [p.raft for p in type(local).load(local.data_dir).peers] == [p.raft for p in cluster.peers]
        # Adding again never reuses the removed peer's data directory, which stays for inspection.
        result = runner.invoke(main, ["cluster", "add-peer", "--data-dir", local.data_dir])
        assert result.exit_code == 0, result.output
        again = type(local).load(local.data_dir).peers[-1]
        leftovers.append(again)
        assert again.data_dir != newcomer.data_dir and os.path.isdir(newcomer.data_dir)
        wait_for_members(cluster, cluster.peers, [p.raft for p in cluster.peers] + [again.raft])
    finally:
        local_after.stop_peers([newcomer, *leftovers])

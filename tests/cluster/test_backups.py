"""Backups: `registry snapshot save` from a live cluster, a new cluster restored from it."""

import json
import os
import subprocess
import sys

import pytest
import requests

from registry.permissions import default_permits
from tests.ports import free_port_run
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster


def registry(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "api.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_a_backup_restores_into_a_fresh_cluster_with_the_same_records(start_cluster, tmp_path):
    source = start_cluster()
    peer = source.peers[1]
    for n in range(25):
        assert source.put_instance(source.peers[n % 3], {"url": f"http://backed-up-{n}:1", "tags": ["b"],
                                                         "slug": f"svc-{n % 4}"}).status_code == 201
    custom = default_permits() + [{"slug": "svc-1", "permissions": ["registry-svc:node:delete"],
                                   "allInstances": False}]
    assert source.http.put(f"{peer.url}/registry-svc/permits", json={"permits": custom}, timeout=15).status_code == 200

    user = requests.get(f"{peer.url}/registry-svc/snapshot", timeout=15,
                        headers={"Authorization": f"Bearer {source.token('svc-1', 'user')}"})
    assert user.status_code == 403
    backup = tmp_path / "backup.json"
    saved = registry("snapshot", "save", str(backup), "--url", peer.url, "--token", source.local.admin_token)
    assert saved.returncode == 0, saved.stderr
    assert os.stat(backup).st_mode & 0o777 == 0o600
    snapshot = json.loads(backup.read_text())
    expected = [r for r in source.get(peer, "/registry-svc/instances?consistent").json()["instances"]]
    assert sorted(r["url"] for r in snapshot["instances"]) == sorted(r["url"] for r in expected)

    target = tmp_path / "restored"
    up = registry("cluster", "up", "--detach", "--data-dir", str(target), "--http-port", str(free_port_run(3)),
                  "--raft-port", str(free_port_run(3)), "--restore", str(backup), "--", "--heartbeat", "1",
                  "--scan-interval", "3600")
    try:
        assert up.returncode == 0, up.stderr
        document = json.loads((target / "cluster.json").read_text())
        admin = {"Authorization": f"Bearer {document['adminToken']}"}
        for restored_peer in document["peers"]:
            def same_records():
                answer = requests.get(restored_peer["url"] + "/registry-svc/instances", headers=admin, timeout=5)
                return answer.json()["instances"] == expected
            wait_until(same_records, 20, f"{restored_peer['url']} to serve the backup's instances")
            permits = requests.get(restored_peer["url"] + "/registry-svc/permits", headers=admin, timeout=5).json()
            assert permits["permits"] == custom
        # The restored cluster takes writes and replicates them.
        first, last = document["peers"][0]["url"], document["peers"][2]["url"]
        assert requests.put(first + "/registry-svc/instance", json={"url": "http://after-restore:1"}, headers=admin,
                            timeout=15).status_code == 201
        wait_until(lambda: "http://after-restore:1" in [r["url"] for r in requests.get(
            last + "/registry-svc/instances", headers=admin, timeout=5).json()["instances"]], 10, "replication")
    finally:
        registry("cluster", "down", "--data-dir", str(target))

    refused = registry("snapshot", "restore", str(backup), "--data-dir", document["peers"][0]["dataDir"])
    assert refused.returncode != 0 and "already holds a replica" in refused.stderr
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{}")
    assert "is not a registry backup" in registry("snapshot", "restore", str(garbage), "--data-dir",
                                                   str(tmp_path / "empty")).stderr

"""A one-minute run of scripts/soak.py in network namespaces: kills and partitions under a mixed
load, then every acknowledged write at every peer, one digest, no divergence line in any log."""

import json
import os
import signal
import subprocess
import sys

import pytest

pytestmark = pytest.mark.chaos

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# A minute of load, the check afterwards, and starting and stopping three peers.
RUN_LIMIT_SECONDS = 300


@pytest.mark.timeout(RUN_LIMIT_SECONDS + 60)
def test_a_minute_of_kills_and_partitions_loses_nothing_and_raises_no_divergence(namespace_support, tmp_path):
    report = tmp_path / "soak.json"
    command = [sys.executable, os.path.join(ROOT, "scripts", "soak.py"), "--minutes", "1", "--netns",
               "--fault-every", "5", "--dir", str(tmp_path / "peers"), "--json-out", str(report)]
    # Its own process group, with the peers it starts: nothing outlives a timeout.
    soak = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, errors = soak.communicate(timeout=RUN_LIMIT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(soak.pid, signal.SIGTERM)  # it stops its peers and deletes its namespaces
        try:
            soak.communicate(timeout=60)
        finally:
            if soak.poll() is None:
                os.killpg(soak.pid, signal.SIGKILL)
        raise
    document = json.loads(report.read_text())
    check = document["check"]
    assert document["passed"] and soak.returncode == 0, (json.dumps(check, indent=1), errors[-3000:])
    assert set(document["faults"]) == {"kill", "partition"}, document["faultList"]
    assert not any(check["missing"].values()) and not any(check["resurrected"].values())
    assert check["digests"] == 1 and not any(check["divergenceLines"].values())
    assert check["acknowledgedRegistrations"] > 1000 and not document["staleConsistentReads"]
    print(json.dumps({"faults": document["faults"], "check": check, "outcomes": document["outcomes"]}))

"""Schemathesis against a live peer, with the document that peer serves at /openapi.json.

One real `registry serve` process on 127.0.0.1 (stopped by pid afterwards, pass or fail), an
admin token, and `schemathesis run` (pinned in setup.cfg's test extra) through all four phases
(examples, coverage, fuzzing, stateful) with the checks below: no 5xx, every answer's status,
content type, headers and body as documented, schema-invalid requests refused, auth enforced
where documented, undocumented methods answered 405 with Allow, and removed resources gone.

Bounded: a fixed seed (REGISTRY_SCHEMATHESIS_SEED overrides it), few examples per operation,
one worker (schemathesis 4.32 raced inside hypothesis with more), a request timeout, and a
deadline for the whole run. Blocking reads are kept short by tests/cluster/schemathesis_hooks.py.

Not only exit codes: the run's JSON report must show every selected operation tested, and the
peer's own request counters (GET /metrics) must show every operation answered past
authentication, and answered with success where a generated request can succeed.
"""

import collections
import json
import os
import re
import subprocess
import sys

import pytest
import requests

from api.openapi import OPERATIONS
from registry.permissions import default_permits

pytestmark = pytest.mark.cluster

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PHASES = ("examples", "coverage", "fuzzing", "stateful")
SEED = int(os.environ.get("REGISTRY_SCHEMATHESIS_SEED", "20261127"))
MAX_EXAMPLES = 8
RUN_DEADLINE_SECONDS = 150
CHECKS = (
    "not_a_server_error", "status_code_conformance", "content_type_conformance", "response_headers_conformance",
    "response_schema_conformance", "negative_data_rejection", "ignored_auth", "unsupported_method",
    "use_after_free", "ensure_resource_availability",
)
# positive_data_acceptance is left out on purpose: the schemas cannot say everything the
# validators check (a url must parse, an ip must be an address, a duration must read as one), so
# some schema-valid requests are rightly refused. The other way round is checked:
# negative_data_rejection, every schema-invalid request refused.

CONFIG = """
workers = 1

[generation]
database = "none"

[headers]
Authorization = "Bearer ${REGISTRY_TOKEN}"

# A renewal waits for the batch it shares (up to 0.5 s, by design): a coverage sweep of them
# would take most of the budget. Fuzzing and the stateful phase still send them.
[[operations]]
include-operation-id = "renewInstance"
phases.coverage.enabled = false
"""

# Its valid requests change who may do what for the rest of a run: tested alone, afterwards.
ALONE = ("setPermits",)
# Not sent at all: a valid request adds a member that is not running, and a cluster of one then
# commits nothing (this sandbox's network accepts TCP connects to any address, so the check that
# the new peer listens does not stop it; schemathesis sent a valid body even in negative mode).
# tests/api/test_openapi_api.py checks its schema against the validator, its permission and its
# 503; tests/cluster/test_membership_cluster.py adds real peers.
NOT_SENT = ("addClusterPeer",)
# A generated request cannot make these succeed: the node's URL or a member's address would have
# to be guessed.
NO_SUCCESS_EXPECTED = ("deleteNode", "removeClusterPeer")
# Schemathesis leaves out the operation that serves the document it tests (it loads it, though).
SCHEMA_ITSELF = ("getOpenApiDocument",)


def run_schemathesis(peer, token, directory, name, filters):
    config = directory / "schemathesis.toml"
    config.write_text(CONFIG)
    report = directory / f"{name}.json"
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", peer.url + "/openapi.json",
        "--checks", ",".join(CHECKS), "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
        "--request-timeout", "10", "--report", "json", "--report-json-path", str(report), *filters,
    ]
    environment = dict(os.environ, REGISTRY_TOKEN=token, SCHEMATHESIS_HOOKS="tests.cluster.schemathesis_hooks",
                       PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    try:
        finished = subprocess.run(command, cwd=directory, env=environment, capture_output=True, text=True,
                                  timeout=RUN_DEADLINE_SECONDS)
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"schemathesis ({name}) ran past {RUN_DEADLINE_SECONDS}s:\n{_text(expired.stdout)[-30000:]}")
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, f"schemathesis ({name}) failed:\n{output[-30000:]}"
    return json.loads(report.read_text()), output


def _text(output):
    return output.decode(errors="replace") if isinstance(output, bytes) else (output or "")


def request_counts(cluster, peer):
    """{(endpoint, method): Counter of status classes} from the peer's own registry_http_requests_total."""
    text = cluster.get(peer, "/metrics").text
    counts = collections.defaultdict(collections.Counter)
    for endpoint, method, status, value in re.findall(
            r'^registry_http_requests_total\{endpoint="([^"]+)",method="([^"]+)",status="(\d+)"\} ([0-9.e+]+)$',
            text, re.MULTILINE):
        counts[(endpoint, method)][status[0] + "xx" if status not in ("401", "403") else status] += float(value)
    return counts


def test_schemathesis_finds_nothing_against_a_live_peer(start_cluster, tmp_path):
    cluster = start_cluster(count=1)
    peer = cluster.peers[0]
    token = cluster.local.admin_token
    document = requests.get(peer.url + "/openapi.json", timeout=10).json()  # open: no token
    labels = {operation["operationId"]: f"{method.upper()} {path}"
              for path, item in document["paths"].items() for method, operation in item.items()}
    assert set(labels) == {operation.operation_id for operation in OPERATIONS.values()}

    members = cluster.get(peer, "/registry-svc/cluster/peers").json()["members"]
    (tmp_path / "main").mkdir()
    (tmp_path / "alone").mkdir()
    main, main_output = run_schemathesis(
        peer, token, tmp_path / "main", "main",
        [arg for op in ALONE + NOT_SENT for arg in ("--exclude-operation-id", op)])
    alone, alone_output = run_schemathesis(
        peer, token, tmp_path / "alone", "alone", [arg for op in ALONE for arg in ("--include-operation-id", op)])

    assert cluster.get(peer, "/registry-svc/cluster/peers").json()["members"] == members
    in_main = len(labels) - len(ALONE) - len(NOT_SENT) - len(SCHEMA_ITSELF)
    # One operation alone has no links between operations to follow: no stateful phase.
    for report, expected, phases, output in ((main, in_main, PHASES, main_output),
                                             (alone, len(ALONE), PHASES[:-1], alone_output)):
        assert report["exit_code"] == 0 and report["complete"], output[-5000:]
        assert report["operations"]["selected"] == report["operations"]["tested"] == expected, report["operations"]
        assert report["failures"] == [] and report["errors"] == [], output[-5000:]
        assert [p for p in PHASES if report["phases"][p]["status"] == "success"] == list(phases), report["phases"]

    # The fuzzed permits may have left the admin role little more than permit:edit (which the
    # validator never lets it lose): put the defaults back to read the peer's counters.
    restored = cluster.http.put(peer.url + "/registry-svc/permits", json={"permits": default_permits()}, timeout=15)
    assert restored.status_code == 200, restored.text
    counted = request_counts(cluster, peer)
    for (endpoint, method), operation in OPERATIONS.items():
        if operation.operation_id in NOT_SENT:
            continue
        label = labels[operation.operation_id]
        answers = counted[(endpoint, method)]
        past_auth = sum(n for kind, n in answers.items() if kind not in ("401", "403"))
        assert past_auth > 0, f"{label}: no request got past authentication ({dict(answers)})"
        if operation.operation_id not in NO_SUCCESS_EXPECTED:
            assert answers["2xx"] > 0, f"{label}: the peer answered no 2xx ({dict(answers)})"
        if operation.permission is not None:
            assert answers["401"] > 0, f"{label}: ignored_auth sent no request without a token"

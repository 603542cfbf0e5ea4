"""GET /metrics: Prometheus text format (prometheus-client), one registry of metrics per app.

Request counts and latencies are recorded as requests finish; Raft, instance, node and scan
figures are read from the peer when scraped, so they cost nothing between scrapes.
"""

import collections
import importlib.metadata
import os
import platform
import time

from flask import Blueprint, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, Info, PlatformCollector, ProcessCollector, generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from registry import VERSION
from registry.permissions import NODE_VIEW

from .auth import requires

blueprint = Blueprint("metrics", __name__)

# Set by cluster/http_workers.py for its workers (prometheus-client reads it at import).
MULTIPROCESS_DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"


class PeerCollector:
    def __init__(self, peer):
        self.peer = peer

    def collect(self):
        status = self.peer.status()
        role = GaugeMetricFamily("registry_raft_role", "1 for this peer's current Raft role", labels=["role"])
        for name in ("leader", "follower", "candidate"):
            role.add_metric([name], 1.0 if status.role == name else 0.0)
        yield role
        yield GaugeMetricFamily("registry_raft_term", "Current Raft term", value=status.term)
        yield GaugeMetricFamily("registry_raft_commit_index", "Raft commit index", value=status.commit_index)
        yield GaugeMetricFamily("registry_raft_applied_index", "Raft index applied here", value=status.applied_index)
        yield GaugeMetricFamily("registry_raft_known_leader", "1 when this peer knows a live leader",
                                value=1.0 if status.leader else 0.0)
        yield GaugeMetricFamily("registry_raft_last_contact_seconds", "Seconds since a leader was last heard",
                                value=status.last_contact_ms / 1000)
        yield CounterMetricFamily("registry_raft_leader_changes", "Leaders this peer has followed or become",
                                  value=status.leader_changes)
        yield GaugeMetricFamily("registry_diverged", "1 when this peer's state may differ from the cluster's "
                                "(a committed entry conflicts with the leader's, or a checkpoint digest differs)",
                                value=1.0 if status.divergence is not None else 0.0)
        yield CounterMetricFamily("registry_checkpoints_verified", "Corruption checks this peer's state passed",
                                  value=status.checkpoints_verified)
        yield CounterMetricFamily("registry_write_resubmissions",
                                  "Write batches submitted again after a leader change left their outcome unknown",
                                  value=status.writes_resubmitted)
        yield _by_status("registry_instances", "Instances by status", self.peer.instance_counts_by_status())
        by_slug = GaugeMetricFamily("registry_instances_by_slug", "Instances by owner slug and status",
                                    labels=["slug", "status"])
        for (slug, instance_status), count in sorted(self.peer.instance_counts_by_slug_and_status().items()):
            by_slug.add_metric([slug, instance_status], count)
        yield by_slug
        yield _by_status("registry_nodes", "Nodes by status", collections.Counter(
            r.get("status", "Unknown") for r in self.peer.list_nodes_with_status()[1]))
        cycles, last = self.peer.scan_progress()
        yield CounterMetricFamily("registry_scan_cycles", "Instance scan cycles run here", value=cycles)
        yield GaugeMetricFamily("registry_scan_last_cycle_seconds", "Duration of the last scan cycle",
                                value=(last.duration_ms / 1000) if last else 0.0)
        yield GaugeMetricFamily("registry_scan_last_cycle_instances", "Instances checked in the last scan cycle",
                                value=last.scanned if last else 0)
        yield from _http_workers(self.peer.http_workers())


def _http_workers(workers):
    """Each HTTP worker's replica: where it is and how far behind its Raft process."""
    if not workers:
        return
    index = GaugeMetricFamily("registry_http_worker_state_index", "Raft index of the last registry command an "
                              "HTTP worker's replica applied", labels=["worker"])
    lag = GaugeMetricFamily("registry_http_worker_lag_seconds", "How far an HTTP worker's replica is behind its "
                            "Raft process's stream", labels=["worker"])
    running = GaugeMetricFamily("registry_http_worker_running", "1 while an HTTP worker's process runs",
                                labels=["worker"])
    restarts = CounterMetricFamily("registry_http_worker_restarts", "Times an HTTP worker was started again",
                                   labels=["worker"])
    for worker in workers:
        label = [str(worker["number"])]
        if worker["stateIndex"] is not None:
            index.add_metric(label, worker["stateIndex"])
        if worker["lagMs"] is not None:
            lag.add_metric(label, worker["lagMs"] / 1000)
        running.add_metric(label, 1.0 if worker["running"] else 0.0)
        restarts.add_metric(label, worker["restarts"])
    yield from (index, lag, running, restarts)


def _version_of(distribution):
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _by_status(name, documentation, counts):
    family = GaugeMetricFamily(name, documentation, labels=["status"])
    for status, count in sorted(counts.items()):
        family.add_metric([status], count)
    return family


class RequestMetrics:
    """What every answered request adds to the metrics, whichever path served it."""

    def __init__(self, registry):
        self._requests = Counter("registry_http_requests", "HTTP requests by endpoint, method and status",
                                 ["endpoint", "method", "status"], registry=registry)
        self._latency = Histogram("registry_http_request_duration_seconds",
                                  "HTTP request latency by endpoint (blocking reads apart)", ["endpoint"],
                                  registry=registry,
                                  buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                                           60))
        # Held up to their wait by design: among other requests they would make every percentile meaningless.
        self._blocking = Histogram("registry_http_blocking_read_duration_seconds",
                                   "Blocking reads (?index=&wait=) from arrival to answer, by endpoint", ["endpoint"],
                                   registry=registry, buckets=(0.01, 0.1, 1, 5, 10, 30, 60, 120, 300, 600))
        self._write_failures = Counter("registry_write_failures",
                                       "Writes answered 503, by whether they may have applied",
                                       ["outcome"], registry=registry)

    def request(self, endpoint, method, status, started=None, blocking=False):
        self._requests.labels(endpoint, method, str(status)).inc()
        if started is not None:
            (self._blocking if blocking else self._latency).labels(endpoint).observe(time.perf_counter() - started)

    def write_failure(self, outcome_unknown):
        self._write_failures.labels("unknown" if outcome_unknown else "not_applied").inc()


def install(app, peer):
    registry = CollectorRegistry(auto_describe=False)
    shared_directory = os.environ.get(MULTIPROCESS_DIRECTORY)
    if shared_directory:
        # An HTTP worker: every worker of the peer records into files in this directory, and a
        # scrape at any of them sums them all (prometheus-client's multi-process mode).
        recorder = RequestMetrics(CollectorRegistry())
        MultiProcessCollector(registry, path=shared_directory)
    else:
        recorder = RequestMetrics(registry)
    registry.register(PeerCollector(peer))
    # CPU, RSS, open files and start time of this process (the worker that answers, with workers),
    # and the interpreter it runs on.
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    Info("registry_build", "The registry's version and what it runs on", registry=registry).info({
        "version": VERSION, "pysyncobj": _version_of("pysyncobj"), "python": platform.python_version()})
    app.extensions["registry_metrics"] = registry
    app.extensions["registry_request_metrics"] = recorder

    @app.before_request
    def start_clock():
        g.request_started = time.perf_counter()

    @app.after_request
    def record(response):
        # Unmatched paths share one label: a scanner of random URLs must not grow the series.
        endpoint = request.url_rule.endpoint if request.url_rule is not None else "unmatched"
        recorder.request(endpoint, request.method, response.status_code, g.get("request_started"),
                         blocking=g.get("blocking_read", False))
        return response

    app.register_blueprint(blueprint)


@blueprint.get("/metrics")
@requires(NODE_VIEW)
def metrics():
    body = generate_latest(current_app.extensions["registry_metrics"])
    return Response(body, mimetype=CONTENT_TYPE_LATEST.split(";")[0], content_type=CONTENT_TYPE_LATEST)

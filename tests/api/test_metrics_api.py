"""GET /metrics over the HTTP layer (a peer without Raft behind it)."""

import platform

from registry import VERSION
from tests.helpers import samples


def test_metrics_need_a_token(app):
    assert app.test_client().get("/metrics").status_code == 401


def test_metrics_report_requests_raft_and_records(client):
    client.put("/registry-svc/instance", json={"id": "inst_metric_1", "url": "http://metric-1:1", "status": "Healthy"})
    client.get("/registry-svc/instances")
    client.get("/registry-svc/nowhere-at-all")
    found = samples(client)
    listed = ("registry_http_requests_total", (("endpoint", "instances.list_instances"), ("method", "GET"),
                                               ("status", "200")))
    assert found[listed] >= 1
    assert found[("registry_http_requests_total", (("endpoint", "unmatched"), ("method", "GET"),
                                                   ("status", "404")))] >= 1
    assert found[("registry_http_request_duration_seconds_count", (("endpoint", "instances.register_instance"),))] >= 1
    assert found[("registry_raft_role", (("role", "leader"),))] == 1.0
    assert found[("registry_raft_known_leader", ())] == 1.0
    assert found[("registry_raft_applied_index", ())] >= found[("registry_raft_commit_index", ())] - 1
    assert found[("registry_instances", (("status", "Healthy"),))] >= 1
    assert found[("registry_nodes", (("status", "Healthy"),))] >= 1
    assert ("registry_scan_cycles_total", ()) in found


def test_metrics_count_instances_by_slug_and_status_and_describe_the_process(client):
    for n, status in enumerate(("Healthy", "Healthy", "Degraded")):
        assert client.put("/registry-svc/instance", json={"id": f"metric-slug-{n}", "url": f"http://metric-slug-{n}:1",
                                                          "slug": "metric-slug", "status": status}).status_code == 201
    found = samples(client)
    assert found[("registry_instances_by_slug", (("slug", "metric-slug"), ("status", "Healthy")))] == 2
    assert found[("registry_instances_by_slug", (("slug", "metric-slug"), ("status", "Degraded")))] == 1
    assert ("registry_instances_by_slug", (("slug", "metric-slug"), ("status", "Unknown"))) not in found
    assert found[("process_resident_memory_bytes", ())] > 0 and found[("process_open_fds", ())] > 0
    assert found[("registry_build_info", (("pysyncobj", "0.3.17"), ("python", platform.python_version()),
                                          ("version", VERSION)))] == 1


def test_blocking_reads_are_timed_apart_from_other_requests(client):
    listed = client.get("/registry-svc/instances?slug=metric-blocking")
    before = samples(client)
    index = listed.headers["X-Registry-Index"]
    held = client.get(f"/registry-svc/instances?slug=metric-blocking&index={index}&wait=0.2s")
    assert held.status_code == 200
    client.get("/registry-svc/instances?slug=metric-blocking")
    after = samples(client)
    endpoint = (("endpoint", "instances.list_instances"),)

    def grew(name):
        return after[(name, endpoint)] - before.get((name, endpoint), 0)
    assert grew("registry_http_blocking_read_duration_seconds_count") == 1
    assert grew("registry_http_blocking_read_duration_seconds_sum") >= 0.2
    assert grew("registry_http_request_duration_seconds_count") == 1  # the ordinary list only

"""GET /metrics against one in-process peer."""

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

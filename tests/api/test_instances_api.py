import uuid

import pytest

from tests.api.conftest import MAX_BODY


def unique_url():
    return f"http://svc-{uuid.uuid4().hex[:10]}:8080"


def find(client, **filters):
    response = client.get("/registry-svc/instances", query_string=filters)
    assert response.status_code == 200, response.json
    return response.json["instances"]


def test_register_list_and_remove(client):
    url = unique_url()
    response = client.put("/registry-svc/instance", json={"url": url, "slug": "my-service", "tags": ["dev"],
                                                           "status": "Healthy", "details": "up",
                                                           "nodeUrl": "http://node:11337", "deploymentId": "dep1"})
    assert response.status_code == 201 and response.json == {}
    assert int(response.headers["X-Registry-Index"]) > 0
    [record] = find(client, nodeUrl="http://node:11337", deploymentId="dep1")
    assert record["url"] == url and record["slug"] == "my-service" and record["status"] == "Healthy"
    assert record["tags"] == ["dev"] and record["details"] == "up" and record["id"].startswith("inst_")
    assert record["lastHeartbeat"].endswith("Z") and len(record["lastHeartbeat"]) == 30

    deleted = client.delete(f"/registry-svc/instance/{record['id']}")
    assert deleted.status_code == 204 and deleted.data == b""
    assert find(client, id=record["id"]) == []
    again = client.delete(f"/registry-svc/instance/{record['id']}")
    assert again.status_code == 404 and again.json == {"error": "Service Not Found"}


def test_register_by_parts_and_idempotent_update_by_id(client):
    body = {"id": "inst_api_parts", "scheme": "http", "ip": "10.9.8.7", "port": 7000, "path": "/v1"}
    assert client.put("/registry-svc/instance", json=body).status_code == 201
    assert client.put("/registry-svc/instance", json={**body, "status": "Degraded"}).status_code == 201
    [record] = find(client, id="inst_api_parts")
    assert record["url"] == "http://10.9.8.7:7000/v1" and record["status"] == "Degraded"
    assert find(client, ip="10.9.8.7", path="/v1", scheme="http") == [record]


def test_reregistering_a_url_updates_the_same_record(client):
    url = unique_url()
    client.put("/registry-svc/instance", json={"url": url})
    client.put("/registry-svc/instance", json={"url": url, "status": "Healthy"})
    records = [r for r in find(client) if r["url"] == url]
    assert len(records) == 1 and records[0]["status"] == "Healthy"


def test_a_url_owned_by_another_id_is_a_conflict(client):
    url = unique_url()
    client.put("/registry-svc/instance", json={"id": "inst_owner_1", "url": url})
    response = client.put("/registry-svc/instance", json={"id": "inst_owner_2", "url": url})
    assert response.status_code == 409 and "inst_owner_1" in response.json["error"]


def test_tag_filters_must_all_match(client):
    client.put("/registry-svc/instance", json={"id": "inst_tags_1", "url": unique_url(), "tags": ["t-a", "t-b"]})
    client.put("/registry-svc/instance", json={"id": "inst_tags_2", "url": unique_url(), "tags": ["t-a"]})
    response = client.get("/registry-svc/instances?tag=t-a&tag=t-b")
    assert [r["id"] for r in response.json["instances"]] == ["inst_tags_1"]
    assert {r["id"] for r in find(client, tag="t-a")} == {"inst_tags_1", "inst_tags_2"}


def test_empty_list_is_an_empty_array(client):
    assert client.get("/registry-svc/instances?slug=no-such-slug").json == {"instances": []}


@pytest.mark.parametrize("data, fragment", [
    (b"{bad json", "not valid JSON"),
    (b"", "body is empty"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"url": NaN}', "not valid JSON"),
    (b'{"scheme": "http", "host": "a", "port": 123456789012345678901234567890}', "between 1 and 65535"),
    (b'{"url": "http://a:1", "status": "Sleeping"}', "unknown status"),
    (b'{"url": "not a url"}', "whitespace"),
    (b'{"url": "ftp//missing-colon"}', "must be absolute"),
    (b'{"scheme": "http", "host": "a", "port": 70000}', "between 1 and 65535"),
    (b'{"scheme": "http", "host": "a", "port": "80"}', "must be an integer"),
    (b'{"scheme": "http", "port": 80}', "both 'host' and 'ip' are missing"),
    (b'{"slug": "only"}', "give either 'url'"),
    (b'{"url": "http://a:1", "tags": "dev"}', "array of strings"),
    (b'\xff\xfe', "not valid JSON"),
    (b"[" * 5000 + b"]" * 5000, "not valid JSON"),
])
def test_bad_registrations_are_400_with_a_reason(client, data, fragment):
    before = client.get("/registry-svc/instances").json["instances"]
    response = client.put("/registry-svc/instance", data=data, content_type="application/json")
    assert response.status_code == 400, response.json
    assert fragment in response.json["error"]
    assert client.get("/registry-svc/instances").json["instances"] == before


def test_huge_body_is_413_and_changes_nothing(client):
    before = client.get("/registry-svc/instances").json["instances"]
    body = b'{"url": "http://a:1", "details": "' + b"x" * (MAX_BODY + 1) + b'"}'
    response = client.put("/registry-svc/instance", data=body, content_type="application/json")
    assert response.status_code == 413 and str(MAX_BODY) in response.json["error"]
    assert client.get("/registry-svc/instances").json["instances"] == before


@pytest.mark.parametrize("query, fragment", [
    ("status=Bogus", "unknown status"),
    ("colour=red", "unknown filter 'colour'"),
    ("slug=a&slug=b", "given twice"),
    ("host=", "needs a value"),
])
def test_bad_filters_are_400(client, query, fragment):
    response = client.get(f"/registry-svc/instances?{query}")
    assert response.status_code == 400 and fragment in response.json["error"]


def test_unknown_routes_and_methods_answer_json(client):
    missing = client.get("/registry-svc/nothing")
    assert missing.status_code == 404 and "no endpoint" in missing.json["error"]
    wrong = client.post("/registry-svc/instances")
    assert wrong.status_code == 405 and "GET" in wrong.json["error"]


def test_every_response_carries_the_registry_headers(client):
    for response in (client.get("/registry-svc/instances"), client.get("/healthz"),
                     client.get("/registry-svc/nothing"), client.put("/registry-svc/instance", data=b"{")):
        assert response.headers["X-Registry-Known-Leader"] == "true"
        assert response.headers["X-Registry-Last-Contact"] == "0"
        assert int(response.headers["X-Registry-Index"]) >= 0

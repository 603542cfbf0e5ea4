import threading
import time

import pytest

from api import consistency
from api.app import create_app
from api.consistency import ReadOptions, parse_options
from registry.errors import ValidationError


def test_read_options_parse_and_leave_filters_alone():
    options, rest = parse_options([("slug", "x"), ("consistent", ""), ("index", "42"), ("wait", "5s"),
                                   ("max_stale", "2s"), ("tag", "a")])
    assert options == ReadOptions(consistent=True, max_stale_seconds=2.0, index=42, wait_seconds=5.0)
    assert rest == [("slug", "x"), ("tag", "a")]
    assert parse_options([("consistent", "false")])[0].consistent is False
    assert parse_options([("index", "7")])[0].wait_seconds == 60.0


@pytest.mark.parametrize("pairs, fragment", [
    ([("index", "-1")], "whole number"),
    ([("index", "abc")], "whole number"),
    ([("wait", "5s")], "needs 'index'"),
    ([("index", "1"), ("wait", "11m")], "at most 600s"),
    ([("index", "1"), ("wait", "soon")], "not a duration"),
    ([("max_stale", "0s")], "longer than zero"),
    ([("consistent", "maybe")], "is a flag"),
    ([("index", "1"), ("index", "2")], "given twice"),
])
def test_bad_read_options_are_400(pairs, fragment):
    with pytest.raises(ValidationError) as caught:
        parse_options(pairs)
    assert fragment in caught.value.message


def test_bad_read_options_over_http(client):
    response = client.get("/registry-svc/instances?index=x")
    assert response.status_code == 400 and "whole number" in response.json["error"]
    nodes = client.post("/registry-svc/nodes?colour=red")
    assert nodes.status_code == 400 and "colour" in nodes.json["error"]


def test_consistent_and_max_stale_reads_at_the_leader(client):
    client.put("/registry-svc/instance", json={"id": "inst_cons_1", "url": "http://cons-1:1"})
    for query in ("consistent", "consistent=true", "max_stale=1s", "consistent&max_stale=500ms"):
        response = client.get(f"/registry-svc/instances?id=inst_cons_1&{query}")
        assert response.status_code == 200, (query, response.json)
        assert [r["id"] for r in response.json["instances"]] == ["inst_cons_1"]
    assert client.post("/registry-svc/nodes?consistent").status_code == 200
    assert client.get("/registry-svc/permits?consistent").status_code == 200


def test_a_blocking_read_returns_unchanged_after_its_wait(client):
    first = client.get("/registry-svc/instances")
    index = first.headers["X-Registry-Index"]
    started = time.monotonic()
    response = client.get(f"/registry-svc/instances?index={index}&wait=300ms")
    assert time.monotonic() - started >= 0.3
    assert response.status_code == 200 and response.headers["X-Registry-Index"] == index
    assert response.json == first.json


def test_a_blocking_read_wakes_on_a_write_to_its_kind_only(client, app, mint):
    index = int(client.get("/registry-svc/instances").headers["X-Registry-Index"])
    answers = {}

    def watch():
        watcher = app.test_client()
        watcher.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {mint('admin', 'admin')}"
        started = time.monotonic()
        response = watcher.get(f"/registry-svc/instances?index={index}&wait=30s")
        answers["elapsed"] = time.monotonic() - started
        answers["response"] = response

    thread = threading.Thread(target=watch)
    thread.start()
    # A permit change is another kind of data: it must not wake the instance watcher.
    permits = client.get("/registry-svc/permits").json
    assert client.put("/registry-svc/permits", json=permits).status_code == 200
    thread.join(timeout=0.5)
    assert thread.is_alive(), "a change to permits woke an instance watcher"
    written = client.put("/registry-svc/instance", json={"id": "inst_watch_1", "url": "http://watch-1:1"})
    thread.join(timeout=30)
    response = answers["response"]
    assert response.status_code == 200 and answers["elapsed"] < 29
    assert int(response.headers["X-Registry-Index"]) == int(written.headers["X-Registry-Index"]) > index
    assert "inst_watch_1" in [r["id"] for r in response.json["instances"]]


def test_blocking_reads_beyond_the_limit_are_refused_not_queued(peer, mint):
    app = create_app(peer)
    consistency.install(app, 1)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {mint('admin', 'admin')}"
    index = client.get("/registry-svc/instances").headers["X-Registry-Index"]
    slots = app.extensions["registry_blocking_reads"]
    assert slots.acquire(blocking=False)  # the one slot, as a sleeping watcher holds it
    try:
        started = time.monotonic()
        refused = client.get(f"/registry-svc/instances?index={index}&wait=30s")
        assert refused.status_code == 503 and "blocking reads" in refused.json["error"]
        assert refused.headers["Retry-After"] == "1" and time.monotonic() - started < 5
        # Plain reads still answer at once.
        assert client.get("/registry-svc/instances").status_code == 200
    finally:
        slots.release()
    # The slot is free again: a blocking read is held (and times out unchanged).
    assert client.get(f"/registry-svc/instances?index={index}&wait=100ms").status_code == 200


def test_a_blocking_read_filtered_by_slug_wakes_on_its_own_slug_only(client, app, mint):
    def put(instance_id, slug):
        response = client.put("/registry-svc/instance", json={"id": instance_id, "url": f"http://{instance_id}:1",
                                                              "slug": slug})
        assert response.status_code == 201
        return int(response.headers["X-Registry-Index"])

    at = put("inst_slugwatch_a", "watched-a")
    put("inst_slugwatch_b", "watched-b")
    first = client.get("/registry-svc/instances?slug=watched-a")
    # The slug's own index: the other slug's later write did not move it.
    assert int(first.headers["X-Registry-Index"]) == at
    answers = {}

    def watch():
        watcher = app.test_client()
        watcher.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {mint('admin', 'admin')}"
        answers["response"] = watcher.get(f"/registry-svc/instances?slug=watched-a&index={at}&wait=30s")

    thread = threading.Thread(target=watch)
    thread.start()
    put("inst_slugwatch_b2", "watched-b")
    thread.join(timeout=0.5)
    assert thread.is_alive(), "a write to another slug woke a watcher of this slug"
    written = put("inst_slugwatch_a2", "watched-a")
    thread.join(timeout=30)
    response = answers["response"]
    assert response.status_code == 200 and int(response.headers["X-Registry-Index"]) == written
    assert [r["id"] for r in response.json["instances"]] == ["inst_slugwatch_a", "inst_slugwatch_a2"]


def test_a_blocking_read_with_bad_filters_is_refused_before_it_waits(client):
    started = time.monotonic()
    response = client.get("/registry-svc/instances?slug=a&slug=b&index=1&wait=30s")
    assert response.status_code == 400 and "given twice" in response.json["error"]
    assert time.monotonic() - started < 5


def test_a_blocking_read_of_a_slug_nobody_has_waits_out_its_time_unchanged(client):
    first = client.get("/registry-svc/instances?slug=nobody-has-this")
    assert first.status_code == 200 and first.json == {"instances": []}
    index = first.headers["X-Registry-Index"]
    client.put("/registry-svc/instance", json={"url": "http://somebody-else:1", "slug": "somebody-else"})
    started = time.monotonic()
    held = client.get(f"/registry-svc/instances?slug=nobody-has-this&index={index}&wait=300ms")
    assert time.monotonic() - started >= 0.3
    assert held.status_code == 200 and held.json == {"instances": []} and held.headers["X-Registry-Index"] == index

"""The hot path (api/hot_path.py) answers exactly as the Flask app behind it would."""

import logging
import uuid

import pytest
from werkzeug.test import Client

from cluster.submit import WriteUnavailable
from tests.api.conftest import MAX_BODY
from tests.helpers import samples

# Differ between any two answers by design, or follow the state, which each write moves on.
VARYING_HEADERS = {"X-Request-Id", "X-Registry-Index", "X-Registry-Last-Contact"}


@pytest.fixture
def both(app):
    """(the app as served, a client of the Flask app alone), and the hot path's served count."""
    hot = app.wsgi_app
    return app.test_client(), Client(hot.flask_wsgi_app), hot


def answer(response):
    headers = {name: value for name, value in response.headers.items() if name not in VARYING_HEADERS}
    return response.status_code, headers, response.get_data()


def bearer(mint, slug, *roles):
    return {"Authorization": f"Bearer {mint(slug, *roles)}"}


def test_listing_answers_match_flask_and_are_served_by_the_hot_path(both, mint):
    served, flask_only, hot = both
    admin = bearer(mint, "admin", "admin")
    for n in range(3):
        served.put("/registry-svc/instance", headers=admin,
                   json={"id": f"inst_hot_{n}", "url": f"http://hot-{n}:80", "slug": "hot", "tags": ["x", f"t{n}"]})
    for query in ("slug=hot", "slug=hot&tag=x&tag=t1", "host=hot-2", "tag=x&slug=hot", "id=inst_hot_0",
                  "slug=h%6Ft", "slug=hot+x", "", "slug=%FF%FE"):
        before = hot.served
        mine, theirs = served.get(f"/registry-svc/instances?{query}", headers=admin), \
            flask_only.get(f"/registry-svc/instances?{query}", headers=admin)
        assert answer(mine) == answer(theirs), query
        assert mine.status_code == 200 and hot.served == before + 1, query
        assert mine.headers["X-Registry-Index"] == theirs.headers["X-Registry-Index"]
    assert [r["id"] for r in served.get("/registry-svc/instances?slug=hot&tag=t2", headers=admin).json[
        "instances"]] == ["inst_hot_2"]


@pytest.mark.parametrize("query, headers_of", [
    ("slug=hot", lambda mint: {}),  # no token
    ("slug=hot", lambda mint: {"Authorization": "Bearer not.a.jwt"}),
    ("slug=hot", lambda mint: bearer(mint, "nobody")),  # no role: 403
    ("colour=red", lambda mint: bearer(mint, "admin", "admin")),
    ("slug=", lambda mint: bearer(mint, "admin", "admin")),
    ("slug=a&slug=b", lambda mint: bearer(mint, "admin", "admin")),
    ("status=Sleeping", lambda mint: bearer(mint, "admin", "admin")),
    ("consistent", lambda mint: bearer(mint, "admin", "admin")),  # read options are Flask's
    ("max_stale=1h", lambda mint: bearer(mint, "admin", "admin")),
    ("index=1&wait=0s", lambda mint: bearer(mint, "admin", "admin")),
    ("index=%C2%B2", lambda mint: bearer(mint, "admin", "admin")),
])
def test_listings_the_hot_path_leaves_to_flask(both, mint, query, headers_of):
    served, flask_only, hot = both
    headers = headers_of(mint)
    before = hot.served
    mine = served.get(f"/registry-svc/instances?{query}", headers=headers)
    assert hot.served == before
    assert answer(mine) == answer(flask_only.get(f"/registry-svc/instances?{query}", headers=headers))


def test_registrations_answer_as_flask_would(both, mint):
    served, flask_only, hot = both
    admin = bearer(mint, "admin", "admin")
    for client in (served, flask_only):
        url = f"http://reg-{uuid.uuid4().hex[:8]}:80"
        before = hot.served
        mine = client.put("/registry-svc/instance", headers=admin, json={"url": url, "slug": "reg"})
        assert mine.status_code == 201 and mine.get_data() == b"{}"
        assert hot.served == before + (client is served)
    first = served.put("/registry-svc/instance", headers=admin, json={"url": "http://reg-taken:1"})
    assert first.status_code == 201
    # Refused in apply, after the commit: 409 with the index of the write that refused it.
    conflicts = [client.put("/registry-svc/instance", headers=admin,
                            json={"id": f"inst_other_{n}", "url": "http://reg-taken:1"})
                 for n, client in enumerate((served, flask_only))]
    assert conflicts[0].status_code == 409
    assert answer(conflicts[0])[:2] == answer(conflicts[1])[:2]
    assert conflicts[0].json["error"].replace("inst_other_0", "?") == conflicts[1].json["error"].replace(
        "inst_other_1", "?")
    index = int(conflicts[0].headers["X-Registry-Index"])
    assert index > int(first.headers["X-Registry-Index"])


@pytest.mark.parametrize("data, headers_of", [
    (b'{"url": "http://x:1"}', lambda mint: {}),
    (b'{"url": "http://x:1"}', lambda mint: {"Authorization": "Bearer not.a.jwt"}),
    (b'{"url": "http://x:1"}', lambda mint: bearer(mint, "nobody")),
    (b"{bad json", lambda mint: bearer(mint, "admin", "admin")),
    (b"", lambda mint: bearer(mint, "admin", "admin")),
    (b"   ", lambda mint: bearer(mint, "admin", "admin")),
    (b"[1, 2]", lambda mint: bearer(mint, "admin", "admin")),
    (b'{"url": "not a url"}', lambda mint: bearer(mint, "admin", "admin")),
    (b'{"url": "http://x:1", "colour": "red"}', lambda mint: bearer(mint, "admin", "admin")),
    (b'{"url": "http://x:1", "details": "' + b"d" * MAX_BODY + b'"}', lambda mint: bearer(mint, "admin", "admin")),
])
def test_registrations_the_hot_path_leaves_to_flask(both, mint, data, headers_of):
    served, flask_only, hot = both
    headers = {"Content-Type": "application/json", **headers_of(mint)}
    before = hot.served
    mine = served.put("/registry-svc/instance", data=data, headers=headers)
    assert hot.served == before
    assert mine.status_code in (400, 401, 403, 413) and mine.json["error"]
    assert answer(mine) == answer(flask_only.put("/registry-svc/instance", data=data, headers=headers))


def test_a_write_that_cannot_commit_is_a_503_to_retry(both, mint, peer, monkeypatch, client):
    served, _, _ = both

    def cut_off(fields, caller):
        raise WriteUnavailable("no leader is known; the write was not applied", outcome_unknown=False)

    monkeypatch.setattr(peer, "register_instance", cut_off)
    response = served.put("/registry-svc/instance", headers=bearer(mint, "admin", "admin"),
                          json={"url": "http://unlucky:1"})
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.json == {"error": "no leader is known; the write was not applied"}
    monkeypatch.undo()
    assert samples(client)[("registry_write_failures_total", (("outcome", "not_applied"),))] >= 1


def test_a_bug_behind_the_hot_path_is_a_logged_500_not_a_second_try_through_flask(both, mint, peer, app,
                                                                                    monkeypatch, caplog):
    served, _, hot = both
    calls = []

    def broken(*args):
        calls.append(args)
        raise RuntimeError("a bug")

    monkeypatch.setattr(peer, "register_instance", broken)
    monkeypatch.setattr(app.extensions["registry_listings"], "listing", broken)
    admin = bearer(mint, "admin", "admin")
    with caplog.at_level(logging.ERROR):
        before = hot.served
        registered = served.put("/registry-svc/instance", headers=admin, json={"url": "http://127.0.0.1:9801"})
        listed = served.get("/registry-svc/instances?slug=hot", headers=admin)
    for response in (registered, listed):
        assert response.status_code == 500 and "incident" in response.json["error"]
    assert hot.served == before + 2 and len(calls) == 2  # answered here, each tried once
    assert caplog.text.count("unhandled error") == 2 and "RuntimeError: a bug" in caplog.text


def test_hot_answers_count_in_metrics_and_the_access_log(both, mint, client, caplog):
    served, _, _ = both
    caplog.set_level(logging.INFO, logger="registry.access")
    counted = ("registry_http_requests_total", (("endpoint", "instances.register_instance"), ("method", "PUT"),
                                                ("status", "201")))
    before = samples(client).get(counted, 0)
    response = served.put("/registry-svc/instance", headers={**bearer(mint, "svc-a", "admin"), "X-Request-Id": "r-77"},
                          json={"url": "http://counted:1"})
    assert response.status_code == 201 and response.headers["X-Request-Id"] == "r-77"
    assert samples(client)[counted] == before + 1
    [line] = [r for r in caplog.records if r.name == "registry.access" and r.fields["requestId"] == "r-77"]
    assert line.fields["method"] == "PUT" and line.fields["path"] == "/registry-svc/instance"
    assert line.fields["status"] == 201 and line.fields["caller"] == "svc-a"

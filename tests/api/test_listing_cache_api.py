"""Lists are encoded once per state version: the cache must never show one caller's view to
another, nor an old list after a change."""

import uuid


def test_a_repeated_list_is_the_same_bytes_and_a_write_shows_at_once(app, client):
    slug = "cached-" + uuid.uuid4().hex[:8]
    assert client.put("/registry-svc/instance", json={"url": f"http://{slug}-1:80", "slug": slug}).status_code == 201
    first = client.get(f"/registry-svc/instances?slug={slug}")
    again = client.get(f"/registry-svc/instances?slug={slug}")
    assert first.data == again.data and len(first.json["instances"]) == 1
    assert first.headers["X-Registry-Index"] == again.headers["X-Registry-Index"]
    cache = app.extensions["registry_listings"]
    assert any(key[0] == (("slug", slug),) for key in cache._entries)

    assert client.put("/registry-svc/instance", json={"url": f"http://{slug}-2:80", "slug": slug}).status_code == 201
    after = client.get(f"/registry-svc/instances?slug={slug}")
    assert len(after.json["instances"]) == 2
    assert int(after.headers["X-Registry-Index"]) > int(first.headers["X-Registry-Index"])
    assert client.delete(f"/registry-svc/instance/{after.json['instances'][0]['id']}").status_code == 204
    assert len(client.get(f"/registry-svc/instances?slug={slug}").json["instances"]) == 1


def test_callers_with_different_views_never_share_a_cached_list(client, client_for):
    owner = "team-" + uuid.uuid4().hex[:8]
    assert client.put("/registry-svc/instance", json={"url": f"http://{owner}:80", "slug": owner}).status_code == 201
    assert client.put("/registry-svc/instance", json={"url": f"http://other-{owner}:80", "slug": "someone-else"}
                      ).status_code == 201
    everything = client.get("/registry-svc/instances")  # the admin's view, now cached
    assert {f"http://{owner}:80", f"http://other-{owner}:80"} <= {i["url"] for i in everything.json["instances"]}
    # With the default permits a user sees only its own slug's instances, at the same index.
    own = client_for(owner, "user").get("/registry-svc/instances")
    assert own.headers["X-Registry-Index"] == everything.headers["X-Registry-Index"]
    assert {i["url"] for i in own.json["instances"]} == {f"http://{owner}:80"}
    # And the admin's cached list is still the admin's.
    assert client.get("/registry-svc/instances").data == everything.data

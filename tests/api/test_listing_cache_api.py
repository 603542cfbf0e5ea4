"""Lists are encoded once per version of what they cover: the cache must never show one
caller's view to another, nor an old list after a change, and keeps lists that a change does
not touch."""

import uuid

import orjson

from api import jsonio, list_blocks, listing_cache


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


def _registered(client, slug, count=1, start=0):
    for n in range(start, start + count):
        response = client.put("/registry-svc/instance", json={"id": f"{slug}-{n}", "url": f"http://{slug}-{n}:80",
                                                              "slug": slug})
        assert response.status_code == 201, response.json


def _admin_key(slug):
    return (("slug", slug),), "admin", ("admin",)


def test_a_kept_list_survives_changes_it_does_not_cover(app, peer, client):
    mine, other = "keep-" + uuid.uuid4().hex[:8], "other-" + uuid.uuid4().hex[:8]
    _registered(client, mine)
    _registered(client, other)
    cache = app.extensions["registry_listings"]
    assert client.get(f"/registry-svc/instances?slug={mine}").status_code == 200
    kept = cache._entries[_admin_key(mine)]
    # Another slug's instance changes, and a node heartbeat is committed: the list is still the kept one.
    _registered(client, other, start=1)
    peer.report_self()
    again = client.get(f"/registry-svc/instances?slug={mine}")
    assert cache._entries[_admin_key(mine)] is kept and again.data == kept[2]
    assert again.headers["X-Registry-Index"] == str(kept[1])
    # A change to its own slug drops it.
    _registered(client, mine, start=1)
    after = client.get(f"/registry-svc/instances?slug={mine}")
    assert [r["id"] for r in after.json["instances"]] == [f"{mine}-0", f"{mine}-1"]
    assert cache._entries[_admin_key(mine)] is not kept and int(after.headers["X-Registry-Index"]) > kept[1]


def test_a_permits_change_drops_every_kept_list(app, client, client_for):
    owner = "perm-" + uuid.uuid4().hex[:8]
    _registered(client, owner)
    cache = app.extensions["registry_listings"]
    user = client_for(owner, "user")
    assert user.get(f"/registry-svc/instances?slug={owner}").status_code == 200
    key = ((("slug", owner),), owner, ("user",))
    kept = cache._entries[key]
    permits = client.get("/registry-svc/permits").json
    assert client.put("/registry-svc/permits", json=permits).status_code == 200
    assert user.get(f"/registry-svc/instances?slug={owner}").data == kept[2]
    assert cache._entries[key] is not kept


def test_a_list_too_large_to_keep_is_encoded_each_time_and_streamed(app, peer, client, monkeypatch):
    monkeypatch.setattr(listing_cache, "MAX_BODY_BYTES", 200)
    monkeypatch.setattr(jsonio, "STREAM_FROM_BYTES", 200)  # the hot path and Flask both stream it
    slug = "large-" + uuid.uuid4().hex[:8]
    _registered(client, slug, count=3)
    cache = app.extensions["registry_listings"]
    for query in (f"?slug={slug}", f"?slug={slug}&consistent"):  # the hot path, then Flask
        listed = client.get(f"/registry-svc/instances{query}")
        assert listed.status_code == 200 and listed.is_streamed
        assert listed.data == orjson.dumps({"instances": peer.list_instances({"slug": slug})[1]})
        assert listed.headers["Content-Length"] == str(len(listed.data))
    assert _admin_key(slug) not in cache._entries
    response = client.put("/registry-svc/instance", json={"id": f"{slug}-1", "url": f"http://{slug}-1:80",
                                                          "slug": slug, "details": "changed"})
    assert response.status_code == 201
    after = client.get(f"/registry-svc/instances?slug={slug}").json["instances"]
    assert next(r for r in after if r["id"] == f"{slug}-1")["details"] == "changed"


def test_a_list_of_many_records_is_sent_from_blocks_of_which_a_change_encodes_one_again(app, peer, client,
                                                                                      monkeypatch):
    monkeypatch.setattr(list_blocks, "BLOCK_RECORDS", 2)
    monkeypatch.setattr(jsonio, "STREAM_FROM_BYTES", 200)  # through the server's file wrapper too
    slug = "blocks-" + uuid.uuid4().hex[:8]
    _registered(client, slug, count=7)
    blocks = app.extensions["registry_listings"]._blocks
    # The first request is encoded whole; the blocks are kept from the second on.
    for query in (f"?slug={slug}", f"?slug={slug}", f"?slug={slug}&consistent"):  # the hot path, then Flask
        listed = client.get(f"/registry-svc/instances{query}")
        assert listed.status_code == 200
        assert listed.data == orjson.dumps({"instances": peer.list_instances({"slug": slug})[1]})
        assert listed.headers["Content-Length"] == str(len(listed.data))
    encoded = blocks.blocks_encoded
    assert client.put("/registry-svc/instance", json={"id": f"{slug}-3", "url": f"http://{slug}-3:80", "slug": slug,
                                                      "details": "changed"}).status_code == 201
    after = client.get(f"/registry-svc/instances?slug={slug}")
    assert after.data == orjson.dumps({"instances": peer.list_instances({"slug": slug})[1]})
    assert next(r for r in after.json["instances"] if r["id"] == f"{slug}-3")["details"] == "changed"
    assert blocks.blocks_encoded == encoded + 1

"""The state machine: registrations, removals, filters, nodes, snapshots and digests."""

import orjson

from registry import commands, instances
from registry.state import RegistryState
from tests.helpers import NOW, register


def test_register_creates_with_generated_id_status_unknown_and_heartbeat():
    state = RegistryState()
    result = register(state, {"url": "http://a:1", "slug": "svc"})
    assert result == {"code": "ok", "id": "inst_gen", "created": True}
    [record] = state.list_instances({})
    assert record["id"] == "inst_gen" and record["status"] == "Unknown" and record["slug"] == "svc"
    assert record["lastHeartbeat"] == "2026-11-18T11:06:40.000000000Z"


def test_reregistering_the_same_url_updates_and_merges():
    state = RegistryState()
    register(state, {"url": "http://a:1", "status": "Healthy", "tags": ["x"]}, generated="inst_one")
    result = register(state, {"url": "http://a:1", "details": "fine"}, generated="inst_two", now=NOW + 5)
    assert result["id"] == "inst_one" and result["created"] is False
    [record] = state.list_instances({})
    assert record["status"] == "Healthy" and record["tags"] == ["x"] and record["details"] == "fine"
    assert record["lastHeartbeat"].endswith(".000000005Z")


def test_reregistering_the_same_id_moves_the_address():
    state = RegistryState()
    register(state, {"id": "inst_x", "url": "http://a:1/old"})
    register(state, {"id": "inst_x", "scheme": "https", "ip": "10.0.0.1", "port": 8443})
    [record] = state.list_instances({})
    assert record["url"] == "https://10.0.0.1:8443"
    assert "host" not in record and "path" not in record and record["ip"] == "10.0.0.1"
    assert state.instance_by_url == {"https://10.0.0.1:8443": "inst_x"}
    # The old URL is free again for another instance.
    assert register(state, {"url": "http://a:1/old"}, generated="inst_y")["created"] is True


def test_an_id_cannot_take_a_url_registered_by_another_id():
    state = RegistryState()
    register(state, {"id": "inst_a", "url": "http://a:1"})
    result = register(state, {"id": "inst_b", "url": "http://a:1"})
    assert result["code"] == "conflict" and "inst_a" in result["error"]
    assert [r["id"] for r in state.list_instances({})] == ["inst_a"]


def test_remove_and_remove_again():
    state = RegistryState()
    register(state, {"id": "inst_a", "url": "http://a:1"})
    assert state.apply(commands.remove_instance("inst_a"), 2)["code"] == "ok"
    assert state.apply(commands.remove_instance("inst_a"), 3) == {"code": "not_found", "error": "Service Not Found"}
    assert state.list_instances({}) == [] and state.instance_by_url == {}


def test_filters_combine_and_tags_must_all_match():
    state = RegistryState()
    register(state, {"id": "i1", "url": "http://a:1", "slug": "s", "tags": ["x", "y"], "status": "Healthy"})
    register(state, {"id": "i2", "url": "http://b:1", "slug": "s", "tags": ["x"]})
    register(state, {"id": "i3", "url": "http://10.0.0.1:1", "slug": "t", "deploymentId": "d1",
                     "nodeUrl": "http://n:1"})
    ids = lambda filters: [r["id"] for r in state.list_instances(filters)]  # noqa: E731
    assert ids({"slug": "s"}) == ["i1", "i2"]
    assert ids({"tags": ["x"]}) == ["i1", "i2"]
    assert ids({"tags": ["x", "y"]}) == ["i1"]
    assert ids({"slug": "s", "status": "Unknown"}) == ["i2"]
    assert ids({"ip": "10.0.0.1", "deploymentId": "d1", "nodeUrl": "http://n:1"}) == ["i3"]
    assert ids({"host": "a", "scheme": "http"}) == ["i1"]
    assert ids({"slug": "nobody"}) == []


def test_node_reports_replace_by_url_and_follow_an_id_to_a_new_url():
    state = RegistryState()
    state.apply(commands.report_node({"id": "n1", "url": "http://p:1", "usage": {}}, NOW), 1)
    state.apply(commands.report_node({"id": "n2", "url": "http://q:1"}, NOW), 2)
    state.apply(commands.report_node({"id": "n1", "url": "http://p:2"}, NOW + 1), 3)
    assert [n["url"] for n in state.list_nodes()] == ["http://p:2", "http://q:1"]
    assert [n["id"] for n in state.list_nodes(["n2"])] == ["n2"]
    assert state.apply(commands.remove_node("http://q:1"), 4)["code"] == "ok"
    assert state.apply(commands.remove_node("http://q:1"), 5)["code"] == "not_found"


def test_bad_commands_return_errors_and_change_nothing():
    state = RegistryState()
    register(state, {"id": "i1", "url": "http://a:1"})
    before = (state.list_instances({}), state.list_nodes(), dict(state.instance_by_url))
    for command in (None, [], {"type": "nope", "v": 1}, {"type": "instance.register", "v": 99},
                    {"type": "instance.register", "v": 1}, {"type": "instance.register", "v": 1, "fields": {}},
                    {"type": "node.report", "v": 1, "node": "x", "now": 1},
                    {"type": "instance.remove", "v": 1}):
        result = state.apply(command, 7)
        assert result["code"] == "invalid", command
    # The index moves with the log; the records do not.
    assert (state.list_instances({}), state.list_nodes(), dict(state.instance_by_url)) == before


def test_snapshot_round_trip_keeps_state_and_digest():
    state = RegistryState()
    register(state, {"id": "i1", "url": "http://a:1", "tags": ["x"]})
    state.apply(commands.report_node({"id": "n1", "url": "http://p:1"}, NOW), 2)
    restored = RegistryState.from_snapshot(state.to_snapshot())
    assert restored.digest() == state.digest()
    assert restored.instance_by_url == state.instance_by_url


def test_digest_differs_when_state_differs():
    one, two = RegistryState(), RegistryState()
    register(one, {"id": "i1", "url": "http://a:1"}, index=1)
    register(two, {"id": "i1", "url": "http://a:2"}, index=1)
    assert one.digest()["sha256"] != two.digest()["sha256"]


def test_values_many_instances_share_are_kept_once():
    state = RegistryState()
    # Each command arrives decoded on its own, with its own copies of equal strings.
    for n in range(2):
        register(state, {"url": f"http://h{n}:8080", "slug": "".join(["sh", "op"]), "tags": ["".join(["pr", "od"])],
                         "nodeUrl": "".join(["http://node", ":1"])}, generated=f"inst_{n}")
    first, second = state.instances["inst_0"], state.instances["inst_1"]
    assert first["slug"] is second["slug"] and first["tags"][0] is second["tags"][0]
    assert first["nodeUrl"] is second["nodeUrl"]
    assert first["url"] is not second["url"]
    assert first["tags"] is second["tags"] and first["port"] is second["port"]


def test_a_state_loaded_from_a_decoded_snapshot_shares_values_as_an_applied_one_does():
    state = RegistryState()
    for n in range(3):
        register(state, {"url": f"http://h{n}:80", "slug": "shop", "tags": ["prod", "eu"], "nodeUrl": "http://node:1"},
                 generated=f"inst_{n}", index=n + 1)
    snapshot = orjson.loads(orjson.dumps(state.to_snapshot()))  # what a restart or a worker decodes
    snapshot["instances"][2]["addedLater"] = "by a newer version"
    loaded = RegistryState.from_snapshot(snapshot)
    first, second, third = (loaded.instances[f"inst_{n}"] for n in range(3))
    assert first["slug"] is second["slug"] is third["slug"] and first["nodeUrl"] is second["nodeUrl"]
    assert first["tags"] is second["tags"] and first["tags"] == ["prod", "eu"]
    assert third["addedLater"] == "by a newer version"  # a field it does not know is kept, not dropped
    del third["addedLater"]
    assert loaded.digest() == state.digest()


def test_tags_that_only_look_equal_are_not_shared():
    first = instances.stored_record({"id": "a", "url": "http://a:1", "tags": [1]})
    second = instances.stored_record({"id": "b", "url": "http://b:1", "tags": [True]})
    assert first["tags"] == [1] and second["tags"][0] is True

import pytest

from registry import commands, health
from registry.errors import ValidationError
from registry.instances import validate_heartbeat, validate_registration
from registry.permissions import caller
from registry.state import RegistryState
from registry.timestamps import format_ns

S = 1_000_000_000
T0 = 1_795_000_000 * S
A = caller("team-a", ["user"])
B = caller("team-b", ["user"])


def state_with(*bodies):
    state = RegistryState()
    for n, body in enumerate(bodies):
        state.apply(commands.register_instance(validate_registration(body), f"inst_{n}", T0, A), n + 1)
    return state


def test_connect_times_map_to_statuses():
    assert health.status_of_connect(None) == "Unreachable"
    assert health.status_of_connect(0.002) == "Healthy"
    assert health.status_of_connect(1.5) == "Degraded"


def test_rendezvous_moves_only_the_dead_peers_share():
    peers = ["http://p1:1", "http://p2:1", "http://p3:1"]
    records = [{"id": f"inst_{n}"} for n in range(300)]
    before = {r["id"]: health.scanner_of(r, peers) for r in records}
    assert {p: list(before.values()).count(p) > 50 for p in peers} == dict.fromkeys(peers, True)
    after = {r["id"]: health.scanner_of(r, peers[:2]) for r in records}
    moved = [i for i in before if before[i] != after[i]]
    assert moved and all(before[i] == "http://p3:1" for i in moved)


def test_an_instance_on_a_live_peers_node_goes_to_that_peer():
    peers = ["http://p1:1", "http://p2:1"]
    assert all(health.scanner_of({"id": f"i{n}", "nodeUrl": "http://p2:1"}, peers) == "http://p2:1"
               for n in range(20))
    # Its node is dead: hashing decides among the living.
    assert health.scanner_of({"id": "i", "nodeUrl": "http://gone:1"}, peers) in peers


def test_ttl_and_deregistration_deadlines():
    record = {"ttl": "30s", "lastHeartbeat": format_ns(T0)}
    assert not health.ttl_expired(record, T0 + 30 * S)
    assert health.ttl_expired(record, T0 + 31 * S)
    assert not health.ttl_expired({"lastHeartbeat": format_ns(T0)}, T0 + 10**6 * S)
    dead = {"deregisterAfter": "5m", "status": "Unreachable", "unreachableSince": format_ns(T0)}
    assert not health.deregistration_due(dead, T0 + 299 * S)
    assert health.deregistration_due(dead, T0 + 300 * S)
    assert not health.deregistration_due(dict(dead, status="Healthy"), T0 + 900 * S)
    assert not health.deregistration_due({"status": "Unreachable", "unreachableSince": format_ns(T0)}, T0 + 9**9 * S)


def test_self_preservation_rule():
    assert health.removals_allowed(1, 1)  # a single instance cannot be told apart
    assert health.removals_allowed(10, 5)
    assert not health.removals_allowed(10, 6)
    assert not health.removals_allowed(2, 2)


def test_node_status_turns_stale_after_three_periods():
    record = {"lastHeartbeat": format_ns(T0)}
    assert health.node_status(record, T0 + 45 * S, 15) == "Healthy"
    assert health.node_status(record, T0 + 46 * S, 15) == "Stale"


def test_scan_results_change_statuses_and_heartbeats_only_forward():
    state = state_with({"url": "http://a:1"}, {"url": "http://b:1", "deregisterAfter": "1m"})
    scan = commands.scan_results([{"id": "inst_0", "status": "Healthy"}, {"id": "inst_1", "status": "Unreachable"},
                                  {"id": "inst_gone", "status": "Healthy"}], ["inst_0", "inst_gone"], T0 + 5 * S,
                                 [], T0 + 6 * S)
    assert state.apply(scan, 10)["code"] == "ok"
    a, b = state.list_instances({})
    assert a["status"] == "Healthy" and a["lastHeartbeat"] == format_ns(T0 + 5 * S)
    assert b["status"] == "Unreachable" and b["unreachableSince"] == format_ns(T0 + 6 * S)
    # Still unreachable next cycle: the first time it went down is kept; an older time is ignored.
    state.apply(commands.scan_results([{"id": "inst_1", "status": "Unreachable"}], ["inst_0"], T0 + 1 * S, [],
                                      T0 + 20 * S), 11)
    a, b = state.list_instances({})
    assert b["unreachableSince"] == format_ns(T0 + 6 * S) and a["lastHeartbeat"] == format_ns(T0 + 5 * S)
    # A removal applies only to what is still Unreachable.
    result = state.apply(commands.scan_results([], [], T0, ["inst_0", "inst_1"], T0 + 90 * S), 12)
    assert result["removed"] == ["inst_1"] and [r["id"] for r in state.list_instances({})] == ["inst_0"]
    assert "http://b:1" not in state.instance_by_url


def test_scan_results_from_a_user_are_refused():
    state = state_with({"url": "http://a:1"})
    forged = dict(commands.scan_results([], [], T0, ["inst_0"], T0), caller=A)
    assert state.apply(forged, 5)["code"] == "forbidden"


def test_renewals_check_ownership_and_bring_an_instance_back():
    state = state_with({"url": "http://a:1", "ttl": "10s"})
    state.apply(commands.scan_results([{"id": "inst_0", "status": "Unreachable"}], [], T0, [], T0 + 20 * S), 5)
    renewals = [
        {"id": "inst_0", "at": T0 + 21 * S, "caller": B},
        {"id": "inst_missing", "at": T0 + 21 * S, "caller": A},
        {"id": "inst_0", "at": T0 + 22 * S, "caller": A, "details": "back"},
    ]
    result = state.apply(commands.renew_instances(renewals), 6)
    assert [r["code"] for r in result["results"]] == ["forbidden", "not_found", "ok"]
    [record] = state.list_instances({})
    assert record["status"] == "Healthy" and "unreachableSince" not in record
    assert record["lastHeartbeat"] == format_ns(T0 + 22 * S) and record["details"] == "back"


def test_registration_validates_the_extensions():
    assert validate_registration({"url": "http://a:1", "ttl": "30s", "deregisterAfter": "5m"})["ttl"] == "30s"
    for body in ({"url": "http://a:1", "ttl": "soon"}, {"url": "http://a:1", "ttl": "0s"},
                 {"url": "http://a:1", "deregisterAfter": "999d"}, {"url": "http://a:1", "ttl": 30}):
        with pytest.raises(ValidationError):
            validate_registration(body)
    assert validate_heartbeat(None) == {} and validate_heartbeat({"status": "Degraded"}) == {"status": "Degraded"}
    for body in ({"status": "Fine"}, {"lastHeartbeat": "x"}, [], {"details": 5}):
        with pytest.raises(ValidationError):
            validate_heartbeat(body)

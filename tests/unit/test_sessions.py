"""Re-submitted commands: applied once, answered as the first attempt, forgotten deterministically."""

from registry import commands, sessions
from registry.instances import validate_registration
from registry.state import RegistryState

NOW = 1_795_000_000_000_000_000


def registration(url, generated="inst_gen", command_id="c1"):
    command = commands.register_instance(validate_registration({"url": url, "slug": "svc"}), generated, NOW)
    return commands.with_id(command, command_id)


def test_a_registration_applied_twice_is_one_record_answered_as_created_both_times():
    state = RegistryState()
    command = registration("http://127.0.0.1:9001")
    first = state.apply(command, 1)
    records_after_first = state.list_instances({})
    again = state.apply(command, 2)
    assert first == {"code": "ok", "id": "inst_gen", "created": True}
    assert again == {"code": "ok", "id": "inst_gen", "created": True, "index": 1}
    assert [r["id"] for r in state.list_instances({})] == ["inst_gen"]
    assert state.list_instances({}) == records_after_first  # the same record, same heartbeat
    assert state.kind_index[commands.INSTANCES] == 1  # the second attempt changed nothing


def test_a_removal_that_took_effect_answers_ok_again_not_not_found():
    state = RegistryState()
    state.apply(registration("http://127.0.0.1:9001"), 1)
    removal = commands.with_id(commands.remove_instance("inst_gen"), "c2")
    assert state.apply(removal, 2)["code"] == "ok"
    assert state.apply(removal, 3) == {"code": "ok", "id": "inst_gen", "index": 2}
    # Without an id, the same removal is a new command, and there is nothing left to remove.
    assert state.apply(commands.remove_instance("inst_gen"), 4)["code"] == "not_found"


def test_a_late_registration_does_not_bring_back_an_instance_removed_since():
    state = RegistryState()
    command = registration("http://127.0.0.1:9001")
    state.apply(command, 1)
    state.apply(commands.with_id(commands.remove_instance("inst_gen"), "c2"), 2)
    assert state.apply(command, 3)["created"] is True
    assert state.list_instances({}) == []


def test_a_refusal_is_answered_the_same_way_again():
    state = RegistryState()
    removal = commands.with_id(commands.remove_instance("inst_absent"), "c1")
    assert state.apply(removal, 1)["code"] == "not_found"
    state.apply(commands.register_instance(validate_registration({"id": "inst_absent", "url": "http://127.0.0.1:1"}),
                                           "inst_x", NOW), 2)
    assert state.apply(removal, 3)["code"] == "not_found"
    assert [r["id"] for r in state.list_instances({})] == ["inst_absent"]


def test_ids_are_forgotten_by_index_and_by_count_in_the_same_order_everywhere(monkeypatch):
    monkeypatch.setattr(sessions, "KEPT_ENTRIES", 10)
    monkeypatch.setattr(sessions, "KEPT_IDS", 4)
    table = sessions.CommandSessions()
    for n in range(1, 7):
        table.remember(f"c{n}", n, {"code": "ok"})
    assert [entry[0] for entry in table.entries()] == ["c3", "c4", "c5", "c6"]  # at most four
    table.remember("c7", 15, {"code": "ok"})
    assert [entry[0] for entry in table.entries()] == ["c5", "c6", "c7"]  # index 4 and below are too old
    assert table.answered("c3") is None and table.answered("c7") == {"code": "ok", "index": 15}


def test_the_table_survives_a_snapshot_and_is_part_of_the_digest():
    state = RegistryState()
    command = registration("http://127.0.0.1:9001")
    state.apply(command, 1)
    restored = RegistryState.from_snapshot(state.to_snapshot())
    assert restored.digest() == state.digest()
    assert restored.apply(command, 2) == state.apply(command, 2)
    assert len(restored.sessions) == 1
    plain = RegistryState()
    plain.apply(commands.register_instance(validate_registration({"url": "http://127.0.0.1:9001", "slug": "svc"}),
                                           "inst_gen", NOW), 1)
    assert plain.digest() != RegistryState.from_snapshot(state.to_snapshot()).digest()


def test_listing_never_shows_command_ids():
    state = RegistryState()
    state.apply(registration("http://127.0.0.1:9001", command_id="c-secret"), 1)
    assert "c-secret" not in repr(state.list_instances({}))


def test_kept_results_share_their_shape_and_come_back_whole_after_a_snapshot():
    table = sessions.CommandSessions()
    table.remember("c1", 1, {"code": "ok", "id": "inst_a", "created": True})
    table.remember("c2", 2, {"code": "ok", "id": "inst_b", "created": False})
    table.remember("c3", 3, {"code": "not_found", "error": "no instance inst_z"})
    assert table._results["c1"][1] is table._results["c2"][1]  # one shape, kept once
    expected = [["c1", {"code": "ok", "id": "inst_a", "created": True, "index": 1}],
                ["c2", {"code": "ok", "id": "inst_b", "created": False, "index": 2}],
                ["c3", {"code": "not_found", "error": "no instance inst_z", "index": 3}]]
    assert table.entries() == expected
    restored = sessions.CommandSessions.of(table.entries())
    assert restored.entries() == expected
    assert restored.answered("c3") == expected[2][1]
    # An answer is the caller's to change: the table keeps its own.
    restored.answered("c1")["created"] = "changed"
    assert restored.answered("c1")["created"] is True

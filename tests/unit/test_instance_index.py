"""The secondary indexes answer filtered lists like a walk over every record would, and each
slug's change index moves when, and only when, that slug's instances change."""

import collections

from registry import commands
from registry.instance_index import InstanceIndex
from registry.instances import matches
from registry.state import RegistryState
from tests.helpers import NOW, register


def fleet(count=60, slugs=6):
    state = RegistryState()
    for n in range(count):
        register(state, {"id": f"i{n:03d}", "url": f"http://h{n}.test:80", "slug": f"svc-{n % slugs}",
                         "tags": ["prod" if n % 2 else "dev", f"zone-{n % 3}"], "status": "Healthy" if n % 5 else "Degraded",
                         "nodeUrl": f"http://node-{n % 4}:11337", "deploymentId": f"depl-{n % 10}"})
    return state


def walked(state, filters):
    return sorted((r for r in state.instances.values() if matches(r, filters)), key=lambda r: r["id"])


def test_every_indexed_filter_and_their_combinations_answer_as_a_walk_does():
    state = fleet()
    cases = [{"slug": "svc-1"}, {"slug": "svc-1", "tags": ["prod"]}, {"slug": "svc-2", "tags": ["prod"]},
             {"slug": "svc-3", "status": "Degraded"}, {"tags": ["dev", "zone-1"]}, {"status": "Degraded"},
             {"nodeUrl": "http://node-2:11337", "deploymentId": "depl-6"}, {"host": "h7.test"},
             {"host": "h7.test", "slug": "svc-2"}, {"slug": "absent"}, {"tags": ["absent"]},
             {"slug": "svc-1", "path": "/nothing"}, {"scheme": "http"}, {}]
    for filters in cases:
        assert state.list_instances(filters) == walked(state, filters), filters
    assert [r["id"] for r in state.list_instances({"host": "h7.test"})] == ["i007"]
    assert state.list_instances({"slug": "svc-2", "tags": ["prod"]}) == []  # svc-2 holds even n: dev only


def test_the_index_follows_updates_moves_and_removals_and_equals_a_rebuild():
    state = fleet()
    register(state, {"id": "i001", "url": "http://moved.test:81", "slug": "svc-9", "tags": ["canary"]})
    state.apply(commands.scan_results([{"id": "i002", "status": "Unreachable"}], ["i003"], NOW, [], NOW),
                state.index + 1)
    state.apply(commands.remove_instance("i004"), state.index + 1)
    index = state.instance_index
    assert index.contents() == InstanceIndex.of(state.instances.values(), state.index).contents()
    assert [r["id"] for r in state.list_instances({"slug": "svc-9"})] == ["i001"]
    assert "i001" not in [r["id"] for r in state.list_instances({"slug": "svc-1"})]
    assert state.list_instances({"host": "h1.test"}) == [] and state.list_instances({"id": "i004"}) == []
    assert [r["id"] for r in state.list_instances({"status": "Unreachable"})] == ["i002"]
    assert state.instance_counts_by_status() == {"Healthy": 46, "Degraded": 12, "Unreachable": 1} == \
        collections.Counter(r["status"] for r in state.instances.values())
    # A loaded snapshot has the same index, though it was never in the snapshot.
    assert "instance_index" not in str(state.to_snapshot().keys())
    loaded = RegistryState.from_snapshot(state.to_snapshot())
    assert loaded.instance_index.contents() == index.contents()


def test_a_change_moves_only_its_own_slugs_change_index():
    state = fleet(count=12, slugs=3)
    before = {slug: state.instances_changed_index({"slug": slug}) for slug in ("svc-0", "svc-1", "svc-2")}
    state.instance_index.take_touched_slugs()
    register(state, {"id": "i001", "url": "http://h1.test:80", "slug": "svc-1", "details": "still here"})
    at = state.index
    assert state.instances_changed_index({"slug": "svc-1"}) == at
    assert {s: state.instances_changed_index({"slug": s}) for s in ("svc-0", "svc-2")} == \
        {"svc-0": before["svc-0"], "svc-2": before["svc-2"]}
    assert state.instances_changed_index({}) == at  # a list of every instance covers it too
    assert state.instance_index.take_touched_slugs() == {"svc-1"}
    # Moving an instance touches the slug it left and the one it joined.
    register(state, {"id": "i002", "url": "http://h2.test:80", "slug": "svc-0"})
    assert state.instance_index.take_touched_slugs() == {"svc-0", "svc-2"}
    assert state.instances_changed_index({"slug": "svc-2"}) == state.index
    # A node heartbeat is no instance change.
    state.apply(commands.report_node({"id": "n1", "url": "http://n:1"}, NOW), state.index + 1)
    assert state.instances_changed_index({"slug": "svc-0"}) < state.index
    assert state.instance_index.take_touched_slugs() == set()


def test_a_slug_that_empties_and_comes_back_still_reads_as_changed():
    state = fleet(count=2, slugs=2)  # i000 in svc-0, i001 in svc-1
    seen = state.instances_changed_index({"slug": "svc-1"})
    state.apply(commands.remove_instance("i001"), state.index + 1)
    emptied = state.index
    assert state.instances_changed_index({"slug": "svc-1"}) == emptied > seen
    assert "svc-1" not in state.instance_index.slug_changed  # forgotten: no memory kept per gone slug
    register(state, {"id": "i009", "url": "http://back.test:80", "slug": "svc-1"})
    assert state.instances_changed_index({"slug": "svc-1"}) == state.index > emptied
    # A slug never seen reads as changed no later than the last slug that emptied.
    assert state.instances_changed_index({"slug": "never"}) == emptied


def test_large_groups_and_single_holders_keep_their_members():
    index = InstanceIndex()
    records = [{"id": f"i{n}", "url": f"http://h{n}:1", "slug": "big", "host": f"h{n}"} for n in range(300)]
    for record in records:
        index.replaced(None, record, 1)
    assert len(index.candidates({"slug": "big"})) == 300
    assert index.candidates({"host": "h7"}) == ["i7"]
    for record in records[1:]:
        index.replaced(record, None, 2)
    assert index.candidates({"slug": "big"}) == ["i0"] and index.count("slug", "big") == 1
    index.replaced(records[0], None, 3)
    assert index.candidates({"slug": "big"}) == [] and index.by["slug"] == {} and index.by["host"] == {}
    # Freed slots are reused, never mixed up with the ids now in them.
    index.replaced(None, {"id": "fresh", "url": "http://f:1", "slug": "new"}, 4)
    assert index.candidates({"slug": "new"}) == ["fresh"] and index.candidates({"slug": "big"}) == []


def test_a_new_version_of_a_record_moves_only_what_changed_and_equals_a_rebuild():
    index = InstanceIndex()
    others = [{"id": f"o{n}", "url": f"http://o{n}:1", "slug": "svc", "status": "Healthy", "tags": ["a", "b"]}
              for n in range(3)]
    for record in others:
        index.replaced(None, record, 1)
    versions = [
        {"id": "x", "url": "http://x:1", "slug": "svc", "status": "Healthy", "tags": ["a", "b"], "host": "x"},
        {"id": "x", "url": "http://x:1", "slug": "svc", "status": "Unreachable", "tags": ["a", "b"], "host": "x"},
        {"id": "x", "url": "http://x:1", "slug": "svc", "status": "Unreachable", "tags": ["b", "c", "c"], "host": "x"},
        {"id": "x", "url": "http://x:2", "slug": "other", "status": "Healthy", "host": "y", "ip": "127.0.0.2"},
        {"id": "x", "url": "http://x:2", "slug": "other", "status": "Healthy", "tags": ["a", "a"], "ip": "127.0.0.2"},
        {"id": "x", "url": "http://x:2", "slug": "other", "status": "Healthy", "tags": ["c", 7, "a"]},
    ]
    for at, (old, new) in enumerate(zip(versions, versions[1:]), start=2):
        if at == 2:
            index.replaced(None, old, 1)
        index.replaced(old, new, at)
        assert index.contents() == InstanceIndex.of(others + [new], 0).contents(), new
    index.replaced(versions[-1], None, 10)
    assert index.contents() == InstanceIndex.of(others, 0).contents()
    assert index.candidates({"tags": ["c"]}) == [] and index.candidates({"tags": ["a", "b"]}) == ["o0", "o1", "o2"]

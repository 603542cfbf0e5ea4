"""Determinism: peers that apply the same commands in the same order end in the same state."""

import collections
import json
import os
import subprocess
import sys

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster import worker_channel
from registry import commands
from registry.instance_index import InstanceIndex
from registry.instances import matches
from registry.state import RegistryState

hosts = st.sampled_from(["a", "b", "c", "10.0.0.1"])
ids = st.sampled_from(["i1", "i2", "i3", None])
statuses = st.sampled_from(["Unknown", "Healthy", "Degraded", "Unreachable", "Error"])
slugs = st.sampled_from(["s1", "s2"])
filters = st.fixed_dictionaries({}, optional={
    "slug": slugs, "status": statuses, "host": hosts, "tags": st.lists(st.sampled_from(["x", "y", "z"]), min_size=1,
                                                                        max_size=2)})


@st.composite
def registration(draw):
    fields = {"url": f"http://{draw(hosts)}:{draw(st.integers(1, 3))}"}
    instance_id = draw(ids)
    if instance_id:
        fields["id"] = instance_id
    if draw(st.booleans()):
        fields["status"] = draw(statuses)
    if draw(st.booleans()):
        fields["tags"] = draw(st.lists(st.sampled_from(["x", "y", "z"]), max_size=3))
    if draw(st.booleans()):
        fields["slug"] = draw(slugs)
    return commands.register_instance(fields, f"inst_{draw(st.integers(0, 5))}", draw(st.integers(0, 2**62)))


command_strategy = st.one_of(
    registration(),
    st.builds(commands.remove_instance, st.sampled_from(["i1", "i2", "inst_0", "inst_1", "missing"])),
    st.builds(lambda i, u, now: commands.report_node({"id": i, "url": u}, now),
              st.sampled_from(["n1", "n2"]), st.sampled_from(["http://p:1", "http://p:2"]), st.integers(0, 2**62)),
    st.builds(commands.remove_node, st.sampled_from(["http://p:1", "http://p:2"])),
    st.builds(lambda updates, seen, removals, now: commands.scan_results(updates, seen, now, removals, now),
              st.lists(st.fixed_dictionaries({"id": st.sampled_from(["i1", "i2", "inst_0"]), "status": statuses}),
                       max_size=4),
              st.lists(st.sampled_from(["i1", "i2", "inst_0"]), max_size=3),
              st.lists(st.sampled_from(["i1", "i2", "inst_0"]), max_size=2), st.integers(0, 2**62)),
    st.builds(lambda ids, now: commands.renew_instances(
        [{"id": i, "at": now, "caller": {"slug": "s", "roles": ["user"]}} for i in ids]),
        st.lists(st.sampled_from(["i1", "i2", "inst_0"]), max_size=3), st.integers(0, 2**62)),
    st.just({"type": "garbage", "v": 1}),
    # Re-submissions: a few command ids shared by several commands (registry/sessions.py).
    st.builds(commands.with_id,
              st.one_of(registration(), st.builds(commands.remove_instance, st.sampled_from(["i1", "inst_0"]))),
              st.sampled_from(["c1", "c2", "c3"])),
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Applies each sequence on a fresh state and prints what a peer would end with.
REPLAY = """
import json, sys
from registry.state import RegistryState
ended = []
for sequence in json.load(sys.stdin):
    state = RegistryState()
    results = [state.apply(command, index) for index, command in enumerate(sequence, start=2)]
    ended.append({"results": results, "digest": state.digest()["sha256"],
                  "ids": [record["id"] for record in state.list_instances({})]})
json.dump(ended, sys.stdout)
"""


@settings(max_examples=200, deadline=None)
@given(st.lists(command_strategy, max_size=40))
def test_same_commands_same_state(sequence):
    first, second = RegistryState(), RegistryState()
    results_first = [first.apply(c, i) for i, c in enumerate(sequence, start=2)]
    results_second = [second.apply(c, i) for i, c in enumerate(sequence, start=2)]
    assert results_first == results_second
    assert first.to_snapshot() == second.to_snapshot()
    assert first.digest() == second.digest()
    # The url index is always exactly the index of the records.
    assert first.instance_by_url == {r["url"]: r["id"] for r in first.instances.values()}
    # A snapshot taken at any point restores to an equal state.
    assert RegistryState.from_snapshot(first.to_snapshot()).digest() == first.digest()


@settings(max_examples=200, deadline=None)
@given(st.lists(command_strategy, max_size=40), st.lists(filters, min_size=1, max_size=5))
def test_the_indexes_are_what_a_rebuild_gives_and_lists_match_a_walk(sequence, queries):
    state = RegistryState()
    last_change = {}  # slug -> the index of the last command that changed its instances
    for index, command in enumerate(sequence, start=2):
        before = {r["id"]: r for r in state.instances.values()}
        state.apply(command, index)
        for instance_id in before.keys() | state.instances.keys():
            old, new = before.get(instance_id), state.instances.get(instance_id)
            if old is not new:
                for record in (old, new):
                    if record is not None and record.get("slug"):
                        last_change[record["slug"]] = index
    assert state.instance_index.contents() == InstanceIndex.of(state.instances.values(), 0).contents()
    walked_counts = collections.Counter((r["slug"], r["status"]) for r in state.instances.values()
                                        if isinstance(r.get("slug"), str))
    assert state.instance_counts_by_slug_and_status() == dict(walked_counts)
    for wanted in queries:
        walked = sorted((r for r in state.instances.values() if matches(r, wanted)), key=lambda r: r["id"])
        assert state.list_instances(wanted) == walked
    for slug in ("s1", "s2"):
        # Never earlier than the last change (a blocking read must not miss it); exactly it
        # while the slug has instances.
        changed = state.instances_changed_index({"slug": slug})
        assert changed >= last_change.get(slug, 0)
        if state.list_instances({"slug": slug}):
            assert changed == last_change[slug]


@settings(max_examples=5, deadline=None)
@given(st.lists(st.lists(command_strategy, max_size=40), min_size=1, max_size=20))
def test_interpreters_with_other_hash_seeds_end_in_the_same_state(sequences):
    # Peers are separate processes, each with its own string hashing: set and dict iteration
    # orders that depend on it would make their states differ, which one process cannot show.
    document = json.dumps(sequences)
    ended = []
    for seed in ("0", "1", "4242"):
        replayed = subprocess.run([sys.executable, "-c", REPLAY], input=document, capture_output=True, text=True,
                                  cwd=ROOT, env=dict(os.environ, PYTHONHASHSEED=seed), timeout=60)
        assert replayed.returncode == 0, replayed.stderr
        ended.append(json.loads(replayed.stdout))
    assert ended[0] == ended[1] == ended[2]


@settings(max_examples=200, deadline=None)
@given(st.lists(command_strategy, max_size=40), st.integers(0, 40), st.integers(1, 5))
def test_an_http_worker_replica_fed_through_its_channel_ends_equal(sequence, cut, batch_size):
    """What an HTTP worker does (cluster/worker_replica.py): load the Raft process's snapshot,
    pickled in slices as the channel sends it, at some point of the log, then apply every later
    batch decoded from orjson; its answers and its state are the Raft process's."""
    raft = RegistryState()
    batches = [sequence[i:i + batch_size] for i in range(0, len(sequence), batch_size)]
    worker = None
    for number, batch in enumerate(batches, start=2):
        if worker is None and number - 2 >= cut:
            worker = _loaded_as_a_worker_loads(raft)
        raft_results = [raft.apply(command, number) for command in batch]
        if worker is not None:
            index, decoded = orjson.loads(orjson.dumps([number, batch]))
            assert [worker.apply(command, index) for command in decoded] == orjson.loads(orjson.dumps(raft_results))
    if worker is None:
        worker = _loaded_as_a_worker_loads(raft)
    assert worker.digest() == raft.digest()
    assert worker.to_snapshot() == orjson.loads(orjson.dumps(raft.to_snapshot()))


def _loaded_as_a_worker_loads(raft):
    frame = worker_channel.encode_snapshot(raft.to_snapshot())
    return RegistryState.from_snapshot(worker_channel.decode_snapshot(frame[worker_channel.HEADER.size:]),
                                       values_shared=True)

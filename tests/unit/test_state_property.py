"""Determinism: peers that apply the same commands in the same order end in the same state."""

from hypothesis import given, settings
from hypothesis import strategies as st

from registry import commands
from registry.state import RegistryState

hosts = st.sampled_from(["a", "b", "c", "10.0.0.1"])
ids = st.sampled_from(["i1", "i2", "i3", None])
statuses = st.sampled_from(["Unknown", "Healthy", "Degraded", "Unreachable", "Error"])


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
)


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

"""A write re-submitted after its first attempt was applied: one effect, the first attempt's answer."""

import time

import pytest

from registry import commands
from registry.instances import validate_registration


@pytest.fixture(scope="module")
def peer(real_peer):
    """Re-submission through the real group committer and Raft."""
    return real_peer


def test_a_registration_submitted_again_after_it_was_applied_is_one_record_answered_as_created(peer, client):
    fields = validate_registration({"url": "http://127.0.0.1:9301", "slug": "resubmitted"})
    command = commands.with_id(commands.register_instance(fields, "inst_resubmitted", time.time_ns()), "cid-test-1")
    first = peer.committer.submit(command, 5)
    again = peer.committer.submit(command, 5)
    assert first["created"] is True and again["created"] is True
    assert again["index"] == first["index"]
    listed = client.get("/registry-svc/instances", query_string={"slug": "resubmitted"}).get_json()["instances"]
    assert [r["id"] for r in listed] == ["inst_resubmitted"]


def test_a_removal_submitted_again_after_it_was_applied_answers_as_the_first(peer, client):
    assert client.put("/registry-svc/instance", json={"id": "inst_removed_twice",
                                                      "url": "http://127.0.0.1:9302"}).status_code == 201
    removal = commands.with_id(commands.remove_instance("inst_removed_twice"), "cid-test-2")
    assert peer.committer.submit(removal, 5)["code"] == "ok"
    assert peer.committer.submit(removal, 5)["code"] == "ok"
    assert client.delete("/registry-svc/instance/inst_removed_twice").status_code == 404  # a new request


def test_every_write_submitted_at_the_peer_is_its_own_command(peer):
    fields = validate_registration({"url": "http://127.0.0.1:9303", "slug": "twice"})
    assert peer.register_instance(fields)["created"] is True
    assert peer.register_instance(fields)["created"] is False  # an update, not a replay of the first

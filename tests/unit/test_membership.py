import json
import pickle

import pytest

from api.operations import validate_address
from cluster import membership
from cluster.identity import ConfigurationError
from registry.errors import ValidationError

SELF = "10.0.0.1:21337"


def entry(change, address, index=1):
    # As PySyncObj journals a membership change: type byte 2, then the pickled request.
    return bytes([2]) + pickle.dumps([change, address, address]), index, 1


def test_replay_applies_the_journals_changes_in_order():
    entries = [
        entry("add", "10.0.0.4:21337"),
        (b"\x00some registry command", 2, 1),
        entry("add", "10.0.0.5:21337"),
        entry("rem", "10.0.0.2:21337"),
        entry("rem", "10.0.0.5:21337"),
    ]
    partners = {"10.0.0.2:21337", "10.0.0.3:21337"}
    assert membership.replay(partners, entries, SELF) == {"10.0.0.3:21337", "10.0.0.4:21337"}


def test_replay_over_a_members_file_that_already_holds_some_changes_ends_the_same():
    entries = [entry("add", "10.0.0.4:21337"), entry("rem", "10.0.0.4:21337"), entry("add", "10.0.0.4:21337")]
    assert membership.replay({"10.0.0.4:21337"}, entries, SELF) == {"10.0.0.4:21337"}
    assert membership.replay(set(), entries[:2], SELF) == set()


def test_replay_never_makes_self_a_partner():
    assert membership.replay(set(), [entry("add", SELF), entry("rem", SELF)], SELF) == set()


def test_members_file_round_trip_and_it_wins_over_raft_peers(tmp_path):
    assert membership.read(str(tmp_path)) is None
    assert membership.starting_partners(str(tmp_path), SELF, ("10.0.0.2:21337",)) == ("10.0.0.2:21337",)
    membership.write(str(tmp_path), SELF, {SELF, "10.0.0.3:21337", "10.0.0.4:21337"})
    document = json.loads((tmp_path / membership.FILE_NAME).read_text())
    assert document == {"self": SELF, "members": sorted([SELF, "10.0.0.3:21337", "10.0.0.4:21337"])}
    assert (tmp_path / membership.FILE_NAME).stat().st_mode & 0o077 == 0
    assert membership.starting_partners(str(tmp_path), SELF, ("10.0.0.2:21337",)) == (
        "10.0.0.3:21337", "10.0.0.4:21337")


@pytest.mark.parametrize("content", ["{", '{"members": "a"}', '{"members": [1]}', "[]"])
def test_a_damaged_members_file_is_refused_with_its_name(tmp_path, content):
    (tmp_path / membership.FILE_NAME).write_text(content)
    with pytest.raises(ConfigurationError, match=membership.FILE_NAME):
        membership.read(str(tmp_path))


@pytest.mark.parametrize("body, message", [
    ([], "must be a JSON object"),
    ({}, "'raft' is required"),
    ({"raft": 5}, "must be a string"),
    ({"raft": "host"}, "host:port"),
    ({"raft": "host:0"}, "host:port"),
    ({"raft": "host:1", "url": "x"}, "unknown field"),
])
def test_bad_peer_addresses_are_refused(body, message):
    with pytest.raises(ValidationError, match=message):
        validate_address(body)


def test_a_good_peer_address_is_accepted():
    assert validate_address({"raft": "10.0.0.9:21337"}) == "10.0.0.9:21337"

"""Who the Raft peers are, changed at runtime one peer at a time, and kept across restarts.

PySyncObj changes membership through the Raft log (dynamicMembershipChange): a change takes
effect on each peer as soon as its entry is appended, one change at a time. It keeps the result
only in memory: a restarted peer goes back to its --raft-peers, and does not replay membership
entries from its journal. So each peer writes its membership to DATA_DIR/members.json whenever
it changes, starts from that file, and replays its journal's membership entries on top.

Adding a peer: start it with --join and --raft-peers naming the current members, then
`registry cluster add-peer` (POST /registry-svc/cluster/peers). Removing one: `remove-peer`;
a leader is first asked to hand leadership off, since PySyncObj refuses to remove a leader.
"""

import json
import logging
import os
import pickle
import socket
import threading
import time

from pysyncobj import FAIL_REASON

from registry import commands
from registry.errors import CONFLICT, NOT_FOUND

from .config import split_address
from .identity import ConfigurationError, write_private
from .submit import WriteUnavailable

log = logging.getLogger(__name__)

FILE_NAME = "members.json"
_MEMBERSHIP_ENTRY = 2  # PySyncObj's _COMMAND_TYPE.MEMBERSHIP: the first byte of the entry
RETRY_PAUSE_SECONDS = 0.1
CONNECT_CHECK_SECONDS = 2.0
HANDOFF_RETRY_SECONDS = 3.0


class MembershipError(Exception):
    """A change that was not made: `code` is NOT_FOUND (no such member), CONFLICT (not possible
    as the cluster stands) or UNAVAILABLE (not made in time: retry)."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


UNAVAILABLE = "unavailable"


# -- the members file ---------------------------------------------------------------------------

def read(data_dir):
    """The members (raft addresses, self included) this peer last knew, or None before any."""
    path = os.path.join(data_dir, FILE_NAME)
    try:
        with open(path, encoding="utf-8") as source:
            document = json.load(source)
        members = document["members"]
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise ValueError("'members' is not a list of addresses")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigurationError(
            f"{path} cannot be read ({error}). It holds this peer's view of the cluster's members: "
            "fix it, or delete it to start from --raft-peers") from None
    return members


def write(data_dir, self_address, members):
    document = {"self": self_address, "members": sorted(members)}
    path = os.path.join(data_dir, FILE_NAME)
    # A rename over the old file: a crash leaves the old membership or the new, never half.
    write_private(path + ".tmp", json.dumps(document, indent=2) + "\n")
    os.replace(path + ".tmp", path)


def starting_partners(data_dir, self_address, configured_partners):
    """The partners to start with: the members file once there is one, else --raft-peers."""
    members = read(data_dir)
    if members is None:
        return tuple(configured_partners)
    partners = tuple(sorted(m for m in members if m != self_address))
    if set(partners) != set(configured_partners):
        log.info("starting with the members this peer last knew (%s), not --raft-peers (%s)",
                 ", ".join(partners) or "none", ", ".join(configured_partners) or "none")
    return partners


def replay(partners, entries, self_address):
    """partners after the membership changes among raft log entries [(command, index, term)]."""
    result = set(partners)
    for command, _index, _term in entries:
        if not command or command[0] != _MEMBERSHIP_ENTRY:
            continue
        # Our own journal, written by PySyncObj with pickle like every entry it holds.
        change, address = pickle.loads(command[1:])[:2]
        if address == self_address:
            continue
        if change == "add":
            result.add(address)
        elif change == "rem":
            result.discard(address)
    return result


# -- changes ----------------------------------------------------------------------------------

def add_peer(peer, address, timeout):
    replica = peer.replica
    if address in replica.members:
        return {"added": False, "members": replica.members,
                "message": f"{address} is already a member"}
    _require_listening(address)
    _change(peer, "add", address, time.monotonic() + timeout)
    return {"added": True, "members": replica.members,
            "message": f"{address} is a member; it copies the state from the leader once it is running"}


def _require_listening(address):
    # A change takes effect when appended: a member added before it runs counts towards the
    # majority without answering, and in a cluster of one or two that stops every commit.
    host, port = split_address(address, "the peer's Raft address")
    try:
        socket.create_connection((host, port), timeout=CONNECT_CHECK_SECONDS).close()
    except OSError as error:
        raise MembershipError(CONFLICT, f"nothing answers at {address} ({error.strerror or error}): start the new peer "
                                   "with --join first, then add it") from None


def remove_peer(peer, address, timeout):
    replica = peer.replica
    if address not in replica.members:
        raise MembershipError(NOT_FOUND, f"{address} is not a member; members are {', '.join(replica.members)}")
    if len(replica.members) == 1:
        raise MembershipError(CONFLICT, "the last member cannot be removed")
    deadline = time.monotonic() + timeout
    while replica.leader_address == address:
        _hand_off_leadership(peer, address, deadline)
    _change(peer, "rem", address, deadline)
    return {"removed": True, "members": replica.members,
            "message": f"{address} is no longer a member: stop it (its data directory is no longer needed)"}


def _hand_off_leadership(peer, leader, deadline):
    replica = peer.replica
    asked_at = None
    while time.monotonic() < deadline:
        if replica.leader_address not in (None, leader):
            return
        if replica.leader_address == leader and (asked_at is None or time.monotonic() - asked_at > HANDOFF_RETRY_SECONDS):
            # Through the log, so it reaches the leader from whichever peer took the request; again
            # if the forced election did not take (the old leader can win it back).
            try:
                peer.submit(commands.leader_handoff(leader))
            except WriteUnavailable as error:
                raise MembershipError(UNAVAILABLE, f"could not ask the leader to hand off: {error.message}") from None
            asked_at = time.monotonic()
        time.sleep(RETRY_PAUSE_SECONDS)
    raise MembershipError(UNAVAILABLE, f"{leader} leads and did not hand leadership off in time (no other peer was "
                               "fully caught up); retry")


def _change(peer, change, address, deadline):
    """Commit one membership change, retrying while the leader refuses for now (its first entry of
    the term is not committed yet, or another change is in flight)."""
    replica = peer.replica
    last_reason = None
    while time.monotonic() < deadline:
        outcome = replica.change_membership(change, address, max(0.1, deadline - time.monotonic()))
        if outcome == FAIL_REASON.SUCCESS:
            return
        last_reason = outcome
        if outcome is None:
            break
        if change == "rem" and replica.leader_address == address:
            _hand_off_leadership(peer, address, deadline)
            continue
        if (address in replica.members) == (change == "add"):
            return  # an earlier try of ours was committed after all
        time.sleep(RETRY_PAUSE_SECONDS)
    what = {FAIL_REASON.MISSING_LEADER: "no leader is known", FAIL_REASON.REQUEST_DENIED:
            "the leader refused it for now (another membership change is in flight, or it was just elected)",
            None: "it was not confirmed in time"}.get(last_reason, f"it failed ({last_reason})")
    verb = "adding" if change == "add" else "removing"
    raise MembershipError(UNAVAILABLE, f"{verb} {address}: {what}; check GET /registry-svc/cluster and retry")


class ChangeWaiter:
    """Turns PySyncObj's callback into a blocking wait."""

    def __init__(self):
        self._done = threading.Event()
        self.reason = None

    def __call__(self, _result, reason):
        self.reason = reason
        self._done.set()

    def wait(self, timeout):
        return self.reason if self._done.wait(timeout) else None

"""Health decisions and the commands that carry them.

The scanner (cluster/scanner.py) measures; the pure functions here decide what a measurement
means, which peer scans which instance, and when an instance is removed. Every decision that
depends on time takes `now` from the proposer, and the apply handlers below only replay what
the command says, so apply stays free of clocks.
"""

import hashlib

from .durations import parse_seconds
from .errors import FORBIDDEN, failure, ok
from .instances import checked_instance
from .permissions import INSTANCE_EDIT, SYSTEM
from .timestamps import format_ns, parse_ns

HEALTHY, DEGRADED, UNREACHABLE, ERROR = "Healthy", "Degraded", "Unreachable", "Error"
DEGRADED_AFTER_SECONDS = 1.0
STALE_AFTER_HEARTBEATS = 3


def status_of_connect(seconds):
    """A TCP connect's meaning: None (failed) is Unreachable; slower than 1 s is Degraded."""
    if seconds is None:
        return UNREACHABLE
    return HEALTHY if seconds < DEGRADED_AFTER_SECONDS else DEGRADED


def scanner_of(record, live_peer_urls):
    """The live peer that scans this instance: its own node's peer, else by rendezvous hashing.

    Rendezvous hashing moves only a dead peer's share when it leaves, and needs no coordination:
    every peer computes the same owner from the same list of live peers."""
    node = record.get("nodeUrl")
    if node in live_peer_urls:
        return node
    return max(live_peer_urls, key=lambda peer: hashlib.sha256(f"{peer}|{record['id']}".encode()).digest())


def ttl_expired(record, now_ns):
    ttl = record.get("ttl")
    beat = parse_ns(record.get("lastHeartbeat"))
    return ttl is not None and (beat is None or now_ns - beat > parse_seconds(ttl) * 1e9)


def deregistration_due(record, now_ns):
    after = record.get("deregisterAfter")
    since = parse_ns(record.get("unreachableSince"))
    return (after is not None and record.get("status") == UNREACHABLE and since is not None
            and now_ns - since >= parse_seconds(after) * 1e9)


def removals_allowed(evaluated, unreachable):
    """Self-preservation: when most of what a peer checked looks dead at once, suspect the peer's
    own network and remove nothing. With a single instance nothing can be told apart."""
    return not (evaluated >= 2 and unreachable * 2 > evaluated)


def node_status(record, now_ns, heartbeat_seconds):
    beat = parse_ns(record.get("lastHeartbeat"))
    stale = beat is None or now_ns - beat > STALE_AFTER_HEARTBEATS * heartbeat_seconds * 1e9
    return "Stale" if stale else HEALTHY


def _with_status(record, status, now_ns):
    updated = dict(record, status=status)
    if status == UNREACHABLE:
        if record.get("status") != UNREACHABLE or "unreachableSince" not in record:
            updated["unreachableSince"] = format_ns(now_ns)
    else:
        updated.pop("unreachableSince", None)
    return updated


def _with_heartbeat(record, beat_ns):
    current = parse_ns(record.get("lastHeartbeat"))
    if current is None or beat_ns > current:
        return dict(record, lastHeartbeat=format_ns(beat_ns))
    return record


def apply_scan(state, command):
    """A peer's scan cycle: changed statuses, heartbeat times, and removals that are still due."""
    if command.get("caller", SYSTEM) is not SYSTEM:
        return failure(FORBIDDEN, "scan results come only from peers")
    now = command["now"]
    for update in command["updates"]:
        record = state.instances.get(update["id"])
        if record is not None:  # else removed since the scan read it
            state.replace_instance(_with_status(record, update["status"], now))
    for instance_id in command["seen"]:
        record = state.instances.get(instance_id)
        if record is not None:
            state.replace_instance(_with_heartbeat(record, command["seenAt"]))
    removed = []
    for instance_id in command["remove"]:
        record = state.instances.get(instance_id)
        # Only if still Unreachable: it may have come back or been re-registered meanwhile.
        if record is not None and record.get("status") == UNREACHABLE:
            state.drop_instance(record)
            removed.append(instance_id)
    return ok(removed=removed)


def apply_renewals(state, command):
    """Coalesced instance heartbeats: one result per renewal, each checked for ownership."""
    results = []
    for renewal in command["renewals"]:
        results.append(_renew(state, renewal))
    return ok(results=results)


def _renew(state, renewal):
    record, refusal = checked_instance(state, renewal.get("caller", SYSTEM), INSTANCE_EDIT, renewal["id"])
    if refusal:
        return refusal
    record = _with_status(record, renewal.get("status", HEALTHY), renewal["at"])
    if "details" in renewal:
        record["details"] = renewal["details"]
    state.replace_instance(_with_heartbeat(record, renewal["at"]))
    return ok(id=record["id"])

"""Commands: the plain-data messages that travel through the Raft log.

Each has a `type` and a version `v`, so a journal written by one code version stays readable
by the next. Everything that varies between peers (ids, times, who is asking) is chosen here,
by the proposer, and never inside apply. `caller` is {"slug", "roles"} of the authenticated
requester; absent (None) for the cluster's own writes.
"""

from .permissions import SYSTEM

VERSION = 1

REGISTER_INSTANCE = "instance.register"
REMOVE_INSTANCE = "instance.remove"
REPORT_NODE = "node.report"
REMOVE_NODE = "node.remove"
SET_PERMITS = "permits.set"
SCAN_RESULTS = "instance.scan"
RENEW_INSTANCES = "instance.renew"
READ_BARRIER = "read.barrier"
LEADER_HANDOFF = "leader.handoff"
CHECKPOINT = "state.checkpoint"
CHECKPOINT_DIGEST = "state.checkpoint.digest"
# Commands that change no replicated data: they act on Raft itself, not on the state, or only
# make each peer look at its state (cluster/checkpoints.py).
NO_STATE_CHANGE = (READ_BARRIER, LEADER_HANDOFF, CHECKPOINT, CHECKPOINT_DIGEST)

# What kind of data each command changes, for per-kind indexes (blocking reads wait on them).
INSTANCES, NODES, PERMITS = "instances", "nodes", "permits"
KIND_OF = {
    REGISTER_INSTANCE: INSTANCES, REMOVE_INSTANCE: INSTANCES, SCAN_RESULTS: INSTANCES, RENEW_INSTANCES: INSTANCES,
    REPORT_NODE: NODES, REMOVE_NODE: NODES, SET_PERMITS: PERMITS,
}


def with_id(command, command_id):
    """The command carrying the id its re-submissions share (registry/sessions.py)."""
    return dict(command, cid=command_id)


def resubmittable(command):
    """Safe to submit again while an earlier attempt may have been applied: it carries an id,
    or it changes no replicated data."""
    return "cid" in command or command.get("type") in NO_STATE_CHANGE


def register_instance(fields, generated_id, now_ns, caller=SYSTEM):
    return {"type": REGISTER_INSTANCE, "v": VERSION, "fields": fields, "generatedId": generated_id, "now": now_ns,
            "caller": caller}


def remove_instance(instance_id, caller=SYSTEM):
    return {"type": REMOVE_INSTANCE, "v": VERSION, "id": instance_id, "caller": caller}


def report_node(record, now_ns):
    return {"type": REPORT_NODE, "v": VERSION, "node": record, "now": now_ns}


def remove_node(url, caller=SYSTEM):
    return {"type": REMOVE_NODE, "v": VERSION, "url": url, "caller": caller}


def set_permits(permits, caller=SYSTEM):
    return {"type": SET_PERMITS, "v": VERSION, "permits": permits, "caller": caller}


def scan_results(updates, seen, seen_at_ns, removals, now_ns):
    """One scan cycle of one peer.

    updates: [{"id", "status"}] for changed statuses only; seen: ids whose check succeeded at
    seen_at_ns (grouped: one time for the cycle's checks keeps the command small); removals:
    ids due for deregistration."""
    return {"type": SCAN_RESULTS, "v": VERSION, "updates": updates, "seen": seen, "seenAt": seen_at_ns,
            "remove": removals, "now": now_ns, "caller": SYSTEM}


def renew_instances(renewals):
    """renewals: [{"id", "status"?, "details"?, "at": ns, "caller"}], coalesced into one command."""
    return {"type": RENEW_INSTANCES, "v": VERSION, "renewals": renewals}


def read_barrier():
    """Changes nothing: once it is applied here, this replica holds every write committed
    before it was proposed (a linearizable read's proof of currency)."""
    return {"type": READ_BARRIER, "v": VERSION}


def leader_handoff(leader_address):
    """Changes nothing: asks the peer at leader_address, if it still leads, to hand leadership
    to a caught-up follower (so that it can be removed from the cluster)."""
    return {"type": LEADER_HANDOFF, "v": VERSION, "leader": leader_address}


def checkpoint(checkpoint_id):
    """Changes nothing: every peer hashes its state as of this point of the log."""
    return {"type": CHECKPOINT, "v": VERSION, "id": checkpoint_id}


def checkpoint_digest(checkpoint_id, sha256, digest_format, state_index):
    """Changes nothing: the leader's digest at the checkpoint (its state at `state_index`), for every
    peer to compare with its own when it hashes states the same way (digest_format) at that index."""
    return {"type": CHECKPOINT_DIGEST, "v": VERSION, "id": checkpoint_id, "sha256": sha256, "format": digest_format,
            "stateIndex": state_index}

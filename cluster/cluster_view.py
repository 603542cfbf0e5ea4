"""GET /registry-svc/cluster: every peer as this peer knows it, whether each is reachable, and
whether the cluster holds its majority.

A peer is judged reachable by what this peer can know of it. Raft contact, where Raft gives
it: a leader hears every follower and a follower hears its leader, so for those pairs a silence
longer than the replica's contact limit (twice the longest election timeout) means down.
Followers do not talk to each other, so a follower judges the other followers by their node
heartbeats, as node records do: down once three heartbeat periods pass without one.
"""

import time

from registry import health


def of(peer):
    replica = peer.replica
    now_ns = time.time_ns()
    nodes_by_raft = {
        (n.get("raft") or {}).get("address"): n for n in peer.list_nodes()[1] if isinstance(n.get("raft"), dict)
    }
    me = replica.selfNode.id
    leader = replica.leader_address
    last_cycle = peer.scanner.last_cycle
    self_entry = {
        "url": peer.url,
        "raft": me,
        "state": replica.raft_state,
        "isLeader": leader == me,
        "lastContactMs": peer.last_contact_ms(),
        "commitIndex": replica.raftCommitIndex,
        "appliedIndex": replica.raftLastApplied,
        "reachable": True,
        "stateDigest": replica.state_digest(),
        "divergence": replica.divergence,
        "checkpoints": {"verified": replica.checkpoints.verified,
                        "lastVerifiedIndex": replica.checkpoints.last_verified_index},
        "lastScan": last_cycle.as_json() if last_cycle else None,
        # Each HTTP worker process and its replica's digest, to compare with this stateDigest.
        "httpWorkers": peer.workers.describe(digests=True) if peer.workers is not None else [],
    }
    peers = [self_entry]
    contact_limit_ms = replica.leader_silence_limit * 1000
    for node in sorted(replica.otherNodes, key=lambda n: n.id):
        reported = nodes_by_raft.get(node.id) or {}
        raft = reported.get("raft") or {}
        is_leader = node.id == leader
        heard_ms = replica.last_heard_ms(node.id)
        if is_leader or leader == me:
            reachable = heard_ms is not None and heard_ms <= contact_limit_ms
        else:
            reachable = bool(reported) and health.node_status(reported, now_ns,
                                                             peer.config.heartbeat_seconds) == health.HEALTHY
        peers.append({
            "url": reported.get("url"),
            "raft": node.id,
            # Our own view where we have one; the peer's last heartbeat report otherwise, but
            # never "leader" from a report: only the live leader is called that.
            "state": "leader" if is_leader else (raft.get("state") if raft.get("state") != "leader" else None),
            "isLeader": is_leader,
            "lastContactMs": heard_ms,
            "commitIndex": raft.get("commitIndex"),
            "appliedIndex": raft.get("appliedIndex"),
            "reachable": reachable,
        })
    members = replica.members
    reachable_members = sum(1 for p in peers if p["reachable"] and p["raft"] in members)
    return {
        "self": self_entry,
        "leader": next((p for p in peers if p["isLeader"]), None),
        "peers": peers,
        "members": members,
        "quorum": {"members": len(members), "reachable": reachable_members, "needed": len(members) // 2 + 1},
    }

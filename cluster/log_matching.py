"""A follower truncates its log only where an append really conflicts with it (Raft §5.3).

PySyncObj 0.3.17 truncates a follower's log from `prevLogIdx + 1` whenever it holds any entry
past there, even when the append carries exactly the entries it holds: a repeated or late
append (several in flight per round, a leader resending after a reconnect) then makes it drop
and re-append committed entries ("truncating already-applied log entries ... may have
diverged", at CRITICAL), and one that carries fewer entries than the follower holds drops
entries past its end that the follower may already have confirmed to the leader: the way Raft
implementations lose committed writes.

`trim_append` rewrites an append before the library handles it: the leading entries the
follower holds with the same term are dropped (so `prevLogIdx` moves up to the last of them),
and an append whose entries are all held by a follower holding more is turned into one the
library takes as reaching the follower's last entry, with the confirmation and the commit index
cut back to the append's real end. Raft's Log Matching property makes the first sound: an entry
of the same index and term means identical logs up to it. A conflict above the last applied
index is left to the library, which truncates from it, as Raft says. A conflict at or below the
last applied index is a real divergence: the append is dropped, never applied over.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Divergence:
    """A committed entry this peer applied differs from the leader's: its state cannot be trusted."""

    index: int
    local_term: int
    leader_term: int
    last_applied: int
    leader: str

    def describe(self):
        return (f"the leader {self.leader} holds term {self.leader_term} at index {self.index}, which this peer "
                f"applied from term {self.local_term} (applied up to {self.last_applied}): its state may differ "
                "from the cluster's; it takes no more entries. Stop it, move its data directory aside and let it "
                "rejoin empty")


@dataclasses.dataclass(frozen=True)
class Trimmed:
    message: dict  # what the library should handle; None to drop the append
    confirm_next_index: int = None  # the next_node_idx to confirm instead of the library's; None: its own
    divergence: Divergence = None


def trim_append(message, term_at, last_index, last_applied, leader):
    """Rewrite a regular append_entries message (one with prevLogIdx and no transmission) for a
    follower whose log ends at `last_index`; term_at(index) is the term of its entry there, or None."""
    entries = message.get("entries") or []
    prev_index, prev_term = message["prevLogIdx"], message["prevLogTerm"]
    if term_at(prev_index) != prev_term:
        return Trimmed(message)  # the library rejects it and the leader moves back: nothing to cut
    held = 0
    for entry in entries:
        index, term = entry[1], entry[2]
        if index > last_index:
            break
        local_term = term_at(index)
        if local_term != term:
            if index <= last_applied:
                return Trimmed(None, divergence=Divergence(index, local_term, term, last_applied, leader))
            break
        held += 1
    append_end = entries[-1][1] if entries else prev_index
    if held:
        prev_index, prev_term = entries[held - 1][1], entries[held - 1][2]
    rest = entries[held:]
    if rest or prev_index == last_index:
        if not held:
            return Trimmed(message)
        return Trimmed(dict(message, entries=rest, prevLogIdx=prev_index, prevLogTerm=prev_term))
    # All it carries is held and the follower holds more past it, which may be confirmed already.
    return Trimmed(
        dict(message, entries=[], prevLogIdx=last_index, prevLogTerm=term_at(last_index),
             commit_index=min(message["commit_index"], append_end)),
        confirm_next_index=append_end + 1)

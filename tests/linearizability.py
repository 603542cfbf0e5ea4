"""A linearizability checker for a single register (Wing & Gong's search, with memoisation).

A history is a list of operations, each with the time it was invoked and the time its answer
arrived. A write whose outcome is unknown (a timeout, a 503 that says "may or may not") has
no answer time: it may take effect at any point after its invocation, or never. The history is
linearizable when some order of the operations, each placed between its invocation and its
answer, explains every read by the latest write before it.
"""

import dataclasses
import math
from typing import Any, Optional

WRITE, READ = "write", "read"


@dataclasses.dataclass(frozen=True)
class Op:
    kind: str
    value: Any
    invoked: float
    completed: Optional[float]  # None: outcome unknown (writes only)

    @property
    def required(self):
        return self.completed is not None

    @property
    def deadline(self):
        return math.inf if self.completed is None else self.completed


def check(history, initial=None):
    """(True, order) when linearizable, else (False, None); `order` lists the ops linearized."""
    ops = sorted(history, key=lambda op: op.invoked)
    for op in ops:
        if op.kind not in (WRITE, READ):
            raise ValueError(f"unknown operation kind {op.kind!r}")
        if op.kind == READ and op.completed is None:
            raise ValueError("a read without an answer tells nothing: leave it out of the history")
    required = frozenset(i for i, op in enumerate(ops) if op.required)
    seen = set()
    order = []

    def search(done, value):
        if required <= done:
            return True
        key = (done, value)
        if key in seen:
            return False
        seen.add(key)
        pending = [i for i in range(len(ops)) if i not in done]
        # Only an op invoked before every pending answer can come next: anything that
        # answered earlier must already have taken effect.
        horizon = min(ops[i].deadline for i in pending)
        for i in pending:
            op = ops[i]
            if op.invoked > horizon:
                continue
            if op.kind == READ:
                if op.value != value:
                    continue
                next_value = value
            else:
                next_value = op.value
            order.append(op)
            if search(done | {i}, next_value):
                return True
            order.pop()
        return False

    if search(frozenset(), initial):
        return True, list(order)
    return False, None

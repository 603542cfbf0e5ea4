"""Python's cyclic garbage collector, set for a process that holds a registry state.

Nearly everything a peer keeps is long-lived and acyclic: records are dicts of strings and
shared lists, replaced whole and freed by their reference counts the moment nothing holds them.
The collector exists for cycles, yet with its default thresholds it walks the young objects
every 700 container allocations (a write's HTTP request makes hundreds) and, every so often,
everything the process holds.

- tune() at a process's start raises the young threshold: most of a request's objects are then
  freed by their counts before any collection sees them. Measured with scripts/bench_apply.py
  (30,000 instances, batches of 12): 22.1-22.3 -> 18.3-18.7 us of CPU to apply a registration
  at 5,000-20,000 (beyond that no further gain); a young collection still walks at most
  YOUNG_THRESHOLD objects, a few milliseconds at worst.
- settle() once a process has started, and after each whole state it loads (a dump at start,
  a snapshot from the leader, a worker's snapshot), collects once, then freezes what is left:
  the code and the loaded records leave the collector's view. A full collection otherwise walks
  them all, holding the interpreter lock every thread needs: 9-12 ms for the 47,000 objects of
  a peer's imported code alone, 72 ms with a 100,000-instance state. They are still freed by
  their counts when replaced. Only objects alive at a freeze that later end up in a cycle are
  never reclaimed: bounded by what lived at that moment, which is why nothing freezes on a timer.
"""

import gc

YOUNG_THRESHOLD = 10_000


def tune():
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def settle():
    gc.collect()
    gc.freeze()

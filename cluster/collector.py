"""Python's cyclic garbage collector, set for a process that holds a registry state.

Nearly everything a peer keeps is long-lived and acyclic: records are dicts of strings and
shared lists, replaced whole and freed by their reference counts the moment nothing holds them.
The collector exists for cycles, yet with its default thresholds (700, 10, 10) it walks
everything the process holds (a full collection) after every 100 young collections, whenever a
quarter as many objects as it already holds have been kept since the last one: under a steady
registration load, every few seconds. At 100,000 instances one such walk held the interpreter
lock, which every thread needs, for 72 ms in a quiet process and 100-240 ms on this busy 2-core
machine.

- tune() at a process's start makes full collections ten times rarer (OLD_THRESHOLD 10 -> 100)
  and leaves the young collections as Python has them: small, so each walks what was just
  made and is still in the cache. Timed with a collector callback in every peer of the
  benchmark's scale stage (100,000 instances registered at the leader, then reads under
  churn): 6-7 full collections a follower (19 at the leader) took 0.73-0.80 s (2.0 s) before;
  1-2 after, 0.14-0.20 s. A young threshold of 10,000 instead (tried first) cut the full
  collections alike, but made each young one a walk of 10,000 objects (up to 0.13 s of wall
  time under load), and the one-connection lookups at 100,000 instances ran slower in the two
  runs that had it.
- settle() at a process's start, before any state exists, collects once and freezes what is
  left: the 47,000 objects of a peer's imported code leave every later collection's walk
  (9-12 ms of each full collection). A state is not frozen: an object alive at a freeze that
  later ends up in a cycle is never reclaimed, and a freeze of a loaded 100,000-instance state
  took 0.3-0.5 s of the restart on this machine.
"""

import gc

OLD_THRESHOLD = 100


def tune():
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, OLD_THRESHOLD)


def settle():
    gc.collect()
    gc.freeze()

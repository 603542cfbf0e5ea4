"""What a peer's HTTP workers have answered, shared between them in memory: read-your-writes on
whichever worker the next request lands on.

A worker answers a write once its own replica holds it, but the client's next request may reach
another worker, whose feed from the Raft process may not have applied that batch yet (a worker's
feed thread can wait for a core on a loaded machine). So each worker notes, in its own slot of a
shared page, the state index its answers showed, and every read at a worker first waits (briefly:
the replicas are fed the same batches at once) until its replica reaches the highest noted index.

The page is a memfd the Raft process makes and hands to each worker it starts. A slot has one
writer (its worker, or that worker's successor) and grows only; an aligned 8-byte store and load
is whole on the platforms a peer runs on, so no lock is needed. A slot keeps its value when its
worker dies: what that worker answered must still be read by the others.
"""

import mmap
import os

SLOT_BYTES = 8


class AnsweredBoard:
    def __init__(self, fd, slots):
        self.fd = fd
        self._map = mmap.mmap(fd, slots * SLOT_BYTES)
        self._slots = memoryview(self._map).cast("Q")

    @classmethod
    def create(cls, slots):
        """A zeroed board of `slots` slots; its fd is passed to each worker (AnsweredBoard(fd, slots))."""
        fd = os.memfd_create("registry-answered-board")
        os.ftruncate(fd, slots * SLOT_BYTES)
        return cls(fd, slots)

    def note(self, slot, state_index):
        """Worker `slot` answered a request whose effects are in the state at `state_index`."""
        if state_index > self._slots[slot]:
            self._slots[slot] = state_index

    def highest(self):
        """The state index every read at a worker must show: the highest any worker answered at."""
        return max(self._slots)

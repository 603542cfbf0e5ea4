"""cluster/collector.py: the thresholds a peer process runs with, and the freeze at its start."""

import gc
import weakref

import pytest

from cluster import collector


@pytest.fixture
def restored_collector():
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


class Node:
    def __init__(self):
        self.other = None


def test_tune_makes_only_full_collections_rarer(restored_collector):
    gc.set_threshold(700, 10, 10)
    collector.tune()
    assert gc.get_threshold() == (700, 10, collector.OLD_THRESHOLD)


def test_settle_reclaims_cycles_already_garbage_and_freezes_what_lives(restored_collector):
    gc.unfreeze()
    garbage_a, garbage_b, alive = Node(), Node(), Node()
    garbage_a.other, garbage_b.other = garbage_b, garbage_a
    gone = weakref.ref(garbage_a)
    del garbage_a, garbage_b
    collector.settle()
    assert gone() is None, "a cycle that was garbage before the freeze must not be kept forever"
    assert gc.get_freeze_count() > 0
    assert not any(obj is alive for obj in gc.get_objects()), "what lived is out of the collector's view"
    kept = weakref.ref(alive)
    del alive
    assert kept() is None, "a frozen acyclic object is still freed by its reference count"

"""Secondary indexes of the instances, and the Raft index at which each slug last changed.

Derived data, like `instance_by_url`: maintained by apply on every peer, never written to a
snapshot or a dump, rebuilt when a state is loaded. A filtered list starts from the ids that all
its indexed filters name (an intersection) instead of walking every record.

Memory is what decides the shape: a Python set costs 40-85 bytes per member, and an instance
sits in seven or more groups (its slug, status, node, each tag, ...), which alone would take
most of the 2 KB an instance may cost. So each instance gets a small integer slot, and each
group is a compressed bitmap of slots (pyroaring: about 2 bytes a member, intersections in C).
A value held by a single instance (a host, often a deployment id) maps to that slot itself,
since even an empty bitmap costs more than that.
"""

from pyroaring import BitMap

INDEXED_FIELDS = ("slug", "status", "nodeUrl", "deploymentId", "host", "ip")
TAGS = "tags"


def _add(index, value, slot):
    held = index.get(value)
    if held is None:
        index[value] = slot
    elif type(held) is int:
        if held != slot:
            index[value] = BitMap((held, slot))
    else:
        held.add(slot)


def _discard(index, value, slot):
    held = index.get(value)
    if held is None:
        return
    if type(held) is int:
        if held == slot:
            del index[value]
        return
    held.discard(slot)
    if len(held) == 1:
        index[value] = held.min()


def _size(held):
    if held is None:
        return 0
    return 1 if type(held) is int else len(held)


def _overlap(first, second):
    if type(first) is int:
        return int(first == second) if type(second) is int else int(first in second)
    if type(second) is int:
        return int(second in first)
    return first.intersection_cardinality(second)


class InstanceIndex:
    def __init__(self):
        self.by = {name: {} for name in INDEXED_FIELDS + (TAGS,)}  # index -> value -> slot or BitMap
        self._slot_of = {}  # instance id -> slot
        self._id_at = []  # slot -> instance id, None when free
        self._free_slots = []
        # Raft index of the last change to each slug's instances (a blocking read filtered by
        # slug waits on its slug only). A slug whose last instance went is forgotten, and
        # `slug_floor` (never lower than any forgotten slug's last change) stands for it.
        self.slug_changed = {}
        self.slug_floor = 0
        self.touched_slugs = set()  # since the replica last took them (take_touched_slugs)
        self._sorted_ids = None  # every id in order, kept until an id comes or goes

    @classmethod
    def of(cls, records, index):
        """The index of records loaded at Raft `index` (a snapshot): each slug counts as
        changed there, since nothing says when it changed before."""
        built = cls()
        for record in records:
            built.add(record)
        built.slug_changed = dict.fromkeys(built.by["slug"], index)
        built.slug_floor = index
        built.touched_slugs = set()
        return built

    # add, discard and replaced run for every registration, renewal and scan result applied, on
    # every peer and HTTP worker: one loop given the change to make, not a generator of pairs.
    def add(self, record):
        instance_id = record["id"]
        slot = self._slot_of.get(instance_id)
        if slot is None:
            if self._free_slots:
                slot = self._free_slots.pop()
                self._id_at[slot] = instance_id
            else:
                slot = len(self._id_at)
                self._id_at.append(instance_id)
            self._slot_of[instance_id] = slot
        self._change_values(record, slot, _add)

    def discard(self, record, keep_slot=False):
        slot = self._slot_of.get(record["id"])
        if slot is None:
            return
        self._change_values(record, slot, _discard)
        if not keep_slot:
            del self._slot_of[record["id"]]
            self._id_at[slot] = None
            self._free_slots.append(slot)

    def _change_values(self, record, slot, change):
        """change(index, value, slot) (_add or _discard) for every value the record is indexed by."""
        by = self.by
        for name in INDEXED_FIELDS:
            value = record.get(name)
            if type(value) is str:
                change(by[name], value, slot)
        tags = record.get(TAGS)
        if tags:
            index = by[TAGS]
            for tag in tags:  # a repeated tag: its second add or discard changes nothing
                if type(tag) is str:
                    change(index, tag, slot)

    def _update(self, old, new, slot):
        """A new version of a record under the same id: only the values that changed move (a
        renewal or a status change touches one index, or none, instead of every one twice)."""
        by = self.by
        for name in INDEXED_FIELDS:
            before, after = old.get(name), new.get(name)
            if before is after or before == after:
                continue
            if type(before) is str:
                _discard(by[name], before, slot)
            if type(after) is str:
                _add(by[name], after, slot)
        before, after = old.get(TAGS), new.get(TAGS)
        if before is not after and before != after:
            index = by[TAGS]
            kept = after or ()  # a list of at most 64: no hashing of what apply has not checked
            for tag in before or ():
                if type(tag) is str and tag not in kept:
                    _discard(index, tag, slot)
            for tag in after or ():
                if type(tag) is str:
                    _add(index, tag, slot)

    def replaced(self, old, new, at_index):
        """`old` (None for a new id) is now `new` (None for a removal), at Raft index at_index."""
        slot = None if old is None or new is None else self._slot_of.get(old["id"])
        if slot is not None and old["id"] == new["id"]:
            self._update(old, new, slot)
        else:
            if old is not None:
                self.discard(old, keep_slot=new is not None)
            if new is not None:
                self.add(new)
        if old is None or new is None:
            self._sorted_ids = None
        for record in (old, new):
            slug = record.get("slug") if record is not None else None
            if type(slug) is str:
                self.touched_slugs.add(slug)
                if slug in self.by["slug"]:
                    self.slug_changed[slug] = at_index
                else:
                    self.slug_changed.pop(slug, None)
                    self.slug_floor = at_index

    def take_touched_slugs(self):
        touched, self.touched_slugs = self.touched_slugs, set()
        return touched

    def slug_index(self, slug):
        """The Raft index of the last change to this slug's instances (or a later one)."""
        return self.slug_changed.get(slug, self.slug_floor)

    def sorted_ids(self, instances):
        ids = self._sorted_ids
        if ids is None:
            ids = self._sorted_ids = sorted(instances)
        return ids

    def candidates(self, filters):
        """The ids that may match `filters`: those every indexed filter names; None when no
        filter is indexed (every record is a candidate)."""
        groups = []
        for name, wanted in filters.items():
            if name not in self.by:
                continue
            for value in (wanted if name == TAGS else (wanted,)):
                held = self.by[name].get(value)
                if held is None:
                    return []
                groups.append(held)
        if not groups:
            return None
        # A group of one is a bare slot and every bitmap holds two or more, so bare slots sort first.
        groups.sort(key=_size)
        slots = groups[0]
        if type(slots) is int:
            slots = (slots,) if all(slots in group if type(group) is not int else slots == group
                                    for group in groups[1:]) else ()
        elif len(groups) > 1:
            slots = BitMap.intersection(*groups)
        id_at = self._id_at
        return [id_at[slot] for slot in slots]

    def count(self, name, value):
        return _size(self.by[name].get(value))

    def counts_by(self, first, second):
        """{(value of `first`, value of `second`): instances holding both}, pairs with none left out."""
        pairs = self.by[second].items()
        return {(a, b): overlap for a, held_a in self.by[first].items() for b, held_b in pairs
                if (overlap := _overlap(held_a, held_b))}

    def contents(self):
        """The index as {index: {value: set of ids}}, to compare with a rebuild (tests)."""
        id_at = self._id_at
        return {name: {value: {id_at[slot] for slot in ((held,) if type(held) is int else held)}
                       for value, held in values.items()}
                for name, values in self.by.items()}

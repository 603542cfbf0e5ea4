"""Large lists kept as blocks of encoded records: always the bytes one orjson call would give,
and only the blocks whose records changed are encoded again."""

import random

import orjson
import pytest

from api import list_blocks
from api.jsonio import _PartsFile


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(list_blocks, "BLOCK_RECORDS", 4)


def records(ids, version=0):
    return [{"id": i, "url": f"http://127.0.0.1:{1000 + n}", "v": version} for n, i in enumerate(ids)]


def expected(listed):
    return orjson.dumps({"instances": listed})


def test_every_shape_of_list_encodes_as_one_call_would():
    encodings = list_blocks.BlockEncodings(keep_from_request=1)
    for count in (0, 1, 4, 5, 17):
        listed = records([f"i{n:03}" for n in range(count)])
        assert bytes(encodings.encode(("k", count), listed)) == expected(listed)
        assert len(encodings.encode(("k", count), listed)) == len(expected(listed))


def test_only_the_block_of_a_changed_record_is_encoded_again():
    encodings = list_blocks.BlockEncodings(keep_from_request=1)
    listed = records([f"i{n:03}" for n in range(16)])
    encodings.encode("k", listed)
    assert encodings.blocks_encoded == 4
    encodings.encode("k", listed)
    assert encodings.blocks_encoded == 4  # the same record objects: nothing encoded
    changed = list(listed)
    changed[9] = dict(listed[9], v=1)  # a new record object, as apply makes one
    assert bytes(encodings.encode("k", changed)) == expected(changed)
    assert encodings.blocks_encoded == 5


def test_an_equal_record_that_is_another_object_is_encoded_again():
    encodings = list_blocks.BlockEncodings(keep_from_request=1)
    listed = records(["a", "b"]) + [{"id": "c", "port": 1}]
    encodings.encode("k", listed + records(["d", "e"]))
    # Equal to the old record, encoded differently: identity decides, not equality.
    swapped = listed[:2] + [{"id": "c", "port": 1.0}] + records(["d", "e"])
    assert bytes(encodings.encode("k", swapped)) == expected(swapped)


def test_a_new_or_removed_id_touches_only_its_own_block():
    encodings = list_blocks.BlockEncodings(keep_from_request=1)
    ids = [f"i{n:03}" for n in range(0, 32, 2)]  # 16 ids, 4 blocks of 4
    listed = records(ids)
    encodings.encode("k", listed)
    grown = sorted(listed + records(["i013"]), key=lambda r: r["id"])  # falls in the second block
    assert bytes(encodings.encode("k", grown)) == expected(grown)
    assert encodings.blocks_encoded == 5
    shrunk = [r for r in grown if r["id"] != "i026"]  # in the last block
    assert bytes(encodings.encode("k", shrunk)) == expected(shrunk)
    assert encodings.blocks_encoded == 6


def test_random_changes_always_give_the_bytes_of_one_call():
    encodings = list_blocks.BlockEncodings(keep_from_request=1)
    rng = random.Random(7)
    state = {f"i{n:04}": {"id": f"i{n:04}", "n": n} for n in range(0, 400, 3)}
    for step in range(300):
        key = f"i{rng.randrange(400):04}"
        if key in state and rng.random() < 0.3:
            del state[key]
        else:
            state[key] = {"id": key, "n": step}
        listed = [state[i] for i in sorted(state)]
        assert bytes(encodings.encode("k", listed)) == expected(listed), step


def test_blocks_beyond_the_budget_are_dropped_least_recently_used_first():
    listed = records([f"i{n:03}" for n in range(8)])
    one_list = len(expected(listed))
    encodings = list_blocks.BlockEncodings(max_lists=4, max_bytes=int(one_list * 1.5), keep_from_request=1)
    encodings.encode("first", listed)
    encodings.encode("second", listed)  # the first no longer fits beside it
    encodings.encode("second", listed)
    assert encodings.blocks_encoded == 4
    encodings.encode("first", listed)
    assert encodings.blocks_encoded == 6
    assert bytes(list_blocks.BlockEncodings(max_bytes=0).encode("k", listed)) == expected(listed)  # none kept
    too_large = list_blocks.BlockEncodings(max_bytes=10, keep_from_request=1)
    assert bytes(too_large.encode("k", listed)) == expected(listed)
    assert bytes(too_large.encode("k", listed)) == expected(listed)
    assert too_large.blocks_encoded == 4  # never kept: encoded for each request


def test_the_parts_file_reads_views_up_to_each_part_and_seeks_over_all():
    parts = [b"abc", b"", b"defg", b"h"]
    file = _PartsFile(parts)
    assert bytes(file.read(2)) == b"ab" and bytes(file.read(10)) == b"c"
    assert bytes(file.read(-1)) == b"defg"
    assert file.seek(0, 2) == 8 and file.read(5) == b""
    file.seek(4)
    assert bytes(file.read(2)) == b"ef" and file.tell() == 6
    file.seek(-1, 1)
    assert bytes(file.read()) == b"fg"


def test_a_list_is_kept_from_its_second_request_on():
    encodings = list_blocks.BlockEncodings()
    listed = records([f"i{n:03}" for n in range(8)])
    assert bytes(encodings.encode("once", listed)) == expected(listed)
    assert encodings.blocks_encoded == 0  # encoded whole, and nothing kept
    assert bytes(encodings.encode("once", listed)) == expected(listed)
    assert encodings.blocks_encoded == 2
    assert bytes(encodings.encode("once", listed)) == expected(listed)
    assert encodings.blocks_encoded == 2

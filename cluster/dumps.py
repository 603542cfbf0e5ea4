"""The full dump file (`raft.dump`): the replicated state and the two Raft entries it ends at.

Gzipped JSON rather than PySyncObj's pickle of the whole SyncObj, so a dump stays readable
across code versions and can be made from a backup to seed a new cluster.
"""

import base64
import gzip
import os

import orjson

from registry.state import RegistryState, collector_paused

from .identity import ConfigurationError

FORMAT = 1
FILE_NAME = "raft.dump"
JOURNAL_FILE_NAME = "raft.journal"
ENCODE_SLICE_RECORDS = 500
PARTIAL_SUFFIX = ".writing"  # a dump being written; left behind only by a crash, and ignored
_NO_OP = b"\x01"  # PySyncObj's _COMMAND_TYPE.NO_OP: an entry that applies nothing
MOVE_ASIDE = ("Move this peer's data directory aside (keep it for inspection) and start the peer again: "
              "in a multi-peer cluster it starts empty and copies the state from the leader; a single "
              "peer must be restored from a backup.")


def write(path, snapshot, last_entry, previous_entry, cluster=()):
    """Write the dump durably and atomically: a crash leaves the old dump or the new one."""
    head = {
        "format": FORMAT,
        "raft": {"lastEntry": _encode_entry(last_entry), "previousEntry": _encode_entry(previous_entry),
                 "cluster": sorted(cluster)},
    }
    partial = path + PARTIAL_SUFFIX
    with open(partial, "wb") as out:
        with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1) as packed:
            packed.write(orjson.dumps(head)[:-1] + b',"state":')
            _write_state(packed, snapshot)
            packed.write(b"}")
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)
    directory = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _write_state(packed, snapshot):
    """The snapshot as one JSON object, its instances encoded a slice at a time: one orjson call
    over 100,000 records holds the GIL long enough to starve the Raft thread beside the dump's."""
    instances = snapshot["instances"]
    rest = {key: value for key, value in snapshot.items() if key != "instances"}
    packed.write(orjson.dumps(rest)[:-1] + b',"instances":[')
    for start in range(0, len(instances), ENCODE_SLICE_RECORDS):
        if start:
            packed.write(b",")
        packed.write(orjson.dumps(instances[start:start + ENCODE_SLICE_RECORDS])[1:-1])
    packed.write(b"]}")


def read(path):
    """(the checked dump document, the state it holds); ConfigurationError naming the file when
    it cannot be used."""
    try:
        with gzip.open(path, "rb") as packed, collector_paused():
            document = orjson.loads(packed.read())
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            found = document.get("format") if isinstance(document, dict) else None
            raise ValueError(f"unsupported dump format {found!r}")
        state = RegistryState.from_snapshot(document["state"])
        for key in ("lastEntry", "previousEntry"):
            decode_entry(document["raft"][key])
    except (OSError, EOFError, ValueError, KeyError, TypeError, orjson.JSONDecodeError) as error:
        raise ConfigurationError(f"the full dump {path} cannot be read ({error!r}). {MOVE_ASIDE}") from None
    return document, state


def seed(data_dir, snapshot):
    """Make an empty peer data directory start from a backup's state (before its first start).

    Every peer of the new cluster gets the same dump, so their logs agree: two no-op entries at
    the snapshot's index, from which the cluster goes on."""
    RegistryState.from_snapshot(snapshot)
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    for name in (FILE_NAME, JOURNAL_FILE_NAME):
        if os.path.exists(os.path.join(data_dir, name)):
            raise ConfigurationError(f"{data_dir} already holds a replica ({name}); restore only into an empty "
                                     "data directory, before the peer's first start")
    index = max(int(snapshot["index"]), 2)
    write(os.path.join(data_dir, FILE_NAME), snapshot, (_NO_OP, index, 1), (_NO_OP, index - 1, 1))


def _encode_entry(entry):
    command, index, term = entry
    return [base64.b64encode(bytes(command)).decode("ascii"), index, term]


def decode_entry(entry):
    # Tuples of bytes, exactly as the journal holds them: PySyncObj compares them on load.
    command, index, term = entry
    return (base64.b64decode(command), index, term)

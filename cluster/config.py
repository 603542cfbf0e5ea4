"""A peer's configuration and the Raft timings it runs with."""

import dataclasses
import os
from typing import Optional, Tuple

DEFAULT_HTTP_PORT = 11337
DEFAULT_RAFT_PORT = 21337


@dataclasses.dataclass
class PeerConfig:
    raft_address: str = f"127.0.0.1:{DEFAULT_RAFT_PORT}"
    raft_peers: Tuple[str, ...] = ()  # the other peers' raft addresses; self may be listed too
    http_address: str = f"127.0.0.1:{DEFAULT_HTTP_PORT}"
    self_url: Optional[str] = None
    data_dir: str = os.path.join(os.path.expanduser("~"), ".local", "share", "registry-svc")
    cluster_secret: Optional[str] = None
    node_id: Optional[str] = None
    region: str = ""
    availability_zone: str = ""
    heartbeat_seconds: float = 15.0
    write_timeout_seconds: float = 5.0
    max_body_bytes: int = 1024 * 1024
    http_threads: int = 16
    # Blocking reads each hold an HTTP thread while they wait; this many get threads of their own.
    max_blocking_reads: int = 256
    # Open HTTP connections served at once: proxies keep theirs open, and every blocking read
    # holds one (waitress' own default of 100 would stall watchers past the hundredth).
    max_connections: int = 1024
    # Raft log entries kept before the state is written as a full dump and the log trimmed.
    compact_after_entries: int = 5000
    scan_interval_seconds: float = 15.0
    scan_timeout_seconds: float = 3.0
    renewal_flush_seconds: float = 0.5
    # Joining a running cluster: no campaigning before the leader is heard (see cluster/membership.py).
    join: bool = False
    # Flush the Raft journal to disk before entries are sent or confirmed (see README).
    sync_journal: bool = True
    # Seconds between the leader's corruption checks (cluster/checkpoints.py); 0 turns them off.
    checkpoint_interval_seconds: float = 300.0
    # Encoded blocks of large lists kept for requests that repeat them (api/list_blocks.py); 0: none.
    list_cache_mb: int = 64
    # HTTP served by this many worker processes, each a read replica (cluster/http_workers.py);
    # 0: by the Raft process itself.
    http_workers: int = 0

    @property
    def partners(self):
        return tuple(sorted({p for p in self.raft_peers if p and p != self.raft_address}))

    @property
    def http_host_port(self):
        return split_address(self.http_address, "http address")

    @property
    def public_url(self):
        if self.self_url:
            return self.self_url.rstrip("/")
        host, port = self.http_host_port
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"


MAX_DEFAULT_HTTP_WORKERS = 8
# Below this many cores a peer serves HTTP from its Raft process (see default_http_workers).
MIN_CORES_FOR_HTTP_WORKERS = 4


def default_http_workers(cpu_count=None):
    """`--http-workers auto`: one HTTP worker per core but one, up to 8; none below 4 cores.

    The Raft process needs a core of its own under write load (Raft, apply, the feed to every
    worker), and every worker applies every write again. On 2 cores (measured, README) two
    workers raised one-instance reads at 64 connections by 38-46% but cut writes at a follower to
    46-77% of their rate, so a small machine is better served by one process. The cap bounds the
    cost (each worker re-applies every write and holds a copy of the state); it is not a measured
    optimum."""
    cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    if cores < MIN_CORES_FOR_HTTP_WORKERS:
        return 0
    return min(cores - 1, MAX_DEFAULT_HTTP_WORKERS)


def split_address(address, what):
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} must be host:port with a port in 1..65535, got {address!r}")
    return host.strip("[]"), int(port)


@dataclasses.dataclass(frozen=True)
class RaftTimings:
    """Raft timings, tuned from PySyncObj's defaults for a LAN or loopback cluster.

    appendEntriesPeriod bounds commit latency (a batch waits for the next append round);
    leaderFallbackTimeout bounds how long a leader cut off from the majority believes it
    leads; connectionRetryTime bounds how soon a restarted peer is reconnected.
    """

    append_entries_period: float = 0.1
    raft_min_timeout: float = 0.5
    raft_max_timeout: float = 1.5
    connection_timeout: float = 3.5
    connection_retry: float = 0.5
    leader_fallback_timeout: float = 2.5
    auto_tick_period: float = 0.05
    append_entries_use_batch: bool = False

    def sync_obj_options(self):
        """The SyncObjConf keywords of these timings: a peer and the raw benchmark share them."""
        return {
            "appendEntriesPeriod": self.append_entries_period,
            "raftMinTimeout": self.raft_min_timeout,
            "raftMaxTimeout": self.raft_max_timeout,
            "connectionTimeout": self.connection_timeout,
            "connectionRetryTime": self.connection_retry,
            "leaderFallbackTimeout": self.leader_fallback_timeout,
            "autoTickPeriod": self.auto_tick_period,
            "appendEntriesUseBatch": self.append_entries_use_batch,
            # Fail fast with MISSING_LEADER instead of queueing without bound; the committer retries.
            "commandsWaitLeader": False,
        }

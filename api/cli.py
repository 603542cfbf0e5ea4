"""The `registry` command: run one peer (`serve`), mint tokens; `cluster` and `snapshot` are in
api/cli_cluster.py.

Flags win over environment variables, which win over defaults (click's envvar does exactly
that). 1Backend's names are kept where they exist (OB_SELF_URL, OB_NODE_ID, ...).
"""

import logging
import os

import click

from cluster.config import DEFAULT_HTTP_PORT, DEFAULT_RAFT_PORT, PeerConfig, default_http_workers
from cluster.identity import SECRET_FILE, ConfigurationError, read_secret_file
from registry.durations import parse_seconds
from registry.errors import ValidationError
from registry.permissions import ADMIN_ROLE, USER_ROLE

from . import tokens
from .cli_cluster import DEFAULT_CLUSTER_DIR, checked_address, cluster, snapshot
from .logs import configure as configure_logging


@click.group(help="Registry Svc: a Raft-replicated service registry.")
def main():
    pass


@main.command(help="Run one registry peer (Raft replica + HTTP API).")
@click.option("--raft-address", envvar="REGISTRY_RAFT_ADDRESS", default=f"127.0.0.1:{DEFAULT_RAFT_PORT}",
              show_default=True, help="host:port this peer's Raft listens on and is known by.")
@click.option("--raft-peers", envvar="REGISTRY_RAFT_PEERS", default="",
              help="Comma-separated Raft addresses of every peer (this one may be included). Empty: single peer.")
@click.option("--http-address", envvar="REGISTRY_HTTP_ADDRESS", default=f"127.0.0.1:{DEFAULT_HTTP_PORT}",
              show_default=True, help="host:port the HTTP API listens on.")
@click.option("--self-url", envvar="OB_SELF_URL", default=None,
              help="URL other nodes reach this peer's HTTP API at (default: http://<http-address>).")
@click.option("--node-id", envvar="OB_NODE_ID", default=None,
              help="This node's id (default: generated once and kept in the data dir).")
@click.option("--region", envvar="OB_REGION", default="")
@click.option("--availability-zone", envvar="OB_AVAILABILITY_ZONE", default="")
@click.option("--data-dir", envvar="REGISTRY_DATA_DIR", default=PeerConfig.data_dir, show_default=True,
              help="Where the Raft journal, full dump and node id live.")
@click.option("--cluster-secret-file", envvar="REGISTRY_CLUSTER_SECRET_FILE", default=None,
              help="File holding the cluster secret (or set REGISTRY_CLUSTER_SECRET).")
@click.option("--heartbeat", "heartbeat_seconds", envvar="REGISTRY_HEARTBEAT", type=click.FloatRange(min=0.1),
              default=15.0, show_default=True, help="Seconds between node self-reports.")
@click.option("--write-timeout", envvar="REGISTRY_WRITE_TIMEOUT", type=click.FloatRange(min=0.1), default=5.0,
              show_default=True, help="Seconds a write waits for its commit before answering 503.")
@click.option("--max-body-bytes", envvar="REGISTRY_MAX_BODY_BYTES", type=click.IntRange(min=1024),
              default=1024 * 1024, show_default=True)
@click.option("--http-threads", envvar="REGISTRY_HTTP_THREADS", type=click.IntRange(min=1), default=16,
              show_default=True)
@click.option("--max-blocking-reads", envvar="REGISTRY_MAX_BLOCKING_READS", type=click.IntRange(min=1), default=256,
              show_default=True, help="Blocking reads (?index=&wait=) this peer holds at once, each on its own thread.")
@click.option("--max-connections", envvar="REGISTRY_MAX_CONNECTIONS", type=click.IntRange(min=1), default=1024,
              show_default=True, help="Open HTTP connections served at once (idle keep-alive ones count); "
                                      "at least --max-blocking-reads + --http-threads is used.")
@click.option("--compact-after-entries", envvar="REGISTRY_COMPACT_AFTER_ENTRIES", type=click.IntRange(min=10),
              default=5000, show_default=True,
              help="Raft log entries kept before the state is dumped to disk and the log trimmed.")
@click.option("--scan-interval", envvar="REGISTRY_SCAN_INTERVAL", type=click.FloatRange(min=0.1), default=15.0,
              show_default=True, help="Seconds between this peer's instance scan cycles.")
@click.option("--scan-timeout", envvar="REGISTRY_SCAN_TIMEOUT", type=click.FloatRange(min=0.05), default=3.0,
              show_default=True, help="Seconds a TCP check may take before the instance counts as Unreachable.")
@click.option("--checkpoint-interval", envvar="REGISTRY_CHECKPOINT_INTERVAL", type=click.FloatRange(min=0),
              default=300.0, show_default=True,
              help="Seconds between the leader's checks that every replica holds an equal state; 0: never.")
@click.option("--list-cache-mb", envvar="REGISTRY_LIST_CACHE_MB", type=click.IntRange(min=0), default=64,
              show_default=True,
              help="Megabytes of encoded large lists (over 4,096 instances) kept for requests that repeat them; "
                   "0 encodes each anew. A full list of 100,000 instances takes about 46.")
@click.option("--http-workers", envvar="REGISTRY_HTTP_WORKERS", default="auto", show_default=True,
              help="HTTP worker processes, each a read replica of this peer, sharing its HTTP address: "
                   "auto is one per core but one, up to 8, and none below 4 cores; 0 serves HTTP from the Raft "
                   "process itself.")
@click.option("--log-level", envvar="REGISTRY_LOG_LEVEL", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--log-format", envvar="REGISTRY_LOG_FORMAT", default="text", show_default=True,
              type=click.Choice(["text", "json"]), help="One line per event: text for people, json for machines.")
@click.option("--join", is_flag=True, envvar="REGISTRY_JOIN",
              help="This peer joins a running cluster (then run `registry cluster add-peer` for it): it does not "
                   "campaign for leadership before it has heard from the leader.")
@click.option("--sync-journal/--no-sync-journal", envvar="REGISTRY_SYNC_JOURNAL", default=True, show_default=True,
              help="Flush the Raft journal to disk before a peer sends or confirms entries, so an acknowledged "
                   "write survives a power loss of every machine.")
@click.option("--access-log/--no-access-log", envvar="REGISTRY_ACCESS_LOG", default=False, show_default=True,
              help="A line per HTTP request, with its request id. Off by default: in Python it halves "
                   "throughput under load.")
def serve(raft_address, raft_peers, http_address, self_url, node_id, region, availability_zone, data_dir,
          cluster_secret_file, heartbeat_seconds, write_timeout, max_body_bytes, http_threads,
          max_blocking_reads, max_connections, compact_after_entries, scan_interval, scan_timeout,
          checkpoint_interval, list_cache_mb, http_workers, log_level, log_format, join, sync_journal, access_log):
    from .serve import serve as run_peer  # Flask and PySyncObj load only for this command

    configure_logging(log_level, log_format)
    if not access_log:
        logging.getLogger("registry.access").setLevel(logging.WARNING)
    checked_address(raft_address, "--raft-address")
    checked_address(http_address, "--http-address")
    workers = _http_workers(http_workers)
    peers = tuple(p.strip() for p in raft_peers.split(",") if p.strip())
    for peer in peers:
        checked_address(peer, "--raft-peers")
    try:
        secret = os.environ.get("REGISTRY_CLUSTER_SECRET") or (
            read_secret_file(cluster_secret_file) if cluster_secret_file else None)
        config = PeerConfig(
            raft_address=raft_address, raft_peers=peers, http_address=http_address, self_url=self_url,
            data_dir=os.path.abspath(data_dir), cluster_secret=secret, node_id=node_id, region=region,
            availability_zone=availability_zone, heartbeat_seconds=heartbeat_seconds,
            write_timeout_seconds=write_timeout, max_body_bytes=max_body_bytes, http_threads=http_threads,
            max_blocking_reads=max_blocking_reads, max_connections=max_connections,
            compact_after_entries=compact_after_entries, scan_interval_seconds=scan_interval,
            scan_timeout_seconds=scan_timeout, checkpoint_interval_seconds=checkpoint_interval, join=join,
            sync_journal=sync_journal, list_cache_mb=list_cache_mb, http_workers=workers,
        )
        run_peer(config, log_settings={"level": log_level, "format": log_format, "accessLog": access_log})
    except ConfigurationError as error:
        raise click.ClickException(str(error))


def _http_workers(value):
    if value.strip().lower() == "auto":
        return default_http_workers()
    if not value.strip().isdigit() or int(value) > 64:
        raise click.BadParameter(f"must be auto or a number of processes from 0 to 64, got {value!r}",
                                 param_hint="--http-workers")
    return int(value)


@main.group(help="API tokens: signed with a key derived from the cluster secret.")
def token():
    pass


@token.command(name="create", help="Mint a token offline and print it.")
@click.option("--slug", required=True, help="Who the token speaks for (an account or service slug).")
@click.option("--role", "roles", multiple=True, required=True, type=click.Choice([ADMIN_ROLE, USER_ROLE]),
              help="Role to grant; repeat for several.")
@click.option("--ttl", default="24h", show_default=True, help="How long it is valid: 30m, 24h, 7d...")
@click.option("--data-dir", default=None,
              help=f"A cluster or peer directory holding {SECRET_FILE} (default: {DEFAULT_CLUSTER_DIR}).")
@click.option("--secret-file", default=None, help="The cluster secret file itself.")
def create_token(slug, roles, ttl, data_dir, secret_file):
    if data_dir and secret_file:
        raise click.UsageError("give --data-dir or --secret-file, not both")
    path = secret_file or os.path.join(data_dir or DEFAULT_CLUSTER_DIR, SECRET_FILE)
    try:
        ttl_seconds = parse_seconds(ttl, "--ttl")
        secret = os.environ.get("REGISTRY_CLUSTER_SECRET") if not (data_dir or secret_file) else None
        key = tokens.signing_key(secret or read_secret_file(path))
    except (ValidationError, ConfigurationError) as error:
        raise click.ClickException(str(error))
    if not slug.strip():
        raise click.BadParameter("must not be empty", param_hint="--slug")
    click.echo(tokens.mint(key, slug, roles, ttl_seconds))


main.add_command(cluster)
main.add_command(snapshot)

if __name__ == "__main__":
    main()

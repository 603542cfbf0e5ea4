"""The `registry` command: run one peer, or a local cluster of them.

Flags win over environment variables, which win over defaults (click's envvar does exactly
that). 1Backend's names are kept where they exist (OB_SELF_URL, OB_NODE_ID, ...).
"""

import json
import logging
import os
import signal
import time

import click

from cluster import dumps
from cluster.config import DEFAULT_HTTP_PORT, DEFAULT_RAFT_PORT, PeerConfig, split_address
from cluster.identity import SECRET_FILE, ConfigurationError, read_secret_file, write_private
from cluster.local import LocalCluster, http_json
from registry.durations import parse_seconds
from registry.errors import ValidationError
from registry.permissions import ADMIN_ROLE, USER_ROLE
from registry.state import RegistryState

from . import tokens
from .logs import configure as configure_logging

DEFAULT_CLUSTER_DIR = os.path.join(os.path.expanduser("~"), ".local", "share", "registry-svc", "cluster")
# The admin token `cluster up` hands out for a local cluster.
LOCAL_ADMIN_TOKEN_TTL_SECONDS = 30 * 86400


def _address(value, what):
    try:
        split_address(value, what)
    except ValueError as error:
        raise click.BadParameter(str(error))
    return value


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
          checkpoint_interval, log_level, log_format, join, sync_journal, access_log):
    from .serve import serve as run_peer  # Flask and PySyncObj load only for this command

    configure_logging(log_level, log_format)
    if not access_log:
        logging.getLogger("registry.access").setLevel(logging.WARNING)
    _address(raft_address, "--raft-address")
    _address(http_address, "--http-address")
    peers = tuple(p.strip() for p in raft_peers.split(",") if p.strip())
    for peer in peers:
        _address(peer, "--raft-peers")
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
            sync_journal=sync_journal,
        )
        run_peer(config)
    except ConfigurationError as error:
        raise click.ClickException(str(error))


@main.group(help="A local cluster of peers on 127.0.0.1, for development and tests.")
def cluster():
    pass


@cluster.command(context_settings={"ignore_unknown_options": True},
                 help="Start N local peers. Arguments after -- go to every peer's `registry serve`.")
@click.option("--peers", "count", type=click.IntRange(min=1, max=15), default=3, show_default=True)
@click.option("--data-dir", default=DEFAULT_CLUSTER_DIR, show_default=True)
@click.option("--http-port", type=click.IntRange(1, 65535), default=DEFAULT_HTTP_PORT, show_default=True)
@click.option("--raft-port", type=click.IntRange(1, 65535), default=DEFAULT_RAFT_PORT, show_default=True)
@click.option("--detach", is_flag=True, help="Return once every peer is ready; stop with `cluster down`.")
@click.option("--ready-timeout", type=click.FloatRange(min=1), default=60.0, show_default=True)
@click.option("--restore", "restore_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A new cluster starts from this backup (from `registry snapshot save`).")
@click.argument("serve_args", nargs=-1, type=click.UNPROCESSED)
def up(count, data_dir, http_port, raft_port, detach, ready_timeout, restore_file, serve_args):
    data_dir = os.path.abspath(data_dir)
    try:
        if restore_file and os.path.exists(os.path.join(data_dir, "cluster.json")):
            raise ConfigurationError(f"{data_dir} already holds a cluster: --restore builds a new one; "
                                     "choose an empty --data-dir")
        if os.path.exists(os.path.join(data_dir, "cluster.json")):
            local = LocalCluster.load(data_dir)
            if serve_args:
                local.extra_args = list(serve_args)
            click.echo(f"restarting the {len(local.peers)}-peer cluster in {data_dir}", err=True)
        else:
            local = LocalCluster.create(data_dir, count, http_port=http_port, raft_port=raft_port,
                                        extra_args=serve_args)
            if restore_file:
                snapshot = _read_backup(restore_file)
                for peer in local.peers:
                    dumps.seed(peer.data_dir, snapshot)
        _stop_on_sigterm()
        try:
            local.prepare_secret()
            local.admin_token = tokens.mint(tokens.signing_key(read_secret_file(local.secret_path)), "admin",
                                            [ADMIN_ROLE], LOCAL_ADMIN_TOKEN_TTL_SECONDS)
            local.start()
            local.wait_ready(timeout=ready_timeout)
        except (ConfigurationError, KeyboardInterrupt):
            # Interrupted or failed while starting: leave none of the peers it started behind
            # (and leave alone a cluster that was already running).
            local.stop(only_started_here=True)
            raise
    except ConfigurationError as error:
        raise click.ClickException(str(error))
    if detach:
        _print_status(local)
        _print_access(local)
        click.echo(f"stop it with: registry cluster down --data-dir {data_dir}")
        return
    _run_in_foreground(local)


def _print_access(local):
    click.echo(f"cluster file: {local.cluster_file}")
    click.echo(f"admin token (valid {LOCAL_ADMIN_TOKEN_TTL_SECONDS // 86400} days, also in the cluster file):")
    click.echo(local.admin_token)


def _stop_on_sigterm():
    def interrupt(signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _run_in_foreground(local):
    try:
        _print_status(local)
        _print_access(local)
        click.echo("Ctrl-C stops every peer.")
        exited = set()
        while True:
            for peer in local.peers:
                if peer.index not in exited and not local.is_running(peer):
                    exited.add(peer.index)
                    click.echo(f"peer {peer.url} exited; see {peer.log_path}", err=True)
            time.sleep(0.5)
    except KeyboardInterrupt:
        click.echo("stopping peers...", err=True)
    finally:
        local.stop()
        click.echo("stopped", err=True)


@cluster.command(help="Stop the peers of a local cluster, by pid.")
@click.option("--data-dir", default=DEFAULT_CLUSTER_DIR, show_default=True)
def down(data_dir):
    local = _load_local(data_dir)
    running = [p for p in local.peers if local.is_running(p)]
    local.stop()
    click.echo(f"stopped {len(running)} peer(s) of {local.data_dir}")


@cluster.command(help="Show each peer of a local cluster: state, leader and indexes.")
@click.option("--data-dir", default=DEFAULT_CLUSTER_DIR, show_default=True)
def status(data_dir):
    _print_status(_load_local(data_dir))


def _peer_access(url, token, data_dir):
    """(url, token) of a peer to ask: as given, or the local cluster's first peer and admin token."""
    if url is None or token is None:
        local = _load_local(data_dir, "; or give --url and --token")
        url = url or local.peers[0].url
        token = token or local.admin_token
    return url.rstrip("/"), token


def _admin_call(url, token, data_dir, method, path, *, body=None, timeout=30, ok=(200,)):
    url, token = _peer_access(url, token, data_dir)
    status, answer = http_json(url + path, method=method, body=body, timeout=timeout,
                               headers={"Authorization": f"Bearer {token}"})
    if status not in ok:
        reason = answer.get("error") if isinstance(answer, dict) else None
        raise click.ClickException(f"{url} answered {status or 'nothing'}: {reason or 'no reason given'}")
    return answer


_PEER_API_OPTIONS = (
    click.option("--url", envvar="REGISTRY_URL", default=None,
                 help="A peer's URL (default: the local cluster's first)."),
    click.option("--token", envvar="REGISTRY_TOKEN", default=None,
                 help="An admin token (default: the local cluster's)."),
)


def _peer_api_options(command):
    for option in reversed(_PEER_API_OPTIONS):
        command = option(command)
    return command


@cluster.command(name="add-peer", help="Add a peer to a running cluster, by its Raft address. Start it first with "
                                       "`registry serve --join --raft-peers <current members>`. Without "
                                       "RAFT_ADDRESS, starts a new peer of the local cluster in --data-dir and adds it.")
@click.argument("raft_address", required=False)
@_peer_api_options
@click.option("--data-dir", default=DEFAULT_CLUSTER_DIR, show_default=True, help="A local cluster's directory.")
@click.option("--ready-timeout", type=click.FloatRange(min=1), default=60.0, show_default=True)
def add_peer(raft_address, url, token, data_dir, ready_timeout):
    if raft_address is not None:
        _address(raft_address, "RAFT_ADDRESS")
        answer = _admin_call(url, token, data_dir, "POST", "/registry-svc/cluster/peers",
                             body={"raft": raft_address}, ok=(200, 201))
        click.echo(answer["message"])
        click.echo("members: " + ", ".join(answer["members"]))
        return
    local = _load_local(data_dir)
    try:
        peer = local.start_joining_peer()
    except ConfigurationError as error:
        raise click.ClickException(str(error)) from None
    try:
        _admin_call(url, token, data_dir, "POST", "/registry-svc/cluster/peers", body={"raft": peer.raft},
                    ok=(200, 201))
    except click.ClickException:
        local.stop_peers([peer])
        raise
    local.save()
    click.echo(f"added {peer.url} (raft {peer.raft}, pid {peer.pid}); log: {peer.log_path}")
    try:
        local.wait_ready(timeout=ready_timeout, peers=[peer])
    except ConfigurationError as error:
        raise click.ClickException(f"{error}") from None
    click.echo(f"{peer.url} caught up with the leader")


@cluster.command(name="remove-peer", help="Remove a peer from the cluster, by its Raft address (a leader hands "
                                          "leadership off first). A peer of the local cluster is also stopped.")
@click.argument("raft_address")
@_peer_api_options
@click.option("--data-dir", default=DEFAULT_CLUSTER_DIR, show_default=True, help="A local cluster's directory.")
def remove_peer(raft_address, url, token, data_dir):
    _address(raft_address, "RAFT_ADDRESS")
    local = LocalCluster.load(data_dir) if os.path.exists(os.path.join(data_dir, "cluster.json")) else None
    if url is None and local is not None:
        # Ask a peer that stays, so the answer does not come from one that is leaving.
        url = next((p.url for p in local.peers if p.raft != raft_address), None)
    answer = _admin_call(url, token, data_dir, "DELETE", "/registry-svc/cluster/peers/" + raft_address)
    click.echo(answer["message"])
    click.echo("members: " + ", ".join(answer["members"]))
    leaving = next((p for p in local.peers if p.raft == raft_address), None) if local else None
    if leaving is not None:
        local.stop_peers([leaving])
        local.peers.remove(leaving)
        local.save()
        click.echo(f"stopped {leaving.url} (pid {leaving.pid}); its data stays in {leaving.data_dir}")


def _load_local(data_dir, hint=""):
    try:
        return LocalCluster.load(data_dir)
    except ConfigurationError as error:
        raise click.ClickException(f"{error}{hint}")


def _print_status(local):
    rows = local.status_rows()
    header = ("URL", "RAFT", "PID", "STATE", "LEADER", "APPLIED", "COMMIT")
    table = [header] + [
        tuple("-" if row[key] is None else str(row[key])
              for key in ("url", "raft", "pid", "state", "leader", "appliedIndex", "commitIndex"))
        for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())


@main.group(help="Backups: a consistent copy of the whole registry, and new clusters made from one.")
def snapshot():
    pass


@snapshot.command(name="save", help="Write a consistent backup of the whole registry to FILE.")
@click.argument("file", type=click.Path(dir_okay=False))
@_peer_api_options
@click.option("--data-dir", default=DEFAULT_CLUSTER_DIR, show_default=True, help="A local cluster's directory.")
def save_snapshot(file, url, token, data_dir):
    body = _admin_call(url, token, data_dir, "GET", "/registry-svc/snapshot", timeout=60)
    write_private(file, json.dumps(body) + "\n")
    click.echo(f"saved {len(body['instances'])} instances, {len(body['nodes'])} nodes and the permits "
               f"at Raft index {body['index']} to {file}")


@snapshot.command(name="restore", help="Seed an empty peer data directory from FILE, before the peer's first "
                                       "start. Do it for every peer of the new cluster (for a local one: "
                                       "`registry cluster up --restore FILE`).")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--data-dir", required=True, help="The new peer's data directory (empty).")
def restore_snapshot(file, data_dir):
    try:
        snapshot = _read_backup(file)
        dumps.seed(os.path.abspath(data_dir), snapshot)
    except ConfigurationError as error:
        raise click.ClickException(str(error))
    click.echo(f"{data_dir} will start with {len(snapshot['instances'])} instances from {file}")


def _read_backup(path):
    try:
        with open(path, encoding="utf-8") as source:
            snapshot = json.load(source)
        RegistryState.from_snapshot(snapshot)
        return snapshot
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigurationError(f"{path} is not a registry backup ({error})") from None


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


if __name__ == "__main__":
    main()

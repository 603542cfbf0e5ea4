"""`registry cluster ...` (a local cluster of peers on 127.0.0.1, and membership changes of any
cluster) and `registry snapshot ...` (backups): the commands that operate a cluster through
its peers' HTTP API or its local cluster directory. `api/cli.py` adds them to `registry`.
"""

import json
import os
import signal
import time

import click

from cluster import dumps
from cluster.config import DEFAULT_HTTP_PORT, DEFAULT_RAFT_PORT, split_address
from cluster.identity import ConfigurationError, read_secret_file, write_private
from api.local_clusters.loopback import LocalCluster, http_json
from registry.permissions import ADMIN_ROLE
from registry.state import RegistryState

from . import tokens

DEFAULT_CLUSTER_DIR = os.path.join(os.path.expanduser("~"), ".local", "share", "registry-svc", "cluster")
# The admin token `cluster up` hands out for a local cluster.
LOCAL_ADMIN_TOKEN_TTL_SECONDS = 30 * 86400


def checked_address(value, what):
    try:
        split_address(value, what)
    except ValueError as error:
        raise click.BadParameter(str(error))
    return value


@click.group(help="A local cluster of peers on 127.0.0.1, for development and tests.")
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
            for peer in local.already_running:
                click.echo(f"peer {peer.url} is already running (pid {peer.pid}): left as it is", err=True)
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
    _run_in_foreground(local, data_dir)


def _print_access(local):
    click.echo(f"cluster file: {local.cluster_file}")
    click.echo(f"admin token (valid {LOCAL_ADMIN_TOKEN_TTL_SECONDS // 86400} days, also in the cluster file):")
    click.echo(local.admin_token)


def _stop_on_sigterm():
    def interrupt(signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _run_in_foreground(local, data_dir):
    # Peers that were running before this command belong to whoever started them.
    only_started_here = bool(local.already_running)
    try:
        _print_status(local)
        _print_access(local)
        click.echo("Ctrl-C stops the peers this command started; the others keep running "
                   f"(stop them with: registry cluster down --data-dir {data_dir})." if only_started_here
                   else "Ctrl-C stops every peer.")
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
        local.stop(only_started_here=only_started_here)
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
        checked_address(raft_address, "RAFT_ADDRESS")
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
    checked_address(raft_address, "RAFT_ADDRESS")
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
    _print_table(("URL", "RAFT", "PID", "STATE", "LEADER", "APPLIED", "COMMIT"), [
        [row[key] for key in ("url", "raft", "pid", "state", "leader", "appliedIndex", "commitIndex")]
        for row in rows])
    workers = [[row["url"], w["number"], w["pid"] if w["running"] else "down", w["stateIndex"], w["lagMs"],
                w.get("feed"), w["restarts"]] for row in rows for w in row["httpWorkers"]]
    if workers:
        click.echo("")
        _print_table(("HTTP WORKERS OF", "WORKER", "PID", "STATE INDEX", "LAG MS", "FEED", "RESTARTS"), workers)


def _print_table(header, rows):
    table = [header] + [tuple("-" if cell is None else str(cell) for cell in row) for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())


@click.group(help="Backups: a consistent copy of the whole registry, and new clusters made from one.")
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

#!/usr/bin/env python3
"""Build by hand the network-namespace cluster the chaos tests use, to debug a fault.

    sudo python scripts/netns_cluster.py up [--peers 3] [--dir DIR] [--subnet 10.213.7] [-- SERVE FLAGS]
    sudo python scripts/netns_cluster.py cut N | heal N [--dir DIR]    # pull or plug peer N's cable
    sudo python scripts/netns_cluster.py status [--dir DIR]
    sudo python scripts/netns_cluster.py down [--dir DIR]

`up` makes one namespace per peer plus a hub namespace holding the bridge (nothing in the root
namespace), starts each peer with `ip netns exec`, waits until all are ready, and prints their
addresses, an admin token and how to reach them: a peer's address answers from inside any
namespace of the run whose link is up (`ip netns exec rgtest-RUN-hub curl ...`), and always from
inside its own one. What it made is recorded in DIR/netns-cluster.json for the other commands.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from api.local_clusters import netns  # noqa: E402  (needs the project root on the path first)

DEFAULT_DIR = "netns-cluster"
DEFAULT_SERVE_ARGS = ["--heartbeat", "1", "--write-timeout", "2", "--scan-interval", "3600"]
TOKEN_TTL_SECONDS = 24 * 3600


def up(options):
    netns.check_namespace_support()
    if os.path.exists(os.path.join(options.dir, "netns-cluster.json")):
        sys.exit(f"{options.dir} already holds a namespace cluster; run `down --dir {options.dir}` first")
    serve_args = options.serve_args[1:] if options.serve_args[:1] == ["--"] else options.serve_args
    cluster = netns.NetnsCluster.create(options.dir, options.peers, serve_args=serve_args or DEFAULT_SERVE_ARGS,
                                        subnet=options.subnet)
    try:
        # Detached: the peers outlive this command until `down`.
        cluster.start(ready_timeout=options.ready_timeout, detach=True, token_ttl_seconds=TOKEN_TTL_SECONDS)
    except BaseException:
        # start() already stopped what it started and deleted the namespaces.
        if os.path.exists(cluster.state_path):
            os.remove(cluster.state_path)
        raise
    try:
        leader = cluster.leader(timeout=30)
        print(f"run {cluster.topology.run_id}: {len(cluster.peers)} peers ready, leader {leader.name}")
        print(f"hub namespace {cluster.topology.hub} (bridge {netns.HUB_BRIDGE})")
        for peer in cluster.peers:
            print(f"  {peer.name}  namespace {peer.namespace}  {peer.url}  raft {peer.raft}  pid {peer.pid}  "
                  f"log {peer.log_path}")
        first = cluster.peers[0]
        script = os.path.abspath(__file__)
        print(f"\nadmin token (valid 24 h):\nTOKEN={cluster.admin_token}\n")
        print(f"ip netns exec {cluster.topology.hub} curl -H \"Authorization: Bearer $TOKEN\" "
              f"{first.url}/registry-svc/cluster")
        print(f"ip netns exec {first.namespace} curl -X PUT -H \"Authorization: Bearer $TOKEN\" "
              f"{first.url}/registry-svc/instance -d '{{\"url\": \"http://127.0.0.1:8080\"}}'")
        print(f"{sys.executable} {script} cut {leader.index} --dir {options.dir}"
              f"   # partition the leader; `heal {leader.index}` undoes it")
        print(f"{sys.executable} {script} status --dir {options.dir}")
        print(f"{sys.executable} {script} down --dir {options.dir}")
    finally:
        cluster.close_http()


def cut_or_heal(options, cut):
    cluster = netns.NetnsCluster.load(options.dir)
    if not 1 <= options.peer <= len(cluster.peers):
        sys.exit(f"no peer {options.peer}: peers are 1..{len(cluster.peers)}")
    (cluster.topology.cut if cut else cluster.topology.heal)(options.peer)
    cluster.save()
    print(f"peer {options.peer}'s link is {'cut' if cut else 'up again'}")


def status(options):
    cluster = netns.NetnsCluster.load(options.dir)
    try:
        views = cluster.views()
        for peer, view in views.items():
            me = (view or {}).get("self") or {}
            leader = ((view or {}).get("leader") or {}).get("raft")
            print(json.dumps({
                "peer": peer.name, "url": peer.url, "pid": peer.pid if cluster.is_running(peer) else None,
                "link": "cut" if peer.index in cluster.topology.cut_peers else "up",
                "state": me.get("state", "no answer"), "leader": leader, "commitIndex": me.get("commitIndex"),
                "appliedIndex": me.get("appliedIndex"), "stateDigest": me.get("stateDigest"),
            }))
    finally:
        cluster.close_http()


def down(options):
    cluster = netns.NetnsCluster.load(options.dir)
    cluster.close()
    os.remove(cluster.state_path)
    print(f"stopped {len(cluster.peers)} peers and deleted namespaces {', '.join(cluster.topology.namespaces)}; "
          f"their data stays in {cluster.directory}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", help="make the namespaces and start the peers")
    start.add_argument("--peers", type=int, default=3)
    start.add_argument("--subnet", default=netns.DEFAULT_SUBNET, help="the first three octets of the /24 used")
    start.add_argument("--ready-timeout", type=float, default=60.0)
    start.add_argument("serve_args", nargs=argparse.REMAINDER,
                       help=f"flags for `registry serve` after `--` (default: {' '.join(DEFAULT_SERVE_ARGS)})")
    for name in ("cut", "heal"):
        command = commands.add_parser(name, help=f"{name} peer N's link to the others")
        command.add_argument("peer", type=int)
    commands.add_parser("status", help="each peer's role, indexes and state digest")
    commands.add_parser("down", help="stop the peers and delete the namespaces")
    for command in commands.choices.values():
        command.add_argument("--dir", default=DEFAULT_DIR,
                             help=f"where the cluster's files live (default {DEFAULT_DIR})")
    options = parser.parse_args(argv)
    options.dir = os.path.abspath(options.dir)
    try:
        if options.command == "up":
            up(options)
        elif options.command in ("cut", "heal"):
            cut_or_heal(options, options.command == "cut")
        elif options.command == "status":
            status(options)
        else:
            down(options)
    except FileNotFoundError as error:
        sys.exit(f"no namespace cluster in {options.dir}: {error.filename} does not exist (run `up` first)")
    except (netns.NamespacesUnavailable, netns.CommandFailed, AssertionError, ValueError) as error:
        sys.exit(f"netns_cluster: {error}")


if __name__ == "__main__":
    main()

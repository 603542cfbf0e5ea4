#!/usr/bin/env python3
"""Issue 8's benchmark: the registry measured side by side with its anchors, in one command.

It starts what it measures on 127.0.0.1 (3-peer registry clusters, a bare Flask + waitress
server, 3 raw PySyncObj processes, with --with-etcd a 3-member etcd 3.4), drives every HTTP
target with the same generator (wrk, one thread, Lua scripts in scripts/bench_lua/), stops
everything it started by pid (also on error, Ctrl-C or SIGTERM), and prints a Markdown table
and a JSON document (also written to --json-out).

Stages (--only picks some):
  registry  1000 instances seeded; reads at a follower (one-instance filter, 1,000-instance
            list; 1 and --connections connections); writes (distinct 300-byte records) at the
            leader and a follower with 1 and --connections connections
  workers   the registry stage's reads and writes again, on peers with --http-workers worker
            processes each (CPU counts every process of a peer); then one-connection writes at
            the leader and a follower of a one-process cluster and a workers cluster up side by
            side, --interleaved-rounds rounds alternating between them (bench_interleaved.py):
            issue 16's one-connection goals are judged on their medians
  failover  a cluster of its own: a write every 20 ms at a survivor while the leader is killed
            -9; --rounds rounds, the killed peer restarted between rounds (bench_failover.py)
  bare      bare Flask + waitress (16 threads, the registry's default): PUT parsing the same
            JSON body -> 201, and GETs answering the follower's exact list bytes
  raw       raw PySyncObj, 3 processes, the registry's settings and password: 300-byte commands
            one at a time (the engine's commit latency) and --raw-window at a time (commits/s);
            then, for context only, the same with PySyncObj's default append-entries batching
  etcd      (--with-etcd) 3 members: put and serializable range of the same bytes via /v3/kv
  scale     a fresh cluster with --instances instances over 1,000 slugs (prod/dev tags): RSS
            per instance, list latency at a follower; slug, slug+tag, slug+status and full-list
            reads at a follower with no writes and under --churn-rate re-registrations/s at the
            leader, and 500 blocking watchers on distinct slugs while one slug changes
            (scripts/bench_churn.py); full-cluster restart until every peer serves them all again

Registry peers run with their defaults except `--scan-interval 86400` (TCP scans of thousands
of made-up hosts would otherwise fire at random moments of the runs; bench_scan.py measures
scans); --peer-arg adds serve flags (e.g. --peer-arg=--no-access-log). Each wrk run reports
the CPU (in cores) of every server process, of wrk, and of everything else on the machine
("foreign"): other work on a shared 2-core box disturbs the numbers, and the table says so.
--profile-dir samples the target peer of each registry run with py-spy, its HTTP workers
included (summarise with scripts/bench_profile.py, which splits the samples by process).

    python scripts/bench.py [--duration 10] [--with-etcd] [--json-out FILE]   # ~15 min
    python scripts/bench.py --smoke          # ~40 s; exits non-zero if a stage breaks

Exit status: 0 when every stage ran, 1 when one broke (a server did not start, every request
of a run failed, ...), 130 on Ctrl-C. Nothing about speed is asserted.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

# The stages' modules sit beside this one; the registry's packages are one folder up.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import bench_support  # noqa: E402
from bench_report import markdown  # noqa: E402
from bench_stage_scale import ScaleStage  # noqa: E402
from bench_stages_anchors import AnchorStages  # noqa: E402
from bench_stages_registry import RegistryStages  # noqa: E402
from bench_support import (  # noqa: E402
    BARE_THREADS, PEER_ARGS, PROCESSES, RECORD_BYTES, ROOT, STAGES, StageError, ensure_package, log, tool_version,
)
from bench_wrk import Wrk  # noqa: E402


class Bench(RegistryStages, AnchorStages, ScaleStage):
    """Every stage, with what they share: the settings, the results so far, the working directory."""

    def __init__(self, args, workdir, wrk_binary):
        self.args = args
        self.workdir = workdir
        self.wrk_binary = wrk_binary
        self.results = {}
        self.errors = {}
        self.files = {}  # the follower's list answers, for the bare server and etcd

    def wrk(self, token):
        return Wrk(self.wrk_binary, token)


# -- main -----------------------------------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--smoke", action="store_true", help="everything very briefly (CI); etcd skipped")
    parser.add_argument("--with-etcd", action="store_true", help="also measure etcd 3.4 (installs etcd-server)")
    parser.add_argument("--only", default=",".join(STAGES), help=f"comma-separated stages of {', '.join(STAGES)}")
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 10; smoke 1)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up before a run (default 2; smoke 0)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--http-workers", type=int, default=2,
                        help="HTTP worker processes per peer in the workers stage (default 2)")
    parser.add_argument("--rounds", type=int, help="failover rounds (default 10; smoke 1)")
    parser.add_argument("--interleaved-rounds", type=int, help="rounds of the workers stage's interleaved "
                        "one-connection writes, one process against workers (default 8; smoke 1)")
    parser.add_argument("--interleaved-seconds", type=float, help="seconds per wrk run of those rounds "
                        "(default 3; smoke 1)")
    parser.add_argument("--instances", type=int, help="instances for the scale stage (default 100000; smoke 1000)")
    parser.add_argument("--list-size", type=int, default=1000, help="instances in the listed reads")
    parser.add_argument("--list-samples", type=int, help="full-list GETs at scale (default 5; smoke 2)")
    parser.add_argument("--churn-rate", type=float, default=20.0,
                        help="re-registrations per second at the leader while the scale stage reads under churn")
    parser.add_argument("--raw-commands", type=int, help="raw PySyncObj commands (default 50000; smoke 2000)")
    parser.add_argument("--raw-window", type=int, default=1000, help="raw PySyncObj commands outstanding")
    parser.add_argument("--raw-single", type=int, help="raw PySyncObj commands sent one at a time, for the "
                        "engine's commit latency (default 1000; smoke 50)")
    parser.add_argument("--json-out", help="where to write the JSON document (default: a file in the tmp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (data dirs, logs)")
    parser.add_argument("--peer-arg", action="append", default=[],
                        help="extra `registry serve` argument for every registry peer, repeatable "
                        "(e.g. --peer-arg=--no-access-log); default: the registry's defaults")
    parser.add_argument("--profile-dir", help="sample the target peer of each registry read and write run with "
                        "py-spy (must be on PATH or beside python) into DIR/<run>.txt (collapsed stacks)")
    args = parser.parse_args(argv)
    smoke = args.smoke
    defaults = {"duration": (10.0, 1.0), "warmup": (2.0, 0.0), "rounds": (10, 1), "instances": (100000, 1000),
                "interleaved_rounds": (8, 1), "interleaved_seconds": (3.0, 1.0),
                "list_samples": (5, 2), "raw_commands": (50000, 2000), "raw_single": (1000, 50)}
    for name, (full, brief) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, brief if smoke else full)
    args.stages = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.stages) - set(STAGES)
    if unknown:
        parser.error(f"unknown stages {sorted(unknown)}; choose from {', '.join(STAGES)}")
    if "etcd" in args.stages and (smoke or not args.with_etcd):
        args.stages.remove("etcd")
    if args.json_out is None:
        args.json_out = os.path.join(tempfile.gettempdir(),
                                     f"registry-bench-{time.strftime('%Y%m%d-%H%M%S')}{'-smoke' if smoke else ''}.json")
    return args


def git_revision():
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("+uncommitted changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)

    def terminate(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    # Explicitly, also SIGINT: a shell starting this in the background leaves SIGINT ignored.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, terminate)

    if args.profile_dir:
        bench_support.PY_SPY = shutil.which("py-spy") or shutil.which("py-spy", path=os.path.dirname(sys.executable))
        if bench_support.PY_SPY is None:
            print("bench: --profile-dir needs py-spy (pip install py-spy)", file=sys.stderr)
            return 1
        os.makedirs(args.profile_dir, exist_ok=True)
    wrk_binary = ensure_package("wrk", "wrk")
    if wrk_binary is None:
        print("bench: wrk is missing and could not be installed (apt-get install -y wrk, as root)", file=sys.stderr)
        return 1
    from importlib.metadata import version

    def package_version(name):
        try:
            return version(name)
        except Exception:
            return None

    workdir = tempfile.mkdtemp(prefix="registry-bench-")
    document = {
        "startedAt": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadAverageAtStart": [round(x, 2) for x in os.getloadavg()]},
        "versions": {"registry": git_revision(), "pysyncobj": package_version("pysyncobj"),
                     "flask": package_version("flask"), "waitress": package_version("waitress"),
                     "wrk": tool_version([wrk_binary, "--version"])},
        "settings": {"smoke": args.smoke, "duration": args.duration, "warmup": args.warmup,
                     "connections": args.connections, "rounds": args.rounds, "instances": args.instances,
                     "listSize": args.list_size, "rawCommands": args.raw_commands, "rawWindow": args.raw_window,
                     "rawSingle": args.raw_single, "httpWorkers": args.http_workers,
                     "stages": args.stages, "recordBytes": RECORD_BYTES, "peerArgs": PEER_ARGS + args.peer_arg,
                     "bareThreads": BARE_THREADS},
        "results": {},
        "errors": {},
    }
    bench = Bench(args, workdir, wrk_binary)
    bench.results = document["results"]
    interrupted = False
    started = time.monotonic()
    try:
        for stage in STAGES:
            if stage not in args.stages:
                continue
            log(f"stage {stage}")
            stage_started = time.monotonic()
            try:
                getattr(bench, f"stage_{stage}")()
            except StageError as error:
                document["errors"][stage] = f"{type(error).__name__}: {error}"
                log(f"stage {stage} broke: {error}")
            except Exception as error:  # a bug here or a changed server: report it, run the other stages
                document["errors"][stage] = f"{type(error).__name__}: {error}\n{traceback.format_exc()}"
                log(f"stage {stage} broke: {type(error).__name__}: {error}\n{traceback.format_exc()}")
            finally:
                document["results"].setdefault(stage, {})["stageSeconds"] = round(time.monotonic() - stage_started, 1)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: stopping everything started")
    finally:
        PROCESSES.stop_all()
        document["seconds"] = round(time.monotonic() - started, 1)
        document["machine"]["loadAverageAtEnd"] = [round(x, 2) for x in os.getloadavg()]
        if args.keep or document["errors"]:
            document["workdir"] = workdir
            log(f"working directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if interrupted:
        return 130
    table = markdown(document)
    document["markdown"] = table
    with open(args.json_out, "w", encoding="utf-8") as out:
        json.dump(document, out, indent=2)
    print(table)
    print()
    print(json.dumps(document))
    log(f"JSON written to {args.json_out}; {document['seconds']} s in all")
    return 1 if document["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())

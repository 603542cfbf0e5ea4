"""The registry and failover stages of scripts/bench.py: reads and writes at the leader and a
follower of one cluster, and kill -9 of the leader under a steady writer (bench_failover.py)."""

import json
import os
import time

import psutil

import bench_failover
import bench_support
from bench_cluster import Registry, server_latency
from bench_interleaved import interleaved_writes, summary
from bench_support import GET_LUA, PUT_LUA, StageError, log, raft_timings, record_body


class RegistryStages:
    """Mixed into bench.Bench: it gives self.args, self.results, self.workdir, self.files and self.wrk()."""

    def ensure_list_files(self):
        """The follower's list answers (saved by the registry stage), or the same shapes made up here."""
        if "list" in self.files:
            return
        records = [json.loads(record_body("list", 0, n)) for n in range(1, self.args.list_size + 1)]
        self.files["one"] = os.path.join(self.workdir, "one.json")
        self.files["list"] = os.path.join(self.workdir, "list.json")
        with open(self.files["one"], "wb") as f:
            f.write(json.dumps({"instances": records[:1]}, separators=(",", ":")).encode())
        with open(self.files["list"], "wb") as f:
            f.write(json.dumps({"instances": records}, separators=(",", ":")).encode())
        self.files["oneQuery"] = "?id=i-list-0-1"

    def profile_target(self, peer, name):
        if not self.args.profile_dir or not bench_support.PY_SPY:
            return None
        return peer.pid, os.path.join(self.args.profile_dir, f"{name}.txt")

    # registry: reads and writes on one cluster ----------------------------------------------------

    def stage_failover(self):
        out = self.results.setdefault("failover", {})
        cluster = Registry(self.workdir, "failover", self.args.peer_arg).start()
        try:
            out.update(bench_failover.measure(cluster, self.args.rounds, record_body=record_body, log=log,
                                              stage_error=StageError))
            # The election timeouts the peers ran with (cluster/config.py RaftTimings).
            out["raftTimings"] = raft_timings()
        except StageError as error:
            raise StageError(f"{error}\n{cluster.log_tails()}") from None
        finally:
            cluster.stop()

    def stage_registry(self):
        self.measure_reads_and_writes("registry", [])

    def stage_workers(self):
        """The registry stage again, on peers serving HTTP from --http-workers processes each; then
        one-connection writes on a one-process cluster and a workers one side by side, interleaved."""
        self.results.setdefault("workers", {})["httpWorkers"] = self.args.http_workers
        self.measure_reads_and_writes("workers", ["--http-workers", str(self.args.http_workers)])
        self.measure_one_connection_writes_interleaved()

    def measure_one_connection_writes_interleaved(self):
        """A one-connection write's p50 with workers against one process, as the median of rounds
        that alternate between two clusters up at once: on this machine single runs of the same
        code scatter by more than the 0.3 ms goal (scripts/bench_interleaved.py)."""
        a = self.args
        serve_args = {"oneProcess": [], "workers": ["--http-workers", str(a.http_workers)]}
        clusters = {}
        try:
            for name, extra in serve_args.items():
                clusters[name] = Registry(self.workdir, f"interleaved-{name}", a.peer_arg + extra).start()
            runs = interleaved_writes(self.wrk_binary, clusters, spots=("leader", "follower"), connection_counts=(1,),
                                      rounds=a.interleaved_rounds, seconds=a.interleaved_seconds)
        finally:
            for cluster in clusters.values():
                cluster.stop()
        out = self.results["workers"]["interleavedC1"] = {"rounds": a.interleaved_rounds,
                                                           "seconds": a.interleaved_seconds}
        for (name, spot, _), results in runs.items():
            out.setdefault(name, {})[spot] = summary(results)
        for spot in ("leader", "follower"):
            log(f"interleaved one-connection writes at the {spot}: p50 {out['workers'][spot]['p50Ms']:.2f} ms with "
                f"workers, {out['oneProcess'][spot]['p50Ms']:.2f} ms in one process (medians of {a.interleaved_rounds})")

    def measure_reads_and_writes(self, stage, serve_args):
        a = self.args
        out = self.results.setdefault(stage, {})
        cluster = Registry(self.workdir, stage, self.args.peer_arg + serve_args).start()
        try:
            leader = cluster.leader()
            follower = next(p for p in cluster.peers if p is not leader)
            other = next(p for p in cluster.peers if p is not leader and p is not follower)
            pids = {"leader": leader.pid, "follower": follower.pid, "follower2": other.pid}
            out["peers"] = {"leader": leader.url, "follower": follower.url, "follower2": other.url}
            out["threadsPerPeer"] = psutil.Process(follower.pid).num_threads()
            out["processesPerPeer"] = 1 + len(psutil.Process(follower.pid).children())
            wrk = self.wrk(cluster.token)

            log(f"registry: seeding {a.list_size} instances")
            seeded = cluster.put_many(leader, [record_body("list", 0, n) for n in range(1, a.list_size + 1)])
            if seeded != a.list_size:
                raise StageError(f"only {seeded} of {a.list_size} seed registrations succeeded")
            # The follower answers once it applied them all.
            index = cluster.state_index(leader)
            deadline = time.monotonic() + 30
            while cluster.state_index(follower) < index:
                if time.monotonic() > deadline:
                    raise StageError("the follower did not catch up with the seed registrations in 30 s")
                time.sleep(0.05)
            one_query = f"?id=i-list-0-{(a.list_size + 1) // 2}"
            status_one, one_body, _, _ = cluster.list_instances(follower, one_query)
            status_list, list_body, _, _ = cluster.list_instances(follower)
            if status_one != 200 or status_list != 200:
                raise StageError(f"reads at the follower answered {status_one} / {status_list}")
            listed = len(json.loads(list_body)["instances"])
            if listed != a.list_size or len(json.loads(one_body)["instances"]) != 1:
                raise StageError(f"the follower lists {listed} instances, expected {a.list_size}")
            if "fromRegistry" not in self.files:
                self.files["one"] = os.path.join(self.workdir, "one.json")
                self.files["list"] = os.path.join(self.workdir, "list.json")
                with open(self.files["one"], "wb") as f:
                    f.write(one_body)
                with open(self.files["list"], "wb") as f:
                    f.write(list_body)
                self.files["oneQuery"] = one_query
                self.files["fromRegistry"] = True
            out["listBytes"] = {"one": len(one_body), "list": len(list_body), "instances": listed}

            reads = out.setdefault("reads", {})
            for key, query in (("one", one_query), ("list", "")):
                url = follower.url + "/registry-svc/instances" + query
                if a.warmup:
                    wrk.run(url, connections=a.connections, duration=a.warmup, script=GET_LUA, watch_pids=pids,
                            label="warm-up")
                for connections, name in ((a.connections, key), (1, f"{key}C1")):
                    histogram = cluster.latency_buckets(follower, "instances.list_instances")
                    reads[name] = wrk.run(url, connections=connections, duration=a.duration, script=GET_LUA,
                                          watch_pids=pids, label=f"registry read {key} at follower c{connections}",
                                          profile=self.profile_target(follower, f"read-{key}-follower-c{connections}"))
                    reads[name]["serverLatency"] = server_latency(
                        histogram, cluster.latency_buckets(follower, "instances.list_instances"))

            writes = out.setdefault("writes", {})
            for where, peer in (("leader", leader), ("follower", follower)):
                for connections in (1, a.connections):
                    key = f"{where}C{connections}"
                    url = peer.url + "/registry-svc/instance"
                    if a.warmup:
                        wrk.run(url, connections=connections, duration=a.warmup, script=PUT_LUA,
                                script_args=[f"warm{where[0]}{connections}"], watch_pids=pids, label="warm-up")
                    index_before = cluster.state_index(peer)
                    histogram = cluster.latency_buckets(peer, "instances.register_instance")
                    result = wrk.run(url, connections=connections, duration=a.duration, script=PUT_LUA,
                                     script_args=[f"w{where[0]}{connections}"], watch_pids=pids,
                                     label=f"registry write at {where} c{connections}",
                                     profile=self.profile_target(peer, f"write-{where}-c{connections}"))
                    # The peer's own view (its WSGI app, hot path or Flask): the rest of wrk's latency is
                    # waitress and queueing.
                    result["serverLatency"] = server_latency(
                        histogram, cluster.latency_buckets(peer, "instances.register_instance"))
                    entries = cluster.state_index(peer) - index_before
                    result["raftEntries"] = entries
                    result["commandsPerEntry"] = round(result["ok"] / entries, 1) if entries > 0 else None
                    writes[key] = result
            out["instancesAfterWrites"] = len(json.loads(cluster.list_instances(follower)[1])["instances"])
            out["roleChanges"] = cluster.role_changes()
        except StageError as error:
            raise StageError(f"{error}\n{cluster.log_tails()}") from None
        finally:
            cluster.stop()


    # bare Flask + waitress ---------------------------------------------------------------------------

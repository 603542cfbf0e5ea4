"""The scale stage of scripts/bench.py: a cluster holding --instances instances, its RSS, its reads
at rest and under churn (bench_churn.py), and a full-cluster restart."""

import json
import os
import statistics
import time

import requests

import bench_churn
from bench_cluster import Registry
from bench_support import GET_LUA, PUT_LUA, StageError, file_size, log, record_body
from api.local_clusters.loopback import tail


class ScaleStage:
    """Mixed into bench.Bench: it gives self.args, self.results, self.workdir, self.files and self.wrk()."""

    def stage_scale(self):
        a = self.args
        out = self.results.setdefault("scale", {"instances": a.instances})
        # Room for the churn measurement's 500 blocking watchers.
        cluster = Registry(self.workdir, "scale", ["--max-blocking-reads", str(bench_churn.WATCHERS + 100)]
                           + self.args.peer_arg).start()
        try:
            leader = cluster.leader()
            follower = next(p for p in cluster.peers if p is not leader)
            time.sleep(1.0)
            rss_before = cluster.rss()
            out["rssBeforeBytes"] = rss_before
            processes_before = cluster.rss_by_process()
            memory_before = cluster.memory()
            log(f"scale: registering {a.instances} instances at the leader ({a.connections} connections)")
            wrk = self.wrk(cluster.token)
            started = time.monotonic()
            stop_file = os.path.join(self.workdir, "scale-quota-sent")
            load = wrk.run(leader.url + "/registry-svc/instance", connections=a.connections,
                           duration=a.instances / 100 + 60, script=PUT_LUA,
                           script_args=["scale", a.instances, "fleet", stop_file], stop_file=stop_file,
                           watch_pids={"leader": leader.pid, "follower": follower.pid,
                                       "follower2": next(p for p in cluster.peers if p not in (leader, follower)).pid},
                           label=f"scale registration c{a.connections}")
            out["registration"] = load
            # Top up what the wrk run left out (failed requests, the requests in flight at its stop).
            status, body, _, _ = cluster.list_instances(follower, "?tag=generated")
            have = {r["id"] for r in json.loads(body)["instances"]} if status == 200 else set()
            missing = [n for n in range(1, a.instances + 1) if f"i-scale-0-{n}" not in have]
            if missing:
                log(f"scale: topping up {len(missing)} instances")
                cluster.put_many(leader, [record_body("scale", 0, n, fleet=True) for n in missing])
            out["registrationSeconds"] = round(time.monotonic() - started, 1)
            out["toppedUp"] = len(missing)
            # More than the first election's lines means a leader was lost under this load.
            out["roleChangesDuringRegistration"] = cluster.role_changes()
            index = cluster.state_index(leader)
            for peer in cluster.peers:
                deadline = time.monotonic() + 60
                while cluster.state_index(peer) < index:
                    if time.monotonic() > deadline:
                        raise StageError(f"{peer.url} did not catch up with the registrations")
                    time.sleep(0.1)
            counts = {}
            for peer in cluster.peers:
                status, body, _, _ = cluster.list_instances(peer, "?tag=generated")
                counts[peer.index] = len(json.loads(body)["instances"]) if status == 200 else None
            out["countsPerPeer"] = counts
            if any(c != a.instances for c in counts.values()):
                raise StageError(f"not every peer holds {a.instances} instances: {counts}")
            time.sleep(2.0)
            rss_after = cluster.rss()
            out["rssAfterBytes"] = rss_after
            per_peer = {i: (rss_after[i] - rss_before[i]) / a.instances for i in rss_after
                        if rss_after[i] is not None and rss_before[i] is not None}
            out["rssPerInstanceBytes"] = {str(i): round(v) for i, v in per_peer.items()}
            out["rssPerInstanceBytesMean"] = round(statistics.mean(per_peer.values()))
            out["rssPerInstanceBytesMax"] = round(max(per_peer.values()))
            processes_after = cluster.rss_by_process()
            if any(len(processes) > 1 for processes in processes_after.values()):
                # With HTTP workers every process holds a copy: each one's own growth per instance.
                out["rssPerInstanceByProcessBytes"] = {
                    str(i): {name: round((rss - processes_before[i][name]) / a.instances)
                             for name, rss in processes.items()
                             if rss is not None and processes_before.get(i, {}).get(name) is not None}
                    for i, processes in processes_after.items()}
                log(f"  RSS per instance by process {out['rssPerInstanceByProcessBytes']} B")
            # Of which file-backed (mapped files; PySyncObj's journal was one) and anonymous (heap: the state).
            memory_after = cluster.memory()
            out["memoryBytes"] = {"before": memory_before, "after": memory_after}
            out["perInstanceSplitBytes"] = {
                str(i): {part: round((memory_after[i][part] - memory_before[i][part]) / a.instances)
                         for part in ("shared", "anon")}
                for i in memory_after if memory_after[i] and memory_before.get(i)}
            # Full-list latency at a follower (sequential GETs), and a one-instance filter at this size.
            full, one = [], []
            size = 0
            for _ in range(a.list_samples):
                status, body, _, seconds = cluster.list_instances(follower)
                if status != 200:
                    raise StageError(f"the full list at a follower answered {status}")
                full.append(seconds * 1000)
                size = len(body)
                status, _, _, seconds = cluster.list_instances(follower, f"?id=i-scale-0-{a.instances // 2}")
                one.append(seconds * 1000)
            out["fullListMs"] = {"median": round(statistics.median(full), 1), "max": round(max(full), 1),
                                 "samples": len(full), "bytes": size}
            out["oneInstanceFilterMs"] = {"median": round(statistics.median(one), 1), "max": round(max(one), 1)}
            # Again now that the follower has served the full list: what the lists it keeps cost.
            rss_listed = cluster.rss()
            out["rssPerInstanceAfterFullListsBytes"] = {
                str(i): round((rss_listed[i] - rss_before[i]) / a.instances) for i in rss_listed
                if rss_listed[i] is not None and rss_before[i] is not None}
            log(f"  RSS per instance {out['rssPerInstanceBytes']} B, after the full lists "
                f"{out['rssPerInstanceAfterFullListsBytes']} B; full list {out['fullListMs']['median']} ms "
                f"({size} bytes); one-instance filter {out['oneInstanceFilterMs']['median']} ms")
            out["churn"] = bench_churn.measure(
                cluster, leader, follower, wrk, instances=a.instances, duration=a.duration,
                connections=a.connections, churn_rate=a.churn_rate, get_script=GET_LUA,
                body_of=lambda n: record_body("scale", 0, n, fleet=True), log=log, fail=StageError)
            out["restart"] = self.full_restart(cluster, a.instances)
            log(f"  full-cluster restart: every peer serves all {a.instances} instances after "
                f"{out['restart']['servingSeconds']} s")
        except StageError as error:
            raise StageError(f"{error}\n{cluster.log_tails()}") from None
        finally:
            cluster.stop()

    def full_restart(self, cluster, instances):
        """Stop every peer (SIGTERM), start them all, and time until each serves every instance."""
        probe = f"?id=i-scale-0-{instances}"
        index = max(cluster.state_index(p) for p in cluster.peers)
        stop_started = time.monotonic()
        cluster.local.stop(only_started_here=True)
        stopped = time.monotonic() - stop_started
        started = time.monotonic()
        for peer in cluster.peers:
            cluster.local.start_peer(peer)
        waiting = {p.index: p for p in cluster.peers}
        ready_at = {}
        deadline = started + 300
        while waiting:
            for key, peer in list(waiting.items()):
                if peer.process.poll() is not None:
                    raise StageError(f"{peer.url} exited during the restart:\n{tail(peer.log_path)}")
                try:
                    if cluster.session().get(peer.url + "/readyz", timeout=2).status_code != 200:
                        continue
                    status, body, at_index, _ = cluster.list_instances(peer, probe, timeout=10)
                except requests.RequestException:
                    continue
                if status == 200 and at_index >= index and json.loads(body)["instances"]:
                    ready_at[key] = round(time.monotonic() - started, 2)
                    del waiting[key]
            if time.monotonic() > deadline:
                raise StageError(f"peers {sorted(waiting)} did not serve all instances within 300 s of a restart")
            time.sleep(0.05)
        serving = round(time.monotonic() - started, 2)
        counts = {}
        for peer in cluster.peers:
            status, body, _, _ = cluster.list_instances(peer, "?tag=generated")
            counts[peer.index] = len(json.loads(body)["instances"]) if status == 200 else None
        if any(c != instances for c in counts.values()):
            raise StageError(f"after the restart not every peer lists {instances} instances: {counts}")
        return {"stopSeconds": round(stopped, 2), "servingSeconds": serving, "perPeerSeconds": ready_at,
                "countsPerPeer": counts, "indexBefore": index,
                "dumpBytesPerPeer": {p.index: file_size(os.path.join(p.data_dir, "raft.dump")) for p in cluster.peers},
                "journalBytesPerPeer": {p.index: file_size(os.path.join(p.data_dir, "raft.journal"))
                                        for p in cluster.peers}}

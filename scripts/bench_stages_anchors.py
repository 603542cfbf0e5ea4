"""The anchors of scripts/bench.py: bare waitress + Flask, raw PySyncObj, and etcd 3.4, measured with
the same generator and bytes as the registry."""

import json
import os
import secrets
import subprocess
import sys
import threading
import time

import requests

from api import tokens
from bench_support import BARE_THREADS, GET_LUA, HOST, PROCESSES, PUT_LUA, RECORD_BYTES, ROOT, StageError, cpu_seconds, ensure_package, free_port, log, system_busy_seconds, tool_version
from api.local_clusters.loopback import tail


class AnchorStages:
    """Mixed into bench.Bench: it gives self.args, self.results, self.workdir, self.files and self.wrk()."""

    def stage_bare(self):
        a = self.args
        out = self.results.setdefault("bare", {})
        self.ensure_list_files()
        out["listBytes"] = {"one": os.path.getsize(self.files["one"]), "list": os.path.getsize(self.files["list"]),
                            "fromRegistry": self.files.get("fromRegistry", False)}
        port = free_port()
        log_path = os.path.join(self.workdir, "bare.log")
        with open(log_path, "ab") as log_file:
            popen = PROCESSES.add(subprocess.Popen(
                [sys.executable, os.path.join(ROOT, "scripts", "bench_bare_http.py"), "--port", str(port),
                 "--threads", str(BARE_THREADS), "--list-file", self.files["list"], "--one-file", self.files["one"]],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True))
        try:
            base = f"http://{HOST}:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    if requests.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if popen.poll() is not None or time.monotonic() > deadline:
                    raise StageError(f"the bare waitress server did not start:\n{tail(log_path)}")
                time.sleep(0.1)
            out["threads"] = BARE_THREADS
            wrk = self.wrk(tokens.mint(os.urandom(32), "bench", ["admin"], 3600))  # same header size, unchecked
            url = base + "/registry-svc/instance"
            writes = out.setdefault("writes", {})
            for connections in (1, a.connections):
                if a.warmup:
                    wrk.run(url, connections=connections, duration=a.warmup, script=PUT_LUA,
                            script_args=[f"warmbare{connections}"], watch_pids={"bare": popen.pid}, label="warm-up")
                writes[f"c{connections}"] = wrk.run(url, connections=connections, duration=a.duration,
                                                    script=PUT_LUA, script_args=[f"bare{connections}"],
                                                    watch_pids={"bare": popen.pid}, label=f"bare PUT c{connections}")
            reads = out.setdefault("reads", {})
            for key, query in (("one", self.files["oneQuery"]), ("list", "")):
                reads[key] = wrk.run(base + "/registry-svc/instances" + query, connections=a.connections,
                                     duration=a.duration, script=GET_LUA, watch_pids={"bare": popen.pid},
                                     label=f"bare GET {key} c{a.connections}")
                reads[f"{key}C1"] = wrk.run(base + "/registry-svc/instances" + query, connections=1,
                                            duration=a.duration, script=GET_LUA, watch_pids={"bare": popen.pid},
                                            label=f"bare GET {key} c1")
        finally:
            PROCESSES.stop_popen(popen)

    # raw PySyncObj -------------------------------------------------------------------------------------

    def stage_raw(self):
        a = self.args
        out = self.results.setdefault("raw", {})
        # The registry's settings: the anchor of issue 8's "same version and settings".
        single, batched = self.raw_cluster("raw", use_batch=False, single=a.raw_single)
        out["leaderWindow1"], out["leader"] = single, batched
        # For context only: PySyncObj's own default of batching append entries on the timer (the
        # registry turns it off for millisecond commits; the 17,000/s quoted in issue 8 had it on).
        _, out["leaderLibraryBatching"] = self.raw_cluster("raw-batching", use_batch=True, single=0)

    def raw_cluster(self, name, *, use_batch, single):
        a = self.args
        directory = os.path.join(self.workdir, name)
        os.makedirs(directory, exist_ok=True)
        secret_file = os.path.join(directory, "secret")
        with open(secret_file, "w", encoding="utf-8") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        os.chmod(secret_file, 0o600)
        addresses = [f"{HOST}:{free_port()}" for _ in range(3)]
        nodes = []
        what = "raw PySyncObj" + (" (append-entries batching on)" if use_batch else "")
        try:
            for i, address in enumerate(addresses):
                partners = ",".join(x for x in addresses if x != address)
                stderr = open(os.path.join(directory, f"node-{i + 1}.log"), "ab")
                popen = PROCESSES.add(subprocess.Popen(
                    [sys.executable, os.path.join(ROOT, "scripts", "bench_raw_pysyncobj.py"), "--self", address,
                     "--partners", partners, "--data-dir", os.path.join(directory, f"node-{i + 1}"),
                     "--secret-file", secret_file] + (["--append-entries-batch"] if use_batch else []),
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1,
                    start_new_session=True))
                stderr.close()
                nodes.append(popen)

            def ask(popen, line, timeout=30.0):
                popen.stdin.write(line + "\n")
                popen.stdin.flush()
                answer = [None]

                def read():
                    answer[0] = popen.stdout.readline()
                reader = threading.Thread(target=read, daemon=True)
                reader.start()
                reader.join(timeout)
                if not answer[0]:
                    raise StageError(f"{what} process {popen.pid} did not answer {line!r}:\n"
                                     f"{tail(os.path.join(directory, f'node-{nodes.index(popen) + 1}.log'))}")
                return json.loads(answer[0])

            deadline = time.monotonic() + 60
            leader = None
            while leader is None:
                statuses = [ask(n, "status") for n in nodes]
                leaders = [n for n, st in zip(nodes, statuses) if st["isLeader"]]
                if leaders and all(st["ready"] and st["leader"] for st in statuses):
                    leader = leaders[0]
                elif time.monotonic() > deadline:
                    raise StageError(f"{what} elected no leader in 60 s: {statuses}")
                else:
                    time.sleep(0.2)
            one_at_a_time = None
            if single:
                # One command at a time: the engine's own commit latency, a floor for a 1-connection write.
                one_at_a_time = ask(leader, f"load {single} 1 {RECORD_BYTES}", timeout=max(60.0, single / 20.0 + 30))
                log(f"  {what}, one command at a time: {one_at_a_time['commitsPerSecond']:.0f} commits/s, "
                    f"p50 {(one_at_a_time.get('latencyMs') or {}).get('p50', 0):.2f} ms")
                if one_at_a_time["succeeded"] == 0:
                    raise StageError(f"{what} committed nothing: {one_at_a_time}")
            deadline = time.monotonic() + 30
            while True:  # every process has applied what came before
                applied_before = [ask(n, "status")["applied"] for n in nodes]
                if len(set(applied_before)) == 1 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            pids = [n.pid for n in nodes]
            busy_before, own_before = system_busy_seconds(), cpu_seconds([os.getpid()])
            cpu_before, started = {p: cpu_seconds([p]) for p in pids}, time.monotonic()
            result = ask(leader, f"load {a.raw_commands} {a.raw_window} {RECORD_BYTES}",
                         timeout=max(60.0, a.raw_commands / 500.0 + 30))
            wall = time.monotonic() - started
            cpu = {p: cpu_seconds([p]) - cpu_before[p] for p in pids}
            result["cpuCores"] = {("leader" if p == leader.pid else f"follower-{p}"): round(c / wall, 2)
                                  for p, c in cpu.items()}
            result["foreignCpuCores"] = round(max(0.0, system_busy_seconds() - busy_before - sum(cpu.values())
                                                  - (cpu_seconds([os.getpid()]) - own_before)) / wall, 2)
            # Every process applies every committed command.
            deadline = time.monotonic() + 30
            while True:
                applied = [ask(n, "status")["applied"] - b for n, b in zip(nodes, applied_before)]
                if min(applied) >= result["succeeded"] or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            result["appliedPerProcess"] = applied
            result["leaderPid"] = leader.pid
            result["appendEntriesBatching"] = use_batch
            log(f"  {what}: {result['commitsPerSecond']:.0f} commits/s ({result['succeeded']} of "
                f"{result['submitted']}, window {a.raw_window}), applied per process {applied}; "
                f"foreign CPU {result['foreignCpuCores']}")
            if result["succeeded"] == 0:
                raise StageError(f"{what} committed nothing: {result}")
            if min(applied) < result["succeeded"]:
                raise StageError(f"{what}: a process applied only {min(applied)} of {result['succeeded']}")
            return one_at_a_time, result
        finally:
            for popen in nodes:
                try:
                    popen.stdin.write("quit\n")
                    popen.stdin.flush()
                except (OSError, ValueError):
                    pass
            for popen in nodes:
                try:
                    popen.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
                PROCESSES.stop_popen(popen)

    # etcd ------------------------------------------------------------------------------------------------

    def stage_etcd(self):
        import base64

        a = self.args
        out = self.results.setdefault("etcd", {})
        binary = ensure_package("etcd", "etcd-server")
        if binary is None:
            out["skipped"] = "etcd could not be installed (apt-get install -y etcd-server failed)"
            log("etcd: could not be installed; going on without it")
            return
        out["version"] = tool_version([binary, "--version"])
        directory = os.path.join(self.workdir, "etcd")
        members = [{"name": f"m{i + 1}", "client": free_port(), "peer": free_port()} for i in range(3)]
        initial = ",".join(f"{m['name']}=http://{HOST}:{m['peer']}" for m in members)
        popens = []
        try:
            for m in members:
                log_path = os.path.join(directory, f"{m['name']}.log")
                os.makedirs(directory, exist_ok=True)
                with open(log_path, "ab") as log_file:
                    popen = PROCESSES.add(subprocess.Popen(
                        [binary, "--name", m["name"], "--data-dir", os.path.join(directory, m["name"]),
                         "--listen-client-urls", f"http://{HOST}:{m['client']}",
                         "--advertise-client-urls", f"http://{HOST}:{m['client']}",
                         "--listen-peer-urls", f"http://{HOST}:{m['peer']}",
                         "--initial-advertise-peer-urls", f"http://{HOST}:{m['peer']}",
                         "--initial-cluster", initial, "--initial-cluster-token", "registry-bench",
                         "--initial-cluster-state", "new", "--logger", "zap", "--log-level", "warn"],
                        stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True))
                m["pid"] = popen.pid
                m["url"] = f"http://{HOST}:{m['client']}"
                m["log"] = log_path
                popens.append(popen)
            http = requests.Session()
            deadline = time.monotonic() + 60
            leader_id = None
            statuses = {}
            while True:
                try:
                    for m in members:
                        status = http.post(m["url"] + "/v3/maintenance/status", json={}, timeout=2).json()
                        statuses[m["name"]] = status
                        m["id"] = status["header"]["member_id"]
                    leaders = {s.get("leader") for s in statuses.values()}
                    if len(leaders) == 1 and None not in leaders and "0" not in leaders:
                        leader_id = leaders.pop()
                        break
                except (requests.RequestException, ValueError, KeyError):
                    pass
                if any(p.poll() is not None for p in popens) or time.monotonic() > deadline:
                    raise StageError("etcd did not form a cluster: " + " ".join(
                        f"\n--- {m['log']}\n{tail(m['log'])}" for m in members))
                time.sleep(0.2)
            self.ensure_list_files()
            leader = next(m for m in members if m["id"] == leader_id)
            follower = next(m for m in members if m is not leader)
            out["members"] = {"leader": leader["url"], "follower": follower["url"]}

            def b64(data):
                return base64.b64encode(data).decode()

            with open(self.files["one"], "rb") as f:
                one = f.read()
            with open(self.files["list"], "rb") as f:
                listing = f.read()
            for key, value in ((b"/bench/read/one", one), (b"/bench/read/list", listing)):
                response = http.post(leader["url"] + "/v3/kv/put", json={"key": b64(key), "value": b64(value)},
                                     timeout=10)
                if response.status_code != 200:
                    raise StageError(f"etcd put of {key!r} answered {response.status_code}: {response.text[:300]}")
            time.sleep(0.5)  # the follower applies them
            wrk = self.wrk(None)
            third = next(m for m in members if m is not leader and m is not follower)
            pids = {"leader": leader["pid"], "follower": follower["pid"], "follower2": third["pid"]}
            puts = out.setdefault("puts", {})
            for where, m in (("leader", leader), ("follower", follower)):
                for connections in (1, a.connections):
                    url = m["url"] + "/v3/kv/put"
                    if a.warmup:
                        wrk.run(url, connections=connections, duration=a.warmup, script=PUT_LUA,
                                script_args=[f"warm{where[0]}{connections}", 0, "etcd"], auth=False,
                                watch_pids=pids, label="warm-up")
                    puts[f"{where}C{connections}"] = wrk.run(
                        url, connections=connections, duration=a.duration, script=PUT_LUA,
                        script_args=[f"e{where[0]}{connections}", 0, "etcd"], watch_pids=pids, auth=False,
                        label=f"etcd put at {where} c{connections}")
            ranges = out.setdefault("ranges", {})
            for key, name in (("one", b"/bench/read/one"), ("list", b"/bench/read/list")):
                body = json.dumps({"key": b64(name), "serializable": True}, separators=(",", ":"))
                probe = http.post(follower["url"] + "/v3/kv/range", data=body, timeout=10).json()
                if base64.b64decode(probe["kvs"][0]["value"]) != (one if key == "one" else listing):
                    raise StageError(f"etcd range of {name!r} did not return the bytes put")
                ranges[key] = wrk.run(follower["url"] + "/v3/kv/range", connections=a.connections,
                                      duration=a.duration, script=GET_LUA, script_args=[body], watch_pids=pids,
                                      auth=False, label=f"etcd serializable range {key} at follower "
                                                        f"c{a.connections}")
        finally:
            for popen in popens:
                PROCESSES.stop_popen(popen)

    # scale -------------------------------------------------------------------------------------------------

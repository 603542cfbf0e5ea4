"""The scale stage's reads under churn (issue 20), run by scripts/bench.py on its scale cluster.

With the cluster holding --instances instances over 1,000 slugs (prod/dev tags), at a follower:
- slug, slug+tag, slug+status and full-list reads with wrk (1 and --connections connections),
  with no writes and while a writer re-registers random instances at the leader at a fixed rate
  (--churn-rate, default 20/s: what heartbeats and scans do all day), the two alternating
  ROUNDS times per read;
- 500 blocking watchers on 500 distinct slugs (each re-arming with the index it was given),
  while one watched slug changes at the same rate: how many watchers each change woke, and the
  p99 of reads of an unwatched slug beside them, against the same reads with the watchers idle.

Everything here talks HTTP to the peers; the bench passes in what it owns (the cluster, its wrk
driver, its log and error type), so this module starts and stops nothing itself.
"""

import http.client
import random
import socket
import threading
import time
from urllib.parse import urlsplit

WATCHERS = 500
# Longer than any measurement: a watcher answers only when its slug changes, never because its
# wait ran out in the middle of a run (500 of them would then re-arm at once).
WATCH_WAIT = "600s"
ARM_SECONDS = 60


class WatchersNotHeld(Exception):
    pass


# Each read alternates no writes and churn this many times (see measure()).
ROUNDS = 3
LOOKUPS = {  # name -> query; svc-8 holds even numbers (prod), svc-9 odd ones (dev)
    "slug": "?slug=svc-7",
    "slug+tag": "?slug=svc-8&tag=prod",
    "slug+status": "?status=Unknown&slug=svc-9",
}


class Writer:
    """Re-registers random instances of the fleet at `rate` per second until stopped."""

    def __init__(self, url, token, body_of, instances, rate, only_slug=None, slugs=1000):
        self.url, self.token, self.body_of, self.rate = url, token, body_of, rate
        # Instance numbers n in 1..instances; slug svc-(n % slugs).
        numbers = range(1, instances + 1)
        self.numbers = [n for n in numbers if n % slugs == only_slug] if only_slug is not None else numbers
        self.ok = self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="churn-writer", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *_):
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self):
        parts = urlsplit(self.url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
        chooser = random.Random(20)
        started = time.monotonic()
        sent = 0
        while not self._stop.is_set():
            body = self.body_of(chooser.choice(self.numbers))
            try:
                connection.request("PUT", "/registry-svc/instance", body=body, headers={
                    "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                if response.status in (200, 201):
                    self.ok += 1
                else:
                    self.failed += 1
            except (OSError, http.client.HTTPException):
                self.failed += 1
                connection.close()
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
            sent += 1
            self._stop.wait(max(0.0, started + sent / self.rate - time.monotonic()))
        connection.close()

    def result(self, seconds):
        return {"ok": self.ok, "failed": self.failed, "perSecond": round(self.ok / seconds, 1) if seconds else None}


class Watchers:
    """One blocking watcher per slug, each on its own connection, counting what woke it."""

    def __init__(self, url, token, slugs):
        self.url, self.token, self.slugs = url, token, slugs
        self.woken = dict.fromkeys(slugs, 0)  # answers whose index moved: a change woke the watcher
        self.answers = 0  # every answer, woken or not (a watcher answered unchanged re-arms at once)
        self.errors = 0
        self.armed = threading.Semaphore(0)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._connections = set()
        self._threads = [threading.Thread(target=self._watch, args=(slug,), daemon=True) for slug in slugs]

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        for held, _ in enumerate(self.slugs):  # every watcher has its first index and is waiting
            if not self.armed.acquire(timeout=ARM_SECONDS):
                self.__exit__()
                raise WatchersNotHeld(f"only {held} of {len(self.slugs)} watchers got their first answer "
                                      f"within {ARM_SECONDS} s")
        return self

    def __exit__(self, *_):
        self._stop.set()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:  # ends the waits the server still holds
            if connection.sock is not None:
                try:
                    connection.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for thread in self._threads:
            thread.join(timeout=30)

    def snapshot(self):
        return dict(self.woken)

    def _connect(self, previous=None):
        parts = urlsplit(self.url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=900)
        with self._lock:
            self._connections.discard(previous)
            self._connections.add(connection)
        return connection

    def _watch(self, slug):
        connection = self._connect()
        headers = {"Authorization": f"Bearer {self.token}"}
        index, first = None, True
        while not self._stop.is_set():
            query = f"/registry-svc/instances?slug={slug}" + (f"&index={index}&wait={WATCH_WAIT}" if index else "")
            try:
                if index is not None and first:
                    first = False
                    self.armed.release()  # sent just below: the server holds it from now on
                connection.request("GET", query, headers=headers)
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    raise OSError(f"status {response.status}")
                answered = int(response.getheader("X-Registry-Index"))
            except (OSError, http.client.HTTPException, TypeError, ValueError):
                if self._stop.is_set():
                    break
                self.errors += 1
                connection.close()
                connection = self._connect(connection)
                self._stop.wait(0.5)
                continue
            self.answers += 1
            if index is not None and answered > index:
                self.woken[slug] += 1
            index = answered
        connection.close()


def measure(cluster, leader, follower, wrk, *, instances, duration, connections, churn_rate, body_of, get_script,
            log, fail):
    """The reads with and without churn, and the watchers; a dict for the bench's document.

    Each read runs ROUNDS times with no writes and ROUNDS times under churn, alternating, each
    run a ROUNDS-th of `duration` long and at least a second: drift of a shared machine over the
    minutes of the stage falls on both alike, and the median run of each mode is the figure."""
    out = {"churnRate": churn_rate, "reads": {}, "watchers": None, "rounds": ROUNDS}
    watch_pids = {"follower": follower.pid, "leader": leader.pid}
    queries = dict(LOOKUPS)
    queries["full list"] = ""
    writes = {"ok": 0, "failed": 0, "seconds": 0.0}
    run_seconds = max(1.0, duration / ROUNDS)
    for name, query in queries.items():
        for c in ((1,) if name == "full list" else (1, connections)):
            runs = {"idle": [], "churn": []}
            for round_number in range(1, ROUNDS + 1):
                for mode in ("idle", "churn"):
                    label = f"scale {mode}: {name} c{c} ({round_number}/{ROUNDS})"
                    url = follower.url + "/registry-svc/instances" + query
                    if mode == "idle":
                        runs[mode].append(wrk.run(url, connections=c, duration=run_seconds, script=get_script,
                                                  watch_pids=watch_pids, label=label))
                        continue
                    started = time.monotonic()
                    with Writer(leader.url, cluster.token, body_of, instances, churn_rate) as writer:
                        runs[mode].append(wrk.run(url, connections=c, duration=run_seconds, script=get_script,
                                                  watch_pids=watch_pids, label=label))
                    if writer.ok == 0:
                        raise fail(f"the churn writer committed nothing ({writer.failed} failed)")
                    writes["ok"] += writer.ok
                    writes["failed"] += writer.failed
                    writes["seconds"] += time.monotonic() - started
            entry = {mode: _median_run(mode_runs) for mode, mode_runs in runs.items()}
            entry["rounds"] = runs
            if entry["idle"]["requestsPerSecond"]:
                entry["churnRateRatio"] = round(entry["churn"]["requestsPerSecond"]
                                                / entry["idle"]["requestsPerSecond"], 3)
            out["reads"].setdefault(name, {})[f"c{c}"] = entry
    out["writes"] = {"ok": writes["ok"], "failed": writes["failed"],
                     "perSecond": round(writes["ok"] / writes["seconds"], 1) if writes["seconds"] else None}
    try:
        out["watchers"] = watch(cluster, leader, follower, wrk, instances=instances, duration=duration,
                                churn_rate=churn_rate, body_of=body_of, get_script=get_script, log=log, fail=fail)
    except WatchersNotHeld as error:
        # A peer that cannot hold this many watchers at once is a result too (the rest still runs).
        log(f"  {error}")
        out["watchers"] = {"error": str(error)}
    return out


def watch(cluster, leader, follower, wrk, *, instances, duration, churn_rate, body_of, get_script, log, fail):
    slugs = [f"svc-{k}" for k in range(min(WATCHERS, instances))]
    changed_slug, unwatched = 0, f"svc-{min(WATCHERS, instances) + 100}"
    url = follower.url + f"/registry-svc/instances?slug={unwatched}"
    log(f"scale: {len(slugs)} blocking watchers on distinct slugs at the follower")
    out = {"watchers": len(slugs), "changedSlug": f"svc-{changed_slug}", "readSlug": unwatched}
    with Watchers(follower.url, cluster.token, slugs) as watchers:
        out["idleRead"] = wrk.run(url, connections=1, duration=duration, script=get_script,
                                  watch_pids={"follower": follower.pid}, label="scale: read beside idle watchers")
        before = watchers.snapshot()
        started = time.monotonic()
        with Writer(leader.url, cluster.token, body_of, instances, churn_rate, only_slug=changed_slug) as writer:
            out["busyRead"] = wrk.run(url, connections=1, duration=duration, script=get_script,
                                      watch_pids={"follower": follower.pid},
                                      label=f"scale: read beside watchers, svc-{changed_slug} changing")
        seconds = time.monotonic() - started
        time.sleep(1.0)  # the last change's wake-ups land
        after = watchers.snapshot()
        out["writes"] = writer.result(seconds)
        out["watchErrors"] = watchers.errors
    woken = {slug: after[slug] - before[slug] for slug in slugs}
    out["wokenChangedSlug"] = woken[f"svc-{changed_slug}"]
    out["wokenOtherSlugs"] = sum(count for slug, count in woken.items() if slug != f"svc-{changed_slug}")
    out["otherWatchersWoken"] = sum(1 for slug, count in woken.items() if count and slug != f"svc-{changed_slug}")
    idle_p99, busy_p99 = out["idleRead"]["p99Ms"], out["busyRead"]["p99Ms"]
    out["p99Ratio"] = round(busy_p99 / idle_p99, 2) if idle_p99 else None
    log(f"  {out['writes']['ok']} changes to svc-{changed_slug} woke its watcher {out['wokenChangedSlug']} times and "
        f"{out['otherWatchersWoken']} other watchers ({out['wokenOtherSlugs']} wake-ups); read p99 "
        f"{idle_p99:.2f} -> {busy_p99:.2f} ms")
    if writer.ok == 0:
        raise fail("no change to the watched slug was committed")
    return out


def _median_run(runs):
    """The run whose rate is the median of the rounds' (the middle one of three)."""
    return sorted(runs, key=lambda run: run["requestsPerSecond"] or 0)[len(runs) // 2]


def markdown_lines(scale):
    """The stage's own table for the bench's report (empty when it did not run)."""
    churn = scale.get("churn") or {}
    if not churn.get("reads"):
        return []
    lines = ["", f"Reads at a follower at {scale['instances']:,} instances, with no writes and while "
             f"{churn['churnRate']:g} re-registrations/s churn at the leader "
             f"({get_path(churn, 'writes', 'ok')} committed, {get_path(churn, 'writes', 'failed')} failed):", "",
             "| read | conns | no writes: req/s, p50 / p99 ms | under churn: req/s, p50 / p99 ms | rate ratio |",
             "|---|---|---|---|---|"]
    for name, by_connections in churn["reads"].items():
        for c, runs in by_connections.items():
            idle, busy = runs.get("idle"), runs.get("churn")
            if idle and busy:
                lines.append(f"| {name or 'full list'} | {c[1:]} | {_run_text(idle)} | {_run_text(busy)} | "
                             f"{runs.get('churnRateRatio')}× |")
    watchers = churn.get("watchers")
    if watchers and "error" in watchers:
        lines += ["", f"Blocking watchers: {watchers['error']}."]
    elif watchers:
        lines += ["", f"{watchers['watchers']} blocking watchers on distinct slugs at the follower; "
                  f"{watchers['writes']['ok']} changes to {watchers['changedSlug']} woke its watcher "
                  f"{watchers['wokenChangedSlug']} times and {watchers['otherWatchersWoken']} other watchers "
                  f"({watchers['wokenOtherSlugs']} wake-ups); a read of {watchers['readSlug']} beside them: "
                  f"p99 {watchers['idleRead']['p99Ms']:.2f} ms with the watchers idle, "
                  f"{watchers['busyRead']['p99Ms']:.2f} ms while they were woken ({watchers['p99Ratio']}×)."]
    return lines


def goal_rows(scale):
    """Issue 20's goals as (goal, measured, target, ratio text, met) rows for the bench's table."""
    churn = scale.get("churn") or {}
    rows = []
    for name in LOOKUPS:
        runs = get_path(churn, "reads", name, "c1") or {}
        busy, rate_ratio = runs.get("churn"), runs.get("churnRateRatio")
        if busy and rate_ratio is not None:
            rows.append((f"{name} lookup at a follower under churn, 1 connection: p50 ≤ 1 ms and ≥ 0.8× the "
                         "no-churn rate", f"p50 {busy['p50Ms']:.2f} ms, {rate_ratio:.2f}× ({_run_text(busy)})",
                         "≤ 1 ms, ≥ 0.80×", f"{rate_ratio:.2f}×", busy["p50Ms"] <= 1.0 and rate_ratio >= 0.8))
    full = get_path(churn, "reads", "full list", "c1", "churn")
    if full:
        rows.append((f"full {scale['instances']:,}-instance list at a follower under churn: p50 ≤ 150 ms",
                     f"{full['p50Ms']:.1f} ms", "≤ 150 ms", f"{full['p50Ms'] / 150:.2f}× of limit",
                     full["p50Ms"] <= 150))
    watchers = churn.get("watchers") or {}
    if "error" in watchers:
        rows.append(("watchers on distinct slugs: a change wakes its slug's watchers only, and other reads' p99 "
                     "≤ 2× idle", watchers["error"], "0 others, ≤ 2×", "", False))
    elif watchers.get("p99Ratio") is not None:
        rows.append((f"{watchers['watchers']} watchers on distinct slugs: a change wakes its slug's watchers only, "
                     "and other reads' p99 ≤ 2× idle",
                     f"{watchers['otherWatchersWoken']} others woken; p99 {watchers['p99Ratio']}× idle",
                     "0 others, ≤ 2×", f"{watchers['p99Ratio']}×",
                     watchers["otherWatchersWoken"] == 0 and watchers["p99Ratio"] <= 2))
    return rows


def _run_text(run):
    return f"{run['requestsPerSecond']:,.1f}/s, {run['p50Ms']:.2f} / {run['p99Ms']:.2f}"


def get_path(document, *path):
    for key in path:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document

"""The instance scanner: every cycle this peer TCP-checks its share of the instances.

Shares are decided by `registry.health.scanner_of` over the peers that are alive (their node
heartbeat is fresh), so when a peer dies the others take its share from their next cycle on.
The checks of a cycle run concurrently on an asyncio loop; the cycle ends in at most one
command holding only changed statuses, successful check times and due removals.
"""

import asyncio
import concurrent.futures
import dataclasses
import logging
import threading
import time

import orjson

from registry import commands, health
from registry.timestamps import parse_ns

from .submit import WriteUnavailable

log = logging.getLogger(__name__)


@dataclasses.dataclass
class CycleReport:
    started_ns: int = 0
    duration_ms: float = 0.0
    check_ms: float = 0.0
    commit_ms: float = 0.0
    live_peers: int = 0
    scanned: int = 0
    unreachable: int = 0
    changed: int = 0
    removed: int = 0
    removals_held_back: int = 0
    command_bytes: int = 0
    committed: bool = False

    def as_json(self):
        def camel(name):
            head, *rest = name.split("_")
            return head + "".join(part.title() for part in rest)
        return {camel(k): v for k, v in dataclasses.asdict(self).items()}


class InstanceScanner:
    def __init__(self, peer, *, interval, timeout, concurrency=512):
        self.peer = peer
        self.interval = interval
        self.timeout = timeout
        self.concurrency = concurrency
        self.last_cycle = None
        self.cycles = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="instance-scanner", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.timeout + 5)

    def _run(self):
        # Name resolution for checks runs on threads: give the loop enough of them.
        resolver = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="scan-resolve")
        loop = asyncio.new_event_loop()
        loop.set_default_executor(resolver)
        try:
            # Fixed rate: a cycle starts every interval, however long the previous one took.
            next_start = time.monotonic() + self.interval
            while not self._stop.wait(max(0.0, next_start - time.monotonic())):
                next_start += self.interval
                if self.peer.known_leader() is None:
                    continue  # nothing this cycle could commit
                try:
                    self.last_cycle = loop.run_until_complete(self.cycle())
                    self.cycles += 1
                except Exception:
                    log.exception("instance scan cycle failed")
                if time.monotonic() > next_start:
                    log.warning("a scan cycle took longer than the %gs interval; starting the next at once",
                                self.interval)
                    next_start = time.monotonic()
        finally:
            loop.close()
            resolver.shutdown(wait=False, cancel_futures=True)

    def live_peers(self, now_ns):
        """URLs of the peers whose node heartbeat is fresh (this one always counts)."""
        members = set(self.peer.status().members)
        limit_ns = health.STALE_AFTER_HEARTBEATS * self.peer.config.heartbeat_seconds * 1e9
        live = {self.peer.url}
        for node in self.peer.list_nodes()[1]:
            beat = parse_ns(node.get("lastHeartbeat"))
            if ((node.get("raft") or {}).get("address") in members and beat is not None
                    and now_ns - beat <= limit_ns):
                live.add(node["url"])
        return sorted(live)

    async def cycle(self):
        started = time.monotonic()
        now = time.time_ns()
        report = CycleReport(started_ns=now)
        live = self.live_peers(now)
        report.live_peers = len(live)
        mine = [r for r in self.peer.list_instances({})[1] if health.scanner_of(r, live) == self.peer.url]

        probed = [r for r in mine if "ttl" not in r and r.get("port") and (r.get("ip") or r.get("host"))]
        gate = asyncio.Semaphore(self.concurrency)
        checks_started = time.monotonic()
        timings = await asyncio.gather(*(self._connect(r, gate) for r in probed))
        report.check_ms = (time.monotonic() - checks_started) * 1000
        checked_at = time.time_ns()

        updates, seen, unreachable_records = [], [], []
        for record, seconds in zip(probed, timings):
            status = health.status_of_connect(seconds)
            # A registrant's own "Error" stands while its port answers: TCP cannot see past it.
            if record.get("status") == health.ERROR and status != health.UNREACHABLE:
                status = health.ERROR
            if status != record.get("status"):
                updates.append({"id": record["id"], "status": status})
            if seconds is not None:
                seen.append(record["id"])
            if status == health.UNREACHABLE:
                unreachable_records.append(record)
        for record in mine:
            if "ttl" in record and health.ttl_expired(record, now):
                unreachable_records.append(record)
                if record.get("status") != health.UNREACHABLE:
                    updates.append({"id": record["id"], "status": health.UNREACHABLE})

        evaluated = len(probed) + sum(1 for r in mine if "ttl" in r)
        report.scanned, report.unreachable = evaluated, len(unreachable_records)
        report.changed = sum(1 for u in updates if "status" in u)
        due = [r["id"] for r in unreachable_records if health.deregistration_due(r, now)]
        if due and not health.removals_allowed(evaluated, len(unreachable_records)):
            log.warning(
                "%d of the %d instances this peer checked are unreachable at once: suspecting this "
                "peer's own network, removing none of the %d due for deregistration this cycle",
                len(unreachable_records), evaluated, len(due))
            report.removals_held_back = len(due)
            due = []

        if updates or seen or due:
            command = commands.scan_results(updates, seen, checked_at, due, now)
            report.command_bytes = len(orjson.dumps(command))
            commit_started = time.monotonic()
            try:
                result = await asyncio.get_running_loop().run_in_executor(None, self.peer.submit, command)
                report.commit_ms = (time.monotonic() - commit_started) * 1000
                report.removed = len(result.get("removed", ()))
                report.committed = True
            except WriteUnavailable as error:
                log.info("scan results not committed this cycle: %s", error.message)
        report.duration_ms = (time.monotonic() - started) * 1000
        log.debug("scan cycle: %s", report)
        return report

    async def _connect(self, record, gate):
        """Seconds a TCP connect took, or None when it failed within the timeout."""
        host = record.get("ip") or record.get("host")
        async with gate:
            started = time.monotonic()
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, record["port"]), self.timeout)
            except (OSError, asyncio.TimeoutError, ValueError, UnicodeError):
                return None
            elapsed = time.monotonic() - started
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
            return elapsed

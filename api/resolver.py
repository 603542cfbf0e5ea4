"""Resolving a service's slug to a live URL: the job 1Backend's Proxy Svc does with the registry.

    resolver = Resolver(client)
    url = resolver.resolve("orders", tags=["prod"])    # one live instance, picked at random

As Proxy Svc does: list the slug's instances, keep the Healthy ones (all of them when none is
Healthy), pick one at random per call, keep serving the last list while the registry fails, and
never send more than one request per slug at a time. Where Proxy Svc keeps a list for 10 s, a
watch keeps it fresh: one thread per (slug, tags) holds a blocking read on the slug, so a change
to its instances (a scan or a ttl marking one Unreachable, a deregistration, a new instance)
reaches the resolver as soon as the peer it reads from applies it.

The first resolve of a slug lists it at once (other callers wait on that same request) and
raises what the registry said if that first list fails; after that, failures only log and back
off. At most MAX_WATCHES (slug, tags) pairs are watched; the least recently resolved is dropped
for a new one. Like api/client.py this module talks HTTP only, so it can be copied.
"""

import collections
import logging
import random
import threading

from .client import RegistryError

log = logging.getLogger(__name__)

DEFAULT_WAIT_SECONDS = 30.0
MAX_WATCHES = 256
# A blocking read answers at once when the peer it reached is behind the last index seen (a
# failover): this keeps such answers from turning the watch into a busy loop.
SHORTEST_READ_INTERVAL_SECONDS = 0.05
FIRST_RETRY_SECONDS = 0.5
LONGEST_RETRY_SECONDS = 10.0


class NoInstances(LookupError):
    """The registry holds no instance of the slug (with those tags)."""


def live_instances(instances):
    """Proxy Svc's choice: the Healthy instances, or every instance when none is Healthy."""
    healthy = [instance for instance in instances if instance.get("status") == "Healthy"]
    return healthy or list(instances)


def describe(slug, tags):
    return f"slug '{slug}'" + (f" with tags {', '.join(tags)}" if tags else "")


class Resolver:
    def __init__(self, client, *, wait_seconds=DEFAULT_WAIT_SECONDS, max_watches=MAX_WATCHES):
        self.client = client
        self.wait_seconds = wait_seconds
        self.max_watches = max_watches
        self._watches = collections.OrderedDict()  # (slug, tags) -> _Watch, least recently resolved first
        self._lock = threading.Lock()

    def resolve(self, slug, tags=()):
        """One live instance's URL, at random; NoInstances when there is none."""
        return random.choice(self.resolve_all(slug, tags))

    def resolve_all(self, slug, tags=()):
        """Every live instance's URL; NoInstances when there is none, RegistryError when the
        first list of this slug failed."""
        instances = self._watch(slug, tuple(sorted(tags))).instances_now()
        live = live_instances(instances)
        if not live:
            raise NoInstances(f"no instance of {describe(slug, tags)} is registered")
        return [instance["url"] for instance in live]

    def close(self):
        with self._lock:
            watches, self._watches = list(self._watches.values()), collections.OrderedDict()
        for watch in watches:
            watch.stop()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()

    def _watch(self, slug, tags):
        dropped = None
        with self._lock:
            watch = self._watches.get((slug, tags))
            if watch is None:
                watch = self._watches[(slug, tags)] = _Watch(self.client.clone(), slug, tags, self.wait_seconds)
                if len(self._watches) > self.max_watches:
                    _, dropped = self._watches.popitem(last=False)
            else:
                self._watches.move_to_end((slug, tags))
        if dropped is not None:
            dropped.stop()
        return watch


class _Watch:
    def __init__(self, client, slug, tags, wait_seconds):
        self.client = client
        self.slug = slug
        self.tags = tags
        self.wait_seconds = wait_seconds
        self.instances = None  # the last list the registry gave
        self.error = None  # why the last request failed, while it keeps failing
        self._answered = threading.Event()  # set once the first request ended, either way
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{slug}", daemon=True)
        self._thread.start()

    def instances_now(self):
        # The first request's own timeouts bound this wait; the margin covers a slow start.
        timeout = sum(self.client.timeout) * len(self.client.urls) + self.client.unavailable_retry_seconds + 5
        if not self._answered.wait(timeout):
            raise RegistryError(f"the registry gave no list of {describe(self.slug, self.tags)} within {timeout:g}s")
        instances = self.instances
        if instances is None:
            raise self.error
        return instances

    def stop(self):
        self._stop.set()

    def _run(self):
        index, failures = None, 0
        while not self._stop.is_set():
            try:
                answered_index, instances = self.client.watch_instances(
                    index, self.wait_seconds, slug=self.slug, tags=self.tags)
            except Exception as error:  # RegistryError, or a bug: the watch must go on either way
                failures += 1
                self.error = error
                self._answered.set()
                pause = min(LONGEST_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** (failures - 1))
                log.warning("watching %s failed (%s); %s, next try in %.1fs", describe(self.slug, self.tags), error,
                            "serving the last list" if self.instances is not None else "no list yet", pause)
                self._stop.wait(random.uniform(pause / 2, pause))
                continue
            if failures:
                log.info("watching %s works again after %d failures", describe(self.slug, self.tags), failures)
            failures, self.error = 0, None
            self.instances, index = instances, answered_index
            self._answered.set()
            self._stop.wait(SHORTEST_READ_INTERVAL_SECONDS)

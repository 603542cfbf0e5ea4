"""A service registering itself: register with its own id and a ttl, heartbeat in the
background, deregister on the way out.

    client = RegistryClient(urls, token)
    with SelfRegistration(client, id="orders-1", url="http://10.0.0.7:8081", slug="orders", ttl_seconds=15):
        serve_forever()

The registry marks an instance with a ttl Unreachable once its last heartbeat is older than the
ttl (and removes it after `deregisterAfter`, when given), so a service that dies without
deregistering drops out of resolvers within a ttl. Heartbeats go every ttl/3. A registry that
is down or unreachable never stops the service: registering and heartbeats are retried with
backoff in the background thread, which logs what failed and never raises. A refusal
(400/401/403) at start is a mistake in the service's configuration and raises at once.

Like api/client.py this module talks HTTP only (requests), so it can be copied into a service.
"""

import logging
import random
import threading

from .client import ApiError, RegistryError

log = logging.getLogger(__name__)

HEARTBEATS_PER_TTL = 3
FIRST_RETRY_SECONDS = 0.5
LONGEST_RETRY_SECONDS = 30.0


class SelfRegistration:
    def __init__(self, client, *, id, url, slug=None, ttl_seconds=15.0, tags=(), deregister_after=None,
                 details=None, **fields):
        """Registration `fields` beyond these (nodeUrl, deploymentId...) go as given; the ttl is
        sent in seconds, the registry's own duration form, so nothing here parses durations."""
        if not ttl_seconds > 0:
            raise ValueError(f"ttl_seconds must be more than zero, not {ttl_seconds!r}")
        self.client = client
        self.id = id
        self.ttl_seconds = ttl_seconds
        self.registration = {"id": id, "url": url, "ttl": f"{ttl_seconds:g}s", **fields}
        for name, value in (("slug", slug), ("tags", list(tags) or None), ("deregisterAfter", deregister_after),
                            ("details", details)):
            if value is not None:
                self.registration[name] = value
        self.registered = threading.Event()  # set once the registry holds this instance
        self.failures = 0  # heartbeats or registrations that failed in a row (0: all is well)
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *_):
        self.stop()

    def start(self):
        try:
            self.client.register_instance(self.registration)
            self.registered.set()
        except ApiError as error:
            if error.status != 503:
                raise  # refused: the registration itself is wrong
            log.warning("registering %s: %s; retrying in the background", self.id, error)
        except RegistryError as error:
            log.warning("registering %s: %s; retrying in the background", self.id, error)
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{self.id}", daemon=True)
        self._thread.start()
        return self

    def stop(self, deregister=True):
        """Stop the heartbeats and (by default) remove the instance; never raises."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.client.timeout[0] + self.client.timeout[1] + 1)
        if not deregister:
            return
        try:
            self.client.remove_instance(self.id)
        except ApiError as error:
            if error.status != 404:
                log.warning("deregistering %s: %s; it turns Unreachable after its ttl", self.id, error)
        except RegistryError as error:
            log.warning("deregistering %s: %s; it turns Unreachable after its ttl", self.id, error)
        self.registered.clear()

    def _run(self):
        period = self.ttl_seconds / HEARTBEATS_PER_TTL
        pause = period if self.registered.is_set() else FIRST_RETRY_SECONDS
        while not self._stop.wait(pause):
            try:
                self._beat()
            except Exception as error:  # the service must outlive any registry trouble
                self.failures += 1
                pause = _backoff(self.failures, period)
                log.warning("heartbeat of %s failed (%s); next try in %.1fs", self.id, error, pause)
                continue
            if self.failures:
                log.info("heartbeat of %s answered again after %d failures", self.id, self.failures)
            self.failures = 0
            pause = period

    def _beat(self):
        if not self.registered.is_set():
            self.client.register_instance(self.registration)
            self.registered.set()
            return
        try:
            self.client.renew_instance(self.id)
        except ApiError as error:
            if error.status != 404:
                raise
            # Removed meanwhile (deregisterAfter passed, or an operator): register it again,
            # unless the service is on its way out.
            self.registered.clear()
            if self._stop.is_set():
                return
            self.client.register_instance(self.registration)
            self.registered.set()


def _backoff(failures, period):
    """Exponential from FIRST_RETRY_SECONDS, never beyond a heartbeat period or the longest
    pause, with jitter so that many instances do not retry in step."""
    ceiling = min(LONGEST_RETRY_SECONDS, max(FIRST_RETRY_SECONDS, period), FIRST_RETRY_SECONDS * 2 ** failures)
    return random.uniform(ceiling / 2, ceiling)


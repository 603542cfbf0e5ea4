"""Read consistency, chosen per request (extension query parameters on every read).

- default: this peer's replica, stale by at most the replication lag;
- `consistent`: linearizable: a no-op through the Raft log proves this replica is current;
- `max_stale=2s`: refused with 503 when this peer last heard from the leader longer ago;
- `index=N&wait=30s`: a blocking read that returns once this kind of data changed after Raft
  index N (as the last answer's X-Registry-Index said), or after `wait` with the same answer.
"""

import dataclasses
import functools
import threading

from flask import current_app, g, request

from cluster.submit import WriteUnavailable
from registry.durations import parse_seconds
from registry.errors import ValidationError

from .errors import unavailable
from .results import current_peer

OPTION_NAMES = ("consistent", "max_stale", "index", "wait")
DEFAULT_WAIT_SECONDS = 60.0
MAX_WAIT_SECONDS = 600.0


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    consistent: bool = False
    max_stale_seconds: float = None
    index: int = None
    wait_seconds: float = DEFAULT_WAIT_SECONDS


def parse_options(pairs):
    """(ReadOptions, the other query pairs) from a request's query pairs."""
    found, rest = {}, []
    for name, value in pairs:
        if name not in OPTION_NAMES:
            rest.append((name, value))
            continue
        if name in found:
            raise ValidationError(f"query parameter '{name}' is given twice")
        found[name] = value
    options = {}
    if "consistent" in found:
        value = found["consistent"].lower()
        if value not in ("", "true", "1", "false", "0"):
            raise ValidationError("query parameter 'consistent' is a flag: give it bare, or true/false")
        options["consistent"] = value in ("", "true", "1")
    if "max_stale" in found:
        options["max_stale_seconds"] = parse_seconds(found["max_stale"], "query parameter 'max_stale'")
    if "index" in found:
        # ASCII digits only: str.isdigit() also takes '²', which int() then refuses (a 500).
        if not (found["index"].isascii() and found["index"].isdigit()):
            raise ValidationError("query parameter 'index' must be a Raft index (a whole number >= 0), "
                                  "as the X-Registry-Index header gave it")
        options["index"] = int(found["index"])
    if "wait" in found:
        if "index" not in found:
            raise ValidationError("query parameter 'wait' needs 'index' (the X-Registry-Index to wait past)")
        wait = parse_seconds(found["wait"], "query parameter 'wait'")
        if wait > MAX_WAIT_SECONDS:
            raise ValidationError(f"query parameter 'wait' may be at most {MAX_WAIT_SECONDS:g}s")
        options["wait_seconds"] = wait
    return ReadOptions(**options), rest


def install(app, max_blocking_reads):
    app.extensions["registry_blocking_reads"] = threading.BoundedSemaphore(max_blocking_reads)
    app.extensions["registry_blocking_limit"] = max_blocking_reads


def reads(kind, slug_of=None):
    """Decorate a read of `kind` of data: apply the request's read options before it runs.

    The view finds the query pairs that are not read options in g.query_pairs. slug_of(pairs)
    names the slug a read is filtered by, if any: a blocking read then waits on that slug only
    (and its X-Registry-Index is that slug's)."""
    def decorate(view):
        @functools.wraps(view)
        def read(*args, **kwargs):
            options, g.query_pairs = parse_options(request.args.items(multi=True))
            slug = slug_of(g.query_pairs) if slug_of is not None and options.index is not None else None
            _prepare(current_peer(), options, kind, slug)
            return view(*args, **kwargs)
        return read
    return decorate


def _prepare(peer, options, kind, slug=None):
    if options.index is not None:
        g.blocking_read = True  # timed apart in the metrics
        slots = current_app.extensions["registry_blocking_reads"]
        if not slots.acquire(blocking=False):
            limit = current_app.extensions["registry_blocking_limit"]
            raise unavailable(f"this peer already holds {limit} blocking reads; retry, or watch through another peer")
        try:
            # The HTTP thread sleeps on a condition the Raft thread signals: no polling, no Raft traffic.
            peer.wait_for_change(kind, options.index, options.wait_seconds, slug=slug)
        finally:
            slots.release()
    if options.max_stale_seconds is not None:
        if peer.known_leader() is None:
            raise unavailable("this peer knows no leader, so it cannot bound how stale its data is")
        lag_ms = peer.last_contact_ms()
        if lag_ms > options.max_stale_seconds * 1000:
            raise unavailable(f"this peer last heard from the leader {lag_ms} ms ago, more than "
                              f"max_stale ({options.max_stale_seconds:g}s); read elsewhere or retry")
    if options.consistent:
        try:
            peer.read_barrier()
        except WriteUnavailable as error:
            raise unavailable("a consistent read needs the leader and a majority, and they did not confirm "
                              f"this peer is current ({error.message}); retry, or read without ?consistent") from None

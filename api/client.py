"""A Python client for Registry Svc (and 1Backend's registry API): every endpoint of the contract.

    client = RegistryClient(["http://127.0.0.1:11337", "http://127.0.0.1:11338"], token)
    client.register_instance({"url": "http://my-service:8080", "slug": "my-service"})
    client.list_instances(slug="my-service")

Any peer answers every endpoint, so the client is given several and moves to the next when one
does not answer at all (refused, unreachable, timed out). An HTTP error is an answer: it raises
ApiError at once rather than trying elsewhere, except a 503 with Retry-After to an idempotent
call (a peer cut off from the majority, say): that one is tried at the other peers, and again
after Retry-After, for up to `unavailable_retry_seconds`. Writes are safe to resend because
registrations are upserts by id and url; a removal whose first attempt reached a peer that then
died may report 404 at the next one (a peer itself re-submits through a leader change and
answers as the first attempt did).

This module talks HTTP only: it imports neither `registry` nor `cluster`, so it can be copied
into any program that only has `requests`.
"""

import ssl
import time
from http import HTTPStatus
from urllib.parse import quote, urlsplit

import requests

DEFAULT_CONNECT_TIMEOUT = 3.0
# Statuses a reverse proxy gives for a peer it cannot reach. A peer's own answers always carry
# X-Registry-Index, so one without it came from the proxy, and the next peer is tried.
PROXY_UNAVAILABLE = (502, 503, 504)
# Writes wait for a Raft commit (5 s by default at the server) before the server answers 503.
DEFAULT_READ_TIMEOUT = 30.0
# How long a 503 with Retry-After is retried at the peers, counted from the request's start.
DEFAULT_UNAVAILABLE_RETRY_SECONDS = 10.0
# Safe to send again (RFC 9110 §9.2.2), and the one POST that only reads.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
READ_ONLY_POSTS = frozenset({"/registry-svc/nodes"})


class RegistryError(Exception):
    """Anything the client reports; catch this to catch both kinds below."""


class ApiError(RegistryError):
    """A peer answered with an HTTP error; `message` is the server's `{"error": ...}`."""

    def __init__(self, status, message, url=None, retry_after=None):
        self.status = status
        self.message = message
        self.url = url
        self.retry_after = retry_after
        super().__init__(str(self))

    @property
    def reason(self):
        try:
            return HTTPStatus(self.status).phrase
        except ValueError:
            return "HTTP error"

    def __str__(self):
        return f"{self.status} {self.reason}: {self.message}"


class NoPeerAnswered(RegistryError):
    """Every peer was tried and none answered; `failures` is [(peer url, short reason)]."""

    def __init__(self, failures):
        self.failures = list(failures)
        tried = ", ".join(f"{url} ({reason})" for url, reason in self.failures)
        super().__init__(f"no peer answered: {tried}")


class RegistryClient:
    """One client over the peers of a cluster; after a failover it keeps using the peer that answered.

    on_failover(failed_url, reason, next_url) is called each time a peer does not answer and
    another is about to be tried (the `oo -v` messages come from it)."""

    def __init__(self, urls, token=None, *, connect_timeout=DEFAULT_CONNECT_TIMEOUT,
                 read_timeout=DEFAULT_READ_TIMEOUT, on_failover=None, session=None,
                 unavailable_retry_seconds=DEFAULT_UNAVAILABLE_RETRY_SECONDS):
        if isinstance(urls, str):
            urls = [urls]
        self.urls = [validate_base_url(url) for url in urls]
        if not self.urls:
            raise ValueError("give at least one peer URL, e.g. http://127.0.0.1:11337")
        self.token = token
        self.timeout = (connect_timeout, read_timeout)
        self.unavailable_retry_seconds = unavailable_retry_seconds
        self.on_failover = on_failover
        self.session = session or requests.Session()
        self._preferred = 0
        self.last_response = None

    # -- transport ----------------------------------------------------------------------------

    def request(self, method, path, *, params=None, body=None, retry_unavailable=True):
        """Send one request, failing over between peers; the decoded JSON answer, None when empty.

        Raises ApiError for an HTTP error status and NoPeerAnswered when no peer answers.
        retry_unavailable=False takes a 503 as the answer, as for any other status."""
        if not path.startswith("/"):
            path = "/" + path
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        retry_until = time.monotonic() + self.unavailable_retry_seconds
        retries_unavailable = retry_unavailable and (
            method.upper() in IDEMPOTENT_METHODS or path in READ_ONLY_POSTS)
        while True:
            answer, unavailable, failures = self._try_each_peer(method, path, params, body, headers,
                                                                retries_unavailable)
            if answer is not None:
                return _decode(answer)
            if unavailable is None:
                raise NoPeerAnswered(failures)
            # Every peer that answered was unavailable for now: wait as they asked, within the limit.
            pause = _retry_after_seconds(unavailable.retry_after)
            if time.monotonic() + pause >= retry_until:
                raise unavailable
            time.sleep(pause)

    def _try_each_peer(self, method, path, params, body, headers, retries_unavailable):
        """One pass over the peers, the preferred first: (the answer to return, or None; the
        last 503 worth retrying as ApiError, or None; [(peer, why it gave no answer)])."""
        failures = []
        unavailable = None
        order = self.urls[self._preferred:] + self.urls[:self._preferred]
        for position, base in enumerate(order):
            try:
                response = self.session.request(method, base + path, params=params, json=body,
                                                headers=headers, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as error:
                reason = describe_unanswered(error, self.timeout)
            else:
                self.last_response = response
                from_peer = response.status_code not in PROXY_UNAVAILABLE or "X-Registry-Index" in response.headers
                if not from_peer:
                    # A proxy in front of the peer (nginx, TLS) answered for it: the peer is down.
                    reason = (f"a proxy in front of it answered {response.status_code} "
                              "(the peer behind it is unavailable)")
                elif retries_unavailable and response.status_code == 503 and "Retry-After" in response.headers:
                    unavailable = ApiError(503, _error_message(response), response.url,
                                           response.headers["Retry-After"])
                    reason = f"unavailable for now: {unavailable.message}"
                else:
                    self._preferred = self.urls.index(base)
                    return response, None, failures
            failures.append((base, reason))
            if position + 1 < len(order) and self.on_failover:
                self.on_failover(base, reason, order[position + 1])
        return None, unavailable, failures

    # -- instances ----------------------------------------------------------------------------

    def register_instance(self, instance):
        """PUT /registry-svc/instance: register or update, by url or scheme + host/ip + port (+ path)."""
        return self.request("PUT", "/registry-svc/instance", body=instance)

    def list_instances(self, *, id=None, slug=None, host=None, ip=None, scheme=None, path=None,
                       deployment_id=None, node_url=None, status=None, tags=()):
        """GET /registry-svc/instances with exact-match filters; every given tag must match."""
        named = {"id": id, "slug": slug, "host": host, "ip": ip, "scheme": scheme, "path": path,
                 "deploymentId": deployment_id, "nodeUrl": node_url, "status": status}
        params = [(name, value) for name, value in named.items() if value is not None]
        params += [("tag", tag) for tag in tags]
        answer = self.request("GET", "/registry-svc/instances", params=params) or {}
        return answer.get("instances") or []

    def remove_instance(self, instance_id):
        """DELETE /registry-svc/instance/{id}: ApiError 404 when there is no such instance."""
        self.request("DELETE", "/registry-svc/instance/" + quote(instance_id, safe=""))

    def renew_instance(self, instance_id, status=None, details=None):
        """PUT /registry-svc/instance/{id}/heartbeat (extension): the instance says it is alive;
        the server takes the status as Healthy unless one is given."""
        body = {name: value for name, value in (("status", status), ("details", details)) if value is not None}
        return self.request("PUT", f"/registry-svc/instance/{quote(instance_id, safe='')}/heartbeat",
                            body=body or None)

    # -- nodes --------------------------------------------------------------------------------

    def self_node(self):
        """GET /registry-svc/node/self: the record of the peer that answered."""
        return (self.request("GET", "/registry-svc/node/self") or {}).get("node")

    def list_nodes(self, ids=None):
        """POST /registry-svc/nodes: every node, or only those whose id is in `ids`."""
        answer = self.request("POST", "/registry-svc/nodes", body={"ids": list(ids)} if ids else None) or {}
        return answer.get("nodes") or []

    def remove_node(self, node_url):
        """DELETE /registry-svc/node/{url}, the URL percent-encoded as the contract prefers."""
        self.request("DELETE", "/registry-svc/node/" + quote(node_url, safe=""))

    # -- extensions ---------------------------------------------------------------------------

    def permits(self):
        return (self.request("GET", "/registry-svc/permits") or {}).get("permits") or []

    def set_permits(self, permits):
        """Replace every permit at once: [{"role" or "slug", "permissions": [...], "allInstances": bool}]."""
        return (self.request("PUT", "/registry-svc/permits", body={"permits": permits}) or {}).get("permits")

    def cluster(self):
        """GET /registry-svc/cluster: {"self", "leader", "peers"} as the answering peer sees them."""
        return self.request("GET", "/registry-svc/cluster")

    def healthz(self):
        return self.request("GET", "/healthz")

    def readyz(self):
        """ApiError 503 when the answering peer knows no leader or has not caught up."""
        return self.request("GET", "/readyz", retry_unavailable=False)


def _retry_after_seconds(value, default=1.0, longest=5.0):
    """Retry-After in seconds (RFC 9110 also allows a date, which peers never send)."""
    try:
        return min(max(float(value), 0.0), longest)
    except (TypeError, ValueError):
        return default


def validate_base_url(url):
    """A peer's base URL without a trailing slash; ValueError saying what is wrong otherwise."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"'{url}' is not a peer URL; give one like http://127.0.0.1:11337")
    if parts.query or parts.fragment:
        raise ValueError(f"'{url}' has a query or fragment; give only scheme://host:port")
    return url


def describe_unanswered(error, timeout):
    """A few words on why a peer did not answer, instead of urllib3's nested exception text."""
    if isinstance(error, requests.ConnectTimeout):
        return f"no connection within {timeout[0]:g}s"
    if isinstance(error, requests.Timeout):
        return f"no answer within {timeout[1]:g}s"
    if isinstance(error, requests.exceptions.SSLError):
        certificate = _first_of(error, ssl.SSLCertVerificationError)
        if certificate is not None:
            return (f"its TLS certificate was not accepted ({certificate.verify_message}); "
                    "set REQUESTS_CA_BUNDLE to the CA file that signed it")
        return "the TLS handshake failed"
    cause = _root_os_error(error)
    if cause is not None and cause.strerror:
        return cause.strerror[:1].lower() + cause.strerror[1:]
    return "connection failed"


def _root_os_error(error):
    return _first_of(error, OSError, lambda e: bool(e.strerror), deepest=True)


def _first_of(error, kind, accept=lambda _: True, deepest=False):
    """The (first, or deepest) exception of `kind` among `error` and what it wraps: requests wraps
    urllib3's MaxRetryError, which holds the socket or TLS error as `reason` (sometimes a mere
    string) or as a cause."""
    seen = set()
    pending = [error]
    found = None
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind) and accept(current):
            found = current
            if not deepest:
                return found
        pending.extend([getattr(current, "reason", None), current.__cause__, current.__context__])
        pending.extend(getattr(current, "args", ()))
    return found


def _decode(response):
    if response.status_code >= 400:
        raise ApiError(response.status_code, _error_message(response), response.url,
                       response.headers.get("Retry-After"))
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise ApiError(response.status_code, f"the answer from {response.url} is not JSON: "
                                             f"{response.text[:200]!r}", response.url) from None


def _error_message(response):
    try:
        document = response.json()
    except ValueError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("error"), str):
        return document["error"]
    # Not a registry answer (a proxy in front of it, say): show what came back, briefly.
    text = " ".join(response.text.split())[:200]
    return text or "(empty answer)"

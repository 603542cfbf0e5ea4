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

import functools
import socket
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
DEFAULT_READ_TIMEOUT = 10.0
# How long a 503 with Retry-After is retried at the peers, counted from the request's start.
DEFAULT_UNAVAILABLE_RETRY_SECONDS = 10.0
# How long an https URL that got no TLS answer is probed for plain HTTP, to say which it is.
PLAIN_HTTP_PROBE_SECONDS = 1.0
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

    def clone(self):
        """A client with the same peers, token and timeouts and a session of its own (a
        requests.Session, and last_response, are for one thread at a time)."""
        return RegistryClient(self.urls, self.token, connect_timeout=self.timeout[0], read_timeout=self.timeout[1],
                              on_failover=self.on_failover, unavailable_retry_seconds=self.unavailable_retry_seconds)

    # -- transport ----------------------------------------------------------------------------

    def request(self, method, path, *, params=None, body=None, retry_unavailable=True, longer_read=0.0):
        """Send one request, failing over between peers; the decoded JSON answer, None when empty.

        Raises ApiError for an HTTP error status and NoPeerAnswered when no peer answers.
        retry_unavailable=False takes a 503 as the answer, as for any other status; longer_read
        adds seconds to the read timeout (a blocking read is held that long)."""
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
                                                                retries_unavailable, longer_read)
            if answer is not None:
                return _decode(answer)
            if unavailable is None:
                raise NoPeerAnswered(failures)
            # Every peer that answered was unavailable for now: wait as they asked, within the limit.
            pause = _retry_after_seconds(unavailable.retry_after)
            if time.monotonic() + pause >= retry_until:
                raise unavailable
            time.sleep(pause)

    def _try_each_peer(self, method, path, params, body, headers, retries_unavailable, longer_read):
        """One pass over the peers, the preferred first: (the answer to return, or None; the
        last 503 worth retrying as ApiError, or None; [(peer, why it gave no answer)])."""
        failures = []
        unavailable = None
        timeout = (self.timeout[0], self.timeout[1] + longer_read)
        order = self.urls[self._preferred:] + self.urls[:self._preferred]
        for position, base in enumerate(order):
            try:
                response = self.session.request(method, base + path, params=params, json=body,
                                                headers=headers, timeout=timeout)
            except (requests.ConnectionError, requests.Timeout) as error:
                reason = describe_unanswered(error, timeout, base)
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
        answer = self.request("GET", "/registry-svc/instances",
                              params=_instance_filters(id, slug, host, ip, scheme, path, deployment_id, node_url,
                                                       status, tags)) or {}
        return answer.get("instances") or []

    def watch_instances(self, index, wait_seconds, *, slug=None, status=None, tags=()):
        """A blocking read (extension): (X-Registry-Index, the instances) once what the filters
        select changed after `index` (with a slug: that slug's instances), or after
        wait_seconds unchanged. Pass the index it returns to the next call; index None lists
        at once. last_response is this client's: give each watching thread its own (clone())."""
        params = _instance_filters(None, slug, None, None, None, None, None, None, status, tags)
        if index is not None:
            params += [("index", str(index)), ("wait", f"{wait_seconds:g}s")]
        answer = self.request("GET", "/registry-svc/instances", params=params,
                              longer_read=0.0 if index is None else wait_seconds) or {}
        return int(self.last_response.headers.get("X-Registry-Index", "0")), answer.get("instances") or []

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

    def grants(self):
        """GET /registry-svc/grants: what this client's token may do, {"slug", "roles", "permissions"}."""
        return self.request("GET", "/registry-svc/grants")

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


def _instance_filters(id, slug, host, ip, scheme, path, deployment_id, node_url, status, tags):
    named = {"id": id, "slug": slug, "host": host, "ip": ip, "scheme": scheme, "path": path,
             "deploymentId": deployment_id, "nodeUrl": node_url, "status": status}
    return [(name, value) for name, value in named.items() if value is not None] + [("tag", tag) for tag in tags]


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


def same_peer(url, other):
    """True when two base URLs reach the same peer however its host is spelled (localhost and
    127.0.0.1, a name and its address): same scheme and port, and a shared address."""
    first, second = urlsplit(url.rstrip("/")), urlsplit(other.rstrip("/"))
    if first.scheme != second.scheme:
        return False
    try:
        ports = [parts.port or _DEFAULT_PORTS.get(parts.scheme) for parts in (first, second)]
    except ValueError:
        return False
    if ports[0] != ports[1] or not (first.hostname and second.hostname):
        return False
    if first.hostname.lower() == second.hostname.lower():
        return True
    return bool(_addresses(first.hostname) & _addresses(second.hostname))


_DEFAULT_PORTS = {"http": 80, "https": 443}


@functools.lru_cache(maxsize=64)
def _addresses(host):
    try:
        return frozenset(info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP))
    except (OSError, UnicodeError):
        return frozenset()


def describe_unanswered(error, timeout, url=None):
    """A few words on why a peer did not answer, instead of urllib3's nested exception text."""
    if url is not None and url.startswith("https://") and not _certificate_refused(error) and _speaks_plain_http(url):
        return f"it speaks plain HTTP, not TLS: use http://{urlsplit(url).netloc}"
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


def _certificate_refused(error):
    return _first_of(error, ssl.SSLCertVerificationError) is not None


def _speaks_plain_http(url):
    """Whether the server at an https URL completes no TLS handshake but answers plain HTTP (a
    TLS client there waits for a handshake the server never sends). A TLS server such as nginx
    answers plain HTTP too, so the handshake is tried first."""
    parts = urlsplit(url)
    try:
        address = (parts.hostname, parts.port or 443)
        with socket.create_connection(address, timeout=PLAIN_HTTP_PROBE_SECONDS) as sock:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # only whether it speaks TLS at all
            with context.wrap_socket(sock, server_hostname=parts.hostname):
                return False
    except (OSError, ValueError):
        pass  # ssl.SSLError and timeouts are OSErrors
    try:
        with socket.create_connection(address, timeout=PLAIN_HTTP_PROBE_SECONDS) as sock:
            sock.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
            return sock.recv(5) == b"HTTP/"
    except (OSError, ValueError):
        return False


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

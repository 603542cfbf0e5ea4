"""The two requests proxies and services send most, answered without Flask's per-request work.

Through Flask, registering an instance or listing instances cost a peer about 0.25 ms of
Python each before any Raft or listing work: request and app contexts, context-local lookups,
URL matching, hooks and a Response object, none of which these answers need. Here
`PUT /registry-svc/instance` and `GET /registry-svc/instances` (without read options) run
the same steps as plain calls: the token, the permission, the body or the filters, the commit
or the listing, then the same headers, metrics and access line.

Both take their routes from api/instances.py and register or list through the same functions as
its views. Whatever Flask would refuse before a write is committed (no token, no permission, a
body too large, bad JSON, a refused field, a bad filter, a read option) is handed to Flask with
the body intact, so each error has exactly one source and one wording. Once a write
was submitted its outcome is answered here. Anything else that goes wrong is a bug: a 500 with an
incident id in the log, as on the Flask path, never a silent second try through Flask.
"""

import codecs
import io
import logging
import time
from urllib.parse import parse_qsl

import orjson
from werkzeug.http import HTTP_STATUS_CODES

from cluster import tracing
from cluster.submit import WriteUnavailable
from registry.errors import ValidationError
from registry.instances import validate_filters
from registry.permissions import INSTANCE_EDIT, INSTANCE_VIEW

from . import logs
from .auth import caller_of, check_permission
from .consistency import OPTION_NAMES
from .errors import RETRY_AFTER_SECONDS, ApiError, report_unexpected
from .instances import LIST, REGISTER, listing, register, register_later
from .jsonio import wsgi_body
from .results import registry_headers, result_status

log = logging.getLogger(__name__)

# What Flask answers itself, in its own words: a refused token or permission, a body that is not
# JSON (orjson's error is a ValueError) or not a valid registration, a query that is not UTF-8.
REFUSALS = (ApiError, ValidationError, ValueError)
# The environ key of a registration's answer when it was started on waitress' loop thread and its
# outcome came on another (HotPath.start_later, api/loop_answers.py).
LATER_ANSWER = "registry.later_answer"


# Flask's request.args decodes the query with this codec error handler, which werkzeug registers
# (werkzeug.urls, imported with Flask): looked up now so that a werkzeug without it fails at start.
QUERY_DECODE_ERRORS = "werkzeug.url_quote"
codecs.lookup_error(QUERY_DECODE_ERRORS)


def _status_line(code):
    return f"{code} {HTTP_STATUS_CODES[code].upper()}"  # as werkzeug writes it


class HotPath:
    """WSGI middleware in front of the Flask app: serves the hot requests, passes on the rest."""

    def __init__(self, flask_wsgi_app, app, peer):
        self.flask_wsgi_app = flask_wsgi_app  # what answers every other request
        self._config = app.config
        self._peer = peer
        self._token_key = app.extensions["registry_token_key"]
        self._metrics = app.extensions["registry_request_metrics"]
        self._listings = app.extensions["registry_listings"]
        self.served = 0  # answered here rather than by Flask (tests check the hot path is taken)

    def __call__(self, environ, start_response):
        route = (environ["REQUEST_METHOD"], environ.get("PATH_INFO"))
        answered = environ.get(LATER_ANSWER)
        if answered is not None:  # a registration start_later started: its answer, ready
            return self._answer(environ, start_response, REGISTER[2], *answered)
        if route == REGISTER[:2]:
            return self._register(environ, start_response)
        if route == LIST[:2]:
            return self._list(environ, start_response)
        return self.flask_wsgi_app(environ, start_response)

    def answers_at_once(self, method, path, query, authorization):
        """Whether this request is a plain list whose answer is already encoded, with nothing to
        wait for: then waitress' loop thread answers it itself (api/loop_answers.py), sparing
        two thread hand-offs. Runs on that thread, so it waits for nothing but the state lock (as
        the answer itself does, api/loop_answers.py); False whenever in doubt."""
        if (method, path) != LIST[:2] or not self._peer.reads_at_once():
            return False
        try:
            plain = self._plain_list(query, authorization)
            if plain is None:
                return False
            caller, pairs = plain
            filters = validate_filters(pairs)
        except REFUSALS:
            return False
        return self._listings.holds(self._peer, filters, caller)

    def start_later(self, environ, finish):
        """On waitress' loop thread: start a registration whose answer the thread that learns its
        outcome sends, sparing a pool thread and its two hand-offs (api/loop_answers.py). True once
        started: finish(answer) follows exactly once, maybe before this returns, on the thread
        that learnt the outcome, which must then serve the request again with environ[LATER_ANSWER]
        = answer. False leaves the request to a pool thread as before: a face that cannot (a
        one-process peer), or anything Flask would refuse (it words refusals)."""
        if (environ["REQUEST_METHOD"], environ.get("PATH_INFO")) != REGISTER[:2] or not self._peer.registers_later():
            return False
        started = time.perf_counter()
        tracing.request_started()
        raw = _read_body(environ, self._config["MAX_CONTENT_LENGTH"])
        if raw is None:
            return False
        try:
            caller, payload = self._allowed_registration(environ, raw)

            def done(result, error):
                finish((started, caller, *self._registration_answer(result, error)))

            register_later(self._peer, caller, payload, done)
        except REFUSALS:
            return False
        return True

    def _allowed_registration(self, environ, raw):
        """(the allowed caller, the decoded body) of a registration; a refusal (REFUSALS) for Flask to word."""
        caller = caller_of(self._token_key, environ.get("HTTP_AUTHORIZATION", ""))
        check_permission(self._peer, caller, INSTANCE_EDIT)
        return caller, orjson.loads(raw)

    def _registration_answer(self, result, error):
        """(status, body, index, extra headers) answering a registration's outcome."""
        extra, index = [], None
        if error is None:
            index = result.get("index")
            status, problem = result_status(result, 201)
        elif isinstance(error, WriteUnavailable):
            self._metrics.write_failure(error.outcome_unknown)
            status, problem = 503, error.message
            extra.append(("Retry-After", RETRY_AFTER_SECONDS))
        else:
            status, problem = 500, report_unexpected("PUT", REGISTER[1], error)
        body = b"{}" if problem is None else orjson.dumps({"error": problem})
        return status, body, index, extra

    def _plain_list(self, query, authorization):
        """(the allowed caller, the query pairs) of a list without read options, None if it has
        some (consistency.py's work, Flask's); a refusal (REFUSALS) for Flask to word."""
        # Exactly as Flask's request.args parses the query.
        pairs = parse_qsl(query.encode("latin-1").decode(), keep_blank_values=True, errors=QUERY_DECODE_ERRORS)
        if any(name in OPTION_NAMES for name, _ in pairs):
            return None
        caller = caller_of(self._token_key, authorization)
        check_permission(self._peer, caller, INSTANCE_VIEW)
        return caller, pairs

    def _register(self, environ, start_response):
        started = time.perf_counter()
        tracing.request_started()
        raw = _read_body(environ, self._config["MAX_CONTENT_LENGTH"])
        if raw is None:
            return self.flask_wsgi_app(environ, start_response)
        try:
            caller, payload = self._allowed_registration(environ, raw)
        except REFUSALS:
            return self._refused_write(environ, start_response, raw)
        try:
            result, error = register(self._peer, caller, payload), None
        except ValidationError:
            return self._refused_write(environ, start_response, raw)
        except Exception as failed:
            result, error = None, failed
        status, body, index, extra = self._registration_answer(result, error)
        return self._answer(environ, start_response, REGISTER[2], started, caller, status, body, index, extra)

    def _list(self, environ, start_response):
        started = time.perf_counter()
        try:
            plain = self._plain_list(environ.get("QUERY_STRING", ""), environ.get("HTTP_AUTHORIZATION", ""))
            if plain is None:
                return self.flask_wsgi_app(environ, start_response)  # read options: consistency.py's work
            caller, pairs = plain
        except REFUSALS:
            return self.flask_wsgi_app(environ, start_response)  # Flask repeats the checks and answers the error
        try:
            index, body = listing(self._listings, self._peer, caller, pairs)
        except ValidationError:
            return self.flask_wsgi_app(environ, start_response)  # a refused filter, in Flask's words
        except Exception:
            body = orjson.dumps({"error": report_unexpected("GET", LIST[1])})
            return self._answer(environ, start_response, LIST[2], started, caller, 500, body, None, [])
        return self._answer(environ, start_response, LIST[2], started, caller, 200, body, index, [])

    def _refused_write(self, environ, start_response, raw):
        environ["wsgi.input"] = io.BytesIO(raw)  # Flask reads it again and says what is wrong
        return self.flask_wsgi_app(environ, start_response)

    def _answer(self, environ, start_response, endpoint, started, caller, status, body, index, extra):
        request_id = logs.request_id(environ.get("HTTP_X_REQUEST_ID", ""))
        start_response(_status_line(status), [
            ("Content-Type", "application/json"), ("Content-Length", str(len(body))), *extra,
            *registry_headers(self._peer, index), ("X-Request-Id", request_id),
        ])
        method = environ["REQUEST_METHOD"]
        self._metrics.request(endpoint, method, status, started)
        logs.log_access(request_id, method, environ["PATH_INFO"], status, caller, started)
        self.served += 1
        tracing.request_done()  # the answer is complete; waitress sends it from here
        return wsgi_body(environ, body)


def _read_body(environ, limit):
    """The body, when its length is declared and within the limit; None leaves it to Flask."""
    length = environ.get("CONTENT_LENGTH") or ""
    if not (length.isascii() and length.isdigit()) or int(length) > limit:
        return None
    return environ["wsgi.input"].read(int(length))
